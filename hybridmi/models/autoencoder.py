"""NVAE-style convolutional autoencoder: 32x32x3 images ↔ a 16x16xL latent z = [y, ŷ].

Cells follow NVlabs/NVAE: residual cells return ``skip + 0.1 · SE(branch)``. With C = ``channels``:
    encoder  x in [0,1] → 2x−1 → 3x3 conv 3→C → cells_32 x EncoderCell(C) → down C→2C (32→16)
             → cells_16 x EncoderCell(2C) → Swish, 1x1 conv → z (B, L, 16, 16)
    decoder  z → 3x3 conv L→2C → cells_16 x DecoderCell(2C) → up 2C→C → cells_32 x DecoderCell(C)
             → BN, Swish, 3x3 conv C→3 → (h+1)/2 → x̂ (B, 3, 32, 32), unbounded
"""

from __future__ import annotations

import torch
from torch import nn

from hybridmi.models.norm import batchnorm_groups

SE_REDUCTION = 16
SE_MIN_HIDDEN = 4
RESIDUAL_SCALE = 0.1


class SqueezeExcite(nn.Module):
    """Channel gate: x · sigmoid(MLP(mean_hw(x))); hidden width max(C // 16, 4)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        hidden = max(channels // SE_REDUCTION, SE_MIN_HIDDEN)
        layers = [nn.Linear(channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, channels), nn.Sigmoid()]
        self.gate = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.gate(x.mean(dim=(2, 3)))  # BxC
        return x * gate[:, :, None, None]


def _bn_swish_conv(
    c_in: int, c_out: int, *, kernel: int, stride: int = 1, groups: int = 1, bn_group_size: int | None = None
) -> list[nn.Module]:
    return [
        batchnorm_groups(c_in, bn_group_size),
        nn.SiLU(),
        nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=False),
    ]


class _Residual(nn.Module):
    """skip(x) + 0.1 · branch(x)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(x) + RESIDUAL_SCALE * self.branch(x)


class EncoderCell(_Residual):
    """[BN, Swish, 3x3 conv] x2 then SE, added to the skip with weight 0.1."""

    def __init__(self, c_in: int, c_out: int, *, stride: int = 1, bn_group_size: int | None = None) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"encoder cell stride {stride} is not 1 or 2")
        self.branch = nn.Sequential(
            *_bn_swish_conv(c_in, c_out, kernel=3, stride=stride, bn_group_size=bn_group_size),
            *_bn_swish_conv(c_out, c_out, kernel=3, bn_group_size=bn_group_size),
            SqueezeExcite(c_out),
        )
        skip: list[nn.Module] = [nn.AvgPool2d(2)] if stride == 2 else []
        if stride == 2 or c_in != c_out:
            skip.append(nn.Conv2d(c_in, c_out, 1))
        self.skip = nn.Sequential(*skip)


class DecoderCell(_Residual):
    """NVAE inverted-residual cell: BN, 1x1 expand xE, BN+Swish, depthwise 5x5, BN+Swish, 1x1 back, BN, SE."""

    def __init__(self, channels: int, *, expand: int) -> None:
        super().__init__()
        wide = channels * expand
        self.branch = nn.Sequential(
            nn.BatchNorm2d(channels),
            nn.Conv2d(channels, wide, 1, bias=False),
            *_bn_swish_conv(wide, wide, kernel=5, groups=wide),
            nn.BatchNorm2d(wide),
            nn.SiLU(),
            nn.Conv2d(wide, channels, 1, bias=False),
            nn.BatchNorm2d(channels),
            SqueezeExcite(channels),
        )
        self.skip = nn.Identity()


class UpCell(_Residual):
    """Nearest 2x upsample + convs: (B, c_in, H, W) → (B, c_out, 2H, 2W); skip = upsample + 1x1 conv."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.branch = nn.Sequential(
            nn.BatchNorm2d(c_in),
            nn.SiLU(),
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
            *_bn_swish_conv(c_out, c_out, kernel=3),
            SqueezeExcite(c_out),
        )
        self.skip = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c_in, c_out, 1))


class Encoder(nn.Module):
    """x (B, 3, 32, 32) in [0, 1] → z (B, latent_channels, 16, 16)."""

    def __init__(
        self, *, channels: int, cells_32: int, cells_16: int, latent_channels: int, bn_group_size: int | None = None
    ) -> None:
        super().__init__()
        wide, g = 2 * channels, bn_group_size
        self.stem = nn.Conv2d(3, channels, 3, padding=1)
        self.cells_32 = nn.Sequential(*(EncoderCell(channels, channels, bn_group_size=g) for _ in range(cells_32)))
        self.down = EncoderCell(channels, wide, stride=2, bn_group_size=g)
        self.cells_16 = nn.Sequential(*(EncoderCell(wide, wide, bn_group_size=g) for _ in range(cells_16)))
        self.to_latent = nn.Sequential(nn.SiLU(), nn.Conv2d(wide, latent_channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(2.0 * x - 1.0)  # pixels [0,1] → [-1,1]
        h = self.cells_16(self.down(self.cells_32(h)))
        return self.to_latent(h)


class Decoder(nn.Module):
    """z (B, latent_channels, 16, 16) → x̂ (B, 3, 32, 32) on the pixel scale of [0, 1], unbounded."""

    def __init__(
        self, *, channels: int, cells_32: int, cells_16: int, decoder_expand: int, latent_channels: int
    ) -> None:
        super().__init__()
        wide = 2 * channels
        self.from_latent = nn.Conv2d(latent_channels, wide, 3, padding=1)
        self.cells_16 = nn.Sequential(*(DecoderCell(wide, expand=decoder_expand) for _ in range(cells_16)))
        self.up = UpCell(wide, channels)
        self.cells_32 = nn.Sequential(*(DecoderCell(channels, expand=decoder_expand) for _ in range(cells_32)))
        self.to_image = nn.Sequential(nn.BatchNorm2d(channels), nn.SiLU(), nn.Conv2d(channels, 3, 3, padding=1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.cells_32(self.up(self.cells_16(self.from_latent(z))))
        return (self.to_image(h) + 1.0) / 2.0  # [-1,1] scale → pixel scale


class Autoencoder(nn.Module):
    """The hybrid model's f (encoder) and q(x|z) mean (decoder); see the module docstring for the layout."""

    def __init__(
        self,
        *,
        channels: int,
        cells_32: int,
        cells_16: int,
        decoder_expand: int = 6,
        latent_channels: int = 6,
        bn_group_size: int | None = None,
    ) -> None:
        super().__init__()
        sizes = dict(channels=channels, cells_32=cells_32, cells_16=cells_16, latent_channels=latent_channels)
        for name, value in {**sizes, "decoder_expand": decoder_expand}.items():
            low = 0 if name.startswith("cells_") else 1  # a level may have no cells
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"Autoencoder {name}={value!r} must be an integer >= {low}")
        self.init_args = dict(**sizes, decoder_expand=decoder_expand, bn_group_size=bn_group_size)
        self.encoder = Encoder(**sizes, bn_group_size=bn_group_size)
        self.decoder = Decoder(**sizes, decoder_expand=decoder_expand)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, 3, 32, 32) in [0, 1] → z (B, latent_channels, 16, 16)."""
        if x.dim() != 4 or tuple(x.shape[1:]) != (3, 32, 32):
            raise ValueError(f"Autoencoder.encode expects (B, 3, 32, 32) images, got shape {tuple(x.shape)}")
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, latent_channels, 16, 16) → x̂ (B, 3, 32, 32), unbounded (evaluation clamps to [0, 1])."""
        latent = self.init_args["latent_channels"]
        if z.dim() != 4 or tuple(z.shape[1:]) != (latent, 16, 16):
            raise ValueError(f"Autoencoder.decode expects (B, {latent}, 16, 16) latents, got shape {tuple(z.shape)}")
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, 3, 32, 32) in [0, 1] → (z (B, L, 16, 16), x̂ (B, 3, 32, 32)); the encoder runs once."""
        z = self.encode(x)
        return z, self.decode(z)


def split_latent(z: torch.Tensor, contrastive_channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """z (B, L, H, W) → (y = z[:, :c], ŷ = z[:, c:]); y feeds the contrastive estimator, z the decoder."""
    if z.dim() != 4:
        raise ValueError(f"split_latent expects a (B, L, H, W) latent, got shape {tuple(z.shape)}")
    if not 0 < contrastive_channels < z.shape[1]:
        raise ValueError(
            f"contrastive_channels {contrastive_channels} must be between 1 and {z.shape[1] - 1} "
            f"for a latent with {z.shape[1]} channels"
        )
    return z[:, :contrastive_channels], z[:, contrastive_channels:]
