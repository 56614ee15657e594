"""The autoencoder file: a round trip rebuilds the same function; wrong files fail with their name."""

import pytest
import torch

from hybridmi.models.autoencoder import Autoencoder
from hybridmi.models.serialize import load_autoencoder, save_autoencoder


def _trained_tiny() -> Autoencoder:
    torch.manual_seed(0)
    model = Autoencoder(channels=4, cells_32=1, cells_16=1, decoder_expand=2, latent_channels=5)
    model.train()(torch.rand(6, 3, 32, 32))  # non-default BN statistics must survive the trip
    return model.eval()


def test_save_load__round_trip_gives_identical_outputs(tmp_path):
    model = _trained_tiny()
    path = save_autoencoder(model, tmp_path / "ae.pt", extra={"step": 7, "config": {"alpha": 0.5}})
    loaded = load_autoencoder(path)
    assert not loaded.training and loaded.init_args == model.init_args
    x = torch.rand(3, 3, 32, 32)
    z, x_hat = model(x)
    z_loaded, x_hat_loaded = loaded(x)
    assert torch.equal(z, z_loaded) and torch.equal(x_hat, x_hat_loaded)
    payload = torch.load(path, weights_only=True)
    assert payload["step"] == 7 and payload["config"] == {"alpha": 0.5}
    assert payload["format"] == 1 and payload["kind"] == "hybridmi-autoencoder"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ae.pt"]  # no temporary file left behind


def test_load__missing_file_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pt does not exist"):
        load_autoencoder(tmp_path / "nope.pt")


def test_load__wrong_kind_names_file_and_kind(tmp_path):
    path = tmp_path / "ddim.pt"
    torch.save({"format": 1, "kind": "hybridmi-ddim", "state_dict": {}}, path)
    with pytest.raises(ValueError, match=r"ddim.pt holds 'hybridmi-ddim', not a 'hybridmi-autoencoder'"):
        load_autoencoder(path)


def test_load__wrong_format_version_names_file_and_version(tmp_path):
    path = save_autoencoder(_trained_tiny(), tmp_path / "ae.pt")
    payload = torch.load(path, weights_only=True)
    payload["format"] = 2
    torch.save(payload, path)
    with pytest.raises(ValueError, match=r"ae.pt has autoencoder format 2; this code reads format 1"):
        load_autoencoder(path)


def test_load__unreadable_file_names_it(tmp_path):
    path = tmp_path / "garbage.pt"
    path.write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="garbage.pt is not a readable torch file"):
        load_autoencoder(path)


def test_save__rejects_extras_that_shadow_reserved_keys(tmp_path):
    with pytest.raises(ValueError, match="'state_dict'"):
        save_autoencoder(_trained_tiny(), tmp_path / "ae.pt", extra={"state_dict": {}})
