"""The latent DDIM trainer: ε-prediction on standardised latents, Adam + clipping + warm-up, EMA.

Latents stay on the training device in their storage dtype and are standardised per batch.
Batches come from a permutation seeded by (seed, epoch); t and ε come from the global RNG, whose
state is checkpointed with the model, optimiser, scheduler and EMA, so a resumed run continues
bit-identically on the CPU. Steps never wait for the device: finite checks are recorded there
(``FiniteGuard``) and read every ``ddim.log_every`` steps and before each checkpoint, and the whole
state is checked finite before it is written (``train.on_nonfinite`` applies here too).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import torch
from torch import nn
from tqdm import tqdm

from hybridmi.config import Config
from hybridmi.data.loader import epoch_permutation
from hybridmi.diffusion.sampler import ddim_sample
from hybridmi.diffusion.schedule import alphas_cumprod, make_betas
from hybridmi.eval.latents import destandardise, standardise
from hybridmi.models.unet import UNet
from hybridmi.runtime import autocast, autocast_dtype, choose_device, rng_state, seed_everything, set_rng_state
from hybridmi.train.callbacks import CallbackList, StepMetrics
from hybridmi.train.checkpoint import check_resumable, latest_checkpoint, load_checkpoint, save_checkpoint
from hybridmi.train.ema import EMA
from hybridmi.train.guard import FiniteGuard, NonFiniteError, first_nonfinite, fused_optimizer

log = logging.getLogger(__name__)

KIND = "ddim"
RESUME_SECTIONS = ("unet", "diffusion", "ddim_shape")  # config parts that must not change on resume
NonFiniteLossError = NonFiniteError  # the name earlier callers import


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


def build_unet(cfg: Config, in_channels: int) -> UNet:
    u = cfg.unet
    return UNet(
        in_channels=in_channels,
        channels=u.channels,
        channel_mult=u.channel_mult,
        num_res_blocks=u.num_res_blocks,
        attn_resolutions=u.attn_resolutions,
        dropout=u.dropout,
    )


def schedule_from_config(diffusion: dict) -> torch.Tensor:
    """ᾱ_t (T,) float64 for a diffusion config section (as a dict: cfg.diffusion.model_dump())."""
    betas = make_betas(
        diffusion["beta_schedule"],
        diffusion["num_timesteps"],
        beta_start=diffusion["beta_start"],
        beta_end=diffusion["beta_end"],
    )
    return alphas_cumprod(betas)


def diffusion_loss(model: nn.Module, x0: torch.Tensor, abar: torch.Tensor) -> torch.Tensor:
    """‖ε − ε̂(sqrt(ᾱ_t) x0 + sqrt(1 − ᾱ_t) ε, t)‖² summed over (C, H, W), mean over the batch (DDPM eq. 14).

    x0: (B, C, H, W) standardised latents; t ~ U{0 … T − 1} and ε ~ N(0, I) from the global RNG.
    """
    t = torch.randint(0, len(abar), (x0.shape[0],), device=x0.device)
    eps = torch.randn_like(x0)
    a = abar[t].to(x0.dtype)[:, None, None, None]
    x_t = a.sqrt() * x0 + (1 - a).sqrt() * eps
    return (model(x_t, t).float() - eps).square().sum(dim=(1, 2, 3)).mean()


def _resume_view(cfg: Config, n: int) -> dict:
    view = cfg.model_dump(mode="json")
    view["ddim_shape"] = {"batch_size": cfg.ddim.batch_size, "seed": cfg.train.seed, "num_latents": n}
    return view


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
    """Train the ε-UNet on (latents − mean)/std; checkpoints (``out_dir/last.pt``) hold everything to resume.

    latents: (N, C, H, W) raw latents (any float dtype); mean/std: (C,). ``stop_at_step`` ends the run
    early with a checkpoint (a budgeted or interrupted run); calling again with ``resume`` continues it.
    A NaN/inf loss, gradient or weight raises NonFiniteError naming the step and the first non-finite
    tensor (or, with ``train.on_nonfinite=skip_step``, skips that update), leaving the last checkpoint intact.
    """
    out_dir, d, t = Path(out_dir), cfg.ddim, cfg.train
    if t.threads:
        torch.set_num_threads(t.threads)
    device = choose_device(t.device)
    amp = autocast_dtype(t.precision, device)
    n = len(latents)
    steps_per_epoch = n // d.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"{n} latents are fewer than ddim.batch_size {d.batch_size}")
    total_steps = max(1, math.ceil(d.epochs * steps_per_epoch))
    end_step = total_steps if stop_at_step is None else min(stop_at_step, total_steps)

    seed_everything(t.seed)
    unet = build_unet(cfg, latents.shape[1]).to(device)
    if device.type == "cuda" and t.channels_last:
        unet.to(memory_format=torch.channels_last)
    ema = EMA(unet, decay=d.ema_decay, warmup=d.ema_warmup)
    optimizer = fused_optimizer("adam", list(unet.parameters()), lr=d.lr, momentum=0.9, weight_decay=0.0)
    warmup = d.warmup_steps
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warmup) if warmup else 1.0)
    abar = schedule_from_config(cfg.diffusion.model_dump()).to(device)
    step, last = 0, None
    ckpt = latest_checkpoint(out_dir) if resume else None
    if ckpt is not None:
        state = load_checkpoint(ckpt, kind=KIND, map_location=device)
        check_resumable(state["config"], _resume_view(cfg, n), sections=RESUME_SECTIONS)
        unet.load_state_dict(state["unet"])
        ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
        step = state["step"]
        last = StepMetrics(**state["last_metrics"]) if state.get("last_metrics") else None
        log.info("resumed DDIM from %s at step %d of %d", ckpt, step, total_steps)
    forward = torch.compile(unet) if t.compile else unet
    guard = FiniteGuard(
        optimizer=optimizer,
        named_params=[(f"unet.{k}", p) for k, p in unet.named_parameters()],
        terms=(),
        mode=t.on_nonfinite,
        rollback=[*ema.module.parameters(), *ema.module.buffers()],
    )
    guard.first_step = step
    data = latents.to(device)
    mean, std = mean.to(device), std.to(device)
    events = CallbackList(callbacks)
    path = ckpt

    def checkpoint() -> Path:
        state = dict(unet=unet.state_dict(), ema=ema.state_dict(), optimizer=optimizer.state_dict())
        bad = first_nonfinite(state)
        if bad is not None:
            raise NonFiniteError(
                f"refusing to write the DDIM checkpoint of step {step}: {bad} is not finite; "
                f"last good checkpoint: {path}"
            )
        saved = save_checkpoint(
            out_dir,
            kind=KIND,
            step=step,
            config=_resume_view(cfg, n),
            unet_init_args=unet.init_args,
            scheduler=scheduler.state_dict(),
            rng=rng_state(),
            latent_mean=mean.cpu(),
            latent_std=std.cpu(),
            skipped_steps=guard.skipped_total,
            last_metrics=dataclasses.asdict(last) if last is not None else None,
            **state,
        )
        events.on_checkpoint(saved, step)
        return saved

    unet.train()
    window_steps, window_sum, window_applied, window_start = 0, 0.0, 0, time.perf_counter()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    perm_epoch, perm = -1, None
    bar = tqdm(total=end_step, initial=step, desc="ddim", unit="step", dynamic_ncols=True, mininterval=1.0)
    while step < end_step:
        epoch, index = divmod(step, steps_per_epoch)
        if epoch != perm_epoch:
            perm, perm_epoch = epoch_permutation(n, seed=t.seed, epoch=epoch).to(device), epoch
        x0 = standardise(data[perm[index * d.batch_size : (index + 1) * d.batch_size]].float(), mean, std)
        if device.type == "cuda" and t.channels_last:
            x0 = x0.contiguous(memory_format=torch.channels_last)
        guard.begin()
        with autocast(device, amp):
            loss = diffusion_loss(forward, x0, abar)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        total_norm = guard.check_gradients(loss, ())
        if d.grad_clip > 0:
            nn.utils.clip_grads_with_norm_(unet.parameters(), d.grad_clip, total_norm)
        optimizer.step()
        scheduler.step()
        ema.update(unet)
        guard.end()
        step += 1
        bar.update(1)
        report = step % d.log_every == 0 or step == end_step
        save = step % d.checkpoint_every == 0 or step == end_step
        if not (report or save):
            continue
        summary = guard.read(context=f"last good checkpoint: {path}")  # waits for the device
        applied = summary.steps - summary.skipped
        window_steps, window_applied = window_steps + summary.steps, window_applied + applied
        window_sum += summary.means["loss"] * applied if applied else 0.0
        if report and window_steps:
            elapsed = time.perf_counter() - window_start
            mean_loss = window_sum / window_applied if window_applied else float("nan")
            last = StepMetrics(
                stage=KIND,
                step=step,
                epoch=step / steps_per_epoch,
                loss=mean_loss,
                terms={"mse": mean_loss / x0[0].numel()},
                lr=scheduler.get_last_lr()[0],
                images_per_s=window_steps * d.batch_size / elapsed,
                step_time_s=elapsed / window_steps,
                steps_in_report=window_steps,
                skipped_steps=guard.skipped_total,
                gpu_mem_bytes=torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None,
            )
            events.on_step(last)
            bar.set_postfix({"loss": f"{mean_loss:.4g}", "img/s": f"{last.images_per_s:.0f}"})
            window_steps, window_sum, window_applied, window_start = 0, 0.0, 0, time.perf_counter()
        if save:
            path = checkpoint()
    bar.close()
    if path is None:  # resumed at the very end: nothing new to save
        path = checkpoint()
    model = DDIMModel(unet=ema.module, alphas_cumprod=abar, mean=mean.double(), std=std.double(), step=step)
    return DDIMResult(model=model, step=step, checkpoint=path, last_metrics=last)


def load_ddim(path: str | Path, *, device: torch.device | str = "cpu", use_ema: bool = True) -> DDIMModel:
    """Rebuild the sampler's model from a DDIM checkpoint (a file, or a directory holding last.pt)."""
    path = Path(path)
    if path.is_dir():
        found = latest_checkpoint(path)
        if found is None:
            raise FileNotFoundError(f"no DDIM checkpoint in {path}")
        path = found
    state = load_checkpoint(path, kind=KIND, map_location=device)
    unet = UNet(**state["unet_init_args"]).to(device)
    unet.load_state_dict(state["ema"]["module"] if use_ema else state["unet"])
    abar = schedule_from_config(state["config"]["diffusion"]).to(device)
    return DDIMModel(
        unet=unet.eval(),
        alphas_cumprod=abar,
        mean=state["latent_mean"].double(),
        std=state["latent_std"].double(),
        step=int(state["step"]),
    )


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
    device = model.alphas_cumprod.device

    def eps(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        with autocast(device, amp):
            return model.unet(x, t)

    x = ddim_sample(
        eps, shape, alphas_cumprod=model.alphas_cumprod, steps=steps, eta=eta, spacing=spacing, generator=generator
    )
    return destandardise(x, model.mean, model.std)
