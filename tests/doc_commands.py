"""The commands a Markdown page shows a user: the lines of its ``bash`` blocks and the inline
code spans that start with a command (``python -m study.*``, ``python -m pytest``,
``python benchmarks/*``, ``python -c``, ``ray``, ``mlflow``), split into argument lists as a
shell would, with the
placeholders the docs use (``NAME``, ``N``, ``DIR``, ``...``) replaced by real values."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

#: how a command starts -> its kind (the check that applies to it)
INLINE = re.compile(r"`((?:python (?:-m (?:study\.\w+|pytest)|benchmarks/\w+\.py|-c )|ray |mlflow )"
                    r"[^`]*)`")
#: the docs' placeholders and the value each stands for in a check
PLACEHOLDERS = {"NAME": "spirals_depth", "N": "2", "ADDR": "auto",
                "URI": "sqlite:///mlflow.db"}


@dataclass(frozen=True)
class Command:
    """One command of a page: its words (placeholders replaced), whether it stood in a
    ``bash`` block (run as written) or inline (may be just the program's name), and where."""

    words: tuple[str, ...]
    fenced: bool
    where: str

    @property
    def tool(self) -> str:
        """``python -m study.run`` -> ``study.run``; ``python benchmarks/x.py`` -> the path;
        ``python -c`` -> ``-c``; otherwise the program (``ray``, ``aws``, ...)."""
        w = self.words
        if w[0] == "python":
            return w[2] if w[1] == "-m" else w[1]
        return w[0]

    @property
    def args(self) -> list[str]:
        """The words after the tool."""
        return list(self.words[3 if self.words[:2] == ("python", "-m") else
                               2 if self.words[0] == "python" else 1:])


def _words(line: str, data_dir: str) -> list[tuple[str, ...]]:
    """A shell line -> its commands' words (split at ``&&`` and ``;``, redirections dropped,
    placeholders replaced)."""
    out, words = [], []
    for w in shlex.split(line, comments=True):
        if w in ("&&", ";", "||"):
            out.append(tuple(words))
            words = []
        elif w.startswith((">", "2>", "|")):
            out.append(tuple(words))
            words = []
            break
        elif w == "..." and words[-1:] in (["study.run"], ["study.report"]):
            words.append(PLACEHOLDERS["NAME"])  # `python -m study.run ... --budget smoke`
        elif w != "...":
            words.append(data_dir if w == "DIR" else PLACEHOLDERS.get(w, w))
    out.append(tuple(words))
    return [w for w in out if w]


def page_commands(text: str, where: str, data_dir: str) -> list[Command]:
    """Every command ``text`` (one Markdown page, ``where``) shows."""
    found = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            if line.strip():
                found += [Command(w, True, where) for w in _words(line, data_dir)]
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    for span in INLINE.findall(prose):
        found += [Command(w, False, where) for w in _words(" ".join(span.split()), data_dir)]
    return found
