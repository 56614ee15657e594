"""The latent DDIM trainer: ε-prediction on standardised latents, Adam + clipping + warm-up, EMA; resumable."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import torch
from torch import nn

from hybridmi.config import Config
from hybridmi.diffusion.sampler import ddim_sample
from hybridmi.diffusion.schedule import alphas_cumprod, make_betas
from hybridmi.eval.latents import destandardise, standardise
from hybridmi.models.unet import UNet
from hybridmi.runtime import autocast, compute_policy, seed_everything
from hybridmi.train.callbacks import StepMetrics
from hybridmi.train.checkpoint import latest_checkpoint, load_checkpoint
from hybridmi.train.ema import EMA
from hybridmi.train.guard import FiniteGuard, fused_optimizer
from hybridmi.train.loop import TrainLoop, checkpoint_config, training_device
from hybridmi.train.schedule import RunLength

log = logging.getLogger(__name__)

KIND = "ddim"
RESUME_SECTIONS = ("unet", "diffusion", "ddim_shape")  # must not change across a resume


@dataclass
class DDIMModel:
    """What sampling needs: the (EMA) ε-network, the schedule and the latent standardisation."""

    unet: UNet  # eval mode
    alphas_cumprod: torch.Tensor  # (T,) float64 on the UNet's device
    mean: torch.Tensor  # (C,) float64 latent mean (standardisation)
    std: torch.Tensor  # (C,) float64 latent std
    step: int  # training steps behind these weights


@dataclass
class DDIMResult:
    model: DDIMModel  # with the EMA weights
    step: int
    checkpoint: Path
    last_metrics: StepMetrics | None
    compute: dict[str, Any]  # ComputePolicy.describe(): precision and layout used
    history: list[dict[str, float]]  # every progress report (train/history.py)


def schedule_from_config(diffusion: dict) -> torch.Tensor:
    """ᾱ_t (T,) float64 for a diffusion config section (as a dict: cfg.diffusion.model_dump())."""
    d = diffusion
    return alphas_cumprod(
        make_betas(d["beta_schedule"], d["num_timesteps"], beta_start=d["beta_start"], beta_end=d["beta_end"])
    )


def diffusion_loss(model: nn.Module, x0: torch.Tensor, abar: torch.Tensor) -> torch.Tensor:
    """‖ε − ε̂(sqrt(ᾱ_t) x0 + sqrt(1 − ᾱ_t) ε, t)‖² summed over (C, H, W), batch mean (DDPM eq. 14); x0 (B, C, H, W)
    standardised, t ~ U{0 … T − 1} and ε ~ N(0, I) from the global RNG."""
    t = torch.randint(0, len(abar), (x0.shape[0],), device=x0.device)
    eps = torch.randn_like(x0)
    a = abar[t].to(x0.dtype)[:, None, None, None]
    x_t = a.sqrt() * x0 + (1 - a).sqrt() * eps
    return (model(x_t, t).float() - eps).square().sum(dim=(1, 2, 3)).mean()


@torch.enable_grad()
def train_ddim(
    cfg: Config,
    latents: torch.Tensor,
    *,
    mean: torch.Tensor,
    std: torch.Tensor,
    out_dir: str | Path,
    callbacks: Iterable[object] = (),
    resume: bool = True,
    stop_at_step: int | None = None,
) -> DDIMResult:
    """Train the ε-UNet on (latents (N, C, H, W) − mean) / std, resuming from ``out_dir``; stop at ``stop_at_step``."""
    d, rt = cfg.ddim, cfg.runtime
    device = training_device(rt)
    policy = compute_policy("unet", device, precision=rt.precision, channels_last=rt.channels_last)
    log.info("DDIM step on %s: %s", device, policy.describe())
    n = len(latents)
    loop = TrainLoop(
        kind=KIND,
        out_dir=out_dir,
        config=checkpoint_config(cfg, num_latents=n),
        length=RunLength.plan(epochs=d.epochs, steps_per_epoch=n // d.batch_size, warmup_steps=0, budget_minutes=None),
        n=n,
        section="ddim",
        settings=d,
        device=device,
        callbacks=callbacks,
    )
    seed_everything(d.seed)
    unet = UNet(in_channels=latents.shape[1], **cfg.unet.model_dump()).to(device)
    if policy.channels_last:
        unet.to(memory_format=torch.channels_last)
    ema = EMA(unet, decay=d.ema_decay, warmup=d.ema_warmup)
    optimizer = fused_optimizer("adam", list(unet.parameters()), lr=d.lr, momentum=0.9, weight_decay=0.0)
    warmup = d.warmup_steps
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warmup) if warmup else 1.0)
    abar = schedule_from_config(cfg.diffusion.model_dump()).to(device)
    state = loop.resume(sections=RESUME_SECTIONS) if resume else None
    if state is not None:
        unet.load_state_dict(state["unet"])
        ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
    forward = torch.compile(unet) if rt.compile else unet
    named = [(f"unet.{k}", p) for k, p in unet.named_parameters()]
    guard = FiniteGuard(optimizer=optimizer, named_params=named, terms=("mse",))
    data = latents.to(device)
    mean, std = mean.to(device), std.to(device)

    def step(step: int) -> None:
        x0 = policy.layout(standardise(data[loop.batch_indices(step)].float(), mean, std))
        with autocast(device, policy.dtype):
            loss = diffusion_loss(forward, x0, abar)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        total_norm = guard.check_gradients(loss, (loss.detach() / x0[0].numel(),))
        if d.grad_clip > 0:
            nn.utils.clip_grads_with_norm_(unet.parameters(), d.grad_clip, total_norm)
        optimizer.step()
        scheduler.step()
        ema.update(unet)
        guard.end()

    def save() -> Path | None:
        state = dict(unet=unet.state_dict(), ema=ema.state_dict(), optimizer=optimizer.state_dict())
        extra = dict(unet_init_args=unet.init_args, scheduler=scheduler.state_dict(), latent_mean=mean.cpu())
        return loop.checkpoint(state, **extra, latent_std=std.cpu())

    unet.train()
    loop.run(step, save, guard=guard, optimizer=optimizer, end_step=stop_at_step)
    model = DDIMModel(unet=ema.module, alphas_cumprod=abar, mean=mean.double(), std=std.double(), step=loop.step)
    return DDIMResult(model, loop.step, loop.path, loop.last, policy.describe(), loop.history)


def load_ddim(path: str | Path, *, device: torch.device | str = "cpu") -> DDIMModel:
    """Rebuild the sampler's model (EMA weights) from a DDIM checkpoint (a file, or a directory holding last.pt)."""
    path = Path(path)
    if path.is_dir():
        found = latest_checkpoint(path)
        if found is None:
            raise FileNotFoundError(f"no DDIM checkpoint in {path}")
        path = found
    state = load_checkpoint(path, kind=KIND, map_location=device)
    unet = UNet(**state["unet_init_args"]).to(device)
    unet.load_state_dict(state["ema"]["module"])
    abar = schedule_from_config(state["config"]["diffusion"]).to(device)
    mean, std = state["latent_mean"].double(), state["latent_std"].double()
    return DDIMModel(unet=unet.eval(), alphas_cumprod=abar, mean=mean, std=std, step=int(state["step"]))


@torch.no_grad()
def sample_latents(
    model: DDIMModel,
    num: int,
    *,
    steps: int,
    eta: float,
    spacing: str,
    generator: torch.Generator,
    amp: torch.dtype | None = None,
) -> torch.Tensor:
    """DDIM-sample ``num`` latents and undo the standardisation: (num, C, H, W) float32 on the model's device."""
    u = model.unet.init_args
    shape = (num, u["in_channels"], u["resolution"], u["resolution"])
    abar = model.alphas_cumprod
    device = abar.device

    def eps(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        with autocast(device, amp):
            return model.unet(x, t)

    x = ddim_sample(eps, shape, alphas_cumprod=abar, steps=steps, eta=eta, spacing=spacing, generator=generator)
    return destandardise(x, model.mean, model.std)
