"""Engine: the driver of a study: checks before anything runs (``preflight``), the launch
(``launch``, ``options``), Ray Tune with the search and Optuna's pruning (``tuner``, ``search``,
``pruning``, ``trainable``), the recorder of every trial into Parquet and MLflow (``recorder``,
``outcome``, ``outbox``, ``replay``), rounds of ``--until-decided`` and signals.

May import: every layer below it (``study.core``, ``study.store``, ``study.data``,
``study.spec``, ``study.trial``, ``study.judge``) and ``models``; not ``study.report``."""
