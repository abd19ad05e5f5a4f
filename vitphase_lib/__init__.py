"""vitphase: an executable reproduction of "Mechanisms of Non-Monotonic Scaling in Vision
Transformers" (arXiv:2511.21635)."""
__version__ = "0.1.0"

import warnings as _warnings

# tqdm.auto (imported by dependencies) warns in notebooks without ipywidgets; the text bars are fine
_warnings.filterwarnings("ignore", message="IProgress not found")

from .numerics import apply_from_environment as _apply_numerics

# `make test` / `make smoke-notebooks` run with portable numerics (scripts/portable.sh)
_apply_numerics()
