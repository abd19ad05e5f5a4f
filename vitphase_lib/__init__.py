"""vitphase: an executable reproduction of "Mechanisms of Non-Monotonic Scaling in Vision
Transformers" (arXiv:2511.21635)."""
__version__ = "0.1.0"

import warnings as _warnings

# tqdm.auto (imported by dependencies) warns in notebooks without ipywidgets; the text bars are fine
_warnings.filterwarnings("ignore", message="IProgress not found")

from .numerics import apply_from_environment as _apply_numerics

# `make test` / `make smoke-notebooks` run with portable numerics (scripts/portable.sh)
_apply_numerics()

__all__ = ["analyse", "Analysis", "Monitor"]


def __getattr__(name: str):
    """``vitphase_lib.analyse``, ``Analysis`` and ``Monitor``, imported on first use (they pull in
    torch, timm and pandas, which ``import vitphase_lib`` alone does not need)."""
    if name in ("analyse", "Analysis"):
        from . import api
        return getattr(api, name)
    if name == "Monitor":
        from .monitor import Monitor
        return Monitor
    raise AttributeError(f"module 'vitphase_lib' has no attribute {name!r}")
