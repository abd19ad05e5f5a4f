"""The paper profile end to end, on CPU: the chapters executed by papermill with randomly
initialised real-size timm ViTs over a generated ImageNet-style folder of JPEGs: ViT-S/16 and
ViT-B/16, and token layouts other than [CLS] + patches (DeiT-distilled: [CLS] and a distillation
token; registers without [CLS]; global pooling without [CLS], at 240 px), all five in one build of
the book (each chapter's kernel, imports and data are paid once, not once per group of models).
ViT-L/16 differs from ViT-B/16 in size only; its trace is checked in test_capture.py, and a
book on it would cost CI two minutes of forward passes."""
from __future__ import annotations

import json

import nbformat
import pytest

from vitphase_lib.imagefolder import make_fake_imagenet_folder
from vitphase_lib.pipeline import build_book, notebook_sources, numbered_labels
from vitphase_lib.study import Study

pytestmark = [pytest.mark.slow, pytest.mark.paper_profile]

PAPER_VITS = ["vit_small_patch16_224", "vit_base_patch16_224"]
OTHER_LAYOUTS = ["deit_tiny_distilled_patch16_224", "vit_little_patch16_reg4_gap_256",
                 "vit_medium_patch16_gap_240"]
# (prefix tokens, has [CLS]) of each: what the capture must find
LAYOUTS = {"vit_small_patch16_224": (1, True), "vit_base_patch16_224": (1, True),
           "deit_tiny_distilled_patch16_224": (2, True),
           "vit_little_patch16_reg4_gap_256": (4, False), "vit_medium_patch16_gap_240": (0, False)}
# small enough for CI on 2 cores; the profile's own values are for a GPU
SETTINGS = {"pretrained": False, "device": "cpu", "dtype": "float32", "num_workers": 0,
            "n_images": 4, "n_probe_fit": 8, "n_probe_score": 4, "batch_size": 4,
            "pe_alphas": [0.0, 1.0], "infox_dims": 2, "aci_max_images": 2, "progress": False}


# The "Beyond the paper" chapters read the variant zoo, which the paper profile has not: each
# says so and shows nothing else. One of them runs here for that path; the others would only
# repeat it at a kernel's start-up cost each (their answers without variants: test_beyond.py).
VARIANT_CHAPTERS = [s.stem for s in notebook_sources() if "beyond.Context(" in s.read_text()]
CHAPTERS = [s for s in notebook_sources() if s.stem not in VARIANT_CHAPTERS[1:]]


def _build(tmp_path_factory, models: list[str]) -> tuple[Study, list]:
    root = tmp_path_factory.mktemp("paper")
    folder = make_fake_imagenet_folder(root / "val", n_classes=4, per_class=8)  # 32 JPEGs
    overrides = {**SETTINGS, "models": models, "dataset": str(folder)}
    build_book("paper", only=[s.stem for s in CHAPTERS], html=False, output_dir=root / "chapters",
               overrides=overrides)
    executed = [nbformat.read(root / "chapters" / f"{source.stem}.ipynb", as_version=4) for source in CHAPTERS]
    return Study.from_profile("paper", **overrides), executed


@pytest.fixture(scope="module")
def paper_book(tmp_path_factory):
    return _build(tmp_path_factory, PAPER_VITS + OTHER_LAYOUTS)


def _outputs(notebook) -> str:
    return "\n".join(json.dumps(cell.get("outputs", [])) for cell in notebook.cells)


def _check_tables(study: Study, names: list[str]) -> None:
    for name in names:
        model = study.model(name).model
        blocks = [str(i) for i in range(1, len(model.blocks) + 1)]
        layers = ["raw", "pe", *blocks, "head"]
        tables = study.analysis(name)  # a cache hit: what the chapters showed
        assert tables["per_layer"].layer.tolist() == layers, name
        assert {"centered_similarity", "raw_similarity", "mean_token_norm"} <= set(tables["per_layer"])
        assert tables["attention"].block.tolist() == list(range(1, len(blocks) + 1)), name
        assert {"cls_centrality", "cls_pagerank_share", "aci"} <= set(tables["attention"])
        assert tables["attention"].aci.between(0, 1).all(), name
        prefix, has_cls = LAYOUTS[name]
        summary = tables["summary"].iloc[0]
        assert (int(summary.num_prefix_tokens), bool(summary.has_cls)) == (prefix, has_cls), name
        # without [CLS] the CLS metrics are "not applicable" (NaN), never 0
        assert tables["attention"].cls_centrality.isna().all() == (not has_cls), name
        features = {"cls", "mean"} if has_cls else {"mean"}
        collapse = tables["collapse"]
        assert set(collapse.feature) == features, name
        assert {"nc1", "nc2", "nc3", "nc4"} <= set(collapse), name
        assert collapse.groupby("feature").layer.apply(list).map(lambda layers: layers[-1] == "head").all()
        assert tables["scrambling"].layer.tolist() == layers, name
        assert {"infox_self", "infox_all", "isi"} <= set(tables["scrambling"]), name
        assert set(tables["probes"].feature) == features and set(tables["probes"].layer) == set(layers)
        scaling = study.pe_scaling(name)
        assert sorted(scaling["top1"].alpha) == [0.0, 1.0], name


def test_every_chapter_runs_on_random_init_vit_s_and_b(paper_book):
    study, executed = paper_book
    assert len(VARIANT_CHAPTERS) == 6 and len(executed) == len(notebook_sources()) - 5
    for notebook in executed:  # papermill raised on any error; check nothing printed a traceback
        assert "Traceback" not in _outputs(notebook)
    beyond = executed[[s.stem for s in CHAPTERS].index(VARIANT_CHAPTERS[0])]
    assert "names no variants" in _outputs(beyond)
    # without variants, the chapter's figures and tables say why they are empty, so that the
    # HTML build still resolves every reference to them
    defined, referenced = numbered_labels(beyond)
    assert referenced and referenced <= defined
    _check_tables(study, PAPER_VITS)


def test_every_chapter_runs_on_distilled_register_and_global_pool_vits(paper_book):
    study, executed = paper_book
    _check_tables(study, OTHER_LAYOUTS)
    # the attention chapter says the CLS metrics do not apply to the models without [CLS]
    attention = next(nb for nb, source in zip(executed, CHAPTERS) if "attention" in source.stem)
    assert "not applicable" in _outputs(attention)
