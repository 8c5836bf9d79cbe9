"""hvae-study: named hyperparameter studies of hierarchical VAEs (Ray Tune, Optuna, MLflow,
Parquet). The command lines are ``python -m study.run``, ``python -m study.train`` and
``python -m study.report``; the code below them is split by layer, each a package whose
docstring says what it holds and what it may import.

``LAYERS`` is that rule in one place, read by ``tests/test_layering.py`` (every import counts,
inside functions and under ``TYPE_CHECKING`` too): each layer may import the project packages
named for it and none of the third-party packages banned for it. The command-line modules at
the top (``study.run``, ``study.train``) may import every layer.
"""

from __future__ import annotations

#: layer -> (project packages it may import, third-party packages it may not import), bottom up
LAYERS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "models": ((), ("study", "ray", "optuna", "mlflow")),
    "study.core": ((), ("torch", "models", "ray", "mlflow")),
    "study.store": (("study.core",), ("torch", "models", "ray", "optuna")),
    "study.data": (("study.core",), ("models", "ray", "optuna", "mlflow")),
    "study.spec": (("study.core", "study.store", "study.data", "models"), ("ray", "mlflow")),
    "study.trial": (("study.core", "study.data", "study.spec", "models"), ("ray", "optuna", "mlflow")),
    "study.judge": (("study.core", "study.store", "study.spec"), ("torch", "models", "ray", "mlflow")),
    "study.engine": (("study.core", "study.store", "study.data", "study.spec", "study.trial",
                      "study.judge", "models"), ()),
    "study.report": (("study.core", "study.store", "study.data", "study.spec", "study.judge"),
                     ("torch", "models", "ray", "optuna")),
}
