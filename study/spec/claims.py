"""What a study's report judges: claims of the experiment log, their fitness gates, reference
numbers, and curves of a metric family."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from study.core.strict import Strict

#: the gates on decoded samples, for 2-D data without a density (``Gate.min_coverage``,
#: ``Gate.max_wrong_samples``): where ``max_ll_gap`` applies, it judges the fit instead
SAMPLE_GATES = ("curve_coverage", "wrong_sample_frac")



#: what a claim is about, and so how its per-seed values are tested
#: (``study.judge.stats.location_test`` implements each): ``mean``, the paired t test of a
#: comparison; ``median`` ("in most seeds"), the exact sign test. A new one is a name here and
#: its branch there.
ClaimAbout = Literal["mean", "median"]

#: nats: a latent layer carries information when its KL is at least this (the gate a claim
#: about a layer gets for every layer it relies on, ``Gate.min_layer_kl``)
LAYER_KL = 0.01

class Gate(Strict):
    """What a claim's models must have reached before the claim can be judged; each bound is
    checked on every seed of every configuration the claim selects (a configuration passes
    only when all its completed seeds pass: a mean over seeds lets a stuck seed hide behind
    good ones), and a claim whose configurations miss it is *untestable* (never supported or
    not supported). A claim about a fit metric itself (``ll_gap``, ``curve_coverage``,
    ``wrong_sample_frac``, e.g. "fixed std 1 stays more than 1 nat from the exact density") is
    judged by that metric, not gated on it.

    max_ll_gap: nats; exact_ll - test_ll at most this (2-D data with noise > 0).
    min_coverage: fraction; curve_coverage at least this: the gate of noise-free data, which has
        no density: the decoded prior samples cover the test points (recall). Samples off the
        curve (latent pockets) do not lower it, so claims about pockets and wrong samples are
        not judged by the quantity they are about (docs/ARCHITECTURE.md).
    max_wrong_samples: fraction; wrong_sample_frac at most this (the precision of the samples).
    Where the exact density is known (``ll_gap`` defined) and ``max_ll_gap`` is set, the gap
    judges the fit instead of these two sample bounds (issue 14's targets), so a configuration
    is not held to both; without ``max_ll_gap`` they apply to any noise.
    min_kl: layer -> nats; the KL of each named layer (``kl_L``) at least this.
    min_layer_kl: nats; every layer a claim relies on (``metric_names.layers_used``: the layer
        of a class accuracy, the layers above k of an LLR>k score) carries at least this KL
        (default ``LAYER_KL``); ``min_kl`` of a layer overrides it.
    min_epochs: epochs trained at least this.
    at_least / at_most: metric -> bound, for any other metric.
    """

    max_ll_gap: float | None = Field(None, gt=0)
    min_coverage: float | None = Field(None, ge=0, le=1)
    max_wrong_samples: float | None = Field(None, ge=0, le=1)
    min_kl: dict[str, float] = Field(default_factory=dict)
    min_layer_kl: float = Field(LAYER_KL, ge=0)
    min_epochs: int | None = Field(None, ge=1)
    at_least: dict[str, float] = Field(default_factory=dict)
    at_most: dict[str, float] = Field(default_factory=dict)

    def merged(self, override: Gate | None) -> Gate:
        """This gate with ``override``'s fields (those it sets) taking precedence; the
        per-metric bounds (``min_kl``, ``at_least``, ``at_most``) are merged metric by metric,
        so a claim's own bound on one metric keeps the study's bounds on the others, and an
        empty one (``at_most: {}``) clears the study's bounds of that kind."""
        if override is None:
            return self
        update = override.model_dump(exclude_unset=True)
        for name in ("min_kl", "at_least", "at_most"):
            if update.get(name):
                update[name] = {**getattr(self, name), **update[name]}
        return self.model_copy(update=update)

    def bounds(self) -> list[tuple[str, str, float]]:
        """(metric, ">=" or "<=", bound) of every check."""
        out: list[tuple[str, str, float]] = []
        if self.max_ll_gap is not None:
            out.append(("ll_gap", ">=", -self.max_ll_gap))
        if self.min_coverage is not None:
            out.append(("curve_coverage", ">=", self.min_coverage))
        if self.max_wrong_samples is not None:
            out.append(("wrong_sample_frac", "<=", self.max_wrong_samples))
        out += [(f"kl_{layer}", ">=", v) for layer, v in self.min_kl.items()]
        if self.min_epochs is not None:
            out.append(("epochs", ">=", float(self.min_epochs)))
        out += [(m, ">=", v) for m, v in self.at_least.items()]
        out += [(m, "<=", v) for m, v in self.at_most.items()]
        return out


class Claim(Strict):
    """A statement of the experiment log, tested on the study's seeds.

    ``where`` selects trials (factor or config values). With ``versus`` the claim compares two
    selections seed by seed (``expect: higher`` or ``lower``: ``metric`` under ``where`` minus
    under ``versus``); with ``versus_metric``, two metrics of the same seeds; without either,
    the metric against ``threshold`` (``expect: below`` or ``above``). ``expect: equivalent``
    claims "no difference" (of the comparison, or from the threshold) within ``margin``, an
    equivalence test; a directional claim with a ``margin`` is also tested for equivalence when
    it is not decided. ``gate`` adds to (or overrides) the study's ``gates``.

    ``about``: ``mean`` (the default of a comparison) tests the mean of the paired per-seed
    differences by t; ``median`` ("in most seeds") by the exact sign test, for outcomes that
    split the seeds (a layer that switches on in some seeds and stays off in others). A claim
    against a threshold is always about the median: with no symmetric null, the mean of 3-10
    seeds of a skewed metric has no valid test (``study.judge.stats``).
    """

    statement: str
    metric: str
    where: dict[str, Any] = Field(default_factory=dict)
    versus: dict[str, Any] | None = None
    versus_metric: str | None = None
    expect: Literal["higher", "lower", "below", "above", "equivalent"]
    threshold: float | None = None
    margin: float | None = Field(None, gt=0)
    gate: Gate | None = None
    about: ClaimAbout | None = None

    @model_validator(mode="after")
    def _shape(self) -> Claim:
        compares = self.versus is not None or self.versus_metric is not None
        if not compares and self.about == "mean":
            raise ValueError("a claim against a threshold is about the median (in most seeds), "
                             "tested by signs: the mean of a handful of seeds of a skewed metric "
                             "has no valid test; drop 'about: mean' or compare configurations")
        if self.versus is not None and self.versus_metric is not None:
            raise ValueError("a claim compares with another selection or another metric, not both")
        if self.expect == "equivalent":
            if self.margin is None:
                raise ValueError("a claim that expects equivalent needs a margin")
            if not compares and self.threshold is None:
                raise ValueError("an equivalence claim needs versus, versus_metric or a threshold")
        elif compares and self.expect not in ("higher", "lower"):
            raise ValueError("a claim with versus / versus_metric expects higher or lower")
        elif not compares and (self.expect not in ("below", "above") or self.threshold is None):
            raise ValueError("a claim without versus needs expect below/above and a threshold")
        return self

    @property
    def compares(self) -> bool:
        """Whether the claim compares two selections or two metrics (else: a threshold)."""
        return self.versus is not None or self.versus_metric is not None

    @property
    def tested_on(self) -> ClaimAbout:
        """What the claim's test is about: its ``about``, else the mean of a comparison and the
        median of a threshold claim."""
        return self.about or ("mean" if self.compares else "median")

    @property
    def sign(self) -> float:
        """+1 when the claim expects a positive effect, -1 a negative one, 0 no effect."""
        return {"higher": 1.0, "above": 1.0, "lower": -1.0, "below": -1.0}.get(self.expect, 0.0)


class Reference(Strict):
    """A published or logged number to show beside the study's own (e.g. the log's table)."""

    where: dict[str, Any] = Field(default_factory=dict)
    metric: str
    value: float
    source: str


class Curve(Strict):
    """A report plot of a metric family against x, e.g. AUROC against the OOD shift distance:
    ``metric: auroc_neg_ll_shifted_{x}`` with ``x: [0.1, 0.5, 1]``, one line per configuration,
    and optionally a ``reference`` family drawn dashed (e.g. ``bayes_auroc_shifted_{x}``)."""

    title: str
    metric: str
    x: list[float | int | str]
    xlabel: str = "x"
    reference: str | None = None
