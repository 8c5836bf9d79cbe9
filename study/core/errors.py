"""Errors a user can fix. The command-line tools print these as one line and exit non-zero."""

from __future__ import annotations

from collections.abc import Sequence


def field_path(loc: Sequence[str | int]) -> str:
    """A pydantic error location as the study file spells it: ``claims[0].test``,
    ``ood_shifts[1]`` ("" for the whole object)."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class UserError(Exception):
    """Bad input: names what is wrong and where (file, field, value) and what to do."""


class DatasetError(UserError):
    """A missing, corrupt or unknown dataset file."""


class SpecError(UserError):
    """A study or trial specification that does not validate."""
