"""``python -m study.report NAME``: the report of a study's results folder (study.report.build)."""

from study.report.build import main

raise SystemExit(main())
