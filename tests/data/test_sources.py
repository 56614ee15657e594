"""CIFAR pickle layouts and class-folder trees decode to the right pixels, labels and classes."""

from __future__ import annotations

import tarfile

import pytest
import torch

from hybridmi.data.sources import decode_images, load_cifar, load_class_folders

from .conftest import cifar_rows, png_bytes


def test_load_cifar10__labels_classes_and_pixels_follow_the_official_layout(tmp_path, write_cifar10):
    train_labels, test_labels = write_cifar10(tmp_path, per_batch=4, test=6)
    train, test = load_cifar("cifar10", tmp_path)
    assert train.classes[:3] == ["airplane", "automobile", "bird"] and len(train.classes) == 10
    assert train.labels.tolist() == train_labels and test.labels.tolist() == test_labels
    assert train.images.shape == (20, 3, 32, 32) and train.images.dtype == torch.uint8
    expected = torch.from_numpy(cifar_rows(train_labels, 0).reshape(-1, 3, 32, 32))
    assert torch.equal(train.images, expected)  # R = label, G = index across batches, B = position pattern


def test_load_cifar100__uses_fine_labels_and_fine_label_names(tmp_path, write_cifar100):
    train_labels, test_labels = write_cifar100(tmp_path, train=12, test=5)
    train, test = load_cifar("cifar100", tmp_path)
    assert len(train.classes) == 100 and train.classes[7] == "fine07"
    assert train.labels.tolist() == train_labels and test.labels.tolist() == test_labels
    assert torch.equal(train.images[:, 0, 0, 0], torch.tensor(train_labels, dtype=torch.uint8))


@pytest.mark.parametrize("name, folder", [("cifar10", "cifar-10-batches-py"), ("cifar100", "cifar-100-python")])
def test_load_cifar__missing_without_download_fails_fast_naming_the_place(tmp_path, name, folder):
    with pytest.raises(FileNotFoundError) as err:
        load_cifar(name, tmp_path / "nowhere", download=False)
    message = str(err.value)
    assert str(tmp_path / "nowhere" / folder) in message and "data.download=true" in message
    assert "\n" not in message


def test_load_class_folders__directory_sorted_classes_and_exact_pixels(tmp_path, class_tree, class_colours):
    root = class_tree(tmp_path / "tree", train=3, test=2)
    train, test = load_class_folders(root)
    assert train.classes == test.classes == ["ant", "cat", "zebra"]
    assert train.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2] and test.labels.tolist() == [0, 0, 1, 1, 2, 2]
    for split in (train, test):
        for image, label in zip(split.images, split.labels):
            colour = torch.tensor(class_colours[split.classes[label]], dtype=torch.uint8)
            assert torch.equal(image, colour.view(3, 1, 1).expand(3, 32, 32))


def test_load_class_folders__tar_gz_with_top_folder_equals_directory(tmp_path, class_tree, make_tar_gz):
    root = class_tree(tmp_path / "tree", top="mydata")
    archive = make_tar_gz(root, tmp_path / "mydata.tar.gz")
    from_dir = load_class_folders(root / "mydata")
    from_tar = load_class_folders(archive)
    for a, b in zip(from_dir, from_tar):
        assert a.checksum == b.checksum and a.classes == b.classes


def test_load_class_folders__test_class_without_train_folder_is_an_error(tmp_path, class_tree):
    root = class_tree(tmp_path / "tree")
    (root / "test" / "yak").mkdir()
    (root / "test" / "yak" / "0000.png").write_bytes(png_bytes((1, 2, 3)))
    with pytest.raises(ValueError, match="test class 'yak'"):
        load_class_folders(root)


@pytest.mark.parametrize("where", ["train", "test"])
def test_load_class_folders__an_empty_class_folder_is_refused_before_decoding(tmp_path, class_tree, make_tar_gz, where):
    root = class_tree(tmp_path / "tree", top="top")
    (root / "top" / where / "bee").mkdir()  # sorted between ant and cat: dropping it would shift their labels
    (root / "top" / "train" / "cat" / "0001.png").write_bytes(b"not an image")  # never decoded
    with pytest.raises(ValueError, match=rf"^class folder {where}/bee in {root}/top holds no images"):
        load_class_folders(root / "top")
    archive = make_tar_gz(root, tmp_path / "x.tar.gz")
    with pytest.raises(ValueError, match=rf"^class folder top/{where}/bee in {archive} holds no images"):
        load_class_folders(archive)


def test_load_class_folders__corrupt_image_is_named(tmp_path, class_tree, make_tar_gz):
    root = class_tree(tmp_path / "tree", top="top")
    (root / "top" / "train" / "cat" / "0001.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    with pytest.raises(ValueError, match=r"corrupt image train/cat/0001\.png in .*tree"):
        load_class_folders(root / "top")
    archive = make_tar_gz(root, tmp_path / "x.tar.gz")
    with pytest.raises(ValueError, match=rf"corrupt image top/train/cat/0001\.png in {tmp_path}/x\.tar\.gz: "):
        load_class_folders(archive)


def test_load_class_folders__truncated_archive_is_named(tmp_path, class_tree, make_tar_gz):
    archive = make_tar_gz(class_tree(tmp_path / "tree", train=20), tmp_path / "cut.tar.gz")
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=rf"corrupt or truncated archive {tmp_path}/cut\.tar\.gz"):
        load_class_folders(archive)


def test_load_class_folders__wrong_image_size_names_file_and_size(tmp_path, class_tree):
    root = class_tree(tmp_path / "tree")
    (root / "train" / "ant" / "0002.png").write_bytes(png_bytes((5, 5, 5), size=(40, 30)))
    with pytest.raises(ValueError, match=r"image train/ant/0002\.png in .* is 40x30, expected 32x32"):
        load_class_folders(root)


def test_decode_images__threaded_equals_serial_and_keeps_order():
    blobs = [png_bytes((i % 256, 255 - i % 256, i // 9)) for i in range(2100)]  # more than one chunk
    names = [f"{i}.png" for i in range(len(blobs))]
    serial = decode_images(blobs, names, workers=0)
    threaded = decode_images(blobs, names, workers=2)
    assert torch.equal(serial, threaded)
    assert serial[:, 0, 0, 0].tolist() == [i % 256 for i in range(2100)]


def test_load_class_folders__damaged_bytes_inside_tar_gz_are_reported(tmp_path, class_tree, make_tar_gz):
    archive = make_tar_gz(class_tree(tmp_path / "tree", train=20), tmp_path / "bad.tar.gz")
    data = bytearray(archive.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 16] = bytes(255 - b for b in data[middle : middle + 16])
    archive.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=rf"corrupt or truncated archive {tmp_path}/bad\.tar\.gz"):
        load_class_folders(archive)


def test_load_class_folders__plain_tar_cut_at_a_member_boundary_is_reported(tmp_path, class_tree):
    root = class_tree(tmp_path / "tree")
    archive = tmp_path / "plain.tar"
    with tarfile.open(archive, "w") as tar:
        for child in sorted(root.iterdir()):
            tar.add(child, arcname=child.name)
    with tarfile.open(archive) as tar:
        last = tar.getmembers()[-1]
    cut = last.offset_data + -(-last.size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE  # end of the last member
    archive.write_bytes(archive.read_bytes()[:cut])
    with pytest.raises(ValueError, match="end-of-archive marker is missing"):
        load_class_folders(archive)
