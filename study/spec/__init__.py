"""Spec: what a study is, before anything runs: the study file's schema and its
validation (``study_spec``, ``spec_file``, ``validate``, ``factors``, ``claims``), a trial's
configuration (``config``), metric names, caps, the fingerprint and the dry run's plan.

May import: ``study.core``, ``study.store``, ``study.data`` and ``models`` (PyTorch only inside
functions: the cost and memory estimates; a study file validates without it), and Optuna's
distributions and pruners by name. Never Ray or MLflow."""
