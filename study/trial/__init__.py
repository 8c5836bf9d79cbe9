"""Trial: one trial's work in one process, with PyTorch: data in, the trainer (seeds as
one ensemble), evaluation, plots and the trial's files (``run_trial``), the per-epoch and final
result keys (``records``) and the device.

May import: ``study.core``, ``study.data``, ``study.spec`` and ``models``. Never Ray, Optuna or
MLflow (``python -m study.train`` runs a trial without them)."""
