"""Networks: the NVAE-style autoencoder, the MoCo-v2 machinery on y, and their file format."""

from hybridmi.models.autoencoder import Autoencoder, split_latent
from hybridmi.models.moco import MoCo, ProjectionHead
from hybridmi.models.serialize import load_autoencoder, read_autoencoder_file, save_autoencoder

__all__ = [
    "Autoencoder",
    "MoCo",
    "ProjectionHead",
    "load_autoencoder",
    "read_autoencoder_file",
    "save_autoencoder",
    "split_latent",
]
