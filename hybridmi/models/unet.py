"""The ε-prediction UNet for the latent DDIM (ermongroup/ddim ``models/diffusion.py``, sized for 16×16×C)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of timesteps t: (B,) → (B, dim), as in DDPM (sin half, then cos half)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32, device=t.device) / max(half - 1, 1))
    args = t.float()[:, None] * freqs[None]  # B x half
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=1)
    return F.pad(emb, (0, 1)) if dim % 2 else emb


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=math.gcd(32, channels), num_channels=channels, eps=1e-6)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv ×2 with the time embedding added in between; 1×1 shortcut when widths differ."""

    def __init__(self, c_in: int, c_out: int, *, temb_channels: int, dropout: float) -> None:
        super().__init__()
        self.norm1, self.conv1 = _norm(c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.temb_proj = nn.Linear(temb_channels, c_out)
        self.norm2, self.dropout = _norm(c_out), nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.shortcut = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.temb_proj(F.silu(temb))[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.shortcut(x) + h


class AttnBlock(nn.Module):
    """Single-head self-attention over the H·W positions, residual."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = _norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, h * w).transpose(-1, -2).unbind(1)  # each B x HW x C
        out = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None])[:, 0]  # B x HW x C
        return x + self.proj(out.transpose(-1, -2).reshape(b, c, h, w))


class Level(nn.Module):
    """The residual (+ attention) blocks of one resolution level."""

    def __init__(self, c_ins: list[int], c_out: int, *, temb_channels: int, dropout: float, attn: bool) -> None:
        super().__init__()
        self.res = nn.ModuleList(ResBlock(c, c_out, temb_channels=temb_channels, dropout=dropout) for c in c_ins)
        self.attn = nn.ModuleList(AttnBlock(c_out) if attn else nn.Identity() for _ in c_ins)


class UNet(nn.Module):
    """ε̂ = UNet(x_t, t): x_t (B, C, R, R), t (B,) integer timesteps → (B, C, R, R)."""

    def __init__(
        self,
        *,
        in_channels: int,
        channels: int,
        channel_mult: tuple[int, ...] | list[int] = (1, 2, 2),
        num_res_blocks: int = 2,
        attn_resolutions: tuple[int, ...] | list[int] = (8,),
        dropout: float = 0.1,
        resolution: int = 16,
    ) -> None:
        super().__init__()
        levels = len(channel_mult)
        sizes = dict(in_channels=in_channels, channels=channels, channel_mult=list(channel_mult))
        self.init_args = dict(**sizes, num_res_blocks=num_res_blocks, attn_resolutions=list(attn_resolutions))
        self.init_args.update(dropout=dropout, resolution=resolution)
        if in_channels < 1 or channels < 1 or num_res_blocks < 1 or not channel_mult or min(channel_mult) < 1:
            raise ValueError(f"UNet sizes must be positive: {self.init_args}")
        if resolution % 2 ** (levels - 1):
            raise ValueError(
                f"resolution {resolution} cannot be halved {levels - 1} times (channel_mult {list(channel_mult)})"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout {dropout} must be in [0, 1)")
        self.resolution, self.channels = resolution, channels
        temb = 4 * channels
        self.temb = nn.Sequential(nn.Linear(channels, temb), nn.SiLU(), nn.Linear(temb, temb))
        self.conv_in = nn.Conv2d(in_channels, channels, 3, padding=1)
        kw = dict(temb_channels=temb, dropout=dropout)

        widths = [channels * m for m in channel_mult]
        skips, c, res = [channels], channels, resolution
        self.down, self.downsample = nn.ModuleList(), nn.ModuleList()
        for i, width in enumerate(widths):
            self.down.append(Level([c] + [width] * (num_res_blocks - 1), width, attn=res in attn_resolutions, **kw))
            c = width
            skips += [width] * num_res_blocks
            if i < levels - 1:
                self.downsample.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
                skips.append(c)
                res //= 2
        self.mid1, self.mid_attn, self.mid2 = ResBlock(c, c, **kw), AttnBlock(c), ResBlock(c, c, **kw)

        self.up, self.upsample = nn.ModuleList(), nn.ModuleList()
        for i, width in reversed(list(enumerate(widths))):
            c_ins = []
            for _ in range(num_res_blocks + 1):
                c_ins.append(c + skips.pop())
                c = width
            self.up.append(Level(c_ins, width, attn=res in attn_resolutions, **kw))
            if i > 0:
                self.upsample.append(nn.Conv2d(c, c, 3, padding=1))
                res *= 2
        self.norm_out, self.conv_out = _norm(c), nn.Conv2d(c, in_channels, 3, padding=1)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[-1] != self.resolution or x.shape[-2] != self.resolution:
            raise ValueError(f"UNet expects (B, C, {self.resolution}, {self.resolution}) inputs, got {tuple(x.shape)}")
        temb = self.temb(timestep_embedding(t, self.channels))
        hs = [self.conv_in(x)]
        for i, level in enumerate(self.down):
            for res, attn in zip(level.res, level.attn):
                hs.append(attn(res(hs[-1], temb)))
            if i < len(self.downsample):
                hs.append(self.downsample[i](hs[-1]))
        h = self.mid2(self.mid_attn(self.mid1(hs[-1], temb)), temb)
        for i, level in enumerate(self.up):
            for res, attn in zip(level.res, level.attn):
                h = attn(res(torch.cat([h, hs.pop()], dim=1), temb))
            if i < len(self.upsample):
                h = self.upsample[i](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.conv_out(F.silu(self.norm_out(h)))
