"""The NVAE-style autoencoder: shapes, the latent split, memory formats, precision, constructor checks."""

import pytest
import torch

from hybridmi.models.autoencoder import Autoencoder, DecoderCell, EncoderCell, SqueezeExcite, split_latent


def _tiny(seed: int = 0) -> Autoencoder:
    torch.manual_seed(seed)
    return Autoencoder(channels=8, cells_32=1, cells_16=1, decoder_expand=2, latent_channels=6)


def test_autoencoder__maps_images_to_16x16x6_latents_and_back():
    model = _tiny().eval()
    x = torch.rand(5, 3, 32, 32)
    z, x_hat = model(x)
    assert z.shape == (5, 6, 16, 16) and x_hat.shape == (5, 3, 32, 32)
    torch.testing.assert_close(z, model.encode(x))
    torch.testing.assert_close(x_hat, model.decode(z))


def test_autoencoder__stores_exactly_its_constructor_arguments():
    model = Autoencoder(channels=4, cells_32=0, cells_16=2)
    assert model.init_args == {
        "channels": 4,
        "cells_32": 0,
        "cells_16": 2,
        "decoder_expand": 6,
        "latent_channels": 6,
        "bn_group_size": None,
    }
    assert len(model.encoder.cells_32) == 0 and len(model.encoder.cells_16) == 2 and len(model.decoder.cells_16) == 2


def test_split_latent__y_is_the_first_channels_and_yhat_the_rest():
    z = torch.arange(2 * 6 * 16 * 16, dtype=torch.float32).reshape(2, 6, 16, 16)
    y, y_hat = split_latent(z, 3)
    assert y.shape == (2, 3, 16, 16) and y_hat.shape == (2, 3, 16, 16)
    torch.testing.assert_close(y, z[:, 0:3])
    torch.testing.assert_close(y_hat, z[:, 3:6])


@pytest.mark.parametrize("c", [0, 6, 7])
def test_split_latent__rejects_a_split_that_leaves_a_side_empty(c):
    with pytest.raises(ValueError, match=f"contrastive_channels {c}"):
        split_latent(torch.zeros(1, 6, 16, 16), c)


def test_autoencoder__eval_outputs_do_not_depend_on_the_rest_of_the_batch():
    model = _tiny().eval()
    x = torch.rand(4, 3, 32, 32)
    _, batched = model(x)
    _, single = model(x[2:3])
    torch.testing.assert_close(batched[2:3], single, rtol=1e-4, atol=1e-5)


def test_autoencoder__channels_last_gives_the_same_outputs():
    model = _tiny().eval()
    x = torch.rand(3, 3, 32, 32)
    z, x_hat = model(x)
    model_cl = model.to(memory_format=torch.channels_last)
    z_cl, x_hat_cl = model_cl(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(z_cl, z, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(x_hat_cl, x_hat, rtol=1e-4, atol=1e-5)


def test_autoencoder__runs_under_bf16_autocast_close_to_fp32():
    model = _tiny().eval()
    x = torch.rand(3, 3, 32, 32)
    _, x_hat = model(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _, x_hat_bf16 = model(x)
    assert x_hat_bf16.dtype == torch.bfloat16
    assert (x_hat_bf16.float() - x_hat).abs().max().item() < 0.1


def test_autoencoder__trains_backwards_through_every_parameter():
    model = _tiny().train()
    _, x_hat = model(torch.rand(4, 3, 32, 32))
    x_hat.square().mean().backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None]
    assert missing == []


def test_cells__keep_or_change_resolution_as_declared():
    x = torch.rand(2, 8, 32, 32)
    assert EncoderCell(8, 8)(x).shape == (2, 8, 32, 32)
    assert EncoderCell(8, 16, stride=2)(x).shape == (2, 16, 16, 16)
    assert DecoderCell(8, expand=6)(x).shape == (2, 8, 32, 32)


def test_squeeze_excite__hidden_width_is_channels_over_16_but_at_least_4():
    assert SqueezeExcite(32).gate[0].out_features == 4
    assert SqueezeExcite(128).gate[0].out_features == 8


def test_autoencoder__rejects_bad_arguments_and_shapes():
    with pytest.raises(ValueError, match="channels=0"):
        Autoencoder(channels=0, cells_32=1, cells_16=1)
    with pytest.raises(ValueError, match="cells_16=-1"):
        Autoencoder(channels=4, cells_32=1, cells_16=-1)
    model = _tiny()
    with pytest.raises(ValueError, match=r"\(2, 1, 32, 32\)"):
        model.encode(torch.zeros(2, 1, 32, 32))
    with pytest.raises(ValueError, match=r"\(2, 4, 16, 16\)"):
        model.decode(torch.zeros(2, 4, 16, 16))
