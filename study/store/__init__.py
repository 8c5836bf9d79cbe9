"""Store: a study's records and where they live: the results folder and its typed state
(``folder``), the Parquet tables and their column names (``results``, ``columns``), the
``--storage`` mirror (``storage``) and the MLflow tracking store and parent run (``tracking``).

May import: ``study.core``. Never PyTorch, Ray or Optuna."""
