"""Portable numerics: one code path per numeric library, for the numbers CI compares.

PyTorch, MKL, oneDNN and OpenBLAS choose their kernels by the CPU they run on (AVX2, AVX-512,
AMX, ...), and those kernels add in different orders. An analysis barely notices (last bits), but
training amplifies it: Adam's first steps follow the sign of each gradient entry, so a last-bit
difference flips updates and the runs drift apart. The smoke profile's 6-block tiny model,
trained with one seed on one machine, reached 35.0-36.7% top-1 depending on which kernels the
libraries were told to use (and 37.0% on another machine), so the smoke chapters' recorded
outputs, which nbval compares, would depend on the host CI happens to run on.

``scripts/portable.sh`` (used by ``make test`` and ``make smoke-notebooks``) pins each library
to one code path through the environment variables they read when they load; oneDNN has no such
variable, so :func:`apply_from_environment` switches it off when ``VITPHASE_PORTABLE_NUMERICS=1``.
It costs speed (about 2x for the tiny zoo's training), which is why the default and paper
profiles do not use it: they are deterministic on a given machine, not across machines.

It is not enough for training on every CPU: on an AMD EPYC (Zen 5) the tiny-l trained under it
reached 35.5% top-1 against 35.3% elsewhere. So the smoke profile's tiny zoo is shipped
(``zoo/tiny/``, see :mod:`vitphase_lib.zoo`) and CI only analyses fixed weights, where last-bit
differences stay in the last bits.
"""
from __future__ import annotations

import os

PORTABLE_FLAG = "VITPHASE_PORTABLE_NUMERICS"


def portable_requested() -> bool:
    return os.environ.get(PORTABLE_FLAG) == "1"


def apply_from_environment() -> None:
    """Switch oneDNN (mkldnn) off when portable numerics are requested: its kernels are chosen by
    the CPU and the cache sizes, and PyTorch then uses its own portable convolution. Runs when
    vitphase_lib is imported; torch is imported here only when needed, so that importing the
    package (the ``vitphase`` command's start-up) stays free of it otherwise."""
    if portable_requested():
        import torch
        torch.backends.mkldnn.enabled = False


def describe() -> str:
    """One line on the numeric code path of this process (for logs and tests)."""
    import torch
    return (f"cpu capability {torch.backends.cpu.get_cpu_capability()}, "
            f"oneDNN {'on' if torch.backends.mkldnn.enabled else 'off'}, "
            f"MKL_CBWR={os.environ.get('MKL_CBWR', 'unset')}, "
            f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', 'unset')}")
