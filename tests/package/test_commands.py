"""hybridmi export | encode | decode | generate: the files they write, and bad input refused in one line first."""

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from hybridmi.cli import main
from hybridmi.package.files import read_images


def _pngs(directory):
    return sorted(p.name for p in directory.glob("*.png"))


def _write_images(folder, sizes, seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i, (w, h) in enumerate(sizes):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(folder / f"img{i}.png")
    return sorted(folder.glob("*.png"))


def _refused(capsys, argv, *needles):
    assert main([str(a) for a in argv]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hybridmi: error: "), lines
    assert all(n in lines[0] for n in needles), lines[0]


def test_encode_decode__write_the_npz_and_pngs_of_the_library_functions(package, loaded, tmp_path, capsys):
    files = _write_images(tmp_path / "images", [(32, 32)] * 4 + [(48, 40)])
    out = tmp_path / "z.npz"
    assert main(["encode", "--model", str(package), str(tmp_path / "images"), "--out", str(out), "--resize"]) == 0
    assert "encode" in capsys.readouterr().err  # the progress bar
    with np.load(out) as saved:
        z, y, yhat, names = (saved[k] for k in ("z", "y", "yhat", "files"))
    assert names.tolist() == [str(f) for f in files] and z.shape == (5, 6, 16, 16)
    assert np.array_equal(y, z[:, :3]) and np.array_equal(yhat, z[:, 3:])
    want = loaded.encode(read_images(files, resize=True))[0]  # uint8 pixels, the last image resized to 32x32
    torch.testing.assert_close(torch.from_numpy(z), want, rtol=0, atol=1e-6)

    decoded = tmp_path / "decoded"
    assert (
        main(["decode", "--model", str(package), "--latents", str(out), "--out", str(decoded), "--batch-size", "2"])
        == 0
    )
    assert _pngs(decoded) == [f"{i:05d}.png" for i in range(5)]
    pixels = torch.from_numpy(np.array(Image.open(decoded / "00004.png"))).permute(2, 0, 1)
    expected = (loaded.decode(torch.from_numpy(z[4:])).clamp(0, 1)[0] * 255).round().to(torch.uint8)
    assert torch.equal(pixels, expected)


def test_generate__writes_n_pngs_and_a_grid_with_the_packages_sampler(package, loaded, tmp_path, capsys):
    out = tmp_path / "generated"
    assert main(["generate", "--model", str(package), "-n", "5", "--out", str(out), "--seed", "3"]) == 0
    assert _pngs(out) == [f"{i:05d}.png" for i in range(5)] + ["grid.png"]
    assert "steps 4, eta 0.5, seed 3" in capsys.readouterr().out
    first = torch.from_numpy(np.array(Image.open(out / "00000.png"))).permute(2, 0, 1)
    assert torch.equal(first, (loaded.generate(5, seed=3)[0] * 255).round().to(torch.uint8))
    assert Image.open(out / "grid.png").size == (3 * 34 + 2, 2 * 34 + 2)  # 5 images in 3 columns, 2-pixel padding


def test_bad_input__is_refused_in_one_line_before_any_work(package, run_artifacts, tmp_path, capsys):
    _, art = run_artifacts
    images = _write_images(tmp_path / "images", [(32, 32), (64, 48)])
    model = ["--model", package]
    _refused(
        capsys, ["encode", *model, tmp_path / "nope.png", "--out", tmp_path / "z.npz"], "nope.png", "does not exist"
    )
    _refused(capsys, ["encode", *model, images[1], "--out", tmp_path / "z.npz"], "64x48", "--resize")
    _refused(capsys, ["encode", *model, images[0], "--out", tmp_path / "z.txt"], "must name an .npz")
    _refused(capsys, ["encode", *model, images[0], "--out", tmp_path / "z.npz", "--batch-size", "0"], "--batch-size 0")
    _refused(capsys, ["decode", *model, "--latents", tmp_path / "none.npz", "--out", tmp_path / "d"], "none.npz")
    _refused(capsys, ["generate", *model, "-n", "0", "--out", tmp_path / "g"], "-n 0")
    _refused(capsys, ["generate", "--model", tmp_path / "missing", "-n", "1", "--out", tmp_path / "g"], "missing")
    _refused(
        capsys,
        ["export", "--model", art["model"], "--ddim", art["ddim"], "--out", package],
        "is not an empty directory",
    )
    _refused(capsys, ["export", "--model", tmp_path, "--ddim", art["ddim"], "--out", tmp_path / "p"], "model.pt")
    assert not any((tmp_path / name).exists() for name in ("z.npz", "d", "g", "p"))

    tampered = shutil.copytree(package, tmp_path / "tampered")
    with open(tampered / "encoder.pt2", "r+b") as fh:
        fh.seek(100)
        byte = fh.read(1)
        fh.seek(100)
        fh.write(bytes([byte[0] ^ 0xFF]))
    _refused(capsys, ["encode", "--model", tampered, images[0], "--out", tmp_path / "z.npz"], "encoder.pt2", "checksum")
    np.savez(tmp_path / "bad.npz", z=np.zeros((2, 5, 16, 16), dtype=np.float32))
    _refused(capsys, ["decode", *model, "--latents", tmp_path / "bad.npz", "--out", tmp_path / "d"], "(2, 5, 16, 16)")
    _refused(capsys, ["generate", *model, "-n", "1", "--steps", "41", "--out", tmp_path / "g"], "steps 41")
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize("size", [(31, 32), (33, 33)])
def test_read_images__refuses_other_sizes_without_resize(tmp_path, size):
    (path,) = _write_images(tmp_path, [size])
    with pytest.raises(ValueError, match=f"{size[0]}x{size[1]}, not 32x32"):
        read_images([path], resize=False)


def test_decode__reads_a_package_published_to_object_storage(package, moto_endpoint, tmp_path, monkeypatch, capsys):
    from minio import Minio

    from hybridmi.store import store_from_env

    Minio(moto_endpoint, access_key="k", secret_key="s", secure=False).make_bucket("packages")
    for name, value in (("HYBRIDMI_S3_ENDPOINT", f"http://{moto_endpoint}"), ("AWS_ACCESS_KEY_ID", "k")):
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    store_from_env("s3://packages").put_dir(package, "models/tiny")
    np.savez(tmp_path / "z.npz", z=np.zeros((2, 6, 16, 16), dtype=np.float32))
    argv = ["decode", "--model", "s3://packages/models/tiny", "--latents", str(tmp_path / "z.npz")]
    assert main([*argv, "--out", str(tmp_path / "decoded")]) == 0
    assert _pngs(tmp_path / "decoded") == ["00000.png", "00001.png"]
    capsys.readouterr()
    _refused(capsys, [*argv[:2], "s3://packages/models/none", *argv[3:], "--out", tmp_path / "d"], "models/none")
