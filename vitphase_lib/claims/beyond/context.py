"""What every "Beyond the paper" chapter starts from: the variant study, its headline table and
the seed spread, computed once per chapter from the cached analyses."""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import pandas as pd

from .headline import headline_metrics, seed_models, seed_spread


@dataclass
class Context:
    """The main study and, when it names variants, the variant study (variants and bases)."""

    study: object  # vitphase_lib.study.Study

    @property
    def registry(self) -> dict:
        """Every variant of the zoo, by name (``models.VARIANTS``); the study's are ``study.variants``."""
        from ...models import VARIANTS
        return VARIANTS

    @property
    def has_variants(self) -> bool:
        return bool(self.study.variants)

    @cached_property
    def vstudy(self):
        return self.study.variant_study()

    @cached_property
    def headline(self) -> pd.DataFrame:
        return headline_metrics(self.vstudy)

    @property
    def seeds(self) -> list[str]:
        return seed_models(self.study.variants, self.registry)

    @cached_property
    def spread(self) -> pd.Series:
        return seed_spread(self.headline, self.seeds)

    def configs(self) -> dict:
        from ...models import ALL_MINI_CONFIGS
        return ALL_MINI_CONFIGS

    def parameters(self, models) -> dict[str, int]:
        """The parameter count of each of ``models`` (built on the meta device: no weights read)."""
        import torch

        from ...models import ALL_MINI_CONFIGS, build_mini_vit, count_parameters
        with torch.device("meta"):
            return {m: count_parameters(build_mini_vit(ALL_MINI_CONFIGS[m])) for m in models}

    def missing(self, what: str) -> str:
        """Why a figure or table of ``what`` (e.g. "depth variants") is empty in this build."""
        if not self.has_variants:
            return f"the {self.study.profile} profile names no variants"
        return f"the {self.study.profile} profile names no {what}"

    def describe(self) -> str:
        """What the chapter's numbers rest on: the variant study's models and images, or why the
        chapter has nothing to show in this profile."""
        if not self.has_variants:
            return (f"The {self.study.profile} profile names no variants (parameter `variants`), so this "
                    "chapter has no experiment to run here; the smoke profile names the tiny variant zoo.")
        v = self.vstudy
        return (f"This build ({v.profile} profile) analyses {len(v.models)} models: "
                f"{', '.join(v.models)}, each on {v.n_images} analysis images, {v.n_probe_fit} probe-fit "
                f"and {v.n_probe_score} probe-score images (the ACI on the first {v.aci_max_images}). "
                f"Test top-1 is each model's as recorded at the end of its training; "
                + (f"the seed spread is the range over {', '.join(self.seeds)}." if self.seeds else
                   "without seed variants there is no seed spread to judge differences by."))
