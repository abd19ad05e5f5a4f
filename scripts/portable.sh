#!/usr/bin/env bash
# Run a command with portable numerics: one code path in every numeric library, so that analyses
# of fixed weights give the same numbers on any x86-64 CPU with AVX2 (vitphase_lib/numerics.py
# says why, and why training can still drift across CPU vendors). `make test` and
# `make smoke-notebooks` use it, so the numbers nbval compares do not depend on the machine CI
# runs on. The libraries read these once, when they load: they must be in the environment before
# the process starts.
export ATEN_CPU_CAPABILITY=default   # PyTorch: its portable (non-AVX) kernels
export MKL_CBWR=COMPATIBLE           # MKL: conditional numerical reproducibility, one code path
export OPENBLAS_CORETYPE=Haswell     # OpenBLAS (numpy, scikit-learn): one kernel set (AVX2)
export VITPHASE_PORTABLE_NUMERICS=1  # vitphase_lib: switches oneDNN off (no environment switch)
exec "$@"
