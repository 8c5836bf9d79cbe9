"""Does the trial path use a GPU, and how well? One script, no Ray, Optuna or MLflow on its path.

Run: ``python benchmarks/gpu_check.py --data-dir DIR [--out TABLE.md]`` (DIR holds ``mnist/``
with the original IDX files). It uses the project's own trial code (``study.trial.trainer``,
``study.trial.evaluate``, ``models``) on the MNIST VAE of the experiment log, hidden [512, 512] and
64 latents, as one ensemble of E=10 seeds trained with IW=10 (sampled KL):

1. training throughput on CUDA and on the CPU: samples/s (one sample = one image for one seed)
   and achieved TFLOP/s (matmul FLOPs counted by ``models.size.forward_flops``, x3 for a
   training step);
2. the K=1000 evaluation of the 10,000 test images on CUDA: seconds and peak GPU memory;
3. N = 1, 2, 4, 8 trial processes at once on the one GPU (what ``--gpus-per-trial 1/N`` does):
   aggregate samples/s, to choose the fraction per trial;
4. every tensor of a trial (model, optimizer state, data) lives on the device it was given,
   a whole trial (train, evaluate) runs on CUDA, and the same weights evaluated on CUDA and on
   the CPU give the same log-likelihood within Monte Carlo noise.

Without a GPU it runs the CPU half, says so, and exits 0. The table goes to ``--out`` too.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

SETTINGS = {"dataset": "mnist", "kind": "vae", "latents": [64], "hidden": [512, 512],
            "activation": "relu", "iw_samples": 10, "kl": "sampled", "batch_size": 128,
            "seeds": 10, "n_val": 1000, "n_test": 0, "lr": 1e-3}


def config(data_dir: str, steps: int, **extra):
    from study.spec.config import trial_config

    values = SETTINGS | {"data_dir": data_dir, "n_train": steps * SETTINGS["batch_size"],
                         "epochs": 1} | extra
    return trial_config(values, "gpu_check")


def train_rate(data_dir: str, device: str, steps: int, threads: int | None = None) -> dict:
    """Samples/s and TFLOP/s of ``steps`` training steps (after a warm-up) on ``device``."""
    from models.size import training_flops
    from study.data import load_data
    from study.trial.trainer import Trainer

    cfg = config(data_dir, steps)
    data = load_data(cfg.data_config())
    trainer = Trainer(cfg, data, device=device, threads=threads)
    warm = Trainer(config(data_dir, 5), load_data(config(data_dir, 5).data_config()),
                   device=device, threads=threads)
    warm.train_epoch()
    _sync(device)
    start = time.perf_counter()
    trainer.train_epoch()
    _sync(device)
    seconds = time.perf_counter() - start
    samples = len(cfg.seeds) * steps * cfg.batch_size
    flops = training_flops(cfg.architecture(), 1, cfg.iw_samples) * samples
    return {"device": device, "steps": steps, "seconds": seconds, "samples_per_s": samples / seconds,
            "tflops": flops / seconds / 1e12, "trainer": trainer}


def curve_rate(device: str, steps: int = 200, seeds: int = 10) -> dict:
    """Training samples/s of the 2-D HVAE z=[2, 2], hidden [[64, 64], [32, 32]], IW=10, E=10:
    the small models of the Moons/Spirals studies."""
    from study.data import load_data
    from study.spec.config import trial_config
    from study.trial.trainer import Trainer

    cfg = trial_config({"dataset": "spirals", "latents": [2, 2], "hidden": [[64, 64], [32, 32]],
                        "iw_samples": 10, "kl": "sampled", "seeds": seeds, "epochs": 1,
                        "n_train": steps * 128, "n_val": 500, "n_test": 100}, "gpu_check")
    trainer = Trainer(cfg, load_data(cfg.data_config()), device=device)
    trainer.train_epoch()  # warm-up
    _sync(device)
    start = time.perf_counter()
    trainer.train_epoch()
    _sync(device)
    seconds = time.perf_counter() - start
    return {"samples_per_s": seeds * steps * 128 / seconds, "step_ms": 1000 * seconds / steps}


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def placement(trainer) -> list[str]:
    """Tensors of the trial that are not on its device."""
    want = trainer.device.type
    bad = [n for n, p in trainer.model.named_parameters() if p.device.type != want]
    bad += [n for n, b in trainer.model.named_buffers() if b.device.type != want]
    for group in trainer.optimizer.state.values():
        bad += [f"optimizer.{k}" for k, v in group.items()
                if torch.is_tensor(v) and v.dim() > 0 and v.device.type != want]
    bad += [n for n in ("x_train", "x_val") if getattr(trainer, n).device.type != want]
    return bad


def evaluation(trainer, data_dir: str, k: int = 1000, points: int = 10_000) -> dict:
    """The K-sample log-likelihood of the first ``points`` test images with the trainer's
    weights (the same binarised images on every device)."""
    from models import estimate_log_likelihood
    from study.data import load_data

    cfg = trainer.cfg
    data = load_data(cfg.data_config())
    x = torch.from_numpy(data.x_test[:points]).to(trainer.device)
    if trainer.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    _sync(trainer.device.type)
    start = time.perf_counter()
    with torch.no_grad():
        trainer.model.eval()
        torch.manual_seed(0)
        est = estimate_log_likelihood(trainer.model, x, k)
    _sync(trainer.device.type)
    seconds = time.perf_counter() - start
    peak = (torch.cuda.max_memory_allocated() - base) / 2**20 if trainer.device.type == "cuda" else math.nan
    ll = est.log_px.double().cpu().numpy()  # [E, N]
    return {"points": x.shape[0], "k": k, "seconds": seconds, "peak_mib": peak, "ll": ll}


def _worker(data_dir: str, steps: int, barrier, queue) -> None:
    """One trial process: set up and warm up, wait for the others, then time ``steps`` steps."""
    from study.data import load_data
    from study.trial.trainer import Trainer

    cfg = config(data_dir, steps)
    trainer = Trainer(cfg, load_data(cfg.data_config()), device="cuda")
    warm = Trainer(config(data_dir, 5), load_data(config(data_dir, 5).data_config()), device="cuda")
    warm.train_epoch()
    torch.cuda.synchronize()
    barrier.wait()
    start = time.time()
    trainer.train_epoch()
    torch.cuda.synchronize()
    queue.put((start, time.time(), len(cfg.seeds) * steps * cfg.batch_size))


def shared_gpu(data_dir: str, steps: int, counts=(1, 2, 4, 8)) -> list[dict]:
    """N processes training at once on the one GPU (started together after their warm-up):
    the aggregate samples/s over the span from the first start to the last end."""
    ctx = mp.get_context("spawn")
    rows = []
    for n in counts:
        barrier, queue = ctx.Barrier(n), ctx.Queue()
        procs = [ctx.Process(target=_worker, args=(data_dir, steps, barrier, queue)) for _ in range(n)]
        for p in procs:
            p.start()
        results = [queue.get(timeout=600) for _ in procs]
        for p in procs:
            p.join()
        span = max(r[1] for r in results) - min(r[0] for r in results)
        each = [r[2] / (r[1] - r[0]) for r in results]
        rows.append({"processes": n, "per_process": float(np.mean(each)),
                     "aggregate": sum(r[2] for r in results) / span, "wall_s": span})
    return rows


def whole_trial(data_dir: str) -> dict:
    """A small trial end to end on CUDA (train, evaluate), through ``study.trial.run_trial``."""
    from study.trial.run_trial import NoCheckpoints, run_trial

    cfg = config(data_dir, 20, seeds=2, n_test=500, eval_importance=100, ood_importance=10,
                 ood_dataset=None, epochs=2)
    start = time.perf_counter()
    result = run_trial(cfg, NoCheckpoints(), device="cuda", plots=False)
    return {"seconds": time.perf_counter() - start, "test_ll": result.evaluation.mean["test_ll"],
            "misplaced": placement(result.trainer)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", required=True, help="folder with mnist/ (original IDX files)")
    parser.add_argument("--out", default=None, help="also write the table to this file")
    parser.add_argument("--gpu-steps", type=int, default=300)
    parser.add_argument("--cpu-steps", type=int, default=20)
    parser.add_argument("--cpu-threads", type=int, default=None)
    args = parser.parse_args()
    lines = [f"torch {torch.__version__}; CPU threads {torch.get_num_threads()}; "
             f"CUDA {'yes: ' + torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no'}",
             f"model: VAE hidden [512, 512], z=64, E=10 seeds, IW=10, batch 128 per seed",
             "", "| what | device | samples/s | TFLOP/s | notes |", "| --- | --- | ---: | ---: | --- |"]
    cpu = train_rate(args.data_dir, "cpu", args.cpu_steps, args.cpu_threads)
    lines.append(f"| training | cpu | {cpu['samples_per_s']:,.0f} | {cpu['tflops']:.3f} | "
                 f"{cpu['steps']} steps in {cpu['seconds']:.1f} s |")
    bad = placement(cpu["trainer"])
    assert not bad, f"tensors off the CPU: {bad}"
    if not torch.cuda.is_available():
        lines += ["", "No CUDA GPU was found: only the CPU half ran (the GPU half needs a machine "
                      "with CUDA)."]
        _emit(lines, args.out)
        return 0
    problems: list[str] = []
    for section in (_gpu_training, _gpu_evaluation, _curves, _whole_trial, _sharing):
        try:
            section(args, cpu, lines, problems)
        except Exception as err:  # noqa: BLE001 - one failed part must not hide the others
            lines.append(f"| {section.__name__[1:]} | cuda | | | FAILED: {type(err).__name__}: {err} |")
            problems.append(section.__name__)
        _emit(lines, args.out)
    return 1 if problems else 0


STATE: dict = {}


def _gpu_training(args, cpu, lines, problems) -> None:
    gpu = train_rate(args.data_dir, "cuda", args.gpu_steps)
    STATE["gpu"] = gpu
    lines.append(f"| training | cuda | {gpu['samples_per_s']:,.0f} | {gpu['tflops']:.2f} | "
                 f"{gpu['steps']} steps in {gpu['seconds']:.2f} s; "
                 f"{gpu['samples_per_s'] / cpu['samples_per_s']:.0f}x the CPU |")
    bad = placement(gpu["trainer"])
    problems += bad
    lines.append(f"| placement | cuda | | | {'every tensor on cuda' if not bad else 'OFF DEVICE: ' + str(bad)} |")


def _gpu_evaluation(args, cpu, lines, problems) -> None:
    trainer = STATE["gpu"]["trainer"]
    ev_gpu = evaluation(trainer, args.data_dir)
    lines.append(f"| K=1000 eval of {ev_gpu['points']:,} images, E=10 | cuda | "
                 f"{ev_gpu['points'] * 10 / ev_gpu['seconds']:,.0f} images x seeds/s | | "
                 f"{ev_gpu['seconds']:.1f} s, peak {ev_gpu['peak_mib']:,.0f} MiB above the model |")
    # the same weights on the CPU (K=100, 2,000 images): equal within Monte Carlo noise
    trainer.model.to("cpu")
    trainer.device = torch.device("cpu")
    ev_cpu = evaluation(trainer, args.data_dir, k=100, points=2000)
    trainer.model.to("cuda")
    trainer.device = torch.device("cuda")
    ev_gpu100 = evaluation(trainer, args.data_dir, k=100, points=2000)
    # per image, the two K-sample estimates differ only by Monte Carlo noise (and rounding)
    per_image = ev_gpu100["ll"] - ev_cpu["ll"]  # [E, N]
    diff = per_image.mean(1)
    se = per_image.std(1, ddof=1) / math.sqrt(per_image.shape[1])
    ok = bool(np.all(np.abs(diff) < 4 * se))
    if not ok:
        problems.append("cpu/gpu mismatch")
    lines.append(f"| same weights, 2,000 images, K=100, CUDA - CPU | both | | | mean difference "
                 f"{diff.mean():+.4f} nats (max {np.abs(diff).max():.4f}, 4 SE = {4 * se.max():.4f}): "
                 f"{'within Monte Carlo noise' if ok else 'DIFFERENT'} |")


def _curves(args, cpu, lines, problems) -> None:
    for device in ("cpu", "cuda"):
        r = curve_rate(device)
        lines.append(f"| training, 2-D HVAE z=[2, 2], E=10, IW=10 | {device} | "
                     f"{r['samples_per_s']:,.0f} | | {r['step_ms']:.2f} ms per step |")


def _whole_trial(args, cpu, lines, problems) -> None:
    trial = whole_trial(args.data_dir)
    problems += trial["misplaced"]
    lines.append(f"| whole trial (2 epochs, evaluation) | cuda | | | {trial['seconds']:.1f} s, "
                 f"test_ll {trial['test_ll']:.2f}; "
                 f"{'every tensor on cuda' if not trial['misplaced'] else 'OFF DEVICE'} |")


def _sharing(args, cpu, lines, problems) -> None:
    rows = shared_gpu(args.data_dir, args.gpu_steps)
    lines.extend(["", "| processes on one GPU | samples/s each | aggregate | wall s |",
                  "| ---: | ---: | ---: | ---: |"])
    for row in rows:
        lines.append(f"| {row['processes']} | {row['per_process']:,.0f} | {row['aggregate']:,.0f} "
                     f"| {row['wall_s']:.1f} |")


def _emit(lines: list[str], out: str | None) -> None:
    text = "\n".join(lines) + "\n"
    print(text, flush=True)
    if out:
        Path(out).write_text(text)


if __name__ == "__main__":
    raise SystemExit(main())
