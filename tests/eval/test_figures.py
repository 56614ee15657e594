import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from hybridmi.eval.figures import (
    interpolate_latents,
    interpolation_change,
    interpolation_images,
    pick_pairs,
    reconstruction_images,
    save_grid,
)


class IdentityAutoencoder:
    """A lossless stand-in: z = pixel_unshuffle(x) (B, 12, 16, 16); channels 0-3 hold red, 4-7 green, 8-11 blue."""

    def encode(self, x):
        return F.pixel_unshuffle(x, 2)

    def decode(self, z):
        return F.pixel_shuffle(z, 2)


def pair_images(p):
    g = torch.Generator().manual_seed(p)
    return torch.rand(p, 3, 32, 32, generator=g), torch.rand(p, 3, 32, 32, generator=g)


def test_interpolate_latents__moves_only_the_chosen_part():
    z_a, z_b = torch.zeros(2, 6, 4, 4), torch.ones(2, 6, 4, 4)
    for part, moving in (("z", slice(0, 6)), ("y", slice(0, 3)), ("yhat", slice(3, 6))):
        out = interpolate_latents(z_a, z_b, steps=5, part=part, contrastive_channels=3)
        assert out.shape == (2, 5, 6, 4, 4)
        assert torch.allclose(out[:, :, moving].mean(dim=(0, 2, 3, 4)), torch.linspace(0, 1, 5))
        fixed = torch.ones(6, dtype=torch.bool)
        fixed[moving] = False
        assert torch.equal(out[:, :, fixed], torch.zeros_like(out[:, :, fixed]))  # the rest stays at z_a


def test_interpolation_images__decode_the_pixel_average_for_a_lossless_autoencoder():
    x_a, x_b = pair_images(3)
    out = interpolation_images(IdentityAutoencoder(), x_a, x_b, steps=3, part="z", contrastive_channels=4)
    rows = out.reshape(3, 3, 3, 32, 32)
    assert torch.allclose(rows[:, 0], x_a) and torch.allclose(rows[:, 2], x_b)
    assert torch.allclose(rows[:, 1], (x_a + x_b) / 2, atol=1e-6)


def test_interpolation_images__y_only_changes_what_y_encodes():
    x_a, x_b = pair_images(2)
    out = interpolation_images(IdentityAutoencoder(), x_a, x_b, steps=4, part="y", contrastive_channels=4)
    end = out.reshape(2, 4, 3, 32, 32)[:, -1]
    assert torch.allclose(end[:, 0], x_b[:, 0]) and torch.allclose(end[:, 1:], x_a[:, 1:])  # y = the red channel
    assert interpolation_change(out, steps=4) == pytest.approx(
        (x_b[:, 0] - x_a[:, 0]).abs().mean().item() / 3, rel=1e-5
    )


def test_reconstruction_images__pairs_originals_with_reconstructions():
    x, _ = pair_images(3)
    out = reconstruction_images(IdentityAutoencoder(), x)
    assert out.shape == (6, 3, 32, 32)
    assert torch.allclose(out[0::2], x) and torch.allclose(out[1::2], x)


@pytest.mark.parametrize("n,ncols,size", [(12, 4, (4 * 34 + 2, 3 * 34 + 2)), (10, 4, (138, 104)), (3, 8, (104, 36))])
def test_save_grid__png_has_the_expected_pixel_size(tmp_path, n, ncols, size):
    path = save_grid(torch.rand(n, 3, 32, 32), tmp_path / "sub" / "grid.png", ncols=ncols)
    with Image.open(path) as image:
        assert image.size == size and image.mode == "RGB"


def test_pick_pairs__distinct_images_and_a_clear_error():
    a, b = pick_pairs(10, 5, seed=0)
    assert len(set(a.tolist()) | set(b.tolist())) == 10
    assert torch.equal(pick_pairs(10, 5, seed=0)[0], a)
    with pytest.raises(ValueError, match="6 interpolation pairs need 12 images, the split has 10"):
        pick_pairs(10, 6, seed=0)


@pytest.mark.parametrize("n, ncols", [(1, 4), (5, 2), (8, 4), (3, 8)])
def test_save_grid__pixels_equal_torchvisions_save_image(tmp_path, n, ncols):
    from torchvision.utils import save_image

    images = torch.rand(n, 3, 8, 6, generator=torch.Generator().manual_seed(n))
    save_image(images, tmp_path / "theirs.png", nrow=ncols, padding=2)
    ours = save_grid(images, tmp_path / "ours.png", ncols=ncols)
    assert (Image.open(ours).tobytes(), Image.open(ours).size) == (
        Image.open(tmp_path / "theirs.png").tobytes(),
        Image.open(tmp_path / "theirs.png").size,
    )
