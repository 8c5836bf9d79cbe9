"""A consecutive range of seeds, and its one text form ("5-9") where a round of
``--until-decided`` carries it through Ray's trial config and Optuna's user attributes."""

from __future__ import annotations

import re
from dataclasses import dataclass

_TEXT = re.compile(r"(\d+)-(\d+)")


@dataclass(frozen=True)
class SeedRange:
    """Seeds ``first`` to ``last``, both included."""

    first: int
    last: int

    def __post_init__(self) -> None:
        if not 0 <= self.first <= self.last:
            raise ValueError(f"a seed range runs from a seed >= 0 up: {self.first}-{self.last}")

    @property
    def seeds(self) -> list[int]:
        return list(range(self.first, self.last + 1))

    @property
    def text(self) -> str:
        """The range as configs and records carry it: ``"FIRST-LAST"``."""
        return f"{self.first}-{self.last}"

    @classmethod
    def parse(cls, text: str) -> SeedRange:
        """The range ``text`` (``"5-9"``) names; ValueError for anything else."""
        match = _TEXT.fullmatch(str(text).strip())
        if match is None:
            raise ValueError(f"not a seed range FIRST-LAST: {text!r}")
        return cls(int(match.group(1)), int(match.group(2)))
