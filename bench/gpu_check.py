"""The GPU check: throughput and MFU of the ``cifar10`` preset, a fixed-time training run, linear probes
(y, ŷ, z), test MSE, a short latent DDIM and N decoded samples, in one run of a few minutes; 1 vs all GPUs (DDP).

Run through ``bench/gpu_check.sh`` (bench/README.md): ``gpu_check.json`` and ``samples.npz`` (uint8 (N, 32, 32, 3),
scored by ``bench/fid_samples.py``) go into ``--out``. ``--dry-run``: CPU, smoke preset, synthetic data, 2 gloo ranks.
"""

from __future__ import annotations

import argparse
import importlib.metadata as metadata
import json
import math
import sys
import tempfile
import time
import warnings
from collections import deque
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

from ddp_throughput import measure  # noqa: E402
from device_venv import normalise  # noqa: E402
from flops import build_step, image_flops, machine, matmul_peak, preset, random_batch  # noqa: E402

from hybridmi.data.prepare import prepare_dataset  # noqa: E402
from hybridmi.data.prepared import load_dataset  # noqa: E402
from hybridmi.eval.features import encode_split, feature_views  # noqa: E402
from hybridmi.eval.latents import channel_stats, extract_latents  # noqa: E402
from hybridmi.eval.probe import linear_probe  # noqa: E402
from hybridmi.eval.reconstruction import reconstruction_metrics  # noqa: E402
from hybridmi.runtime import choose_device, seed_everything, setup_logging  # noqa: E402
from hybridmi.train.ddim import sample_latents, train_ddim  # noqa: E402
from hybridmi.train.hybrid import train_hybrid  # noqa: E402

DATA = HERE.parent / ".gpucheck" / "cifar10-jpeg.tar.gz"  # where gpu_check.sh --prepare copies the archive
FORBIDDEN = ("kfp", "minio", "pytorch-fid", "prometheus-client", "moto", "boto3")  # not on the device
# (train minutes, probe epochs, DDIM steps, samples, sampling steps) on a GPU and in the dry run
DEFAULTS = {False: (4.0, 30, 1500, 5000, 50), True: (0.2, 5, 20, 64, 5)}
KNOBS = ("train_minutes", "probe_epochs", "ddim_steps", "samples", "sampling_steps")


class _ScalarReads(TorchDispatchMode):
    """Counts operators that read a device value on the host (the CPU stand-in for CUDA's sync debug mode)."""

    count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func._schema.name in ("aten::_local_scalar_dense", "aten::nonzero", "aten::masked_select"):
            self.count += 1
        return func(*args, **(kwargs or {}))


def host_syncs_per_step(cfg, device: torch.device, steps: int = 3) -> float:
    """Host synchronisations per eager training step (CUDA: sync debug mode warnings; CPU: scalar reads)."""
    step = build_step(cfg, device, compile=False)
    batch, generator = random_batch(cfg.train.batch_size, device), torch.Generator(device=device)
    step(batch, generator=generator.manual_seed(0), lr=1e-4)  # lazily built state out of the way
    step.guard.read()
    if device.type != "cuda":
        with _ScalarReads() as reads:
            for i in range(steps):
                step(batch, generator=generator.manual_seed(i + 1), lr=1e-4)
        return reads.count / steps
    torch.cuda.synchronize(device)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            for i in range(steps):
                step(batch, generator=generator.manual_seed(i + 1), lr=1e-4)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught) / steps


def probe_and_mse(cfg, model, train, test, device: torch.device, *, probe_epochs: int) -> dict[str, float]:
    """Linear-probe accuracy of y, ŷ and z on the test split, and the test MSE in the paper's unit."""
    e, views = cfg.eval, {}
    for name, split in (("train", train), ("test", test)):
        encoded = encode_split(model.encoder, split, batch_size=e.batch_size, device=device)
        views[name] = feature_views(encoded, contrastive_channels=cfg.model.contrastive_channels)
    kw = dict(num_classes=len(train.classes), weight_decays=e.probe_weight_decays, val_fraction=e.probe_val_fraction)
    kw |= dict(epochs=probe_epochs, batch_size=e.probe_batch_size, lr=e.probe_lr, seed=cfg.train.seed, device=device)
    probe = lambda f: linear_probe(views["train"][f], train.labels, views["test"][f], test.labels, **kw).accuracy  # noqa: E731
    out = {f"linear_acc_{f}": probe(f) for f in ("y", "yhat", "z")}
    return out | reconstruction_metrics(model, test, batch_size=e.batch_size, device=device)


@torch.no_grad()
def ddim_samples(cfg, model, train, device: torch.device, *, out_dir: Path, steps: int, num: int) -> dict[str, Any]:
    """Train the latent DDIM for ``steps`` steps (eager: compiling costs more than a short run saves), decode
    ``num`` float32 samples to uint8 images."""
    latents = extract_latents(
        model, train.images, batch_size=cfg.latents.batch_size, device=device, flip=False, dtype=torch.float32
    )
    mean, std = channel_stats(latents)
    eager = cfg.model_copy(update={"train": cfg.train.model_copy(update={"compile": False})})
    with torch.enable_grad():
        result = train_ddim(eager, latents, mean=mean, std=std, out_dir=out_dir, stop_at_step=steps)
    s = cfg.sampling
    generator, images = torch.Generator(device=device).manual_seed(s.seed), []
    for start in range(0, num, s.batch_size):
        n = min(s.batch_size, num - start)
        z = sample_latents(result.model, n, steps=s.steps, eta=s.eta, spacing=s.spacing, generator=generator)
        x = model.decode(z.float()).clamp(0, 1)
        images.append((x * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu())
    samples = torch.cat(images).numpy()
    loss = result.last_metrics.loss if result.last_metrics else math.nan
    out = dict(ddim_steps=result.step, ddim_loss=loss, sampling_steps=s.steps, num_samples=len(samples))
    return out | {"samples": samples}


def imported_distributions() -> list[str]:
    """Distributions whose top-level modules this process imported, less the project's own (editable egg-info)."""
    owners = metadata.packages_distributions()
    tops = {name.split(".")[0] for name in list(sys.modules)}
    return sorted({normalise(dist) for top in tops for dist in owners.get(top, [])} - {"hybridmi"})


def rank_scaling(preset_name: str, device: torch.device, *, dry_run: bool) -> dict[str, Any] | None:
    """Eager step throughput on 1 GPU and on every GPU here (DDP); None with one GPU. Dry run: 1 vs 2 gloo ranks."""
    count = 2 if dry_run else torch.cuda.device_count()
    if count < 2:
        return None
    kwargs = dict(preset=preset_name, overrides=[], device=device.type, threads=1 if dry_run else 0)
    kwargs |= dict(steps=5, warmup=2) if dry_run else dict(steps=30, warmup=5)
    one, many = measure(1, **kwargs), measure(count, **kwargs)
    speedup = many["images_per_s"] / one["images_per_s"]
    return {"one": one, "many": many, "speedup": speedup, "efficiency": speedup / count}


def run(args: argparse.Namespace) -> dict[str, Any]:
    device = choose_device("cpu" if args.dry_run else "auto")
    if device.type != "cuda" and not args.dry_run:
        raise SystemExit("gpu_check: no CUDA device here (use --dry-run for the CPU rehearsal)")
    work = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    overrides = [f"runtime.device={device}", f"train.time_budget_minutes={args.train_minutes}", "train.knn_every=0"]
    overrides += ["train.checkpoint_every=1000000", f"sampling.steps={args.sampling_steps}"]
    overrides += [f"data.cache_dir={work / 'cache'}", *args.overrides]
    if not args.dry_run:
        overrides[:0] = ["data.source=folder", f"data.root={args.data}"]
    preset_name = "smoke" if args.dry_run else "cifar10"
    cfg = preset(preset_name, overrides)
    seed_everything(cfg.train.seed)
    report: dict[str, Any] = {"machine": machine(device), "python": sys.version.split()[0], "torch": torch.__version__}
    report |= {"dry_run": args.dry_run, "preset": cfg.name, "overrides": overrides, "seconds": {}}

    def phase(name: str, fn):
        start = time.perf_counter()
        value = fn()
        report["seconds"][name] = round(time.perf_counter() - start, 2)
        print(f"gpu_check: {name} done in {report['seconds'][name]:.1f} s", flush=True)
        return value

    report["peak"] = phase("peak", lambda: matmul_peak(device))
    prepared = phase("data", lambda: prepare_dataset(cfg.data, work / "dataset"))
    train, test = load_dataset(work / "dataset")
    report["data"] = {"source": prepared["source"], "train": len(train), "test": len(test)}
    report["flops_per_image"] = phase("flops", lambda: image_flops(cfg, device))
    report["host_syncs_per_step"] = phase("syncs", lambda: host_syncs_per_step(cfg, device))
    report["ranks"] = phase("ranks", lambda: rank_scaling(preset_name, device, dry_run=args.dry_run))
    last = deque(maxlen=1)  # the newest StepMetrics
    callback = SimpleNamespace(on_step=last.append)
    fit = lambda cfg, out: train_hybrid(cfg, train, out_dir=work / out, callbacks=[callback], resume=False)  # noqa: E731
    try:
        result = phase("train", lambda: fit(cfg, "hybrid"))
    except (RuntimeError, AssertionError, ImportError) as exc:  # torch.compile failing on this stack: go eager
        if not cfg.runtime.compile:
            raise
        report["compile_error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
        print(f"gpu_check: compiled training failed ({report['compile_error']}); training eagerly", flush=True)
        eager = [*overrides, "runtime.compile=false", f"train.time_budget_minutes={args.train_minutes / 2}"]
        cfg = preset(preset_name, eager)
        result = phase("train_eager", lambda: fit(cfg, "eager"))
    m, model = last[-1], result.model
    achieved = report["flops_per_image"] * m.images_per_s
    t = report["train"] = dict(steps=result.step, epochs=result.step * cfg.train.batch_size / len(train))
    t |= dict(run_length=result.run_length, images_per_s=m.images_per_s, loss=m.loss, terms=m.terms)
    t |= dict(gpu_mem_bytes=m.gpu_mem_bytes, achieved_flop_per_s=achieved, mfu=achieved / report["peak"]["flop_per_s"])
    t["epochs_in_10_min"] = 600 * m.images_per_s / len(train)  # at the measured steady throughput
    epochs, steps, num = args.probe_epochs, args.ddim_steps, args.samples
    report["eval"] = phase("eval", lambda: probe_and_mse(cfg, model, train, test, device, probe_epochs=epochs))
    ddim = phase("ddim", lambda: ddim_samples(cfg, model, train, device, out_dir=work / "ddim", steps=steps, num=num))
    np.savez_compressed(args.out / "samples.npz", images=ddim.pop("samples"))
    report["ddim"] = {**ddim, "samples_file": "samples.npz"}
    report["imported_distributions"] = imported_distributions()
    report["forbidden_imported"] = [d for d in report["imported_distributions"] if d in FORBIDDEN]
    return report


def table(r: dict[str, Any]) -> str:
    t, e, d, ranks, peak = r["train"], r["eval"], r["ddim"], r["ranks"], r["peak"]
    tflops = lambda v: f"{v / 1e12:.3g} TFLOP/s"  # noqa: E731
    ranks_row = "skipped: one GPU"
    if ranks is not None:
        one, many = ranks["one"], ranks["many"]
        ranks_row = (
            f"1: {one['images_per_s']:.0f} images/s; {many['ranks']}: {many['images_per_s']:.0f} images/s "
            f"({ranks['speedup']:.2f}x, efficiency {100 * ranks['efficiency']:.0f} %, global batch {one['batch_size']}"
            f"{', gloo' if one['device'] == 'cpu' else ''})"
        )
    train_s = r["seconds"].get("train", r["seconds"].get("train_eager", 0))  # eager when torch.compile failed
    training = f"{t['steps']} steps = {t['epochs']:.1f} epochs in {train_s:.0f} s"
    mfu = f"MFU {100 * t['mfu']:.1f} %; {t['epochs_in_10_min']:.0f} epochs in 10 min"
    samples = f"{d['num_samples']} samples ({d['sampling_steps']} sampling steps) → samples.npz"
    rows = [
        ("machine", r["machine"]),
        ("matmul peak", f"{tflops(peak['flop_per_s'])} ({peak['dtype']}, n={peak['n']})"),
        ("FLOPs per training image", f"{r['flops_per_image'] / 1e9:.2f} GFLOP"),
        ("host syncs per step", f"{r['host_syncs_per_step']:g}"),
        ("training", f"{training} (budget {t['run_length']['budget_minutes']} min)"),
        ("throughput / MFU", f"{t['images_per_s']:.0f} images/s, {tflops(t['achieved_flop_per_s'])}, {mfu}"),
        ("linear acc. y / ŷ / z", " / ".join(f"{100 * e[f'linear_acc_{k}']:.1f} %" for k in ("y", "yhat", "z"))),
        ("test MSE (Σ over 3072) / PSNR", f"{e['mse']:.3f} / {e['psnr']:.2f} dB"),
        ("DDIM", f"{d['ddim_steps']} steps, loss {d['ddim_loss']:.4g}; {samples}"),
        ("1 vs N GPUs (DDP, eager)", ranks_row),
        ("phases (s)", ", ".join(f"{k} {v:.0f}" for k, v in r["seconds"].items())),
    ]
    if "compile_error" in r:
        rows.append(("torch.compile", f"failed, trained eagerly: {r['compile_error']}"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"| {k:<{width}} | {v} |" for k, v in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for gpu_check.json and samples.npz")
    parser.add_argument("--dry-run", action="store_true", help="CPU rehearsal: smoke preset, synthetic data")
    parser.add_argument("--data", type=Path, default=DATA, help="CIFAR-10 JPEG archive (gpu_check.sh --prepare)")
    for knob, gpu, dry in zip(KNOBS, *DEFAULTS.values()):
        parser.add_argument(f"--{knob.replace('_', '-')}", type=type(gpu), help=f"default {gpu} on a GPU, {dry} dry")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config override a.b=v")
    args = parser.parse_args()
    for knob, default in zip(KNOBS, DEFAULTS[args.dry_run]):
        if getattr(args, knob) is None:
            setattr(args, knob, default)
    setup_logging("WARNING")
    args.out.mkdir(parents=True, exist_ok=True)
    report = run(args)
    (args.out / "gpu_check.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(table(report))
    if report["forbidden_imported"]:
        raise SystemExit(f"gpu_check: imported {report['forbidden_imported']}, which the device does not have")


if __name__ == "__main__":
    main()
