"""ImageNet-style image folders (the paper profile), preprocessed the way timm preprocesses them.

Two layouts are read:

* **class subfolders** (torchvision ``ImageFolder`` style): ``root/<class>/**/<image>``. Classes
  are the sorted subfolder names and a label is the index of its class in that sorted list. For
  ImageNet-1k the subfolders are the 1000 WordNet ids (``n01440764``...), and the sorted wnid list
  *is* the standard ImageNet-1k class order used by timm's classifier heads (index 0 =
  ``n01440764`` tench ... 999 = ``n15075141`` toilet tissue; checked against
  ``timm.data.ImageNetInfo`` when the folder holds exactly those 1000 wnids), so labels equal the
  head's logit indices. A folder holding only *some* ImageNet classes is indexed by its own sorted
  list and its labels are then *not* head indices (see :attr:`ImageFolderSet.imagenet_order`).
* **flat folder + labels file**: images directly in ``root`` (or below it) and a labels file,
  ``root/labels.txt`` or ``root/val_labels.csv`` or any path given as ``labels_file=``. One image
  a line, ``filename label`` or ``filename,label``; ``filename`` is relative to ``root``. A label
  is either an int (used as-is, e.g. the standard ImageNet-1k val indices) or a class name such as
  a wnid (mapped to its index in the sorted list of the names found in the file, which for all
  1000 ImageNet wnids is again the standard order). Blank lines, ``#`` comments and a header line
  (``filename,label``) are skipped. Only the images listed in the file are used.

Images are ``.jpg``/``.jpeg``/``.png`` in any case (``.JPEG``); hidden files (``.DS_Store``,
macOS ``._x.JPEG``) are ignored. The order is deterministic (sorted paths). Preprocessing comes
from the model's own timm data config (``resolve_model_data_config`` + ``create_transform``,
evaluation mode): resize, centre crop, normalise with the model's mean / std. Images that are not
RGB (grayscale, RGBA, CMYK, palette) are converted to RGB; loading a folder counts them from the
files' headers and logs it once per folder and process.
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from .data import DataNotFoundError
from .errors import VitphaseError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
LABELS_FILENAMES = ("labels.txt", "val_labels.csv")
LAYOUTS = ("auto", "subfolders", "flat")
_WNID = re.compile(r"n\d{8}")
_INT = re.compile(r"[+-]?\d+")

_LAYOUT_HELP = (
    "Expected one of two layouts:\n"
    "  1. class subfolders: ROOT/<class>/<image>, e.g. ROOT/n01440764/ILSVRC2012_val_00000293.JPEG;\n"
    f"  2. a flat folder of images plus a labels file ({' or '.join(LABELS_FILENAMES)} in ROOT,\n"
    "     or labels_file=...), one 'filename label' or 'filename,label' line per image,\n"
    "     label = class index or wnid.\n"
    f"Images: {', '.join(IMAGE_EXTENSIONS)} (any case)."
)


class MalformedLabelsError(DataNotFoundError, ValueError):
    """A labels file exists but a line of it cannot be used (caught by ``except ValueError`` too)."""


class CorruptImageError(VitphaseError, ValueError):
    """An image file of the folder cannot be decoded."""


# --------------------------------------------------------------------------- the data set
class ImageFolderSet(Dataset):
    """``(image, label)`` pairs of an image folder; ``image`` is the model-ready float tensor
    ``(3, H, W)`` and ``label`` an int. Build it with :func:`load_image_folder`."""

    def __init__(self, root: Path, relative_paths: Sequence[str], labels: Sequence[int],
                 classes: Sequence[str], layout: str, data_config: dict, transform,
                 labels_file: Path | None = None):
        self.root = Path(root)
        self.relative_paths = tuple(relative_paths)
        self.labels = torch.as_tensor(list(labels), dtype=torch.long)
        self.classes = tuple(classes)
        self.layout = layout
        self.labels_file = labels_file
        self.data_config = dict(data_config)
        self.transform = transform
        self.checksum = folder_checksum(self.root, self.relative_paths, self.labels.tolist(),
                                        self.classes)

    @property
    def paths(self) -> list[Path]:
        return [self.root / p for p in self.relative_paths]

    @property
    def imagenet_order(self) -> bool:
        """True when the classes are exactly the 1000 ImageNet-1k wnids, so labels are the indices
        of timm's ImageNet-1k classifier heads."""
        return self.classes == imagenet_wnids()

    def __len__(self) -> int:
        return len(self.relative_paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path = self.root / self.relative_paths[index]
        return self.transform(read_rgb(path)), int(self.labels[index])

    def subset(self, indices) -> "ImageFolderSubset":
        return ImageFolderSubset(self, _as_indices(indices, len(self)))

    def __repr__(self) -> str:
        return (f"ImageFolderSet({str(self.root)!r}, layout={self.layout!r}, images={len(self)}, "
                f"classes={len(self.classes)}, input_size={self.data_config.get('input_size')}, "
                f"checksum={self.checksum[:12]})")


class ImageFolderSubset(Subset):
    """A view of some images of an :class:`ImageFolderSet`; ``checksum``, ``classes``,
    ``data_config`` are the parent's (as :meth:`vitphase_lib.data.ImageSet.subset` does),
    ``labels`` / ``relative_paths`` are those of the selected images."""

    def __init__(self, parent: ImageFolderSet, indices: list[int]):
        super().__init__(parent, indices)
        self.parent = parent

    checksum = property(lambda self: self.parent.checksum)
    classes = property(lambda self: self.parent.classes)
    data_config = property(lambda self: self.parent.data_config)
    imagenet_order = property(lambda self: self.parent.imagenet_order)
    root = property(lambda self: self.parent.root)

    @property
    def labels(self) -> torch.Tensor:
        return self.parent.labels[torch.as_tensor(self.indices, dtype=torch.long)]

    @property
    def relative_paths(self) -> tuple[str, ...]:
        return tuple(self.parent.relative_paths[i] for i in self.indices)

    def subset(self, indices) -> "ImageFolderSubset":
        chosen = _as_indices(indices, len(self))
        return ImageFolderSubset(self.parent, [self.indices[i] for i in chosen])


def _as_indices(indices, n: int) -> list[int]:
    array = np.asarray(indices.cpu() if isinstance(indices, torch.Tensor) else list(indices))
    if array.size == 0:
        return []
    if array.dtype == bool or not np.issubdtype(array.dtype, np.integer) or array.ndim != 1:
        raise TypeError(f"subset indices must be a 1-d sequence of ints, got dtype {array.dtype} "
                        f"and shape {array.shape}")
    if array.min() < -n or array.max() >= n:
        raise IndexError(f"subset index out of range for a set of {n} images "
                         f"(min {array.min()}, max {array.max()})")
    return [int(i) % n for i in array]


def read_rgb(path: Path):
    """The image at ``path`` as an RGB PIL image, fully decoded; clear errors for bad files."""
    from PIL import Image, UnidentifiedImageError
    if not path.is_file():
        raise DataNotFoundError(f"image {path} no longer exists (the folder changed after it "
                                "was indexed); load the folder again.")
    try:
        with Image.open(path) as image:
            return image.convert("RGB")  # convert() decodes the whole file
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise CorruptImageError(f"cannot read image {path}: {type(error).__name__}: {error}. The "
                                "file is corrupt or not an image; remove or replace it, then load "
                                "the folder again.") from error


def folder_checksum(root: Path, relative_paths: Sequence[str], labels: Sequence[int],
                    classes: Sequence[str]) -> str:
    """sha256 over the classes and, per image, its relative path, file size and label (cheap: no
    image bytes are read). Independent of where ``root`` lives and of the model."""
    digest = hashlib.sha256()
    digest.update(("\x1f".join(classes) + "\n").encode())
    for rel, label in zip(relative_paths, labels):
        size = os.stat(root / rel).st_size
        digest.update(f"{rel}\x00{size}\x00{label}\n".encode())
    return digest.hexdigest()


# --------------------------------------------------------------------------- preprocessing
def timm_data_config(model) -> dict:
    """The evaluation data config of a timm model (a module, a :class:`LoadedModel`, or an
    already-resolved config dict with ``input_size``, ``mean``, ``std``...)."""
    from timm.data import resolve_model_data_config
    if isinstance(model, Mapping):
        config = dict(model)
        missing = [k for k in ("input_size", "mean", "std") if k not in config]
        if missing:
            raise ValueError(f"data config {config} lacks {missing}; pass a timm model or the "
                             "output of timm.data.resolve_model_data_config(model)")
        return config
    module = getattr(model, "model", model)  # LoadedModel -> its nn.Module
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"model must be a timm model, a LoadedModel or a data config dict, "
                        f"got {type(model).__name__}")
    if getattr(module, "pretrained_cfg", None) is None and getattr(module, "default_cfg", None) is None:
        raise ValueError(f"{type(module).__name__} carries no timm pretrained_cfg, so its input "
                         "size and normalisation are unknown; ImageNet-style folders are for "
                         "timm models (the zoo models read Fashion-MNIST).")
    return dict(resolve_model_data_config(module))


def timm_transform(data_config: dict):
    from timm.data import create_transform
    return create_transform(**data_config, is_training=False)


def imagenet_wnids() -> tuple[str, ...]:
    """The 1000 ImageNet-1k wnids in timm's class order (= sorted order); ``()`` if unavailable."""
    global _IMAGENET_WNIDS
    if _IMAGENET_WNIDS is None:
        try:
            from timm.data import ImageNetInfo
            _IMAGENET_WNIDS = tuple(ImageNetInfo("imagenet-1k").label_names())
        except Exception:  # older timm without the class-info files
            _IMAGENET_WNIDS = ()
    return _IMAGENET_WNIDS


_IMAGENET_WNIDS: tuple[str, ...] | None = None


def _class_order(names) -> list[str]:
    """Sorted class names; for the 1000 ImageNet wnids that is timm's order (asserted)."""
    ordered = sorted(names)
    reference = imagenet_wnids()
    if reference and set(ordered) == set(reference) and tuple(ordered) != reference:
        raise RuntimeError("timm's ImageNet-1k class order is not the sorted wnid order; "
                           "labels would not match the classifier head")
    return ordered


# --------------------------------------------------------------------------- discovery
def _is_image(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def _images_below(folder: Path) -> list[str]:
    """Image files anywhere below ``folder``, as sorted posix paths relative to it."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        base = Path(dirpath).relative_to(folder)
        found += [(base / f).as_posix() for f in filenames if _is_image(f)]
    return sorted(found)


def _find_labels_file(root: Path, labels_file) -> Path | None:
    if labels_file is not None:
        given = Path(labels_file)
        for candidate in (given, root / given):
            if candidate.is_file():
                return candidate
        raise DataNotFoundError(f"labels file {given} does not exist (looked at {given} and "
                                f"{root / given}).")
    for name in LABELS_FILENAMES:
        if (root / name).is_file():
            return root / name
    return None


def _scan_subfolders(root: Path) -> tuple[list[str], list[int], list[str]]:
    class_dirs = [d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")]
    classes = _class_order(class_dirs)
    paths, labels = [], []
    for label, name in enumerate(classes):
        for rel in _images_below(root / name):
            paths.append(f"{name}/{rel}")
            labels.append(label)
    return paths, labels, classes


def _parse_labels_file(root: Path, labels_path: Path) -> tuple[list[str], list[int], list[str]]:
    where = f"labels file {labels_path}"
    entries: list[tuple[int, str, str]] = []  # (line number, relative path, raw label)
    lines = labels_path.read_text(encoding="utf-8-sig").splitlines()
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = [f.strip() for f in line.split(",")] if "," in line else line.split()
        if len(fields) != 2 or not all(fields):
            raise MalformedLabelsError(
                f"{where}, line {number}: {raw!r} is malformed; expected 'filename label' or "
                "'filename,label' (label = class index or wnid; use the comma form for file "
                "names with spaces). If the folder uses class subfolders instead, pass "
                "layout='subfolders'.")
        name, label = fields
        if not entries and not _looks_like_data(name, label):
            continue  # a header such as 'filename,label'
        entries.append((number, name, label))
    if not entries:
        raise DataNotFoundError(f"{where} lists no images. " + _LAYOUT_HELP)

    is_int = [bool(_INT.fullmatch(label)) for _, _, label in entries]
    if any(is_int) and not all(is_int):
        number, _, label = entries[is_int.index(not is_int[0])]
        raise MalformedLabelsError(f"{where}, line {number}: label {label!r} mixes with the "
                                   "file's other labels; use class indices or class names "
                                   "(wnids) throughout, not both.")
    if all(is_int):
        labels = [int(label) for _, _, label in entries]
        for (number, _, label), value in zip(entries, labels):
            if value < 0:
                raise MalformedLabelsError(f"{where}, line {number}: negative label {label!r}")
        classes = [str(i) for i in range(max(labels) + 1)]
    else:
        classes = _class_order({label for _, _, label in entries})
        index = {name: i for i, name in enumerate(classes)}
        labels = [index[label] for _, _, label in entries]

    seen: dict[str, int] = {}
    paths = []
    for number, name, _ in entries:
        rel = Path(name).as_posix()
        if not _is_image(Path(rel).name):
            raise MalformedLabelsError(f"{where}, line {number}: {name!r} is not an image file "
                                       f"name (extensions {', '.join(IMAGE_EXTENSIONS)}).")
        if rel in seen:
            raise MalformedLabelsError(f"{where}, line {number}: {name!r} is already listed on "
                                       f"line {seen[rel]}.")
        seen[rel] = number
        if not (root / rel).is_file():
            raise DataNotFoundError(f"{where}, line {number}: image {name!r} is listed but "
                                    f"{root / rel} does not exist.")
        paths.append(rel)
    order = sorted(range(len(paths)), key=paths.__getitem__)
    return [paths[i] for i in order], [labels[i] for i in order], classes


def _looks_like_data(name: str, label: str) -> bool:
    """False when the first line looks like a header: no image file name, label neither an index
    nor a wnid."""
    return _is_image(Path(name).name) or bool(_INT.fullmatch(label) or _WNID.fullmatch(label))


def load_image_folder(root: str | Path, model, n_max: int | None = None, *,
                      labels_file: str | Path | None = None,
                      layout: str = "auto") -> ImageFolderSet:
    """An ImageNet-style folder as a Dataset of ``(image, label)``, preprocessed for ``model``.

    ``model``: a timm model (or :class:`~vitphase_lib.loading.LoadedModel`, or a resolved timm
    data config dict); its data config sets the input size, crop and normalisation.
    ``n_max``: keep at most this many images, evenly spaced over the sorted list (so every class
    stays represented); deterministic. ``labels_file``: the labels of a flat folder (default:
    ``root/labels.txt`` or ``root/val_labels.csv``). ``layout``: ``'auto'`` (a labels file means
    flat, else class subfolders), ``'subfolders'`` or ``'flat'``.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, not {layout!r}")
    if n_max is not None and (not isinstance(n_max, (int, np.integer)) or isinstance(n_max, bool)
                              or n_max < 1):
        raise TypeError(f"n_max must be a positive int or None, got {n_max!r}")
    root = check_folder_exists(root)
    data_config = timm_data_config(model)

    labels_path = None if layout == "subfolders" else _find_labels_file(root, labels_file)
    if labels_path is not None:
        chosen = "flat"
        paths, labels, classes = _parse_labels_file(root, labels_path)
    else:
        paths, labels, classes = ([], [], []) if layout == "flat" else _scan_subfolders(root)
        chosen = "subfolders"
        if not paths:
            loose = [f.name for f in root.iterdir() if f.is_file() and _is_image(f.name)]
            if loose or layout == "flat":
                raise DataNotFoundError(
                    f"{root} looks like a flat folder ({len(loose)} images directly in it, no "
                    "class subfolders with images) but has no labels file: looked for "
                    f"{', '.join(str(root / n) for n in LABELS_FILENAMES)}. Add one, pass "
                    "labels_file=..., or sort the images into class subfolders.\n" + _LAYOUT_HELP)
            raise DataNotFoundError(f"no images found in {root} (searched class subfolders "
                                    f"{sorted(classes)[:5]}{'...' if len(classes) > 5 else ''}).\n"
                                    + _LAYOUT_HELP)
    if n_max is not None and n_max < len(paths):
        keep = (np.arange(n_max) * len(paths)) // n_max
        paths = [paths[i] for i in keep]
        labels = [labels[i] for i in keep]
    images = ImageFolderSet(root, paths, labels, classes, chosen, data_config,
                            timm_transform(data_config), labels_file=labels_path)
    _report_conversions(images)
    return images


def check_folder_exists(root: str | Path) -> Path:
    """``root`` as a path, when it is a folder; otherwise a :class:`DataNotFoundError` that
    explains the layouts.

    Args:
        root: the image folder's path (``~`` is expanded).
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        what = "is a file, not a folder" if root.exists() else "does not exist"
        raise DataNotFoundError(f"image folder {root} {what}.\n" + _LAYOUT_HELP)
    return root


def count_non_rgb(root: Path, relative_paths: Sequence[str]) -> Counter:
    """How many images of each mode other than RGB (``L``, ``RGBA``, ``CMYK``, ``P``...) are
    among ``relative_paths``, read from the files' headers without decoding them. Files that
    cannot be opened are not counted: reading them later raises an error naming them.

    Args:
        root: the folder.
        relative_paths: the images, relative to ``root``.
    """
    from PIL import Image
    modes: Counter = Counter()
    for rel in relative_paths:
        try:
            with Image.open(root / rel) as image:
                if image.mode != "RGB":
                    modes[image.mode] += 1
        except Exception:  # corrupt files are reported where they are read
            continue
    return modes


_REPORTED_FOLDERS: set[str] = set()  # checksums of the folders whose conversions were logged


def _report_conversions(images: ImageFolderSet) -> None:
    """Log once per folder (its checksum) and process how many images are converted to RGB."""
    if images.checksum in _REPORTED_FOLDERS:
        return
    _REPORTED_FOLDERS.add(images.checksum)
    modes = count_non_rgb(images.root, images.relative_paths)
    if modes:
        found = ", ".join(f"{mode}: {n}" for mode, n in sorted(modes.items()))
        log.warning("%d of %d images in %s are not RGB (%s); they are converted to RGB "
                    "(grayscale copied to the three channels, alpha dropped)",
                    sum(modes.values()), len(images), images.root, found)


# --------------------------------------------------------------------------- fake folders
def make_fake_imagenet_folder(root: str | Path, n_classes: int = 4, per_class: int = 3,
                              size: int = 64, layout: str = "subfolders", seed: int = 0,
                              label_style: str = "wnid") -> Path:
    """Write a small random ImageNet-style folder (JPEGs) for tests; returns ``root``.

    Classes are wnid-like ``n00000000``, ``n00000001``... Each class has its own mean colour
    (plus noise), so a probe can tell them apart. Images are ``size`` px on their short side with
    random aspect ratios. ``layout='subfolders'``: ``root/<wnid>/<wnid>_<k>.JPEG``;
    ``layout='flat'``: ``root/ILSVRC2012_val_<k>.JPEG`` in shuffled class order plus
    ``root/labels.txt`` (``filename wnid``, or ``filename index`` with ``label_style='index'``).
    """
    from PIL import Image
    if layout not in ("subfolders", "flat"):
        raise ValueError(f"layout must be 'subfolders' or 'flat', not {layout!r}")
    if label_style not in ("wnid", "index"):
        raise ValueError(f"label_style must be 'wnid' or 'index', not {label_style!r}")
    root = Path(root)
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(f"{root} is not empty; give a new folder for the fake image set")
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    wnids = [f"n{i:08d}" for i in range(n_classes)]
    colours = rng.integers(30, 226, (n_classes, 3))
    classes = np.repeat(np.arange(n_classes), per_class)
    if layout == "flat":
        classes = rng.permutation(classes)
    lines = []
    for k, c in enumerate(classes):
        long_side = size + int(rng.integers(0, size // 2 + 1))
        shape = (size, long_side) if rng.random() < 0.5 else (long_side, size)
        pixels = np.clip(colours[c] + rng.normal(0, 25, (*shape, 3)), 0, 255).astype(np.uint8)
        if layout == "subfolders":
            path = root / wnids[c] / f"{wnids[c]}_{k % per_class}.JPEG"
            path.parent.mkdir(exist_ok=True)
        else:
            path = root / f"ILSVRC2012_val_{k + 1:08d}.JPEG"
            lines.append(f"{path.name} {wnids[c] if label_style == 'wnid' else int(c)}")
        Image.fromarray(pixels).save(path, quality=90)
    if layout == "flat":
        (root / "labels.txt").write_text("\n".join(lines) + "\n")
    return root
