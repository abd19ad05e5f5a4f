"""Portable numerics (vitphase_lib.numerics, scripts/portable.sh): training gives the same bits
whichever kernels MKL and oneDNN are told to use (another CPU vendor can still differ: the smoke
profile's tiny zoo is shipped for that reason, see vitphase_lib.zoo)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# a 2-block ViT trained for 24 AdamW steps on synthetic images; prints the code path and a hash
# of the final float32 weights
TRAIN_AND_HASH = """
import hashlib, sys, tempfile
import torch
from vitphase_lib.data import synthetic_images
from vitphase_lib.models import MiniViTConfig
from vitphase_lib.numerics import describe
from vitphase_lib.train import TrainConfig, Trainer
model = MiniViTConfig("numerics-test", depth=2, width=16, heads=2, num_classes=4)
config = TrainConfig(epochs=4, batch_size=16, lr=3e-3, warmup_epochs=0.5, threads=1,
                     snapshot_fractions=(1.0,))
with tempfile.TemporaryDirectory() as run_dir:
    trainer = Trainer(model, config, synthetic_images(n=96, num_classes=4, seed=0),
                      synthetic_images(n=32, num_classes=4, seed=1), run_dir, progress=False)
    trainer.run()
    weights = torch.load(trainer.state_path, weights_only=False)["model"]
digest = hashlib.sha256(b"".join(v.numpy().tobytes() for _, v in sorted(weights.items())))
print(describe())
print(digest.hexdigest())
"""


def train_and_hash(portable: bool, **environment: str) -> tuple[str, str]:
    command = [sys.executable, "-c", TRAIN_AND_HASH]
    if portable:
        command = ["bash", str(REPO / "scripts" / "portable.sh"), *command]
    env = {k: v for k, v in os.environ.items()
           if k not in ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "OPENBLAS_CORETYPE", "VITPHASE_PORTABLE_NUMERICS")}
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO,
                            env={**env, **environment}, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    code_path, digest = result.stdout.strip().splitlines()[-2:]
    return code_path, digest


def test_portable_script_pins_every_library():
    code_path, _ = train_and_hash(portable=True)
    assert code_path == ("cpu capability DEFAULT, oneDNN off, MKL_CBWR=COMPATIBLE, "
                         "OPENBLAS_CORETYPE=Haswell")


@pytest.mark.parametrize("variant", [
    {"MKL_ENABLE_INSTRUCTIONS": "AVX2"},
    {"MKL_ENABLE_INSTRUCTIONS": "AVX512", "ONEDNN_MAX_CPU_ISA": "AVX2"},
], ids=["mkl-avx2", "mkl-avx512-onednn-avx2"])
def test_portable_training_ignores_which_kernels_the_cpu_offers(variant):
    """Telling MKL and oneDNN to use other instruction sets (what another CPU would do) changes
    nothing under portable numerics: the same weights to the last bit."""
    reference = train_and_hash(portable=True)[1]
    assert train_and_hash(portable=True, **variant)[1] == reference


def test_make_test_runs_with_portable_numerics():
    """`make test` (and CI) run the suite under scripts/portable.sh; a bare pytest run does not."""
    if os.environ.get("VITPHASE_PORTABLE_NUMERICS") != "1":
        pytest.skip("not run through `make test`")
    import torch
    assert torch.backends.cpu.get_cpu_capability() == "DEFAULT"
    assert not torch.backends.mkldnn.enabled


def test_the_training_probe_sees_a_change_of_kernels():
    """Without portable numerics, PyTorch's vectorised kernels (AVX2) and its portable ones give
    other weights: the probe above is sensitive to exactly what portable numerics pin."""
    assert (train_and_hash(portable=False, ATEN_CPU_CAPABILITY="avx2")[1]
            != train_and_hash(portable=False, ATEN_CPU_CAPABILITY="default")[1])
