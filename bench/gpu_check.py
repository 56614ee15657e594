"""The GPU check: throughput and MFU of the ``cifar10`` preset, a fixed-time training run, linear probes
(y, ŷ, z), test MSE, a short latent DDIM and N samples for FID, in one run of a few minutes.

Run through ``bench/gpu_check.sh`` (it installs the carried wheels on the device, or builds the
device-like venv for ``--dry-run``). Writes into ``--out``: ``gpu_check.json`` (every number, the
phases' seconds, the imported distributions) and ``samples.npz`` (uint8 (N, 32, 32, 3) decoded DDIM
samples), and prints one table. FID is computed afterwards, on this machine, with the real Inception
weights (too large to travel with the data): ``bench/fid_samples.py OUT/samples.npz``.

``--dry-run`` is the same code on the CPU with the ``smoke`` preset and synthetic data, a few seconds a phase.

With more than one GPU it also times the training step on 1 GPU and on all of them (DDP, NCCL:
``ddp_throughput.py``); with one GPU that row says it was skipped. The dry run rehearses it with 2 gloo ranks.
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
from pathlib import Path
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
FORBIDDEN = ("kfp", "minio", "pytorch-fid", "prometheus-client", "moto", "boto3")  # never on this path


class _ScalarReads(TorchDispatchMode):
    """Counts operators that read a device value on the host (the CPU stand-in for CUDA's sync debug mode)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

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
    if device.type == "cuda":
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
    with _ScalarReads() as reads:
        for i in range(steps):
            step(batch, generator=generator.manual_seed(i + 1), lr=1e-4)
    return reads.count / steps


class _LastReport:
    def __init__(self) -> None:
        self.metrics = None

    def on_step(self, metrics) -> None:
        self.metrics = metrics


def probe_and_mse(cfg, model, train, test, device: torch.device, *, probe_epochs: int) -> dict[str, float]:
    """Linear-probe accuracy of y, ŷ and z (test split) and the test MSE in the paper's unit."""
    e = cfg.eval
    views = {
        name: feature_views(
            encode_split(model.encoder, split, batch_size=e.batch_size, device=device),
            contrastive_channels=cfg.model.contrastive_channels,
        )
        for name, split in (("train", train), ("test", test))
    }
    out = {}
    for feature in ("y", "yhat", "z"):
        result = linear_probe(
            views["train"][feature],
            train.labels,
            views["test"][feature],
            test.labels,
            num_classes=len(train.classes),
            weight_decays=e.probe_weight_decays,
            val_fraction=e.probe_val_fraction,
            epochs=probe_epochs,
            batch_size=e.probe_batch_size,
            lr=e.probe_lr,
            seed=cfg.train.seed,
            device=device,
        )
        out[f"linear_acc_{feature}"] = result.accuracy
    out.update(reconstruction_metrics(model, test, batch_size=e.batch_size, device=device))
    return out


@torch.no_grad()
def ddim_samples(cfg, model, train, device: torch.device, *, out_dir: Path, steps: int, num: int) -> dict[str, Any]:
    """Train the latent DDIM for ``steps`` steps on the train latents, decode ``num`` samples to uint8 images."""
    latents = extract_latents(
        model, train.images, batch_size=cfg.latents.batch_size, device=device, flip=False, dtype=torch.float32
    )
    mean, std = channel_stats(latents)
    eager = cfg.model_copy(update={"train": cfg.train.model_copy(update={"compile": False})})  # compiling costs more
    with torch.enable_grad():  # than a short run saves
        result = train_ddim(eager, latents, mean=mean, std=std, out_dir=out_dir, stop_at_step=steps)
    generator = torch.Generator(device=device).manual_seed(cfg.sampling.seed)
    images = []
    for start in range(0, num, cfg.sampling.batch_size):
        z = sample_latents(
            result.model,
            min(cfg.sampling.batch_size, num - start),
            steps=cfg.sampling.steps,
            eta=cfg.sampling.eta,
            spacing=cfg.sampling.spacing,
            generator=generator,
        )  # float32
        x = model.decode(z.float()).clamp(0, 1)
        images.append((x * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu())
    samples = torch.cat(images).numpy()
    return {
        "ddim_steps": result.step,
        "ddim_loss": result.last_metrics.loss if result.last_metrics else math.nan,
        "sampling_steps": cfg.sampling.steps,
        "num_samples": len(samples),
        "samples": samples,
    }


def imported_distributions() -> list[str]:
    """Distributions (normalised names) whose top-level modules this process imported, the project's own left out.

    The project travels as source; an editable install's ``hybridmi.egg-info`` in the checkout still
    names it as a distribution.
    """
    owners = metadata.packages_distributions()
    tops = {name.split(".")[0] for name in list(sys.modules)}
    return sorted({normalise(dist) for top in tops for dist in owners.get(top, [])} - {"hybridmi"})


def rank_scaling(preset_name: str, device: torch.device, *, dry_run: bool) -> dict[str, Any] | None:
    """Step throughput on 1 GPU and on every GPU here (DDP), eager; None with one GPU. Dry run: 1 vs 2 gloo ranks."""
    count = 2 if dry_run else torch.cuda.device_count()
    if count < 2:
        return None
    kwargs = dict(
        preset=preset_name,
        overrides=[],
        steps=5 if dry_run else 30,
        warmup=2 if dry_run else 5,
        device=device.type,
        threads=1 if dry_run else 0,
    )
    one, many = measure(1, **kwargs), measure(count, **kwargs)
    speedup = many["images_per_s"] / one["images_per_s"]
    return {"one": one, "many": many, "speedup": speedup, "efficiency": speedup / count}


def run(args: argparse.Namespace) -> dict[str, Any]:
    device = choose_device("cpu" if args.dry_run else "auto")
    if device.type != "cuda" and not args.dry_run:
        raise SystemExit("gpu_check: no CUDA device here (use --dry-run for the CPU rehearsal)")
    work = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    overrides = [
        f"train.device={device}",
        f"train.time_budget_minutes={args.train_minutes}",
        "train.knn_every=0",
        "train.checkpoint_every=1000000",
        f"sampling.steps={args.sampling_steps}",
        f"data.cache_dir={work / 'cache'}",
        *args.overrides,
    ]
    if not args.dry_run:
        overrides[:0] = ["data.source=folder", f"data.root={args.data}"]
    preset_name = "smoke" if args.dry_run else "cifar10"
    cfg = preset(preset_name, overrides)
    seed_everything(cfg.train.seed)
    report: dict[str, Any] = {
        "machine": machine(device),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "dry_run": args.dry_run,
        "preset": cfg.name,
        "overrides": overrides,
        "seconds": {},
    }

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
    last = _LastReport()
    try:
        result = phase(
            "train", lambda: train_hybrid(cfg, train, out_dir=work / "hybrid", callbacks=[last], resume=False)
        )
    except (RuntimeError, AssertionError, ImportError) as exc:  # torch.compile failing on this stack: say so, go eager
        if not cfg.train.compile:
            raise
        report["compile_error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
        print(f"gpu_check: compiled training failed ({report['compile_error']}); training eagerly", flush=True)
        cfg = preset(
            preset_name, [*overrides, "train.compile=false", f"train.time_budget_minutes={args.train_minutes / 2}"]
        )
        result = phase(
            "train_eager", lambda: train_hybrid(cfg, train, out_dir=work / "eager", callbacks=[last], resume=False)
        )
    m = last.metrics
    report["train"] = {
        "steps": result.step,
        "epochs": result.step * cfg.train.batch_size / len(train),
        "run_length": result.run_length,
        "skipped_steps": result.skipped_steps,
        "images_per_s": m.images_per_s,
        "loss": m.loss,
        "terms": m.terms,
        "gpu_mem_bytes": m.gpu_mem_bytes,
    }
    achieved = report["flops_per_image"] * m.images_per_s
    report["train"]["achieved_flop_per_s"] = achieved
    report["train"]["mfu"] = achieved / report["peak"]["flop_per_s"]
    report["train"]["epochs_in_10_min"] = 600 * m.images_per_s / len(train)  # at the measured steady throughput
    report["eval"] = phase(
        "eval", lambda: probe_and_mse(cfg, result.model, train, test, device, probe_epochs=args.probe_epochs)
    )
    ddim = phase(
        "ddim",
        lambda: ddim_samples(
            cfg, result.model, train, device, out_dir=work / "ddim", steps=args.ddim_steps, num=args.samples
        ),
    )
    np.savez_compressed(args.out / "samples.npz", images=ddim.pop("samples"))
    report["ddim"] = {**ddim, "samples_file": "samples.npz", "fid": "computed here by bench/fid_samples.py"}
    report["imported_distributions"] = imported_distributions()
    report["forbidden_imported"] = [d for d in report["imported_distributions"] if d in FORBIDDEN]
    return report


def _tflops(value: float) -> str:
    return f"{value / 1e12:.3g} TFLOP/s"


def _ranks_row(ranks: dict[str, Any] | None) -> str:
    if ranks is None:
        return "skipped: one GPU"
    one, many = ranks["one"], ranks["many"]
    return (
        f"1: {one['images_per_s']:.0f} images/s; {many['ranks']}: {many['images_per_s']:.0f} images/s "
        f"({ranks['speedup']:.2f}x, efficiency {100 * ranks['efficiency']:.0f} %, global batch {one['batch_size']}"
        f"{', gloo' if one['device'] == 'cpu' else ''})"
    )


def table(r: dict[str, Any]) -> str:
    t, e, d = r["train"], r["eval"], r["ddim"]
    rows = [
        ("machine", r["machine"]),
        ("matmul peak", f"{_tflops(r['peak']['flop_per_s'])} ({r['peak']['dtype']}, n={r['peak']['n']})"),
        ("FLOPs per training image", f"{r['flops_per_image'] / 1e9:.2f} GFLOP"),
        ("host syncs per step", f"{r['host_syncs_per_step']:g}"),
        (
            "training",
            f"{t['steps']} steps = {t['epochs']:.1f} epochs in {r['seconds']['train']:.0f} s "
            f"(budget {t['run_length']['budget_minutes']} min)",
        ),
        (
            "throughput / MFU",
            f"{t['images_per_s']:.0f} images/s, {_tflops(t['achieved_flop_per_s'])}, "
            f"MFU {100 * t['mfu']:.1f} %; {t['epochs_in_10_min']:.0f} epochs in 10 min",
        ),
        ("linear acc. y / ŷ / z", " / ".join(f"{100 * e[f'linear_acc_{k}']:.1f} %" for k in ("y", "yhat", "z"))),
        ("test MSE (Σ over 3072) / PSNR", f"{e['mse']:.3f} / {e['psnr']:.2f} dB"),
        (
            "DDIM",
            f"{d['ddim_steps']} steps, loss {d['ddim_loss']:.4g}; {d['num_samples']} samples "
            f"({d['sampling_steps']} sampling steps) → samples.npz",
        ),
        ("1 vs N GPUs (DDP, eager)", _ranks_row(r["ranks"])),
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
    parser.add_argument(
        "--data", type=Path, default=DATA, help="CIFAR-10 JPEG archive (gpu_check.sh --prepare copies it)"
    )
    parser.add_argument("--train-minutes", type=float, default=None, help="training budget (4 on a GPU, 0.2 dry)")
    parser.add_argument("--probe-epochs", type=int, default=None, help="linear-probe epochs (30 on a GPU, 5 dry)")
    parser.add_argument("--ddim-steps", type=int, default=None, help="DDIM training steps (1500 on a GPU, 20 dry)")
    parser.add_argument(
        "--samples", type=int, default=None, help="decoded DDIM samples for FID (5000 on a GPU, 64 dry)"
    )
    parser.add_argument("--sampling-steps", type=int, default=None, help="DDIM sampling steps (50 on a GPU, 5 dry)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config override a.b=v")
    args = parser.parse_args()
    defaults = (0.2, 5, 20, 64, 5) if args.dry_run else (4.0, 30, 1500, 5000, 50)
    for name, value in zip(("train_minutes", "probe_epochs", "ddim_steps", "samples", "sampling_steps"), defaults):
        if getattr(args, name) is None:
            setattr(args, name, value)
    setup_logging("WARNING")
    args.out.mkdir(parents=True, exist_ok=True)
    report = run(args)
    (args.out / "gpu_check.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(table(report))
    if report["forbidden_imported"]:
        raise SystemExit(f"gpu_check: imported {report['forbidden_imported']}, which the device does not have")


if __name__ == "__main__":
    main()
