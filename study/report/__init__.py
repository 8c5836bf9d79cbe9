"""Report: a study's answer from its results folder alone: tables, figures and verdicts
into ``report/`` and the MLflow parent run (``python -m study.report``).

May import: ``study.core``, ``study.store``, ``study.data``, ``study.spec`` and
``study.judge``. Never PyTorch, ``study.trial`` or ``study.engine``: a report runs where the
study's results are, without the training stack."""
