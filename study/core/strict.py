"""The base of the study file's models: strict (unknown fields are errors), immutable, and
without NaN or infinities."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
