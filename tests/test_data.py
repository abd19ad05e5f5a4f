"""Data loading: IDX files, Fashion-MNIST lookup and errors, synthetic images, analysis splits."""
from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from vitphase_lib.data import (DEBIAN_FASHION_DIR, FASHION_CLASSES, FASHION_FILES, FASHION_MEAN,
                               FASHION_STD, DataNotFoundError, _read_idx, analysis_splits,
                               fashion_mnist_folder, load_fashion_mnist, synthetic_images)


def idx_bytes(array: np.ndarray, dtype_code: int = 0x08) -> bytes:
    header = struct.pack(">HBB", 0, dtype_code, array.ndim)
    header += struct.pack(">" + "I" * array.ndim, *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx(path: Path, array: np.ndarray, gz: bool = False) -> Path:
    data = idx_bytes(array)
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


def fake_fashion(folder: Path, n_train=5, n_test=3, gz=False, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {
        ("train", "images"): rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        ("train", "labels"): rng.integers(0, 10, n_train, dtype=np.uint8),
        ("test", "images"): rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        ("test", "labels"): rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for key, stem in FASHION_FILES.items():
        write_idx(folder / stem, arrays[key], gz=gz)
    return arrays


# --------------------------------------------------------------------------- IDX
@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("shape", [(7,), (4, 28, 28), (2, 3, 5)])
def test_read_idx_round_trip(tmp_path, gz, shape):
    array = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    path = write_idx(tmp_path / "x-idx-ubyte", array, gz=gz)
    out = _read_idx(path)
    assert out.dtype == np.uint8 and out.shape == shape
    np.testing.assert_array_equal(out, array)


def test_read_idx_rejects_a_non_byte_idx_file(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(idx_bytes(np.zeros((2, 2), np.uint8), dtype_code=0x0D))
    with pytest.raises(ValueError, match="not an unsigned-byte IDX file"):
        _read_idx(path)
    path.write_bytes(b"\x01\x02" + idx_bytes(np.zeros((2, 2), np.uint8))[2:])
    with pytest.raises(ValueError, match="corrupt"):
        _read_idx(path)


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_truncated_data(tmp_path, gz):
    data = idx_bytes(np.ones((4, 28, 28), np.uint8))[:-100]
    path = tmp_path / ("t.gz" if gz else "t")
    path.write_bytes(gzip.compress(data) if gz else data)
    with pytest.raises(ValueError, match=r"truncated: expected 3136 values, found 3036"):
        _read_idx(path)


@pytest.mark.parametrize("keep", [0, 3, 6])
def test_read_idx_truncated_header(tmp_path, keep):
    path = tmp_path / "h"
    path.write_bytes(idx_bytes(np.ones((4, 28, 28), np.uint8))[:keep])
    with pytest.raises(ValueError, match="truncated|corrupt"):
        _read_idx(path)


def test_read_idx_truncated_gzip_stream(tmp_path):
    compressed = gzip.compress(idx_bytes(np.arange(4 * 28 * 28).reshape(4, 28, 28) % 251))
    path = tmp_path / "cut.gz"
    path.write_bytes(compressed[: len(compressed) // 2])
    with pytest.raises(ValueError, match="cut.gz"):
        _read_idx(path)


# --------------------------------------------------------------------------- Fashion-MNIST
@pytest.mark.parametrize("gz", [False, True])
def test_load_fashion_mnist_from_a_folder(tmp_path, gz):
    arrays = fake_fashion(tmp_path, gz=gz)
    for split, n in (("train", 5), ("test", 3)):
        data = load_fashion_mnist(split, root=tmp_path, download=False)
        assert len(data) == n
        assert data.images.shape == (n, 1, 28, 28) and data.images.dtype == torch.float32
        expected = (arrays[(split, "images")].astype(np.float32) / 255.0 - FASHION_MEAN) / FASHION_STD
        np.testing.assert_allclose(data.images[:, 0].numpy(), expected, rtol=0, atol=1e-6)
        np.testing.assert_array_equal(data.labels.numpy(), arrays[(split, "labels")])
        assert data.labels.dtype == torch.int64
        assert data.classes == FASHION_CLASSES
        assert len(data.checksum) == 64
    # the checksum depends on the content
    other = tmp_path / "other"
    fake_fashion(other, gz=gz, seed=1)
    assert (load_fashion_mnist("test", root=other, download=False).checksum
            != load_fashion_mnist("test", root=tmp_path, download=False).checksum)


def test_torchvision_folder_layout_is_found(tmp_path):
    fake_fashion(tmp_path / "FashionMNIST" / "raw")
    assert fashion_mnist_folder(tmp_path, download=False) == tmp_path
    assert len(load_fashion_mnist("train", root=tmp_path, download=False)) == 5


def test_missing_data_without_download_explains_the_fix(tmp_path):
    with pytest.raises(DataNotFoundError) as info:
        load_fashion_mnist("test", root=tmp_path, download=False)
    message = str(info.value)
    assert "apt-get install dataset-fashion-mnist" in message
    assert str(tmp_path) in message
    assert isinstance(info.value, FileNotFoundError)


def test_incomplete_folder_counts_as_missing(tmp_path):
    fake_fashion(tmp_path)
    (tmp_path / FASHION_FILES[("test", "labels")]).unlink()
    with pytest.raises(DataNotFoundError, match="apt-get install dataset-fashion-mnist"):
        fashion_mnist_folder(tmp_path, download=False)


def test_image_and_label_count_mismatch(tmp_path):
    fake_fashion(tmp_path)
    write_idx(tmp_path / FASHION_FILES[("test", "labels")], np.zeros(2, np.uint8))
    with pytest.raises(ValueError, match="3 images but .* 2 labels"):
        load_fashion_mnist("test", root=tmp_path, download=False)


def test_bad_split_name(tmp_path):
    with pytest.raises(ValueError, match="split must be"):
        load_fashion_mnist("validation", root=tmp_path, download=False)


@pytest.mark.skipif(not (DEBIAN_FASHION_DIR / "t10k-labels-idx1-ubyte.gz").is_file(),
                    reason="Debian package dataset-fashion-mnist not installed")
def test_debian_fashion_mnist_test_split():
    data = load_fashion_mnist("test", download=False)
    assert data.images.shape == (10_000, 1, 28, 28)
    assert torch.bincount(data.labels).tolist() == [1000] * 10
    # normalised with the train-set statistics: the test set is close to mean 0, std 1
    assert abs(float(data.images.mean())) < 0.05
    assert abs(float(data.images.std()) - 1.0) < 0.05


# --------------------------------------------------------------------------- synthetic
def test_synthetic_images(synthetic):
    assert synthetic.images.shape == (64, 1, 28, 28)
    assert synthetic.labels.tolist() == [i % 4 for i in range(64)]
    again = synthetic_images(n=64, num_classes=4, seed=0)
    assert torch.equal(again.images, synthetic.images) and again.checksum == synthetic.checksum
    assert not torch.equal(synthetic_images(n=64, num_classes=4, seed=1).images, synthetic.images)
    # the classes are separable: the class-mean images differ much more than the noise level
    means = torch.stack([synthetic.images[synthetic.labels == c].mean(0) for c in range(4)])
    assert float(torch.cdist(means.flatten(1), means.flatten(1)).fill_diagonal_(1e9).min()) > 1.0
    sub = synthetic.subset(np.array([3, 1]))
    assert sub.labels.tolist() == [3, 1] and torch.equal(sub.images[0], synthetic.images[3])
    assert len(synthetic.as_dataset()) == 64


# --------------------------------------------------------------------------- splits
def test_analysis_splits_disjoint_and_deterministic():
    s = analysis_splits(1000, 300, 200, 100, seed=3)
    assert (len(s.analysis), len(s.probe_fit), len(s.probe_score)) == (300, 200, 100)
    parts = [set(s.analysis.tolist()), set(s.probe_fit.tolist()), set(s.probe_score.tolist())]
    assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
    assert all(0 <= i < 1000 for p in parts for i in p)
    assert all(np.all(np.diff(x) > 0) for x in (s.probe_fit, s.probe_score))
    again = analysis_splits(1000, 300, 200, 100, seed=3)
    for a, b in zip((s.analysis, s.probe_fit, s.probe_score),
                    (again.analysis, again.probe_fit, again.probe_score)):
        np.testing.assert_array_equal(a, b)
    other = analysis_splits(1000, 300, 200, 100, seed=4)
    assert not np.array_equal(other.analysis, s.analysis)
    # random, not the first indices
    assert s.analysis.max() > 500


def test_first_analysis_images_sample_every_class_of_a_class_sorted_set():
    """The ACI uses the first aci_max_images analysis images: on a class-sorted folder (ImageNet
    class subfolders: 50 images per class, in class order) they must be a random sample of the
    classes, not the first classes."""
    labels = np.repeat(np.arange(1000), 50)
    s = analysis_splits(len(labels), 10_000, 10_000, 5_000, seed=0)
    first = labels[s.analysis[:512]]
    assert len(np.unique(first)) > 300          # sorted indices would give about 11 classes
    assert first.max() > 900 and first.min() < 100
    assert not np.all(np.diff(s.analysis) > 0)  # random order, not sorted


def test_analysis_splits_can_use_every_image():
    s = analysis_splits(10, 5, 3, 2, seed=0)
    assert sorted(np.concatenate([s.analysis, s.probe_fit, s.probe_score]).tolist()) == list(range(10))
    assert len(analysis_splits(10, np.int64(4), 0, 0).analysis) == 4


def test_analysis_splits_too_many_images():
    with pytest.raises(ValueError, match="ask for 11 images but the set has 10"):
        analysis_splits(10, 5, 3, 3)


@pytest.mark.parametrize("bad", [1.5, "3", None, True, -1])
@pytest.mark.parametrize("position", [0, 1, 2])
def test_analysis_splits_wrong_types(bad, position):
    args = [2, 2, 2]
    args[position] = bad
    with pytest.raises(TypeError, match="non-negative int"):
        analysis_splits(100, *args)
