"""Latent DDIM throughput: training latents/s, sampling samples/s for S = 10, 50, 100, FID statistics images/s.

The library's own functions (diffusion_loss + Adam + EMA as in the trainer, sample_latents,
activation_statistics) on random 16x16x6 latents and images: no data or weights needed (the Inception is
randomly initialised; its speed does not depend on the weights). One Markdown table per device.

    .venv/bin/python bench/ddim_throughput.py --channels 32 --channel-mult 1 2 2 --train-steps 5
"""

from __future__ import annotations

import argparse
import time

import torch

from hybridmi.eval.fid import FIDInceptionV3, activation_statistics
from hybridmi.models.unet import UNet
from hybridmi.runtime import autocast, compute_policy
from hybridmi.train.ddim import DDIMModel, diffusion_loss, sample_latents, schedule_from_config
from hybridmi.train.ema import EMA

SCHEDULE = {"beta_schedule": "linear", "num_timesteps": 1000, "beta_start": 1e-4, "beta_end": 0.02}


def timed(fn, device: torch.device, *, warmup=None) -> float:
    """Seconds of one ``fn()`` after one ``warmup()`` (default: ``fn``), device-synchronised."""
    (warmup or fn)()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def build(args: argparse.Namespace, device: torch.device) -> UNet:
    torch.manual_seed(0)
    unet = UNet(
        in_channels=6,
        channels=args.channels,
        channel_mult=args.channel_mult,
        num_res_blocks=args.res_blocks,
        attn_resolutions=args.attn,
        dropout=0.1,
    ).to(device)
    return unet.to(memory_format=torch.channels_last) if compute_policy("unet", device).channels_last else unet


def train_rate(args: argparse.Namespace, device: torch.device) -> float:
    unet, abar = build(args, device), schedule_from_config(SCHEDULE).to(device)
    ema, opt = EMA(unet, decay=0.9999), torch.optim.Adam(unet.parameters(), lr=2e-4)
    amp, x0 = compute_policy("unet", device).dtype, torch.randn(args.batch_size, 6, 16, 16, device=device)

    def step() -> None:
        with autocast(device, amp):
            loss = diffusion_loss(unet, x0, abar)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        ema.update(unet)

    seconds = timed(lambda: [step() for _ in range(args.train_steps)], device, warmup=step)
    return args.train_steps * args.batch_size / seconds


def sample_rate(args: argparse.Namespace, device: torch.device, steps: int) -> float:
    """DDIM (η = 0) samples/s for a batch of args.sample_batch with S = steps."""
    abar = schedule_from_config(SCHEDULE).to(device)
    one = torch.ones(6, dtype=torch.float64)
    model = DDIMModel(unet=build(args, device).eval(), alphas_cumprod=abar, mean=0 * one, std=one, step=0)
    gen, amp = torch.Generator().manual_seed(0), None  # sampling stays fp32 (the FID protocol)
    draw = lambda s: sample_latents(
        model, args.sample_batch, steps=s, eta=0.0, spacing="uniform", generator=gen, amp=amp
    )  # noqa: E731
    return args.sample_batch / timed(lambda: draw(steps), device, warmup=lambda: draw(2))


def fid_rate(args: argparse.Namespace, device: torch.device) -> float:
    """Inception pool3 statistics images/s on 32x32 inputs (resized to 299 inside), fp32."""
    inception = FIDInceptionV3().to(device).eval()
    images = torch.rand(args.fid_images, 3, 32, 32, device=device)
    batches = lambda: (images[i : i + args.fid_batch] for i in range(0, len(images), args.fid_batch))  # noqa: E731
    return args.fid_images / timed(lambda: activation_statistics(batches(), inception), device)


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
        f"{torch.get_num_threads()} torch threads, torch {torch.__version__}; UNet channels={args.channels} "
        f"mult={args.channel_mult} res_blocks={args.res_blocks} attn={args.attn}"
    )
    print("| device | measurement | rate |\n|---|---|---|")
    for name in args.devices:
        device = torch.device(name)
        print(f"| {name} | train (batch {args.batch_size}) | {train_rate(args, device):.1f} latents/s |")
        for s in args.sample_steps:
            print(
                f"| {name} | sample S={s} (batch {args.sample_batch}) | {sample_rate(args, device, s):.1f} samples/s |"
            )
        print(f"| {name} | FID statistics (batch {args.fid_batch}) | {fid_rate(args, device):.1f} images/s |")


if __name__ == "__main__":
    main()
