"""ImageNet-style folders: both layouts, timm preprocessing, order, checksum, subsets, errors."""
from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vitphase_lib.data import DataNotFoundError
from vitphase_lib.imagefolder import (LABELS_FILENAMES, ImageFolderSet, MalformedLabelsError,
                                      load_image_folder, make_fake_imagenet_folder)


@pytest.fixture(scope="module")
def timm_models():
    import timm
    created = {}

    def get(name):
        if name not in created:
            torch.manual_seed(0)
            created[name] = timm.create_model(name, pretrained=False).eval()
        return created[name]
    return get


@pytest.fixture(scope="module")
def vit_s(timm_models):
    return timm_models("vit_small_patch16_224")


def png(path: Path, colour=(10, 128, 250), size=(40, 30), mode="RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, colour if mode == "RGB" else colour[0]).save(path)
    return path


def read_labels_txt(root: Path) -> dict[str, str]:
    return dict(line.split() for line in (root / "labels.txt").read_text().splitlines())


# --------------------------------------------------------------------------- layouts
def test_subfolder_layout_labels_classes_and_shapes(tmp_path, vit_s):
    root = make_fake_imagenet_folder(tmp_path / "val", n_classes=4, per_class=3)
    ds = load_image_folder(root, vit_s)
    assert isinstance(ds, ImageFolderSet) and ds.layout == "subfolders"
    assert len(ds) == 12
    assert ds.classes == ("n00000000", "n00000001", "n00000002", "n00000003")
    assert ds.labels.dtype == torch.long
    assert ds.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    for rel, label in zip(ds.relative_paths, ds.labels.tolist()):
        assert rel.split("/")[0] == ds.classes[label]
    image, label = ds[4]
    assert image.shape == (3, 224, 224) and image.dtype == torch.float32
    assert isinstance(label, int) and label == 1


@pytest.mark.parametrize("label_style", ["wnid", "index"])
def test_flat_layout_with_labels_txt(tmp_path, vit_s, label_style):
    root = make_fake_imagenet_folder(tmp_path / "val", n_classes=3, per_class=4, layout="flat",
                                     label_style=label_style, seed=3)
    listed = read_labels_txt(root)
    ds = load_image_folder(root, vit_s)
    assert ds.layout == "flat" and ds.labels_file == root / "labels.txt"
    assert len(ds) == 12
    assert list(ds.relative_paths) == sorted(listed)
    expected_classes = (("n00000000", "n00000001", "n00000002") if label_style == "wnid"
                        else ("0", "1", "2"))
    assert ds.classes == expected_classes
    for rel, label in zip(ds.relative_paths, ds.labels.tolist()):
        assert ds.classes[label] == listed[rel]
    assert len(set(ds.labels.tolist())) == 3
    assert ds.labels.tolist() != sorted(ds.labels.tolist())  # file names do not follow classes
    assert ds[0][0].shape == (3, 224, 224)


def test_flat_layout_csv_with_header_comments_and_labels_file_argument(tmp_path, vit_s):
    root = tmp_path / "flat"
    for name in ("b.jpg", "a.PNG", "c.jpeg"):
        png(root / name)
    (root / "val_labels.csv").write_text(
        "filename,label\n# a comment\n\nc.jpeg, n00000007\nb.jpg,n00000002\na.PNG,n00000007\n")
    ds = load_image_folder(root, vit_s)
    assert ds.labels_file == root / "val_labels.csv"
    assert ds.relative_paths == ("a.PNG", "b.jpg", "c.jpeg")
    assert ds.classes == ("n00000002", "n00000007")
    assert ds.labels.tolist() == [1, 0, 1]
    # the same images labelled by a file elsewhere, given explicitly (and with integer labels)
    other = tmp_path / "mine.txt"
    other.write_text("a.PNG 5\nc.jpeg 0\n")
    ds2 = load_image_folder(root, vit_s, labels_file=other)
    assert ds2.relative_paths == ("a.PNG", "c.jpeg") and ds2.labels.tolist() == [5, 0]
    assert ds2.classes == tuple(str(i) for i in range(6))


def test_images_are_converted_to_rgb_and_hidden_files_ignored(tmp_path, vit_s):
    root = tmp_path / "val"
    png(root / "n1" / "grey.png", mode="L")
    png(root / "n1" / "rgba.png", colour=(1, 2, 3, 4), mode="RGBA")
    png(root / "n1" / "palette.png", mode="P")
    (root / "n1" / "._grey.png").write_bytes(b"AppleDouble junk")
    (root / "n1" / "notes.txt").write_text("not an image")
    (root / ".hidden").mkdir()
    png(root / ".hidden" / "x.png")
    ds = load_image_folder(root, vit_s)
    assert ds.classes == ("n1",)
    assert ds.relative_paths == ("n1/grey.png", "n1/palette.png", "n1/rgba.png")
    for image, _ in ds:
        assert image.shape == (3, 224, 224)


def test_conversions_to_rgb_are_counted_and_logged_once(tmp_path, vit_s, caplog):
    root = tmp_path / "val"
    for k in range(3):
        png(root / "n1" / f"rgb{k}.png")
    png(root / "n1" / "grey.png", mode="L")
    png(root / "n2" / "grey.png", mode="L")
    png(root / "n2" / "rgba.png", colour=(1, 2, 3, 4), mode="RGBA")
    with caplog.at_level("WARNING", logger="vitphase_lib.imagefolder"):
        load_image_folder(root, vit_s)
        load_image_folder(root, vit_s)  # the same folder again (another model of the run)
    said = [r.getMessage() for r in caplog.records if "not RGB" in r.getMessage()]
    assert len(said) == 1
    assert said[0].startswith(f"3 of 6 images in {root} are not RGB (L: 2, RGBA: 1)")
    caplog.clear()
    rgb_only = make_fake_imagenet_folder(tmp_path / "rgb", n_classes=2, per_class=2)
    with caplog.at_level("WARNING", logger="vitphase_lib.imagefolder"):
        load_image_folder(rgb_only, vit_s)
    assert not caplog.records  # nothing converted, nothing said


# --------------------------------------------------------------------------- preprocessing
@pytest.mark.parametrize("name", ["vit_small_patch16_224", "vit_tiny_patch16_384",
                                  "deit_tiny_patch16_224"])
def test_preprocessing_follows_the_models_timm_config(tmp_path, timm_models, name):
    from timm.data import create_transform, resolve_model_data_config
    model = timm_models(name)
    config = resolve_model_data_config(model)
    colour = (10, 128, 250)
    root = tmp_path / "val"
    png(root / "n0" / "uniform.png", colour=colour, size=(500, 375))
    png(root / "n0" / "tall.png", colour=(200, 30, 60), size=(50, 90))
    ds = load_image_folder(root, model)
    mean, std = model.pretrained_cfg["mean"], model.pretrained_cfg["std"]
    assert ds.data_config["input_size"] == config["input_size"]
    assert tuple(ds.data_config["mean"]) == tuple(mean) and tuple(ds.data_config["std"]) == tuple(std)
    image, _ = ds[ds.relative_paths.index("n0/uniform.png")]
    assert tuple(image.shape) == tuple(config["input_size"])
    expected = (torch.tensor(colour) / 255 - torch.tensor(mean)) / torch.tensor(std)
    torch.testing.assert_close(image.mean(dim=(1, 2)), expected, atol=1e-4, rtol=0)
    assert image.std(dim=(1, 2)).max() < 1e-3
    reference = create_transform(**config, is_training=False)(
        Image.open(root / "n0" / "tall.png").convert("RGB"))
    torch.testing.assert_close(ds[ds.relative_paths.index("n0/tall.png")][0], reference)


def test_model_can_be_a_loaded_model_or_a_data_config(tmp_path, vit_s):
    from timm.data import resolve_model_data_config
    from vitphase_lib.loading import LoadedModel
    root = make_fake_imagenet_folder(tmp_path / "val", n_classes=2, per_class=1)
    loaded = LoadedModel("vit_small_patch16_224", vit_s, "random-init-seed-0", "test", "timm")
    config = dict(resolve_model_data_config(vit_s), input_size=(3, 96, 96))
    assert load_image_folder(root, loaded).data_config == resolve_model_data_config(vit_s)
    assert load_image_folder(root, config)[0][0].shape == (3, 96, 96)
    with pytest.raises(ValueError, match="lacks"):
        load_image_folder(root, {"input_size": (3, 96, 96)})


def test_a_model_without_timm_config_is_refused(tmp_path):
    from vitphase_lib.models import ALL_MINI_CONFIGS, build_mini_vit
    root = make_fake_imagenet_folder(tmp_path / "val", n_classes=2, per_class=1)
    zoo_model = build_mini_vit(next(iter(ALL_MINI_CONFIGS.values())))
    with pytest.raises(ValueError, match="no timm pretrained_cfg"):
        load_image_folder(root, zoo_model)
    with pytest.raises(TypeError, match="timm model"):
        load_image_folder(root, "vit_small_patch16_224")


# --------------------------------------------------------------------------- ImageNet order
def test_the_1000_imagenet_wnids_get_timms_class_indices(tmp_path, vit_s):
    from timm.data import ImageNetInfo
    reference = ImageNetInfo("imagenet-1k").label_names()
    root = tmp_path / "val"
    rng = np.random.default_rng(0)
    for wnid in rng.permutation(reference):  # creation order must not matter
        (root / wnid).mkdir(parents=True)
    for wnid in ("n15075141", "n01440764", "n01530575"):
        png(root / wnid / "x.JPEG")
    ds = load_image_folder(root, vit_s)
    assert ds.classes == tuple(reference) and ds.imagenet_order
    by_class = {rel.split("/")[0]: label for rel, label in zip(ds.relative_paths, ds.labels.tolist())}
    assert by_class == {"n01440764": 0, "n01530575": 10, "n15075141": 999}
    assert ImageNetInfo("imagenet-1k").index_to_description(by_class["n01440764"]) == "tench, Tinca tinca"
    # some ImageNet classes only: indexed by their own sorted list, flagged as not head indices
    partial = load_image_folder(make_fake_imagenet_folder(tmp_path / "p", 2, 1), vit_s)
    assert not partial.imagenet_order


# --------------------------------------------------------------------------- order, checksum, n_max
def test_order_is_sorted_and_deterministic(tmp_path, vit_s):
    root = tmp_path / "val"
    for cls, name in [("n2", "b.jpg"), ("n1", "z.png"), ("n2", "a.JPEG"), ("n1", "sub/c.jpg"),
                      ("n1", "a.jpeg")]:
        png(root / cls / name)
    ds = load_image_folder(root, vit_s)
    assert ds.relative_paths == ("n1/a.jpeg", "n1/sub/c.jpg", "n1/z.png", "n2/a.JPEG", "n2/b.jpg")
    assert ds.labels.tolist() == [0, 0, 0, 1, 1]
    again = load_image_folder(root, vit_s)
    assert again.relative_paths == ds.relative_paths and again.checksum == ds.checksum


def test_checksum_is_stable_and_tracks_the_files(tmp_path, vit_s):
    root = make_fake_imagenet_folder(tmp_path / "val", n_classes=3, per_class=2)
    first = load_image_folder(root, vit_s).checksum
    assert len(first) == 64 and int(first, 16) >= 0
    copy = shutil.copytree(root, tmp_path / "elsewhere")
    assert load_image_folder(copy, vit_s).checksum == first  # location does not matter
    png(root / "n00000001" / "extra.JPEG")
    added = load_image_folder(root, vit_s).checksum
    assert added != first
    (root / "n00000001" / "extra.JPEG").unlink()
    assert load_image_folder(root, vit_s).checksum == first
    (root / "n00000000" / "n00000000_0.JPEG").write_bytes(
        (copy / "n00000000" / "n00000000_0.JPEG").read_bytes() + b"\0")  # size changed
    assert load_image_folder(root, vit_s).checksum != first


def test_checksum_tracks_flat_labels(tmp_path, vit_s):
    root = make_fake_imagenet_folder(tmp_path / "val", n_classes=2, per_class=2, layout="flat")
    first = load_image_folder(root, vit_s).checksum
    lines = (root / "labels.txt").read_text().splitlines()
    name, wnid = lines[0].split()
    other = "n00000001" if wnid == "n00000000" else "n00000000"
    (root / "labels.txt").write_text("\n".join([f"{name} {other}"] + lines[1:]))
    assert load_image_folder(root, vit_s).checksum != first


def test_n_max_keeps_an_even_deterministic_spread(tmp_path, vit_s):
    root = make_fake_imagenet_folder(tmp_path / "val", n_classes=4, per_class=3)
    full = load_image_folder(root, vit_s)
    capped = load_image_folder(root, vit_s, n_max=5)
    assert len(capped) == 5
    assert set(capped.relative_paths) <= set(full.relative_paths)
    assert list(capped.relative_paths) == sorted(capped.relative_paths, key=full.relative_paths.index)
    assert set(capped.labels.tolist()) == {0, 1, 2, 3}
    assert load_image_folder(root, vit_s, n_max=5).relative_paths == capped.relative_paths
    assert capped.checksum != full.checksum
    assert load_image_folder(root, vit_s, n_max=100).relative_paths == full.relative_paths
    for bad in (0, -1, 2.5, True):
        with pytest.raises(TypeError, match="n_max"):
            load_image_folder(root, vit_s, n_max=bad)


# --------------------------------------------------------------------------- subsets, loaders
def test_subset_is_a_view_keeping_checksum_and_classes(tmp_path, vit_s):
    root = make_fake_imagenet_folder(tmp_path / "val", n_classes=4, per_class=3)
    ds = load_image_folder(root, vit_s)
    for indices in ([0, 5, 11], np.array([0, 5, 11]), torch.tensor([0, 5, 11])):
        sub = ds.subset(indices)
        assert isinstance(sub, torch.utils.data.Dataset) and len(sub) == 3
        assert sub.checksum == ds.checksum and sub.classes == ds.classes
        assert sub.labels.tolist() == [0, 1, 3]
        assert sub.relative_paths == tuple(ds.relative_paths[i] for i in (0, 5, 11))
    torch.testing.assert_close(sub[1][0], ds[5][0])
    assert sub[2][1] == 3
    nested = sub.subset([2, 0])
    assert nested.labels.tolist() == [3, 0] and nested.checksum == ds.checksum
    assert nested.relative_paths == (ds.relative_paths[11], ds.relative_paths[0])
    assert len(ds.subset([])) == 0
    with pytest.raises(IndexError, match="out of range"):
        ds.subset([0, 12])
    with pytest.raises(TypeError, match="ints"):
        ds.subset([0.5])


def test_dataloader_batches_and_pickling(tmp_path, vit_s):
    root = make_fake_imagenet_folder(tmp_path / "val", n_classes=2, per_class=3)
    ds = load_image_folder(root, vit_s)
    images, labels = next(iter(torch.utils.data.DataLoader(ds.subset(range(1, 5)), batch_size=4)))
    assert images.shape == (4, 3, 224, 224) and labels.tolist() == [0, 0, 1, 1]
    clone = pickle.loads(pickle.dumps(ds))  # DataLoader workers pickle the set
    assert clone.checksum == ds.checksum
    torch.testing.assert_close(clone[3][0], ds[3][0])


def test_make_fake_imagenet_folder(tmp_path):
    root = make_fake_imagenet_folder(tmp_path / "f", n_classes=3, per_class=2, size=48, seed=1)
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.JPEG"))
    assert files == [f"n0000000{c}/n0000000{c}_{k}.JPEG" for c in range(3) for k in range(2)]
    sizes = [Image.open(root / f).size for f in files]
    assert all(min(s) == 48 for s in sizes)
    means = [np.asarray(Image.open(root / f)).mean(axis=(0, 1)) for f in files]
    assert np.abs(means[0] - means[1]).max() < 15 < np.abs(means[0] - means[2]).max()
    again = make_fake_imagenet_folder(tmp_path / "g", n_classes=3, per_class=2, size=48, seed=1)
    assert all((again / f).read_bytes() == (root / f).read_bytes() for f in files)
    with pytest.raises(FileExistsError, match="not empty"):
        make_fake_imagenet_folder(root)
    with pytest.raises(ValueError, match="layout"):
        make_fake_imagenet_folder(tmp_path / "h", layout="nested")


# --------------------------------------------------------------------------- errors
def test_missing_root_explains_the_layouts(tmp_path, vit_s):
    with pytest.raises(DataNotFoundError, match="does not exist") as info:
        load_image_folder(tmp_path / "nowhere", vit_s)
    message = str(info.value)
    assert "class subfolders" in message and "labels.txt" in message and "nowhere" in message
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataNotFoundError, match="is a file"):
        load_image_folder(tmp_path / "file", vit_s)


@pytest.mark.parametrize("content", ["empty", "empty_classes", "non_images"])
def test_no_images(tmp_path, vit_s, content):
    root = tmp_path / "val"
    root.mkdir()
    if content == "empty_classes":
        (root / "n1").mkdir()
        (root / "n2").mkdir()
    elif content == "non_images":
        (root / "n1").mkdir()
        (root / "n1" / "a.txt").write_text("x")
        (root / "b.gif").write_bytes(b"GIF89a")
    with pytest.raises(DataNotFoundError, match="no images found"):
        load_image_folder(root, vit_s)


def test_flat_folder_without_labels_file_lists_the_names_looked_for(tmp_path, vit_s):
    root = tmp_path / "val"
    png(root / "ILSVRC2012_val_00000001.JPEG")
    with pytest.raises(DataNotFoundError, match="no labels file") as info:
        load_image_folder(root, vit_s)
    for name in LABELS_FILENAMES:
        assert str(root / name) in str(info.value)
    with pytest.raises(DataNotFoundError, match="missing.txt does not exist"):
        load_image_folder(root, vit_s, labels_file="missing.txt")
    with pytest.raises(DataNotFoundError, match="no labels file"):
        load_image_folder(make_fake_imagenet_folder(tmp_path / "s", 2, 1), vit_s, layout="flat")
    with pytest.raises(ValueError, match="layout must be"):
        load_image_folder(root, vit_s, layout="nested")


@pytest.mark.parametrize("lines, line_number, match", [
    (["a.jpg 0", "b.jpg 1", "c.jpg"], 3, "malformed"),
    (["a.jpg 0", "b.jpg 1 2"], 2, "malformed"),
    (["a.jpg,0", "b.jpg,"], 2, "malformed"),
    (["a.jpg 0", "b.jpg n00000001"], 2, "mixes"),
    (["a.jpg 0", "b.jpg -1"], 2, "negative"),
    (["a.jpg 0", "", "a.jpg 1"], 3, "already listed on line 1"),
    (["a.jpg 0", "notes.txt 1"], 2, "not an image"),
])
def test_malformed_labels_line_names_file_and_line(tmp_path, vit_s, lines, line_number, match):
    root = tmp_path / "val"
    png(root / "a.jpg")
    png(root / "b.jpg")
    (root / "labels.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(MalformedLabelsError, match=match) as info:
        load_image_folder(root, vit_s)
    assert f"line {line_number}" in str(info.value) and str(root / "labels.txt") in str(info.value)
    assert isinstance(info.value, DataNotFoundError) and isinstance(info.value, ValueError)


def test_empty_labels_file(tmp_path, vit_s):
    root = tmp_path / "val"
    png(root / "a.jpg")
    (root / "labels.txt").write_text("# nothing yet\n\n")
    with pytest.raises(DataNotFoundError, match="lists no images"):
        load_image_folder(root, vit_s)


def test_image_listed_but_missing(tmp_path, vit_s):
    root = tmp_path / "val"
    png(root / "a.jpg")
    (root / "labels.txt").write_text("a.jpg n1\nghost.JPEG n2\n")
    with pytest.raises(DataNotFoundError, match=r"line 2: image 'ghost.JPEG' is listed") as info:
        load_image_folder(root, vit_s)
    assert str(root / "ghost.JPEG") in str(info.value)


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_image_fails_at_load_time_with_its_path(tmp_path, vit_s, damage):
    root = make_fake_imagenet_folder(tmp_path / "val", n_classes=2, per_class=2, size=128)
    bad = root / "n00000001" / "n00000001_0.JPEG"
    data = bad.read_bytes()
    bad.write_bytes(b"this is not a jpeg" if damage == "garbage" else data[: len(data) // 2])
    ds = load_image_folder(root, vit_s)  # indexing reads no image bytes
    index = ds.relative_paths.index("n00000001/n00000001_0.JPEG")
    assert ds[0][0].shape == (3, 224, 224)  # the good images still load
    with pytest.raises(ValueError, match="remove or replace") as info:
        ds[index]
    assert str(bad) in str(info.value)
    bad.unlink()
    with pytest.raises(DataNotFoundError, match="no longer exists"):
        ds[index]
