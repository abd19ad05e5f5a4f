"""Image data: Fashion-MNIST (default profile), ImageNet-style folders (paper profile), and a
small synthetic set for unit tests.

Every loader returns an :class:`ImageSet` (a float tensor dataset plus class names) or a torch
``Dataset``; analysis code only needs ``(image, label)`` pairs. Splits are deterministic functions
of a seed, and the three analysis splits (analysis / probe-fit / probe-score) are disjoint.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import VitphaseError

FASHION_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
FASHION_FILES = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}
DEBIAN_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
# Fashion-MNIST's own normalisation constants (train set pixel mean / std in [0, 1]).
FASHION_MEAN, FASHION_STD = 0.2860, 0.3530


class DataNotFoundError(VitphaseError, FileNotFoundError):
    """Raised when a data set cannot be found on disk and cannot be downloaded."""


@dataclass(frozen=True)
class ImageSet:
    """Images as a float tensor ``(n, c, h, w)`` (already normalised) with integer labels."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]
    checksum: str  # sha256 of the raw bytes the set was read from

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: np.ndarray | torch.Tensor) -> "ImageSet":
        index = torch.as_tensor(index, dtype=torch.long)
        return ImageSet(self.images[index], self.labels[index], self.classes, self.checksum)

    def as_dataset(self) -> torch.utils.data.TensorDataset:
        return torch.utils.data.TensorDataset(self.images, self.labels)


# --------------------------------------------------------------------------- Fashion-MNIST
def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (EOFError, OSError) as error:  # truncated or corrupt gzip stream
        raise ValueError(f"{path} cannot be read ({error}): the file is truncated or corrupt. "
                         "Delete it and let the loader fetch it again.") from error
    if len(data) < 4 or len(data) < 4 + 4 * data[3]:
        raise ValueError(f"{path} is truncated inside its IDX header ({len(data)} bytes). "
                         "Delete it and let the loader fetch it again.")
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file (header {data[:4].hex()}); "
                         "the file is corrupt: delete it and let the loader fetch it again.")
    shape = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    array = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if array.size != int(np.prod(shape)):
        raise ValueError(f"{path} is truncated: expected {int(np.prod(shape))} values, "
                         f"found {array.size}. Delete it and let the loader fetch it again.")
    return array.reshape(shape)


def _find_idx(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / f"{stem}.gz",
                      folder / "FashionMNIST" / "raw" / stem,
                      folder / "FashionMNIST" / "raw" / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def default_data_root() -> Path:
    return Path(os.environ.get("VITPHASE_DATA", Path.home() / ".cache" / "vitphase" / "data"))


def fashion_mnist_folder(root: str | Path | None = None, download: bool = True) -> Path:
    """The folder holding the four Fashion-MNIST IDX files.

    Looked up in this order: ``root`` if given, the Debian package ``dataset-fashion-mnist``
    (``/usr/share/datasets/fashion-mnist``), the download cache ``$VITPHASE_DATA``; when none
    holds the files and ``download`` is true, torchvision downloads them into the cache.
    """
    candidates = [Path(root)] if root is not None else [DEBIAN_FASHION_DIR, default_data_root()]
    for folder in candidates:
        if all(_find_idx(folder, stem) for stem in FASHION_FILES.values()):
            return folder
    if download:
        target = Path(root) if root is not None else default_data_root()
        try:
            from torchvision.datasets import FashionMNIST
            for train in (True, False):
                FashionMNIST(str(target), train=train, download=True)
        except Exception as error:  # network errors come in many types
            raise DataNotFoundError(_missing_fashion_message(candidates, error)) from error
        return target
    raise DataNotFoundError(_missing_fashion_message(candidates, None))


def _missing_fashion_message(searched: list[Path], error: Exception | None) -> str:
    lines = ["Fashion-MNIST was not found. Looked for the IDX files in:"]
    lines += [f"  - {p}" for p in searched]
    if error is not None:
        lines.append(f"and the download failed: {type(error).__name__}: {error}")
    lines += [
        "Fix it in one of three ways:",
        "  1. on Debian/Ubuntu: sudo apt-get install dataset-fashion-mnist",
        "     (puts the files in /usr/share/datasets/fashion-mnist, used without a download);",
        "  2. with network access: let the loader download them (torchvision) into $VITPHASE_DATA;",
        "  3. copy the four *-idx?-ubyte[.gz] files into a folder and pass it as data_root.",
    ]
    return "\n".join(lines)


def load_fashion_mnist(split: str = "test", root: str | Path | None = None,
                       download: bool = True) -> ImageSet:
    """Fashion-MNIST ``train`` (60 000) or ``test`` (10 000), normalised, shape (n, 1, 28, 28)."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    folder = fashion_mnist_folder(root, download)
    image_path = _find_idx(folder, FASHION_FILES[(split, "images")])
    label_path = _find_idx(folder, FASHION_FILES[(split, "labels")])
    images = _read_idx(image_path)
    labels = _read_idx(label_path)
    if len(images) != len(labels):
        raise ValueError(f"{image_path} holds {len(images)} images but {label_path} "
                         f"holds {len(labels)} labels; one file is corrupt.")
    digest = hashlib.sha256(images.tobytes() + labels.tobytes()).hexdigest()
    x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
    x = (x - FASHION_MEAN) / FASHION_STD
    return ImageSet(x, torch.from_numpy(labels.astype(np.int64)), FASHION_CLASSES, digest)


# --------------------------------------------------------------------------- synthetic
def synthetic_images(n: int = 64, num_classes: int = 4, size: int = 28, channels: int = 1,
                     seed: int = 0) -> ImageSet:
    """Class-dependent blobs plus noise: learnable in seconds, for unit tests."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % num_classes
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    centres = torch.linspace(-0.6, 0.6, num_classes)
    blobs = torch.stack([torch.exp(-((xx - c) ** 2 + (yy + c) ** 2) / 0.1) for c in centres])
    x = blobs[labels].unsqueeze(1).repeat(1, channels, 1, 1)
    x = x + 0.3 * torch.randn(x.shape, generator=g)
    return ImageSet(x, labels, tuple(f"class{i}" for i in range(num_classes)), f"synthetic-{seed}-{n}")


# --------------------------------------------------------------------------- splits
@dataclass(frozen=True)
class AnalysisSplits:
    """Disjoint index sets of one image set: the streaming analysis, probe fitting, probe scoring."""

    analysis: np.ndarray
    probe_fit: np.ndarray
    probe_score: np.ndarray


def analysis_splits(n_total: int, n_analysis: int, n_probe_fit: int, n_probe_score: int,
                    seed: int = 0) -> AnalysisSplits:
    """Deterministic, disjoint random splits of ``range(n_total)``.

    The analysis images stay in random order: metrics that use only the first images streamed
    (the ACI's ``aci_max_images``) then see a random sample of the classes, not the first
    classes of a class-sorted folder. The probe splits are sorted."""
    for name, value in (("n_analysis", n_analysis), ("n_probe_fit", n_probe_fit),
                        ("n_probe_score", n_probe_score)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 0:
            raise TypeError(f"{name} must be a non-negative int, got {value!r}")
    needed = n_analysis + n_probe_fit + n_probe_score
    if needed > n_total:
        raise ValueError(f"the splits ask for {needed} images but the set has {n_total}; "
                         "lower n_images / n_probe_fit / n_probe_score.")
    order = np.random.default_rng(seed).permutation(n_total)
    a, b = n_analysis, n_analysis + n_probe_fit
    return AnalysisSplits(order[:a], np.sort(order[a:b]), np.sort(order[b:needed]))
