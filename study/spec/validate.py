"""Checks of a whole study file before anything runs: every name it uses must exist.

Claims select configurations by factor (or fixed setting) values and name metrics; responses,
curves, references and gates name metrics too. Each is checked against the study's factors and
against the metrics its trials will produce (``study.spec.metric_names``), under every budget; a typo
is one error naming the file, the field and the value, with the closest valid name.
"""

from __future__ import annotations

import difflib
import itertools
from typing import Any

from study.core.errors import SpecError
from study.spec.claims import SAMPLE_GATES, Claim, Gate
from study.spec.config import TrialConfig
from study.spec.factors import SHORTHANDS
from study.spec.metric_names import epoch_metrics, model_free_claim, row_metrics
from study.spec.study_spec import BUDGETS, StudySpec
from study.store.columns import same_value


def suggest(name: str, candidates: set[str] | list[str]) -> str:
    close = difflib.get_close_matches(str(name), sorted(candidates), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


class _Cells:
    """The study's configurations under one budget: their factor values and settings."""

    def __init__(self, spec: StudySpec, budget: str) -> None:
        self.spec = spec
        self.cells: list[tuple[dict[str, Any], TrialConfig]] = []
        sampled = spec.sampled_factors
        for cell in spec.grid_cells():
            for corner in itertools.product(*(f.corners() for f in sampled.values())):
                factors = cell | dict(zip(sampled, corner))
                self.cells.append((factors, spec.trial_config(factors, budget)))

    def matching(self, where: dict[str, Any]) -> list[tuple[dict[str, Any], TrialConfig]]:
        out = []
        for factors, cfg in self.cells:
            values = cfg.model_dump() | factors
            if all(k in values and same_value(values[k], v) for k, v in where.items()):
                out.append((factors, cfg))
        return out


def _check_selection(spec: StudySpec, cells: _Cells, where: dict[str, Any], field: str) -> list:
    settings = set(spec.factors) | set(TrialConfig.model_fields)
    for key, value in where.items():
        if key not in settings:
            raise SpecError(f"{spec.source}: field '{field}.{key}' = {value!r}: no factor or setting "
                            f"{key!r}{suggest(key, settings)}")
        factor = spec.factors.get(key)
        if factor is not None and not factor.is_grid:
            raise SpecError(f"{spec.source}: field '{field}.{key}' = {value!r}: factor {key!r} is "
                            "sampled, so no configuration has a given value of it")
        if factor is not None:
            levels = [factor.decode(v) for v in factor.values]
            if not any(same_value(level, value) for level in levels):
                raise SpecError(f"{spec.source}: field '{field}.{key}' = {value!r}: not a level of "
                                f"factor {key!r} (levels: {', '.join(map(str, levels))})"
                                f"{suggest(value, [str(v) for v in levels])}")
    chosen = cells.matching(where)
    if not chosen:
        raise SpecError(f"{spec.source}: field '{field}' = {where!r}: selects no configuration "
                        "of the study")
    return chosen


def _check_metric(spec: StudySpec, chosen: list, metric: str, field: str) -> None:
    names: set[str] = set()
    for _, cfg in chosen:
        names |= row_metrics(cfg)
    if metric not in names:
        raise SpecError(f"{spec.source}: field '{field}' = {metric!r}: no selected configuration "
                        f"produces this metric{suggest(metric, names)}")


def _check_gate(spec: StudySpec, chosen: list, gate: Gate | None, field: str) -> None:
    if gate is None:
        return
    for metric, _, _ in gate.bounds():
        if metric in ("ll_gap", *SAMPLE_GATES):  # named by the gate: only where defined
            continue
        _check_metric(spec, chosen, metric, field)


def _check_claim(spec: StudySpec, cells: _Cells, claim: Claim, i: int) -> None:
    field = f"claims[{i}]"
    chosen = _check_selection(spec, cells, claim.where, f"{field}.where")
    _check_metric(spec, chosen, claim.metric, f"{field}.metric")
    if claim.versus_metric is not None:
        _check_metric(spec, chosen, claim.versus_metric, f"{field}.versus_metric")
    both = list(chosen)
    if claim.versus is not None:
        other = _check_selection(spec, cells, claim.versus, f"{field}.versus")
        _check_metric(spec, other, claim.metric, f"{field}.metric")
        both += other
    _check_gate(spec, both, claim.gate, f"{field}.gate")
    _check_fit_gated(spec, both, claim, field)


def _check_fit_gated(spec: StudySpec, chosen: list, claim: Claim, field: str) -> None:
    """A claim on 2-D models is gated on their fit: the gap to the exact density where the
    data have one (noise > 0), the decoded samples' coverage of the curve where not; unless
    the claim is about that fit itself, about a model-free number, or its own gate sets the
    bound to null on purpose (a claim about training, e.g. divergence)."""
    if model_free_claim(claim.metric, claim.versus_metric):
        return
    gate = spec.gates.merged(claim.gate)
    declared = claim.gate.model_fields_set if claim.gate is not None else set()
    two_d = [cfg for _, cfg in chosen if not cfg.is_image]
    needs = []
    if any(cfg.noise > 0 for cfg in two_d) and gate.max_ll_gap is None \
            and "max_ll_gap" not in declared and claim.metric != "ll_gap":
        needs.append("max_ll_gap (nats from the exact density, noisy data)")
    if any(cfg.noise == 0 for cfg in two_d) and gate.min_coverage is None \
            and gate.max_wrong_samples is None and "min_coverage" not in declared \
            and claim.metric not in SAMPLE_GATES:
        needs.append("min_coverage (the curve covered by decoded samples, noise-free data)")
    if needs:
        raise SpecError(f"{spec.source}: field '{field}' ({claim.statement!r}): a claim on 2-D "
                        f"models is judged only on models that fit; set gates."
                        f"{' and gates.'.join(n.split(' ')[0] for n in needs)} "
                        f"({'; '.join(needs)}), or null in the claim's own gate on purpose")


#: the fields a shorthand replaces, and the shorthands that replace each
REPLACED_BY = {"hidden": ("width", "hidden_layers", "hidden_block"),
               "latents": ("depth", "latent_dim")}


def check_no_override(spec: StudySpec) -> None:
    """A factor's level (or a factor) that sets ``hidden`` or ``latents`` is never replaced in
    silence by a shorthand (``width``, ``depth``, ...) that can meet it in a trial: set in the
    same level, in another factor (as a factor or in any of its levels), in ``fixed`` or in a
    budget. The trials would train other shapes than the level says. Refused with one line
    naming both."""
    for name, factor in spec.factors.items():
        levels = factor.levels or {}
        for target, shorthands in REPLACED_BY.items():
            setters = {f"factors.{name}.levels.{lv}.{target}": v for lv, v in levels.items()
                       if target in v}
            if name == target:
                setters[f"factors.{name}"] = {}
            elsewhere = [f"factors.{other}" for other in spec.factors if other in shorthands]
            elsewhere += [f"factors.{other}.levels.{lv}.{k}" for other, f in spec.factors.items()
                          if other != name for lv, v in (f.levels or {}).items()
                          for k in v if k in shorthands]
            elsewhere += [f"fixed.{k}" for k in spec.fixed if k in shorthands]
            elsewhere += [f"budgets.{b}.{k}" for b in BUDGETS for k in spec.budget(b)
                          if k in shorthands]
            for setter, level in setters.items():
                same = [f"{setter.rsplit('.', 1)[0]}.{k}" for k in level if k in shorthands]
                places = same + elsewhere
                if places:
                    raise SpecError(
                        f"{spec.source}: field '{places[0]}' would replace '{target}' set by "
                        f"'{setter}' (the trials would not train the shapes the levels give); "
                        f"set {target} in one place: drop {places[0].rsplit('.', 1)[-1]!r}, "
                        f"or give the levels the shorthand instead of {target!r}")


def validate_study(spec: StudySpec) -> None:
    """Every name the study file uses exists, under every budget (see the module docstring).
    ``check_no_override`` runs before it (``load_spec``), before any configuration is built."""
    for budget in BUDGETS:
        cells = _Cells(spec, budget)
        every = [c for c in cells.cells]
        for _, cfg in every:
            if spec.search.metric not in epoch_metrics(cfg):
                raise SpecError(f"{spec.source}: field 'search.metric' = {spec.search.metric!r}: "
                                "not reported every epoch"
                                f"{suggest(spec.search.metric, epoch_metrics(cfg))}; use one of "
                                f"{sorted(epoch_metrics(cfg))}")
        for i, response in enumerate(spec.responses):
            _check_metric(spec, every, response, f"responses[{i}]")
        for i, claim in enumerate(spec.claims):
            _check_claim(spec, cells, claim, i)
        for i, ref in enumerate(spec.references):
            chosen = _check_selection(spec, cells, ref.where, f"references[{i}].where")
            _check_metric(spec, chosen, ref.metric, f"references[{i}].metric")
        for i, curve in enumerate(spec.curves):
            for x in curve.x:
                text = f"{x:g}" if isinstance(x, (int, float)) else str(x)
                _check_metric(spec, every, curve.metric.format(x=text), f"curves[{i}].metric")
                if curve.reference:
                    _check_metric(spec, every, curve.reference.format(x=text),
                                  f"curves[{i}].reference")
        _check_gate(spec, every, spec.gates, "gates")


__all__ = ["SHORTHANDS", "check_no_override", "suggest", "validate_study"]
