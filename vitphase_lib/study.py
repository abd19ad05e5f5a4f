"""A study: one profile's parameters, validated, and the cached analyses every chapter reads.

Notebooks build a :class:`Study` from their ``parameters`` cell and ask it for tables; the study
loads models and data once, and every heavy result is cached on disk (``results.cached_tables``)
keyed by the model's weights, the data and the parameters, so chapters share one computation.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd
from torch.utils.data import Dataset

from .analysis import PassConfig, full_analysis_tables, pe_scaling_tables
from .data import analysis_splits, load_fashion_mnist
from .errors import ParameterError, ProfileNotFoundError
from .loading import (LoadedModel, load_model, meta_model, model_kind, resolve_model,
                      weights_fingerprint)
from .metrics.base import check_max_images
from .metrics.scrambling import ISI_THRESHOLDS
from .results import cached_tables, scratch_folder

PROFILES_DIR = Path(__file__).resolve().parent.parent / "profiles"
# the decoder budgets the ISI is re-measured under: a quarter, half and all of the study's principal
# components (infox_dims; twice as many cost six times the solves), and the ridge ("cv": the
# cross-validated one every other analysis uses, else fixed per sample; a fixed ridge shrinks the
# all decoder less than the self decoder's intercepts, so from about 1 on it gives the raw layer,
# which scrambles nothing, an ISI of its own)
RETENTION_DIM_FRACTIONS = (0.25, 0.5, 1.0)
RETENTION_RIDGES = ("cv", 1e-3, 1e-1)
# what the variant zoo's analyses may set apart from the main study's (how many images, which caps)
VARIANT_SETTINGS = ("n_images", "n_probe_fit", "n_probe_score", "batch_size", "aci_max_images",
                    "pca_max_images", "per_head", "head_aci_max_images", "infox_dims", "probe_max_dim")


@dataclass(frozen=True)
class Study:
    """The parameters shared by every chapter (the ``parameters`` cell of each notebook)."""

    profile: str = "default"
    models: tuple[str, ...] = ("mini-s", "mini-b", "mini-l")
    dataset: str | None = "fashion-mnist"  # 'fashion-mnist' or the path of an ImageNet-style folder
    data_root: str | None = None         # Fashion-MNIST folder (None: Debian package or download)
    n_images: int = 2000                 # images in the streaming analysis
    n_probe_fit: int = 4000              # images to fit probes and decoders on
    n_probe_score: int = 2000            # images to score them on
    batch_size: int = 250
    device: str = "cpu"
    dtype: str = "float32"
    num_workers: int = 0
    seed: int = 0
    pe_alphas: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0)
    checkpoints: dict = field(default_factory=dict)  # model of 'models' -> local weights file (or folder)
    pretrained: bool = True              # timm models: False = random initialisation (tests)
    aci_max_images: int | None = 512     # images entering the Attention Consensus Index (None: all)
    pca_max_images: int | None = 512     # images whose tokens give the InfoX principal components (None: all)
    per_head: bool = False               # CLS centrality and ACI of every head too (Attention chapter)
    head_aci_max_images: int | None = 128  # images entering every head's ACI (None: all)
    variants: tuple[str, ...] = ()       # variant zoo models (Models chapter's T1b, Beyond the paper)
    variant_settings: dict = field(default_factory=dict)  # the variants' analyses: fewer images, caps
    infox_dims: int = 16                 # principal components of tokens / targets in the InfoX decoders
    probe_max_dim: int | None = None     # PCA the probe features to this width first (None: never)
    probe_jobs: int = 1                  # probes fitted at a time on the host (-1: one per core)
    isi_thresholds: tuple[float, float] = ISI_THRESHOLDS  # ISI regimes: collapse below, chaotic above
    tradeoff_fraction: float = 0.95      # trade-off block: first to reach this share of the best probe
    refresh: bool = False                # recompute instead of loading cached tables
    progress: bool = True

    def __post_init__(self):
        # every parameter error is a ParameterError (also a TypeError / ValueError), which the
        # command prints as a message
        try:
            self._validate()
        except ParameterError:
            raise
        except (TypeError, ValueError) as error:
            raise ParameterError(str(error)) from error

    def _validate(self) -> None:
        check_max_images("parameter 'aci_max_images'", self.aci_max_images)
        check_max_images("parameter 'pca_max_images'", self.pca_max_images)
        check_max_images("parameter 'head_aci_max_images'", self.head_aci_max_images)
        self._validate_variants()
        self._validate_variant_settings()
        if self.probe_max_dim is not None and (not isinstance(self.probe_max_dim, int)
                                               or isinstance(self.probe_max_dim, bool)):
            raise TypeError(f"parameter 'probe_max_dim' must be an int or None, got {self.probe_max_dim!r}")
        if not isinstance(self.dataset, (str, type(None))):
            raise TypeError(f"parameter 'dataset' must be 'fashion-mnist' or a folder path, got {self.dataset!r}")
        expected = {"profile": str, "device": str, "dtype": str,
                    "n_images": int, "n_probe_fit": int, "n_probe_score": int, "batch_size": int,
                    "num_workers": int, "seed": int, "refresh": bool, "infox_dims": int,
                    "progress": bool, "pretrained": bool, "per_head": bool,
                    "checkpoints": dict, "probe_jobs": int}
        for name, kind in expected.items():
            value = getattr(self, name)
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                raise TypeError(f"parameter {name!r} must be {kind.__name__}, got "
                                f"{type(value).__name__} {value!r}")
        if (not isinstance(self.models, (list, tuple)) or not self.models
                or not all(isinstance(m, str) for m in self.models)):
            raise TypeError("parameter 'models' must be a list of model names, e.g. [mini-s, mini-b] "
                            f"or [vit_base_patch16_224]; got {self.models!r}")
        if len(set(self.models)) != len(self.models):
            raise ValueError(f"parameter 'models' names a model twice: {list(self.models)}")
        self._validate_checkpoints()
        if (not isinstance(self.pe_alphas, (list, tuple))
                or not all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in self.pe_alphas)):
            raise TypeError(f"parameter 'pe_alphas' must be a list of numbers, got {self.pe_alphas!r}")
        object.__setattr__(self, "models", tuple(self.models))
        object.__setattr__(self, "pe_alphas", tuple(float(a) for a in self.pe_alphas))
        thresholds = self.isi_thresholds
        if (not isinstance(thresholds, (list, tuple)) or len(thresholds) != 2
                or not all(isinstance(t, (int, float)) and not isinstance(t, bool) for t in thresholds)
                or not 0 <= thresholds[0] < thresholds[1]):
            raise TypeError("parameter 'isi_thresholds' must be two numbers 0 <= collapse < chaotic, "
                            f"e.g. {list(ISI_THRESHOLDS)}; got {thresholds!r}")
        object.__setattr__(self, "isi_thresholds", tuple(float(t) for t in thresholds))
        fraction = self.tradeoff_fraction
        if not isinstance(fraction, (int, float)) or isinstance(fraction, bool) or not 0 < fraction <= 1:
            raise TypeError(f"parameter 'tradeoff_fraction' must be a number in (0, 1], got {fraction!r}")
        self.pass_config  # validates batch_size / dtype / device

    def _validate_variants(self) -> None:
        from .loading import closest_names
        from .models import VARIANTS
        if not isinstance(self.variants, (list, tuple)) or not all(isinstance(v, str) for v in self.variants):
            raise TypeError(f"parameter 'variants' must be a list of variant zoo names, got {self.variants!r}")
        for name in self.variants:
            if name not in VARIANTS:
                close = closest_names(name, VARIANTS)
                raise ValueError(f"parameter 'variants': {name!r} is not a variant of the zoo"
                                 + (f"; did you mean {', '.join(close)}?" if close else
                                    f" ({', '.join(VARIANTS)})"))
        scales = {"tiny" if VARIANTS[name].base.startswith("tiny") else "mini" for name in self.variants}
        if len(scales) > 1:
            raise ValueError("parameter 'variants' mixes the tiny and the mini variant zoo; their seed "
                             "spreads do not compare: name variants of one of them")
        object.__setattr__(self, "variants", tuple(self.variants))

    def _validate_variant_settings(self) -> None:
        if not isinstance(self.variant_settings, dict):
            raise TypeError("parameter 'variant_settings' must be a mapping of analysis parameters, "
                            f"e.g. {{n_images: 500}}; got {self.variant_settings!r}")
        unknown = sorted(set(self.variant_settings) - set(VARIANT_SETTINGS))
        if unknown:
            raise ValueError(f"parameter 'variant_settings': {unknown} cannot differ for the variants; "
                             f"these can: {', '.join(VARIANT_SETTINGS)}")

    def _validate_checkpoints(self) -> None:
        """Every entry names a model of the study and a path: an entry that would be ignored is a
        mistake (a typo in the name, a model left out of 'models')."""
        for name, path in self.checkpoints.items():
            if name not in self.models:
                raise ValueError(f"parameter 'checkpoints' names {name!r}, which is not in "
                                 f"'models' {list(self.models)}; add it to 'models' or remove the "
                                 "entry (an entry is never ignored).")
            if not isinstance(path, (str, os.PathLike)):
                raise TypeError(f"parameter 'checkpoints': the entry of {name!r} must be the path of "
                                f"a weights file or folder, got {path!r}")

    @classmethod
    def from_parameters(cls, **parameters: Any) -> "Study":
        """Build from a notebook's parameters; unknown names are an error (a typo is not ignored)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(parameters) - known)
        if unknown:
            raise ParameterError(f"unknown parameter(s) {unknown}; known: {sorted(known)}")
        return cls(**parameters)

    @classmethod
    def from_profile(cls, name: str, **overrides: Any) -> "Study":
        import yaml
        path = PROFILES_DIR / f"{name}.yaml"
        if not path.is_file():
            raise ProfileNotFoundError(f"no profile {name!r}: {path} does not exist (profiles: "
                                       f"{sorted(p.stem for p in PROFILES_DIR.glob('*.yaml'))})")
        return cls.from_parameters(**{**yaml.safe_load(path.read_text()), **overrides})

    @classmethod
    def from_notebook(cls, profile: str, overrides: dict | None = None, **named: Any) -> "Study":
        """A notebook's parameters: the profile, the named parameters it sets (None = keep the
        profile's value) and any other fields in ``overrides``."""
        if not isinstance(overrides, (dict, type(None))):
            raise ParameterError(f"parameter 'overrides' must be a dict, got {overrides!r}")
        chosen = {k: v for k, v in named.items() if v is not None}
        return cls.from_profile(profile, **{**chosen, **(overrides or {})})

    @cached_property
    def pass_config(self) -> PassConfig:
        return PassConfig(batch_size=self.batch_size, device=self.device, dtype=self.dtype,
                          num_workers=self.num_workers, progress=self.progress)

    # ------------------------------------------------------------------ checks
    def check(self) -> None:
        """Resolve everything a run needs before its first forward pass, so that a wrong name,
        file or parameter fails at once rather than after the first model's analysis. First the
        cheap checks of every model (its name, whether vitphase can trace it, its checkpoint
        file, whether the data fits it, the data folder), then the weights and the data are
        loaded (kept for the run) and the split sizes checked against the data.

        Raises:
            UnknownModelError, UnsupportedModelError, CheckpointError, WeightsUnavailableError,
            DataNotFoundError, ParameterError: what the user has to fix, with a message saying how.
        """
        self._check_device()
        if self.variants:
            self.variant_study()  # every variant trained to the end (shipped, or a finished local run)
        kinds = {name: resolve_model(name, self.checkpoints.get(name)) for name in self.models}
        for name, kind in kinds.items():
            self._check_data_fits(name, kind)
        if self.dataset != "fashion-mnist":
            from .imagefolder import check_folder_exists
            check_folder_exists(self.dataset)
        for name in self.models:
            self.model(name)  # its weights
            self.evaluation_set(name)  # then its data
        try:
            self.splits
        except (TypeError, ValueError) as error:  # e.g. more images asked for than the data holds
            raise ParameterError(str(error)) from error

    def _check_device(self) -> None:
        """The device must be one torch knows, and a CUDA device must be visible."""
        import torch
        try:
            device = torch.device(self.device)
        except RuntimeError as error:
            raise ParameterError(f"parameter 'device': {self.device!r} is not a torch device "
                                 "(e.g. 'cpu', 'cuda', 'cuda:1')") from error
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ParameterError(f"parameter 'device' is {self.device!r} but no CUDA GPU is "
                                 "visible to torch here; run on a GPU machine or set device=cpu "
                                 "(e.g. --set device=cpu).")

    def _check_data_fits(self, model_name: str, kind: str) -> None:
        """The data set must be set and be the kind the model reads (zoo: Fashion-MNIST, timm:
        an image folder)."""
        if self.dataset is None:
            raise ParameterError("parameter 'dataset' is not set: give 'fashion-mnist' or the path "
                                 "of an ImageNet-style validation folder (class subfolders, or a "
                                 "flat folder with labels.txt), e.g. -p dataset /data/imagenet/val "
                                 "or --set dataset=/data/imagenet/val")
        if self.dataset == "fashion-mnist" and kind != "zoo":
            raise ParameterError(f"{model_name} is a timm model for RGB images; Fashion-MNIST only "
                                 "fits the zoo models. Set 'dataset' to an ImageNet-style folder.")
        if self.dataset != "fashion-mnist" and kind == "zoo":
            raise ParameterError(f"{model_name} is a Fashion-MNIST zoo model; it cannot read "
                                 f"{self.dataset}. Use dataset 'fashion-mnist' for zoo models.")

    # ------------------------------------------------------------------ models and data
    def model(self, name: str) -> LoadedModel:
        if name not in self._models:
            self._models[name] = load_model(name, checkpoint=self.checkpoints.get(name),
                                            pretrained=self.pretrained)
        return self._models[name]

    def fingerprint(self, name: str) -> str:
        """What identifies a model's weights in the cache, without loading it unless it is loaded."""
        if name in self._models:
            return self._models[name].fingerprint
        return weights_fingerprint(name, checkpoint=self.checkpoints.get(name), pretrained=self.pretrained)

    @cached_property
    def _models(self) -> dict[str, LoadedModel]:
        return {}

    @cached_property
    def _fashion_test(self):
        return load_fashion_mnist("test", root=self.data_root)

    @cached_property
    def _folder_sets(self) -> dict:
        return {}

    def evaluation_set(self, model_name: str):
        """The whole evaluation set, preprocessed for ``model_name``: the Fashion-MNIST test set,
        or an ImageNet-style folder with the model's own timm preprocessing."""
        self._check_data_fits(model_name, model_kind(model_name))
        if self.dataset == "fashion-mnist":
            return self._fashion_test
        if model_name not in self._folder_sets:
            from .imagefolder import load_image_folder
            # the preprocessing is the tag's: a model on the meta device has it without its weights
            loaded = self._models.get(model_name)
            self._folder_sets[model_name] = load_image_folder(
                self.dataset, loaded.model if loaded else meta_model(model_name))
        return self._folder_sets[model_name]

    @cached_property
    def splits(self):
        return analysis_splits(len(self.evaluation_set(self.models[0])), self.n_images,
                               self.n_probe_fit, self.n_probe_score, seed=self.seed)

    def data(self, model_name: str, split: str = "analysis") -> Dataset:
        """The images of one split, preprocessed for ``model_name``."""
        images = self.evaluation_set(model_name).subset(getattr(self.splits, split))
        return images.as_dataset() if hasattr(images, "as_dataset") else images

    def data_key(self, model_name: str) -> dict:
        return {"dataset": self.dataset, "checksum": self.evaluation_set(model_name).checksum,
                "n_images": self.n_images, "seed": self.seed}

    def _key(self, model_name: str, **extra) -> dict:
        return {"model": model_name, "weights": self.fingerprint(model_name),
                "data": self.data_key(model_name), "dtype": self.dtype, **extra}

    # ------------------------------------------------------------------ analyses
    def analysis(self, model_name: str) -> dict[str, pd.DataFrame]:
        """The streaming sweeps of a model over the analysis images (token geometry,
        top-1, attention graph, Neural Collapse), plus the NC4 pass over the probe-score images.
        Tables: ``per_layer``, ``summary``, ``attention``, ``collapse``, ``scrambling``, ``probes``."""
        def compute() -> dict[str, pd.DataFrame]:
            loaded = self.model(model_name)
            images = self.evaluation_set(model_name)
            num_classes = max(len(images.classes), int(images.labels.max()) + 1)
            labels_match_head = loaded.kind == "zoo" or bool(getattr(images, "imagenet_order", False))
            # probe features go to memory-mapped files, deleted once the probes are scored (or the
            # run stops: an error, Ctrl-C, SIGTERM; a later run removes those of a killed one)
            with scratch_folder() as features:
                return full_analysis_tables(
                    loaded.model, self.data(model_name), self.data(model_name, "probe_fit"),
                    self.data(model_name, "probe_score"), num_classes, self.pass_config,
                    labels_match_head=labels_match_head, aci_max_images=self.aci_max_images,
                    pca_max_images=self.pca_max_images,
                    infox_dims=self.infox_dims, probe_max_dim=self.probe_max_dim,
                    per_head=self.per_head, head_aci_max_images=self.head_aci_max_images,
                    feature_folder=str(features), seed=self.seed, probe_jobs=self.probe_jobs,
                    desc=model_name)

        return cached_tables(
            "analysis", self._key(model_name, aci_max_images=self.aci_max_images,
                                  pca_max_images=self.pca_max_images,
                                  infox_dims=self.infox_dims, probe_max_dim=self.probe_max_dim,
                                  per_head=self.per_head, head_aci_max_images=self.head_aci_max_images,
                                  n_probe_fit=self.n_probe_fit, n_probe_score=self.n_probe_score),
            compute, refresh=self.refresh)


    def pe_scaling(self, model_name: str) -> dict[str, pd.DataFrame]:
        return cached_tables(
            "pe-scaling", self._key(model_name, alphas=list(self.pe_alphas)),
            lambda: pe_scaling_tables(self.model(model_name).model, self.data(model_name), self.pe_alphas,
                                      self.pass_config),
            refresh=self.refresh)

    @property
    def retention_dims(self) -> tuple[int, ...]:
        return tuple(max(1, round(f * self.infox_dims)) for f in RETENTION_DIM_FRACTIONS)

    def retention(self, model_name: str) -> dict[str, pd.DataFrame]:
        """What a layer keeps of the raw patch embeddings, two ways: linear CKA with them
        (``cka``), and the ISI under other decoder budgets (``isi_budget``: principal components
        x ridge), on the analysis, probe-fit and probe-score images."""
        from .analysis import retention_tables
        return cached_tables(
            "retention", self._key(model_name, pca_max_images=self.pca_max_images,
                                   dims=list(self.retention_dims), ridges=[str(r) for r in RETENTION_RIDGES],
                                   n_probe_fit=self.n_probe_fit, n_probe_score=self.n_probe_score),
            lambda: retention_tables(self.model(model_name).model, self.data(model_name),
                                     self.data(model_name, "probe_fit"), self.data(model_name, "probe_score"),
                                     self.pass_config, dims=self.retention_dims, ridges=RETENTION_RIDGES,
                                     pca_max_images=self.pca_max_images, desc=model_name),
            refresh=self.refresh)

    def collect(self, analysis: str, table: str) -> pd.DataFrame:
        """One table of one analysis for every model, stacked with a ``model`` column."""
        frames = []
        for name in self.models:
            frame = getattr(self, analysis)(name)[table].copy()
            frame.insert(0, "model", name)
            frames.append(frame)
        return pd.concat(frames, ignore_index=True)

    # ------------------------------------------------------------------ models chapter
    def variant_study(self) -> "Study":
        """The study the "Beyond the paper" chapters analyse: every variant and, first, its base
        model, with ``variant_settings`` applied (so a variant and its base are measured alike)."""
        from .models import VARIANTS
        from .zoo import total_steps, training_record
        for name in self.variants:  # a run still training would be analysed at its last snapshot
            record = training_record(name)
            if record["origin"] == "local" and record["steps_done"] < total_steps(name):
                raise ParameterError(f"variant {name} has trained {record['steps_done']} of "
                                     f"{total_steps(name)} steps; finish it with `vitphase zoo train "
                                     f"--model {name}` or leave it out of 'variants'")
        bases = [VARIANTS[v].base for v in self.variants]
        return replace(self, models=tuple(dict.fromkeys([*bases, *self.variants])), variants=(),
                       variant_settings={}, checkpoints={}, **self.variant_settings)

    def final_top1(self, name: str) -> float:
        """A zoo model's test top-1 as its training recorded it (the Models chapter re-measures it
        in the same build and checks the two agree)."""
        from .zoo import training_record
        return float(max(training_record(name)["snapshots"], key=lambda s: s["step"])["test_top1"])

    def variant_inventory(self) -> pd.DataFrame:
        """T1b: the study's variants: base, change, parameters, test top-1 (re-measured; it must
        equal the recorded one), PE Dominance Ratio (from the variant study's analysis, the
        number the "Beyond the paper" chapters show) and training time."""
        from .models import VARIANTS
        if not self.variants:
            return pd.DataFrame()
        analysed = self.variant_study()
        rows = []
        for row in self.model_inventory(self.variants).itertuples():
            variant = VARIANTS[row.model]
            summary = analysed.analysis(row.model)["summary"]
            rows.append({"variant": row.model, "group": variant.group, "base": variant.base,
                         "change": variant.change, "parameters": row.parameters,
                         "test_top1": row.test_top1,
                         "pe_dominance_ratio": float(summary.pe_dominance_ratio.iloc[0]),
                         "train_minutes_idle_estimate": row.train_minutes_idle_estimate,
                         "train_minutes_recorded": row.train_minutes_recorded})
        return pd.DataFrame(rows)

    def test_top1(self, model_name: str, n_test: int | None = None) -> float:
        """Top-1 (%) of a zoo model's stored weights on the first ``n_test`` Fashion-MNIST test
        images (all of them: None), measured once per weights (cached by their sha256)."""
        from .train import evaluate_top1
        key = {"model": model_name, "weights": self.fingerprint(model_name), "data": "fashion-mnist/test",
               "n_test": n_test, "dtype": self.dtype}
        test = self._fashion_test if n_test is None else self._fashion_test.subset(range(n_test))
        tables = cached_tables("test-top1", key, lambda: {"top1": pd.DataFrame(
            {"top1": [evaluate_top1(self.model(model_name).model, test)], "images": [len(test)]})},
            refresh=self.refresh)
        return float(tables["top1"].top1.iloc[0])

    def model_inventory(self, names: tuple[str, ...] | None = None) -> pd.DataFrame:
        """T1: architecture and test top-1 per model (``names``: by default the study's models).
        Zoo checkpoints are re-evaluated on the Fashion-MNIST test images their recorded top-1 was
        measured on, and must match it."""
        from .models import count_parameters
        from .zoo import idle_training_seconds, training_record
        rows = []
        for name in self.models if names is None else names:
            loaded = self.model(name)
            vit = loaded.model
            row = {"model": name, "depth": len(vit.blocks), "width": vit.embed_dim,
                   "heads": vit.blocks[0].attn.num_heads, "patch": vit.patch_embed.patch_size[0],
                   "tokens": vit.patch_embed.num_patches + vit.num_prefix_tokens,
                   "parameters": count_parameters(vit), "source": loaded.source}
            if loaded.kind == "zoo" and name in self.checkpoints:
                # a user's file: no training record describes it, so only its measured top-1
                row.update(test_images=len(self._fashion_test), test_top1=self.test_top1(name),
                           recorded_top1=float("nan"), trained_fraction=float("nan"),
                           train_minutes_recorded=float("nan"), train_minutes_idle_estimate=float("nan"))
            elif loaded.kind == "zoo":
                record = training_record(name)
                snapshot = next((s for s in record["snapshots"] if s["sha256"] == loaded.fingerprint), None)
                if snapshot is None:
                    raise RuntimeError(f"{name}: the checkpoint in use ({loaded.source}) is not in the "
                                       "training record yet (the run saves its record every 5 minutes "
                                       "and every epoch); re-run once it has been saved.")
                n_test = record["train"].get("n_test")
                # the recorded top-1 was measured on the Fashion-MNIST test set, whatever 'dataset' says
                measured = self.test_top1(name, n_test)
                if measured != snapshot["test_top1"]:
                    raise RuntimeError(f"{name}: test top-1 re-measured as {measured:.2f}% but the "
                                       f"checkpoint was recorded at {snapshot['test_top1']:.2f}%; "
                                       "the data changed (the weights passed their sha256 check), "
                                       "or, if it is an image or two, this CPU's kernels round "
                                       "differently from the recording machine's "
                                       "(vitphase_lib/numerics.py).")
                idle = idle_training_seconds(record["log"], record["train"]["epochs"])
                row.update(test_images=n_test or len(self._fashion_test), test_top1=measured,
                           recorded_top1=snapshot["test_top1"],
                           trained_fraction=snapshot["fraction"],
                           train_minutes_recorded=record["train_seconds"] / 60,
                           train_minutes_idle_estimate=float("nan") if idle is None else idle / 60)
            else:
                summary = self.analysis(name)["summary"]
                row.update(test_images=int(summary.images.iloc[0]), test_top1=float(summary.top1.iloc[0]),
                           recorded_top1=float("nan"), trained_fraction=float("nan"),
                           train_minutes_recorded=float("nan"), train_minutes_idle_estimate=float("nan"))
            rows.append(row)
        return pd.DataFrame(rows)

    def training_curves(self) -> pd.DataFrame:
        """Per-epoch training log of every zoo model of the study (not of those whose weights come
        from a ``checkpoints`` file: the zoo's log does not describe them)."""
        from .zoo import training_record
        frames = [pd.DataFrame(training_record(name)["log"]).assign(model=name)
                  for name in self.models
                  if self.model(name).kind == "zoo" and name not in self.checkpoints]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def describe(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k not in ("refresh", "progress", "probe_jobs")}
