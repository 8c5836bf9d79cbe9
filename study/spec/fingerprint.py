"""What a study runs, resolved: the record ``--resume`` compares against.

``settings_record(study)`` is everything that decides what a trial trains: the budget,
the number of trials, the search and the pruner, the sampled factors' distributions and, for
every grid configuration, the full ``TrialConfig`` after the shorthands, the budget's overrides
and the defaults of the code that is running. ``study.json`` stores it when a study starts; a
``--resume`` whose resolved study differs is refused (``changes`` names each difference), so no
trial is ever trained under settings other than those Parquet and MLflow record. What only the
report reads (claims, responses, references, curves) may change freely.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from study.spec.resolved import ResolvedStudy


def cell_label(cell: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in cell.items()) or "the configuration"


def settings_record(study: ResolvedStudy) -> dict[str, Any]:
    """The resolved study as plain JSON data (see the module docstring)."""
    spec = study.spec
    cells = {cell_label(c): study.config(c).model_dump(mode="json") for c in study.cells}
    return {
        "budget": study.budget,
        "trials": study.num_trials,
        "search": spec.search.model_dump(mode="json"),
        "pruner": spec.pruner.model_dump(mode="json"),
        "sampled": {name: f.model_dump(mode="json", exclude_defaults=True)
                    for name, f in spec.sampled_factors.items()},
        "configurations": cells,
    }


def fingerprint(resolved: dict[str, Any]) -> str:
    """A short hash of the resolved study (canonical JSON)."""
    text = json.dumps(resolved, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _flat(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for k, v in data.items():
            out |= _flat(v, f"{prefix}.{k}" if prefix else str(k))
        return out
    return {prefix: data}


def changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Human-readable differences ``field: old -> new``; a setting that changed the same way
    in every configuration is named once."""
    out: list[str] = []
    for key in ("budget", "trials"):
        if old.get(key) != new.get(key):
            out.append(f"{key}: {old.get(key)} -> {new.get(key)}")
    for part in ("search", "pruner", "sampled"):
        a, b = _flat(old.get(part, {}), part), _flat(new.get(part, {}), part)
        for k in sorted(set(a) | set(b)):
            if a.get(k) != b.get(k):
                out.append(f"{k}: {_show(a.get(k))} -> {_show(b.get(k))}")
    oc, nc = old.get("configurations", {}), new.get("configurations", {})
    for label in oc.keys() - nc.keys():
        out.append(f"configuration ({label}) removed")
    for label in nc.keys() - oc.keys():
        out.append(f"configuration ({label}) added")
    per_field: dict[tuple[str, str, str], list[str]] = {}
    for label in oc.keys() & nc.keys():
        a, b = _flat(oc[label]), _flat(nc[label])
        for k in sorted(set(a) | set(b)):
            if a.get(k) != b.get(k):
                per_field.setdefault((k, _show(a.get(k)), _show(b.get(k))), []).append(label)
    shared = len(oc.keys() & nc.keys())
    for (field, a, b), labels in sorted(per_field.items()):
        where = (f"all {shared} configurations" if len(labels) == shared and shared > 1
                 else "; ".join(labels))
        out.append(f"{field}: {a} -> {b} ({where})")
    return out


def _show(v: Any) -> str:
    return "(unset)" if v is None else json.dumps(v) if isinstance(v, (list, dict)) else str(v)
