"""hybridmi: hybrid mutual-information representation learning (autoencoder + MoCo-v2, latent DDIM)."""

__version__ = "0.1.0"
