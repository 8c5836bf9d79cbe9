"""The one text form of a structured setting where only scalars travel.

Ray Tune reads a list in a param space as nested parameters and Optuna stores only scalars, so
a grid value such as hidden widths ``[[64, 64], [32, 32]]`` crosses them as text; Parquet
``factor.``/``config.`` columns and MLflow params hold scalars too. Everywhere, the text is the
value's JSON (tuples as lists), written by ``encode`` and read back by ``decode``; inside the
project the value stays native (tuples of ints in a ``TrialConfig``)."""

from __future__ import annotations

import json
from typing import Any


def _plain(v: Any) -> Any:
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    return v


def encode(value: Any) -> Any:
    """``value`` as a scalar: a list, tuple or dict as its JSON text, anything else as is."""
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(_plain(value))
    return value


def decode(value: Any) -> Any:
    """The value ``encode`` made: JSON text parsed (a string that is not JSON stays a string),
    anything else as is."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except (json.JSONDecodeError, ValueError):
        return value
