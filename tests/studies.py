"""Tiny study files for the engine tests (real Ray, Optuna, MLflow and Parquet; small data)."""

from __future__ import annotations

from pathlib import Path

import yaml

TINY = {
    "dataset": "moons", "noise": 0.05, "n_train": 256, "n_val": 128, "n_test": 128,
    "latents": [2], "hidden": [8], "kind": "vae", "batch_size": 128, "eval_importance": 20,
    "ood_importance": 5, "ood_shifts": [1.0],
}


def write_spec(folder: Path, name: str, **fields) -> Path:
    spec = {
        "name": name,
        "question": f"test study {name}",
        "fixed": dict(TINY) | fields.pop("fixed", {}),
        "factors": fields.pop("factors", {"lr": {"grid": [0.003, 0.01]}}),
        "seeds": fields.pop("seeds", 2),
        "budgets": fields.pop("budgets", {"smoke": {"epochs": 2}}),
        "pruner": fields.pop("pruner", {"name": "none"}),
    } | fields
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path
