"""Latent DDIM throughput: training images/s, sampling samples/s for S = 10, 50, 100, FID statistics images/s.

Uses the library's own functions (diffusion_loss + Adam + EMA as in the trainer; sample_latents;
activation_statistics) on random 16x16x6 latents / random images, so no data or weights are needed
(the Inception is randomly initialised: its speed does not depend on the weights). Prints a Markdown
table per device (CPU, plus CUDA when present) and one JSON line per measurement.

    .venv/bin/python bench/ddim_throughput.py --channels 32 --channel-mult 1 2 2 --train-steps 5
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from hybridmi.eval.fid import FIDInceptionV3, activation_statistics
from hybridmi.models.unet import UNet
from hybridmi.runtime import autocast, autocast_dtype
from hybridmi.train.ddim import DDIMModel, diffusion_loss, sample_latents, schedule_from_config
from hybridmi.train.ema import EMA

SCHEDULE = {"beta_schedule": "linear", "num_timesteps": 1000, "beta_start": 1e-4, "beta_end": 0.02}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build(args: argparse.Namespace, device: torch.device) -> UNet:
    unet = UNet(
        in_channels=6,
        channels=args.channels,
        channel_mult=args.channel_mult,
        num_res_blocks=args.res_blocks,
        attn_resolutions=args.attn,
        dropout=0.1,
    ).to(device)
    return unet.to(memory_format=torch.channels_last) if device.type == "cuda" else unet


def train_rate(args: argparse.Namespace, device: torch.device) -> float:
    """Training latents/s over args.train_steps steps after one warm-up step."""
    torch.manual_seed(0)
    unet, abar = build(args, device), schedule_from_config(SCHEDULE).to(device)
    ema, opt = EMA(unet, decay=0.9999), torch.optim.Adam(unet.parameters(), lr=2e-4)
    amp = autocast_dtype("auto", device)
    x0 = torch.randn(args.batch_size, 6, 16, 16, device=device)

    def step() -> None:
        with autocast(device, amp):
            loss = diffusion_loss(unet, x0, abar)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        ema.update(unet)

    step()
    sync(device)
    start = time.perf_counter()
    for _ in range(args.train_steps):
        step()
    sync(device)
    return args.train_steps * args.batch_size / (time.perf_counter() - start)


def sample_rate(args: argparse.Namespace, device: torch.device, steps: int) -> float:
    """DDIM (η = 0) samples/s for a batch of args.sample_batch with S = steps."""
    torch.manual_seed(0)
    model = DDIMModel(
        unet=build(args, device).eval(),
        alphas_cumprod=schedule_from_config(SCHEDULE).to(device),
        mean=torch.zeros(6, dtype=torch.float64),
        std=torch.ones(6, dtype=torch.float64),
        step=0,
    )
    amp = autocast_dtype("auto", device)
    gen = torch.Generator().manual_seed(0)
    sample_latents(model, args.sample_batch, steps=2, eta=0.0, spacing="uniform", generator=gen, amp=amp)  # warm-up
    sync(device)
    start = time.perf_counter()
    sample_latents(model, args.sample_batch, steps=steps, eta=0.0, spacing="uniform", generator=gen, amp=amp)
    sync(device)
    return args.sample_batch / (time.perf_counter() - start)


def fid_rate(args: argparse.Namespace, device: torch.device) -> float:
    """Inception pool3 statistics images/s on 32x32 inputs (resized to 299 inside), fp32."""
    inception = FIDInceptionV3().to(device).eval()
    images = torch.rand(args.fid_images, 3, 32, 32, device=device)
    batches = lambda: (images[i : i + args.fid_batch] for i in range(0, len(images), args.fid_batch))  # noqa: E731
    activation_statistics(batches(), inception)  # warm-up
    sync(device)
    start = time.perf_counter()
    activation_statistics(batches(), inception)
    sync(device)
    return args.fid_images / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--channels", type=int, default=32)
    p.add_argument("--channel-mult", type=int, nargs="+", default=[1, 2, 2])
    p.add_argument("--res-blocks", type=int, default=1)
    p.add_argument("--attn", type=int, nargs="*", default=[8])
    p.add_argument("--batch-size", type=int, default=64, help="training latents per step")
    p.add_argument("--train-steps", type=int, default=5)
    p.add_argument("--sample-batch", type=int, default=64)
    p.add_argument("--sample-steps", type=int, nargs="+", default=[10, 50, 100])
    p.add_argument("--fid-images", type=int, default=16)
    p.add_argument("--fid-batch", type=int, default=8)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads; 0 keeps the default")
    p.add_argument("--devices", nargs="+", default=["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
        f"torch {torch.__version__}" + (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else "")
    )
    print(f"UNet channels={args.channels} mult={args.channel_mult} res_blocks={args.res_blocks} attn={args.attn}")
    print("| device | measurement | rate |\n|---|---|---|")
    for name in args.devices:
        device = torch.device(name)
        rows = [(f"train (batch {args.batch_size})", train_rate(args, device), "latents/s")]
        rows += [
            (f"sample S={s} (batch {args.sample_batch})", sample_rate(args, device, s), "samples/s")
            for s in args.sample_steps
        ]
        rows.append((f"FID statistics (batch {args.fid_batch})", fid_rate(args, device), "images/s"))
        for what, rate, unit in rows:
            print(f"| {name} | {what} | {rate:.1f} {unit} |")
            print(json.dumps({"device": name, "measurement": what, "rate": rate, "unit": unit}))


if __name__ == "__main__":
    main()
