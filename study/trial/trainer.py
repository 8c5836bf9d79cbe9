"""Train one configuration for all of its seeds at once (one ensemble), with checkpoints.

``Trainer`` runs Adam on an E-member ensemble: member e has its own initialisation (seed e),
its own data order (a generator seeded with seed e) and its own noise (the model's generator of
member e: reparameterisation, dynamic binarisation); the loss is the sum of the members'
losses, so no gradient is shared. Each member is an independent replicate: it trains as it
would alone (same parameters, to float rounding), whatever the other seeds. After every epoch
the trainer computes per-member and mean metrics and calls a callback, which may ask to stop
(pruning).

Early stopping is per member: a member whose own validation bound has reached a plateau
(``cfg.patience``, ``records.plateaued(..., member=e)``) stops at that epoch
(``TrainState.stopped_epoch``) and is frozen from then on, its epoch metrics repeating those of
its last trained epoch; the trial ends when every member has stopped or diverged, or at
``cfg.epochs``. A member whose loss turns non-finite is marked ``diverged`` at that epoch and
frozen (its parameters are kept as they were); the other members train on. Nothing is dropped:
the divergence is recorded in the history and in the final metrics.

``Trainer.save`` / ``Trainer.load`` checkpoint model, optimizer, epoch, history, the members'
stop and divergence epochs and every RNG (global torch, CUDA, the per-member data-order and
noise generators), so a resumed run is bit-identical to an uninterrupted one.

The command line for one trial is ``python -m study.train`` (study/train.py).
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from models import beta_schedule, build_model, iw_bound, training_objective
from models.member_adam import MemberAdam
from study.core.errors import UserError
from study.data import DataBundle
from study.spec.config import TrialConfig
from study.spec.packs import shape_key
from study.trial.device import matmul_precision, resolve_device, reuse_host_memory
from study.trial.member_settings import MemberSettings
from study.trial.records import EpochMetrics, TrainState, mean_alive, plateaued


class Trainer:
    """Adam on one ensemble; ``fit`` runs the epochs, ``save``/``load`` checkpoint."""

    def __init__(self, cfg: TrialConfig | Sequence[TrialConfig],
                 data: DataBundle | Sequence[DataBundle], device: str = "auto",
                 threads: int | None = None) -> None:
        """One configuration and its data, or a pack: configurations of one shape
        (``study.spec.packs.shape_key``) and each one's data; the members are each
        configuration's seeds in order, with their own settings (``self.settings``)."""
        if threads:
            torch.set_num_threads(threads)
        self.cfgs = (cfg,) if isinstance(cfg, TrialConfig) else tuple(cfg)
        self.datas = (data,) if isinstance(data, DataBundle) else tuple(data)
        if len(self.datas) != len(self.cfgs) or len({shape_key(c) for c in self.cfgs}) != 1:
            raise ValueError("a pack needs configurations of one shape, each with its data")
        #: the first configuration: the settings every member shares (the pack's shape)
        self.cfg, self.data = self.cfgs[0], self.datas[0]
        self.settings = MemberSettings.of(self.cfgs)
        seeds = [int(s) for c in self.cfgs for s in c.seeds]
        self.device = resolve_device(device)
        if self.device.type == "cpu":
            reuse_host_memory()
        torch.manual_seed(int(np.random.SeedSequence(seeds).generate_state(1)[0]))
        self.model = build_model(self.cfg.architecture(), seeds).to(self.device)
        s = self.settings
        if len(set(s.output_std)) > 1 or len(set(s.min_output_std)) > 1:  # a pack's own stds
            self.model.likelihood.set_members(s.output_std, s.min_output_std, self.device)
        # Adam with a learning rate per member (models.member_adam), set every epoch
        self.optimizer = MemberAdam(self.model.parameters(), lr=self.cfg.lr)
        self.x_train, self.x_val = (torch.from_numpy(
            np.concatenate([getattr(d, k) for d in self.datas]) if self.data.per_member
            else getattr(self.data, k)).to(self.device) for k in ("x_train", "x_val"))
        E = len(seeds)
        self._members = torch.arange(E, device=self.device)[:, None]
        self.order_rngs = [torch.Generator().manual_seed(s) for s in seeds]
        self.state = TrainState(diverged_epoch=[None] * E, stopped_epoch=[None] * E)
        #: the parameters of each diverged member, restored after every step
        self._frozen: dict[int, dict[str, torch.Tensor]] = {}
        #: members whose configuration has left the pack (``study.trial.pack``): not trained
        self.released = np.zeros(E, bool)
        #: the pack this configuration trains in (``study.trial.pack.Follower``), if any: its
        #: weights, moments and streams are taken from there before a checkpoint
        self.following = None
        #: the most members this configuration trained beside (its own seeds, or its packs')
        self.pack_members = E

    @property
    def n_members(self) -> int:
        return len(self.settings.config)

    @property
    def alive(self) -> np.ndarray:
        """``[E]`` the members that have not diverged (stopped ones included)."""
        return np.array([d is None for d in self.state.diverged_epoch])

    @property
    def stopped(self) -> np.ndarray:
        """``[E]`` the members early stopping has stopped."""
        return np.array([s is not None for s in self.state.stopped_epoch])

    @property
    def training(self) -> np.ndarray:
        """``[E]`` the members still training: neither diverged nor stopped, their own epochs
        not all run, their configuration still in the pack."""
        return (self.alive & ~self.stopped & ~self.released
                & (self.state.epoch < self.settings.epochs))

    # ------------------------------------------------------------------ training
    def _batches(self) -> torch.Tensor:
        """``[E, N]`` this epoch's data order, one permutation per member."""
        n = self.x_train.shape[-2]
        order = torch.stack([torch.randperm(n, generator=g) for g in self.order_rngs])
        if self.device.type == "cuda":  # one small copy per epoch, overlapped with the work
            return order.pin_memory().to(self.device, non_blocking=True)
        return order

    def learning_rate(self, epoch: int) -> np.ndarray:
        """``[E]`` each member's learning rate in 0-based ``epoch``
        (``MemberSettings.learning_rate``); 0 for a member that is alive and not stopped but
        no longer trains (its epochs are run, or its configuration left the pack), so Adam's
        moments do not move it."""
        lr = self.settings.learning_rate(epoch)
        idle = self.alive & ~self.stopped & ~self.training
        return np.where(idle, 0.0, lr)

    def _per_member(self, values: np.ndarray, rows: np.ndarray) -> float | torch.Tensor:
        """A per-member setting for the members ``rows``: one float when they share it (the
        scalar path of one configuration), else ``[len(rows)]`` on the device."""
        v = values[rows]
        if (v == v[0]).all():
            return float(v[0])
        return torch.as_tensor(v, dtype=torch.float32, device=self.device)

    def _mark_diverged(self, members: np.ndarray) -> None:
        for e in np.flatnonzero(members):
            self.state.diverged_epoch[e] = self.state.epoch + 1  # 1-based, as in history
            self._frozen[int(e)] = {k: p[e].detach().clone()
                                    for k, p in self.model.named_parameters()}

    def _stop_plateaued(self) -> None:
        """Stop every training member whose own validation bound has reached a plateau, at the
        last epoch trained. A stopped member is frozen at no cost per step: its Adam moments are
        zeroed here and it is no longer computed (``train_epoch``), so its gradients are zero
        and Adam's update m / (sqrt(v) + eps) is exactly 0 (the rare step with a non-finite
        loss zeroes its gradients explicitly, ``_step_with_diverged_members``)."""
        s = self.settings
        for e in np.flatnonzero(self.training):
            if plateaued(self.state.history, int(s.patience[e]), float(s.min_improvement[e]),
                         member=int(e)):
                self.state.stopped_epoch[e] = self.state.epoch
                for st in self.optimizer.state.values():
                    for v in st.values():
                        if torch.is_tensor(v) and v.dim() > 0:
                            v[e].zero_()

    def _restore_frozen(self) -> None:
        with torch.no_grad():
            for e, params in self._frozen.items():
                for k, p in self.model.named_parameters():
                    p[e].copy_(params[k])

    def _clip_per_member(self) -> None:
        """Scale each member's gradient to norm at most its ``grad_clip`` (none: ``inf``)."""
        max_norm = self._per_member(self.settings.grad_clip, np.arange(self.n_members))
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        norms = torch.stack([g.flatten(1).pow(2).sum(1) for g in grads]).sum(0).sqrt()  # [E]
        scale = (max_norm / (norms + 1e-6)).clamp(max=1.0)
        for g in grads:
            g.mul_(scale.view(-1, *([1] * (g.dim() - 1))))

    def train_epoch(self) -> dict[str, np.ndarray]:
        """One pass over the training set for every member still training; per-member means of
        the batch metrics (``[E]`` each; NaN for the members not trained). Only the members still
        training are computed (``model.only``): a stopped or diverged member costs nothing, so
        a trial whose seeds stop at different epochs pays for the seeds still training. A step
        costs one host synchronisation (is every loss finite?); the metrics accumulate on the
        device."""
        cfg, model = self.cfg, self.model
        model.train()
        self.optimizer.set_lr(self.learning_rate(self.state.epoch))
        clip = bool(np.isfinite(self.settings.grad_clip).any())
        order = self._batches()
        n = order.shape[1]
        n_batches = math.ceil(n / cfg.batch_size)
        E, dev = self.n_members, self.device
        active = np.flatnonzero(self.training)
        members = None if len(active) == E else active.tolist()
        rows = torch.as_tensor(active, device=dev)
        order, sel = order[rows], self._members[rows]
        free_bits = self._per_member(self.settings.free_bits, active)
        loss_sum, bound_sum = torch.full((E,), math.nan, device=dev), torch.zeros(E, device=dev)
        kl_sum = torch.zeros(E, len(model.layer_names), device=dev)
        loss_sum[rows] = 0.0
        for i in range(n_batches):
            idx = order[:, i * cfg.batch_size : (i + 1) * cfg.batch_size]
            beta = self._per_member(self.settings.beta(self.state.epoch + i / n_batches),
                                    active)
            with model.only(members):
                # [A, b, D]: each member's own points (2-D data is drawn per seed)
                x = self.x_train[sel, idx] if self.x_train.dim() == 3 else self.x_train[idx]
                if self.data.binarize == "dynamic":  # Bernoulli(x), from each member's stream
                    x = (model.noise.uniform([x.shape[1:]], x.dtype)[0] < x).to(x.dtype)
                with self._precision():
                    terms = training_objective(model, x, cfg.iw_samples, cfg.kl, beta,
                                               free_bits)
            if bool(torch.isfinite(terms.loss_per_member).all()):
                self.optimizer.zero_grad(set_to_none=True)
                terms.loss.backward()
                if clip:
                    self._clip_per_member()
                self.optimizer.step()
                if self._frozen:  # Adam's moments would move a diverged member: put it back
                    self._restore_frozen()
            elif not self._step_with_diverged_members(terms, active):
                break
            w = idx.shape[1] / n
            loss_sum[rows] += w * terms.loss_per_member.detach()
            bound_sum[rows] += w * terms.bound
            kl_sum[rows] += w * terms.kl_layers
        sums = {"train_loss": loss_sum.cpu().numpy(), "train_bound": bound_sum.cpu().numpy()}
        kl = kl_sum.cpu().numpy()
        for j, name in enumerate(model.layer_names):
            sums[f"train_kl_{name}"] = kl[:, j]
        return sums

    def _step_with_diverged_members(self, terms, active: np.ndarray) -> bool:
        """The rare step where the loss of a member computed (``active``: ``terms`` rows are
        these members) is not finite: mark those members diverged (frozen as they were), step
        the others. False when no member is left training."""
        losses = terms.loss_per_member.detach().cpu().numpy()
        newly = np.zeros(self.n_members, bool)
        newly[active] = ~np.isfinite(losses)
        self._mark_diverged(newly & self.training)
        training = self.training
        if not training.any():
            return False
        self.optimizer.zero_grad(set_to_none=False)
        still = torch.as_tensor(training[active], device=self.device)
        torch.where(still, terms.loss_per_member, 0.0).sum().backward()
        stopped = ~torch.as_tensor(training, device=self.device)
        with torch.no_grad():
            for p in self.model.parameters():
                p.grad[stopped] = 0.0
            if np.isfinite(self.settings.grad_clip).any():
                self._clip_per_member()
        self.optimizer.step()
        self._restore_frozen()
        return True

    def _precision(self):
        """Training matmuls on a GPU may use TF32 (``cfg.gpu_tf32``); evaluation never does."""
        if self.device.type == "cuda" and self.cfg.gpu_tf32:
            return matmul_precision("high")
        return contextlib.nullcontext()

    @torch.no_grad()
    def validate(self, batch: int = 1000, members: np.ndarray | None = None
                 ) -> dict[str, np.ndarray]:
        """Per member (nats per point, ``[E]`` each): ``val_elbo``, the single-sample ELBO
        (closed-form KL where there is one); ``val_bound``, the bound training maximises, the
        k-sample importance-weighted bound with sampled weights (k = ``iw_samples``; for k = 1
        the ELBO itself); the smallest and mean learned output std (Gaussian, learned
        variance). ``members``: the member indices to compute (the others are NaN); all by
        default."""
        self.model.eval()
        E_all, k = self.n_members, self.cfg.iw_samples
        rows = np.arange(E_all) if members is None else np.asarray(members, int)
        E = len(rows)
        elbo, bound = np.zeros(E), np.zeros(E)
        n = self.x_val.shape[-2]
        std_min, std_sum, std_count = np.full(E, np.inf), np.zeros(E), 0
        x_val = self.x_val if self.x_val.dim() == 2 or E == E_all else \
            self.x_val[torch.as_tensor(rows, device=self.device)]
        with self.model.only(None if E == E_all else rows.tolist()):
            for start in range(0, n, batch):
                xb = x_val[..., start : start + batch, :]
                fp = self.model(xb, n_samples=1, kl="analytic")
                elbo += fp.log_weight.sum(dim=(1, 2)).cpu().numpy()
                if k > 1:
                    bound += iw_bound(self.model, xb, k, "sampled").sum(1).cpu().numpy()
                std = self.model.likelihood.std(fp.px_params)  # [E, 1, b, D] or None
                if std is not None:
                    std_min = np.minimum(std_min, std.flatten(1).min(1).values.cpu().numpy())
                    std_sum += std.flatten(1).sum(1).cpu().numpy()
                    std_count += std[0].numel()
        out = {"val_bound": (bound if k > 1 else elbo) / n, "val_elbo": elbo / n}
        if std_count:
            out |= {"output_std_min": std_min, "output_std_mean": std_sum / std_count}
        if E == E_all:
            return out
        full = {key: np.full(E_all, np.nan) for key in out}
        for key, v in out.items():
            full[key][rows] = v
        return full

    def fit(self, callback: Callable[[EpochMetrics], bool | None] | None = None,
            progress: Callable[[int], None] | None = None) -> bool:
        """Train until ``cfg.epochs`` (resuming from ``state.epoch``). After each epoch calls
        ``callback(metrics)``; a True return stops training (returns True: stopped early).
        Training ends, to be evaluated as usual, when no member is left training (each stopped,
        diverged or through its epochs; ``run_epoch``).
        With restarts (``cfg.restarts`` > 1) a fresh start first runs ``choose_restarts`` (which
        calls ``progress(epoch)`` after each of the candidates' epochs) and then calls
        ``callback`` for each of its epochs, as if they had just been trained."""
        if self.cfg.choice_epoch and self.state.epoch == 0:
            if len(self.cfgs) > 1:
                raise ValueError("a pack's restarts are chosen per configuration, before packing")
            self.choose_restarts(progress)
            for metrics in self.state.history:
                stop = bool(callback(metrics)) if callback else False
                if stop or not self.alive.any():
                    return stop
        while (metrics := self.run_epoch()) is not None:
            stop = bool(callback(metrics)) if callback else False
            if stop or not self.alive.any():
                return stop
        return False

    def run_epoch(self) -> EpochMetrics | None:
        """Stop every training member whose own validation bound has reached a plateau
        (``cfg.patience``, ``_stop_plateaued``), then train one epoch of the members still
        training and validate them; the epoch's metrics (also appended to ``state.history``),
        or None when no member is left training. A member not trained this epoch (stopped, or
        done) repeats the values of its last trained epoch, so the epoch means stay means over
        every member that has not diverged."""
        self._stop_plateaued()
        if not self.training.any():
            return None
        start = time.perf_counter()
        carried = self.alive & ~self.training  # not trained this epoch: their values carried
        values = self.train_epoch()
        # the members still training (every member when none is left: the epoch's record
        # keeps its keys, and its values are the carried or NaN ones below)
        values |= self.validate(members=np.flatnonzero(self.training)
                                if self.training.any() else None)
        bad_val = self.training & ~(np.isfinite(values["val_elbo"]) &
                                    np.isfinite(values["val_bound"]))
        if bad_val.any():
            self._mark_diverged(bad_val)
        self.state.epoch += 1
        alive = self.alive
        values["diverged"] = (~alive).astype(float)
        members = {k: [float(x) if alive[i] or k == "diverged" else float("nan")
                       for i, x in enumerate(v)] for k, v in values.items()}
        if carried.any():
            last = self.state.history[-1].members
            for k, v in members.items():
                for e in np.flatnonzero(carried):
                    v[e] = last[k][e] if k in last else float("nan")
            values = {k: np.asarray(v, float) for k, v in members.items()}
        mean = {k: mean_alive(np.asarray(v), alive) for k, v in values.items() if k != "diverged"}
        mean["beta"] = beta_schedule(self.state.epoch, self.cfg.warmup_epochs)
        mean["seconds"] = time.perf_counter() - start
        metrics = EpochMetrics(self.state.epoch, members, mean, int((~alive).sum()))
        self.state.history.append(metrics)
        return metrics

    # ------------------------------------------------------------------ restarts
    def choose_restarts(self, progress: Callable[[int], None] | None = None) -> None:
        """Train ``cfg.restarts`` initialisations of every seed side by side for
        ``cfg.choice_epoch`` epochs, then go on with each seed's one of the best validation bound
        (the data, schedules and evaluation are the seed's; only the initialisation and the
        data order differ). Candidate r of seed s is initialised from s itself for r = 0 and
        from a seed derived from (s, r) otherwise. Afterwards this trainer holds the chosen
        members' weights, Adam moments, data-order generators and epoch history, and
        ``state.restart`` says which candidate each seed kept. No candidate state is saved: a
        run interrupted before the choice starts again from epoch 0. ``progress(epoch)``: after
        each of the candidates' epochs (they are reported only after the choice)."""
        cfg, E, R = self.cfg, self.n_members, self.cfg.restarts
        ccfg, seed_of = restart_candidates(cfg)
        cand = Trainer(ccfg, self.data.members(seed_of), str(self.device))

        def until_choice(m: EpochMetrics) -> bool:
            if progress is not None and m.epoch < cfg.choice_epoch:
                progress(m.epoch)
            return m.epoch >= cfg.choice_epoch

        cand.fit(until_choice)
        bound = np.array(cand.state.history[-1].members["val_bound"], float).reshape(R, E)
        r_best = np.where(np.isfinite(bound), bound, -np.inf).argmax(0)
        keep = [int(r * E + e) for e, r in enumerate(r_best)]
        self.take_members(cand, keep)
        cand.state.restart = [m // E for m in range(R * E)]
        self.state = cand.state.keep_members(keep)

    def take_members(self, source: Trainer, rows: list[int]) -> None:
        """Members ``rows`` of ``source`` (same shape) become this trainer's members, in that
        order: their weights, Adam moments, data-order and noise streams and frozen
        parameters (not the training state: the caller's)."""
        with torch.no_grad():
            self.model.load_state_dict({k: v[rows] for k, v in source.model.state_dict().items()})
        opt = source.optimizer.state_dict()
        opt["state"] = {i: {k: v[rows] if v.dim() else v for k, v in st.items()}
                        for i, st in opt["state"].items()}
        self.optimizer.load_state_dict(opt)
        for g, m in zip(self.order_rngs, rows):
            g.set_state(source.order_rngs[m].get_state())
        noise = source.model.noise.get_state()
        self.model.noise.set_state([noise[m] for m in rows])
        self._frozen = {e: source._frozen[m] for e, m in enumerate(rows) if m in source._frozen}

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        if self.following is not None:
            self.following.take_weights()
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "epoch": self.state.epoch,
            "history": [vars(m) for m in self.state.history],
            "diverged_epoch": [-1 if d is None else d for d in self.state.diverged_epoch],
            "stopped_epoch": [-1 if d is None else d for d in self.state.stopped_epoch],
            "restart": list(self.state.restart),
            "frozen": {str(e): p for e, p in self._frozen.items()},
            "rng_torch": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "rng_order": [g.get_state() for g in self.order_rngs],
            "rng_noise": self.model.noise.get_state(),
            "config": self.cfg.model_dump_json(),
        }

    def load_state_dict(self, state: dict) -> None:
        if state["config"] != self.cfg.model_dump_json():
            raise ConfigMismatch("this checkpoint was written by a different trial "
                                 "configuration; use another output folder")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.state = TrainState(
            epoch=int(state["epoch"]),
            history=[EpochMetrics(**m) for m in state["history"]],
            diverged_epoch=[None if d < 0 else int(d) for d in state["diverged_epoch"]],
            restart=[int(r) for r in state.get("restart", [])],
            stopped_epoch=[None if d < 0 else int(d)
                           for d in state.get("stopped_epoch", [-1] * self.n_members)],
        )
        self._frozen = {int(e): p for e, p in state["frozen"].items()}
        # generator states are CPU byte tensors (read_checkpoint maps tensors to the device)
        torch.set_rng_state(state["rng_torch"].cpu())
        if state["rng_cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([s.cpu() for s in state["rng_cuda"]])
        for g, s in zip(self.order_rngs, state["rng_order"]):
            g.set_state(s.cpu())
        if "rng_noise" in state:  # (checkpoints before per-member noise: streams from the seeds)
            self.model.noise.set_state(state["rng_noise"])

    def save(self, path: str | os.PathLike) -> None:
        """Write a checkpoint atomically (temporary file, then rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        torch.save(self.state_dict(), tmp)
        os.replace(tmp, path)

    def load(self, path: str | os.PathLike) -> None:
        """Restore from ``save``'s file; tensors and plain data only (``weights_only=True``)."""
        self.load_state_dict(read_checkpoint(path, self.device))


def restart_candidates(cfg: TrialConfig) -> tuple[TrialConfig, np.ndarray]:
    """The ensemble of every restart candidate of ``cfg`` and, per candidate, the index of the
    seed whose data it trains (``[R * E]``): candidate m = r * E + e is seed e's r-th
    initialisation, from seed e itself for r = 0 and from a seed derived from (seed e, r)
    otherwise; the candidates train without early stopping."""
    E, R = len(cfg.seeds), cfg.restarts
    seed_of = np.tile(np.arange(E), R)
    inits = tuple(int(cfg.seeds[e]) if m < E else
                  int(np.random.SeedSequence([int(cfg.seeds[e]), m // E]).generate_state(1)[0])
                  for m, e in enumerate(seed_of))
    return cfg.model_copy(update={"seeds": inits, "restarts": 1, "patience": 0}), seed_of


class ConfigMismatch(UserError, ValueError):
    """A checkpoint of another trial configuration."""


def read_checkpoint(path: str | os.PathLike, device: torch.device | str = "cpu") -> dict:
    """A checkpoint's state, read without unpickling code (``weights_only=True``)."""
    return torch.load(path, map_location=device, weights_only=True)

