"""FLOPs per training image of the hybrid step, the FLOP/s it achieves, and the matmul peak beside it.

FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` over one whole training step
(both views' query pass, the key pass, decoder, heads, InfoNCE, backward): the matrix products and
convolutions, the usual basis of model-FLOPs utilisation (elementwise work is not counted; a
convolution's backward is counted as its forward per gradient computed, see ``conv_backward_flops``). The same
run times the step on the device and a square matrix product (fp32 on a CPU, bf16 on a GPU) to measure
the peak it is compared with, so the utilisation needs no datasheet number.

    .venv/bin/python bench/flops.py --presets smoke cpu cifar10 --steps 10
    .venv/bin/python bench/flops.py --presets cifar10 --device cuda --json out.json   # MFU on a GPU
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from hybridmi.config import Config, load_config  # noqa: E402
from hybridmi.data.augment import to_float  # noqa: E402
from hybridmi.runtime import autocast_dtype, choose_device  # noqa: E402
from hybridmi.train.hybrid_step import HybridStep, build_models, make_optimizer, trainable  # noqa: E402

CONFIGS = ROOT / "configs"


def preset(name: str, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """A preset from configs/ by name (or a path to a YAML file), with overrides."""
    path = Path(name) if name.endswith(".yaml") else CONFIGS / f"{name}.yaml"
    return load_config(path, list(overrides))


def build_step(cfg: Config, device: torch.device, *, compile: bool | None = None, group=None) -> HybridStep:
    """The trainer's own step (models, fused optimiser, guard) on ``device``, as train_hybrid builds it; ``group``:
    this rank's process group in a distributed run (bench/ddp_throughput.py)."""
    autoencoder, moco = build_models(cfg)
    channels_last = device.type == "cuda" and cfg.train.channels_last
    for module in (autoencoder, moco):
        if module is not None:
            module.to(device, memory_format=torch.channels_last) if channels_last else module.to(device)
    autoencoder.train()
    optimizer = make_optimizer([p for _, p in trainable(autoencoder, moco)], cfg)
    return HybridStep(
        autoencoder,
        moco,
        optimizer,
        alpha=cfg.objective.alpha,
        grad_clip=cfg.optim.grad_clip,
        on_nonfinite=cfg.train.on_nonfinite,
        autoencoder_views=cfg.objective.autoencoder_views,
        amp=autocast_dtype(cfg.train.precision, device),
        channels_last=channels_last,
        compile=cfg.train.compile if compile is None else compile,
        group=group,
    )


def random_batch(batch_size: int, device: torch.device, seed: int = 0) -> torch.Tensor:
    """A float batch (B, 3, 32, 32) in [0, 1] from random uint8 pixels (FLOPs and speed do not depend on content)."""
    g = torch.Generator().manual_seed(seed)
    return to_float(torch.randint(0, 256, (batch_size, 3, 32, 32), dtype=torch.uint8, generator=g).to(device))


def conv_backward_flops(
    grad_out_shape,
    x_shape,
    w_shape,
    _bias,
    _stride,
    _padding,
    _dilation,
    transposed,
    _output_padding,
    _groups,
    output_mask,
    out_shape=None,
    **kwargs,
) -> int:
    """A convolution's backward: the input gradient and the weight gradient each cost its forward FLOPs.

    Replaces torch's formula, which treats a grouped (depthwise) convolution's weight gradient as dense
    and overcounts the NVAE decoder cell's depthwise 5x5 by its channel count (measured: 30x on `smoke`).
    """
    forward = conv_flop_count(x_shape, w_shape, grad_out_shape, transposed=transposed)
    return forward * (int(bool(output_mask[0])) + int(bool(output_mask[1])))


def image_flops(cfg: Config, device: torch.device | str = "cpu", *, count_batch: int = 64) -> float:
    """Matmul + convolution FLOPs per training image of ``cfg``'s step, forward and backward.

    Counted on one step at ``count_batch`` images (at most train.batch_size; every term is per image, so
    the count per image does not depend on the batch, and a paper-size step on a CPU stays short).
    """
    device = torch.device(device)
    batch_size = min(count_batch, cfg.train.batch_size)
    cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"batch_size": batch_size})})
    step = build_step(cfg, device, compile=False)
    batch = random_batch(batch_size, device)
    generator = torch.Generator(device=device).manual_seed(0)
    with FlopCounterMode(
        display=False, custom_mapping={torch.ops.aten.convolution_backward: conv_backward_flops}
    ) as counter:
        step(batch, generator=generator, lr=cfg.optim.lr)
    return counter.get_total_flops() / batch_size


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(
    device: torch.device, *, dtype: torch.dtype | None = None, n: int | None = None, repeats: int = 10
) -> dict[str, Any]:
    """Measured FLOP/s of an n x n x n matrix product (mean of ``repeats`` after 3 warm-ups).

    Defaults: bf16 at n = 8192 on a GPU (the basis of MFU there), fp32 at n = 1024 on a CPU.
    """
    dtype = dtype or (torch.bfloat16 if device.type == "cuda" else torch.float32)
    n = n or (8192 if device.type == "cuda" else 1024)
    g = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(n, n, device=device, dtype=dtype, generator=g)
    b = torch.randn(n, n, device=device, dtype=dtype, generator=g)
    for _ in range(3):
        a @ b
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    _sync(device)
    seconds = (time.perf_counter() - start) / repeats
    return {"flop_per_s": 2 * n**3 / seconds, "dtype": str(dtype).removeprefix("torch."), "n": n}


def timed_steps(step: HybridStep, cfg: Config, device: torch.device, *, steps: int, warmup: int) -> dict[str, Any]:
    """Images/s of ``steps`` training steps after ``warmup`` (compilation included there), device-synchronised."""
    batches = [random_batch(cfg.train.batch_size, device, seed=i) for i in range(min(4, steps + warmup))]
    generator = torch.Generator(device=device)
    start = time.perf_counter()
    for i in range(warmup):
        generator.manual_seed(i)
        step(batches[i % len(batches)], generator=generator, lr=cfg.optim.lr)
    step.guard.read()  # waits for the device
    warm = time.perf_counter()
    for i in range(steps):
        generator.manual_seed(warmup + i)
        step(batches[i % len(batches)], generator=generator, lr=cfg.optim.lr)
    step.guard.read()
    seconds = time.perf_counter() - warm
    return {
        "warmup_s": warm - start,
        "seconds": seconds,
        "step_s": seconds / steps,
        "images_per_s": steps * cfg.train.batch_size / seconds,
    }


def measure(
    name: str,
    device: torch.device,
    *,
    steps: int,
    warmup: int,
    overrides: list[str] | tuple[str, ...] = (),
    peak: dict[str, Any] | None = None,
    timed: bool = True,
) -> dict[str, Any]:
    """FLOPs per image and, when ``timed``, throughput, achieved FLOP/s and utilisation of a preset's step."""
    cfg = preset(name, [f"train.device={device}", *overrides])
    per_image = image_flops(cfg, device)
    row: dict[str, Any] = {
        "preset": name,
        "batch_size": cfg.train.batch_size,
        "alpha": cfg.objective.alpha,
        "compile": cfg.train.compile,
        "flops_per_image": per_image,
    }
    if not timed:
        return row
    peak = peak or matmul_peak(device)
    timing = timed_steps(build_step(cfg, device), cfg, device, steps=steps, warmup=warmup)
    achieved = per_image * timing["images_per_s"]
    return {
        **row,
        **timing,
        "achieved_flop_per_s": achieved,
        "peak": peak,
        "utilisation": achieved / peak["flop_per_s"],
    }


def machine(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    return f"CPU, {torch.get_num_threads()} threads, torch {torch.__version__}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["smoke", "cpu"], help="presets counted and timed")
    parser.add_argument("--count-only", nargs="*", default=["cifar10"], help="presets only counted (no timed run)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], help="config override a.b=v (all presets)"
    )
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args()
    device = choose_device(args.device)
    peak = matmul_peak(device)
    print(f"{machine(device)}; matmul peak {peak['flop_per_s'] / 1e12:.3f} TFLOP/s ({peak['dtype']}, n={peak['n']})")
    print("| preset | batch | GFLOP/image | images/s | achieved TFLOP/s | utilisation |")
    print("|---|---|---|---|---|---|")
    rows = []
    for name in [*args.presets, *args.count_only]:
        timed = name in args.presets
        row = measure(
            name, device, steps=args.steps, warmup=args.warmup, overrides=args.overrides, peak=peak, timed=timed
        )
        rows.append(row)
        speed = (
            f"{row['images_per_s']:.0f} | {row['achieved_flop_per_s'] / 1e12:.4f} | {100 * row['utilisation']:.1f} %"
            if timed
            else "– | – | –"
        )
        print(f"| {name} | {row['batch_size']} | {row['flops_per_image'] / 1e9:.3f} | {speed} |", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(device), "peak": peak, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
