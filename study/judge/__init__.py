"""Judge: the statistics that turn per-seed numbers into verdicts: tests and intervals
(``stats``), claim verdicts with Holm's correction (``verdicts``) and the sequential design of
``--until-decided`` (``sequential``).

May import: ``study.core``, ``study.store`` and ``study.spec``. Never PyTorch, Ray or MLflow."""
