"""One text form for list settings where only scalars travel (study.core.codec), and native
values everywhere else: a configuration survives Ray's param space and a Parquet column."""

from __future__ import annotations

from study.core import codec
from study.spec.config import trial_config
from study.spec.factors import Factor
from study.store.columns import native


def test_lists_cross_as_json_text_and_come_back_as_they_were():
    hidden = ((64, 64), (32, 32))
    text = codec.encode(hidden)
    assert text == "[[64, 64], [32, 32]]" and codec.decode(text) == [[64, 64], [32, 32]]
    assert codec.encode(0.5) == 0.5 and codec.encode("vae") == "vae"
    assert codec.decode("vae") == "vae" and codec.decode(3) == 3
    assert codec.encode({"a": (1, 2)}) == '{"a": [1, 2]}'


def test_a_configuration_survives_ray_and_parquet_unchanged():
    factor = Factor(grid=[[[64, 64], [32, 32]], [[16], [16]]])
    ray_values = factor.values  # what Ray's param space and Optuna hold
    assert all(isinstance(v, str) for v in ray_values)
    cfg = trial_config({"latents": [2, 2], "hidden": factor.decode(ray_values[0])})
    assert cfg.hidden == ((64, 64), (32, 32))  # native inside the project
    column = cfg.flat()  # what MLflow params and Parquet config. columns hold
    assert column["hidden"] == codec.encode(cfg.hidden)
    back = trial_config({k: native(v) for k, v in column.items()})
    assert back == cfg  # every setting, read back from its column, is the same
