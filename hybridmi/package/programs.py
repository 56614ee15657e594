"""The networks of a package as torch.export programs: CPU, float32, eval mode, any batch size."""

from __future__ import annotations

import torch
from torch import nn
from torch.export import Dim, ExportedProgram, export

from hybridmi.models.autoencoder import Autoencoder
from hybridmi.models.unet import UNet

EXAMPLE_BATCH = 2  # the example inputs' batch; Dim makes it symbolic (a batch of 1 or 2 would be specialised)
MAX_BATCH = 1 << 16


def _export(module: nn.Module, example: tuple[torch.Tensor, ...]) -> ExportedProgram:
    batch = Dim("batch", min=1, max=MAX_BATCH)
    return export(module, example, dynamic_shapes=tuple({0: batch} for _ in example), strict=False)


def export_programs(autoencoder: Autoencoder, unet: UNet) -> dict[str, ExportedProgram]:
    """{encoder, decoder, denoiser} of copies moved to the CPU in float32 eval mode (the originals are untouched).

    encoder  x (B, 3, 32, 32) in [0, 1] → z (B, L, 16, 16)
    decoder  z (B, L, 16, 16) → x̂ (B, 3, 32, 32), unbounded
    denoiser x_t (B, L, R, R) standardised, t (B,) int64 → ε̂ (B, L, R, R)
    """
    ae = Autoencoder(**autoencoder.init_args)
    ae.load_state_dict(autoencoder.state_dict())
    ae.eval()
    eps = UNet(**unet.init_args)
    eps.load_state_dict(unet.state_dict())
    eps.eval()
    latent, r = ae.init_args["latent_channels"], unet.init_args["resolution"]
    if unet.init_args["in_channels"] != latent:
        raise ValueError(f"the DDIM denoises {unet.init_args['in_channels']} channels, the autoencoder has {latent}")
    b = EXAMPLE_BATCH
    with torch.no_grad():
        return {
            "encoder": _export(ae.encoder, (torch.rand(b, 3, 32, 32),)),
            "decoder": _export(ae.decoder, (torch.randn(b, latent, 16, 16),)),
            "denoiser": _export(eps, (torch.randn(b, latent, r, r), torch.arange(b, dtype=torch.long))),
        }
