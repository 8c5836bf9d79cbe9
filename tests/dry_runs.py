"""``python tests/dry_runs.py ARGS_JSON``: each ``python -m study.run ARGS --dry-run`` of the
list, run through ``study.run.main`` in this one interpreter (in the current directory), so
the imports are paid once and a rate timed for one command's model shapes is reused by the
next (``study.spec.plan.RATES``, as in any process that runs several dry runs). Prints one JSON
line per command: ``{"args", "status" (exit status), "stdout", "stderr", "seconds" (wall)}``.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import time
import traceback


def dry_run(args: list[str]) -> dict:
    from study.run import main

    out, err, start = io.StringIO(), io.StringIO(), time.perf_counter()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = main([*args, "--dry-run"])
    except SystemExit as e:  # argparse's refusals
        status = e.code if isinstance(e.code, int) else 1
    except Exception:  # noqa: BLE001 - this command's failure, not the next one's
        status = 1
        err.write(traceback.format_exc())
    return {"args": args, "status": status, "stdout": out.getvalue(), "stderr": err.getvalue(),
            "seconds": round(time.perf_counter() - start, 2)}


if __name__ == "__main__":
    for args in json.loads(sys.argv[1]):
        print(json.dumps(dry_run(args)), flush=True)
