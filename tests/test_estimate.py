"""The run-time estimate: FLOP counts, the InfoX formula, the GPU arithmetic, the report."""
import pytest
import torch
from timm.models.vision_transformer import VisionTransformer

from vitphase_lib.estimate import H100, ModelCost, Workload, estimate, forward_flops, gpu_minutes, infox_flops


def test_forward_flops_are_twice_the_multiply_adds_of_the_linear_layers():
    model = VisionTransformer(img_size=28, patch_size=7, in_chans=1, num_classes=4, embed_dim=32,
                              depth=2, num_heads=2, mlp_ratio=4).eval()
    images = torch.randn(3, 1, 28, 28)
    tokens, d = 17, 32
    per_block = 2 * tokens * (d * 3 * d + d * d + 2 * d * 4 * d) + 2 * 2 * tokens * tokens * d
    patch_embed = 2 * 16 * (49 * d)
    head = 2 * d * 4
    assert forward_flops(model, images) == pytest.approx(3 * (2 * per_block + patch_embed + head), rel=0.01)


def test_infox_flops_follow_the_decoder_sizes():
    per_image, per_model = infox_flops(patches=4, layers=2, dims=3)
    n, m = 13, 12
    assert per_image == 2 * (2 * n * n + 4 * n * m) / 2
    assert per_model > 2 * 27 * n ** 3
    # quadratic in k per image, cubic per model
    assert infox_flops(4, 2, 6)[0] / per_image == pytest.approx(4, rel=0.1)
    assert infox_flops(4, 2, 6)[1] / per_model == pytest.approx(8, rel=0.1)


def test_gpu_minutes_add_up_from_rates():
    cost = ModelCost("m", forward_gflops=100.0, metric_gflops=1.0, solve_gflops=0.0, aci_gflops=0.0,
                     cpu_forward_seconds=1.0, probe_fit_seconds=60.0, probes=8)
    work = Workload(1000, 1000, 1000, 2, 0)
    minutes = gpu_minutes(cost, work, H100, host_cores=4)
    bf16 = H100.bf16_tflops * 1e12 * H100.utilisation
    assert minutes["forward"] == pytest.approx(5000 * 100e9 / bf16 / 60)
    assert minutes["probes"] == pytest.approx(8 * 60 / 4 / 60)
    assert minutes["aci"] == 0


def test_estimate_of_the_smoke_profile_names_every_model_and_says_it_is_an_estimate():
    report = estimate("smoke", host_cores=2)
    for name in ("tiny-s", "tiny-b", "tiny-l"):
        assert f"\n{name} | " in report
    assert "an estimate" in report and "total: about" in report
