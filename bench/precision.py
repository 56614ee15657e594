"""Precision and memory layout side by side, in one run: the hybrid step, the DDIM step and the FID Inception
as fp32 NCHW (the plain path) and under every other setting, with the `auto` policy's choice marked.

The trainers' own steps (bench/flops.py's ``build_step``; the DDIM trainer's ``diffusion_loss`` + Adam + EMA) on
random data, and the Inception on random weights (its speed does not depend on them). Matmul peaks in fp32 and
bf16 are measured in the same run, so the ratios need no datasheet.

    .venv/bin/python bench/precision.py --preset cpu --steps 5 --json bench/precision.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from bench.ddim_throughput import timed  # noqa: E402
from bench.flops import build_step, images_per_s, machine, preset  # noqa: E402
from hybridmi.eval.fid import FIDInceptionV3, activation_statistics  # noqa: E402
from hybridmi.models.unet import UNet  # noqa: E402
from hybridmi.runtime import autocast, choose_device, compute_policy, native_bf16  # noqa: E402
from hybridmi.train.ddim import diffusion_loss, schedule_from_config  # noqa: E402
from hybridmi.train.ema import EMA  # noqa: E402

SETTINGS = [("fp32", False), ("fp32", True), ("bf16", False), ("bf16", True)]  # (precision, channels_last)


def rate(fn: Callable[[], object], count: int, *, steps: int, warmup: int, device=torch.device("cpu")) -> float:
    """``count`` items per call of ``fn`` / seconds per call, over ``steps`` calls after ``warmup`` calls."""
    seconds = timed(lambda: [fn() for _ in range(steps)], device, warmup=lambda: [fn() for _ in range(warmup)])
    return steps * count / seconds


def matmul_rate(dtype: torch.dtype, n: int = 1024, repeats: int = 5) -> float:
    a, b = (torch.randn(n, n, dtype=dtype) for _ in range(2))
    return 2 * n**3 * rate(lambda: a @ b, 1, steps=repeats, warmup=2)


def hybrid_rate(cfg, device, precision: str, channels_last: bool, *, steps: int, warmup: int) -> float:
    runtime = cfg.runtime.model_copy(update={"precision": precision, "channels_last": channels_last})
    step = build_step(cfg.model_copy(update={"runtime": runtime}), device, compile=False)
    return images_per_s(step, cfg.train.batch_size, device, steps=steps, warmup=warmup)


def ddim_rate(cfg, device, precision: str, channels_last: bool, *, steps: int, warmup: int) -> float:
    policy = compute_policy("unet", device, precision=precision, channels_last=channels_last)
    torch.manual_seed(0)
    unet = UNet(in_channels=6, **cfg.unet.model_dump()).to(device)
    if policy.channels_last:
        unet.to(memory_format=torch.channels_last)
    ema, opt = EMA(unet, decay=0.9999), torch.optim.Adam(unet.parameters(), lr=2e-4)
    abar = schedule_from_config(cfg.diffusion.model_dump()).to(device)
    x0 = policy.layout(torch.randn(cfg.ddim.batch_size, 6, 16, 16, device=device))

    def step() -> None:
        with autocast(device, policy.dtype):
            loss = diffusion_loss(unet, x0, abar)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        ema.update(unet)

    return rate(step, cfg.ddim.batch_size, steps=steps, warmup=warmup, device=device)


def inception_rate(device, precision: str, channels_last: bool, *, images: int, batch: int) -> float:
    model = FIDInceptionV3().requires_grad_(False).to(device).use_channels_last(channels_last).eval()
    x = torch.rand(images, 3, 32, 32, device=device)
    dtype = torch.bfloat16 if precision == "bf16" else None

    def stats() -> None:
        with autocast(device, dtype):
            activation_statistics((x[i : i + batch] for i in range(0, images, batch)), model)

    return rate(stats, images, steps=1, warmup=1, device=device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="cpu", help="preset whose hybrid and DDIM steps are timed")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--inception-images", type=int, default=32)
    parser.add_argument("--only", nargs="*", default=["hybrid", "ddim", "inception"], help="networks timed")
    parser.add_argument("--emulated-bf16", action="store_true", help="also time bf16 where the CPU only emulates it")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args()
    device, cfg = choose_device(args.device), preset(args.preset)
    native = native_bf16(device)  # emulated bf16 is tens of times slower than fp32: timed only when asked
    settings = [s for s in SETTINGS if s[0] == "fp32" or native or args.emulated_bf16]
    peaks = {"fp32": matmul_rate(torch.float32), "bf16": matmul_rate(torch.bfloat16, n=1024 if native else 256)}
    print(f"{machine(device)}; native bf16: {native}; matmul peak: ", end="")
    print(", ".join(f"{k} {v / 1e9:.1f} GFLOP/s" for k, v in peaks.items()), flush=True)
    print("| network | precision | layout | items/s | × fp32 NCHW | auto |\n|---|---|---|---|---|---|")
    rows = []
    work = {
        "hybrid": lambda p, c: hybrid_rate(cfg, device, p, c, steps=args.steps, warmup=args.warmup),
        "ddim": lambda p, c: ddim_rate(cfg, device, p, c, steps=args.steps, warmup=args.warmup),
        "inception": lambda p, c: inception_rate(device, p, c, images=args.inception_images, batch=16),
    }
    networks = {"hybrid": "autoencoder", "ddim": "unet", "inception": "inception"}
    for name in args.only:
        auto = compute_policy(networks[name], device, precision="fp32" if name == "inception" else "auto")
        base = None
        for precision, channels_last in settings:
            speed = work[name](precision, channels_last)
            base = base or speed
            chosen = auto.describe() == {"precision": precision, "channels_last": channels_last}
            rows.append(dict(network=name, precision=precision, channels_last=channels_last, rate=speed, auto=chosen))
            layout = "channels_last" if channels_last else "NCHW"
            mark = "✓" if chosen else ""
            print(f"| {name} | {precision} | {layout} | {speed:.1f} | {speed / base:.2f} | {mark} |", flush=True)
    if args.json:
        payload = {"machine": machine(device), "native_bf16": native, "peaks": peaks, "rows": rows}
        args.json.write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
