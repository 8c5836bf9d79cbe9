"""How much a trial's final evaluation computes, in points and samples: read by the evaluation
(``study.trial.evaluate``) and by the cost model that prices it (``study.spec.cost``), so the
two cannot drift apart. No PyTorch (the cost model runs in the driver)."""

from __future__ import annotations

#: test points of the latent metrics (class accuracy, pockets, active units), and the posterior
#: samples per point they average the per-unit KL over
EMBED_POINTS = 2000
EMBED_SAMPLES = 16
#: prior samples decoded for the 2-D sample metrics (precision, recall)
N_GENERATED = 2000
#: points of the test set and of each 2-D OOD set whose exact densities give the
#: Neyman-Pearson references (the quadrature costs 0.06-0.2 ms a point, one thread)
REFERENCE_POINTS = 1000
