"""Process-wide settings, made once by each command-line entry point (never by library code):
logging (with URI passwords masked), matplotlib's file-only backend, and the environment
variables that tune Ray Tune's console output and MLflow's HTTP retries."""

from __future__ import annotations

import logging
import os

#: environment defaults for a study process (a value the user set is kept)
ENVIRONMENT = {
    # Ray Tune: the classic console output, which ``verbose=0`` silences; no automatic
    # TensorBoard/CSV/JSON loggers per trial (the study records results itself)
    "RAY_AIR_NEW_OUTPUT": "0",
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
    # MLflow over HTTP: fail a request within seconds, so the outbox's own retries take over
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}
QUIET_LOGGERS = ("mlflow.store.db.utils", "alembic", "ray.tune.analysis.experiment_analysis")


def configure_process(level: int = logging.WARNING) -> None:
    """Configure this process for a study command (idempotent)."""
    for key, value in ENVIRONMENT.items():
        os.environ.setdefault(key, value)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    import matplotlib

    matplotlib.use("Agg")
    from study.core.redact import install_log_redaction

    install_log_redaction()
