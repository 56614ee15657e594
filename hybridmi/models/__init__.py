"""Networks: the NVAE-style autoencoder, the MoCo-v2 machinery on y, the latent UNet, and their file format."""
