"""The one layout of a trial's own folder (a ``study.train`` output folder, or the final Tune
checkpoint of a study trial). A module without imports, so the driver can name the files
without importing the trial's code (PyTorch, scikit-learn)."""

CHECKPOINT = "trainer.pt"  # the Trainer's state (models, optimisers, history); study.trial.trainer
METRICS = "metrics.json"  # config, seeds, final means and per-seed values
EPOCHS = "epochs.parquet"  # one row per (epoch, seed)
SCORES = "scores.parquet"  # per-point OOD scores (seed, set, score, ...)
PLOTS = "plots"  # per-trial figures (PNG)
FILES = (METRICS, EPOCHS, SCORES, PLOTS)  # what a finished trial leaves besides CHECKPOINT
