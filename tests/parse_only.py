"""``python tests/parse_only.py COMMANDS_JSON``: run each command line's Python program
(``["-m", "study.report", ...]`` or ``["benchmarks/x.py", ...]``) only as far as its argument
parser: ``argparse``'s ``parse_args`` parses the words as the program would, prints
``parsed`` and ends the program there, so nothing is trained, timed or written; a script
whose source has no ``argparse`` parser is not started at all. Prints one JSON line per
command: ``{"command": ..., "status": exit status, "parsed": bool, "error": stderr}``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import runpy
import sys
from pathlib import Path


class Parsed(SystemExit):
    """The program's arguments parsed: the check ends it here."""


def _parse_only(self, args=None, namespace=None):
    _original(self, args, namespace)  # a bad word exits 2 with argparse's message
    raise Parsed(0)


_original = argparse.ArgumentParser.parse_args


def check(words: list[str]) -> dict:
    script = Path(words[0]) if words[0] != "-m" else None  # -m: the project's own commands
    if script is not None and (not script.is_file() or "argparse" not in script.read_text()):
        # a script without an argument parser would run whole: never started here
        return {"command": words, "status": 2, "parsed": False,
                "error": "no argparse parser in the program (or no such program): not run"}
    argparse.ArgumentParser.parse_args = _parse_only
    err, status, parsed = io.StringIO(), 0, False
    sys.argv = [words[1] if words[0] == "-m" else words[0], *words[(2 if words[0] == "-m"
                                                                    else 1):]]
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            if words[0] == "-m":
                runpy.run_module(words[1], run_name="__main__", alter_sys=True)
            else:
                runpy.run_path(words[0], run_name="__main__")
    except Parsed:
        parsed = True
    except SystemExit as e:
        status = e.code if isinstance(e.code, int) else 1
    except Exception as e:  # noqa: BLE001 - reported as the command's failure
        status, err = 1, io.StringIO(f"{type(e).__name__}: {e}")
    finally:
        argparse.ArgumentParser.parse_args = _original
    return {"command": words, "status": status, "parsed": parsed,
            "error": err.getvalue().strip()[-500:]}


if __name__ == "__main__":
    for words in json.loads(sys.argv[1]):
        print(json.dumps(check(words)), flush=True)
