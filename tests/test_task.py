"""Top1 and FiniteCheck (metrics/task.py): known answers, and the pass refusing NaN/inf
activations with an error that names the layer and caches nothing."""
import math

import pytest
import torch

from vitphase_lib.analysis import PassConfig, geometry_tables
from vitphase_lib.capture import ViTLayout
from vitphase_lib.metrics.base import NonFiniteActivationError
from vitphase_lib.metrics.task import FiniteCheck, Top1
from vitphase_lib.models import MiniViTConfig, build_mini_vit
from vitphase_lib.results import cached_tables

LAYOUT = ViTLayout(num_blocks=2, num_prefix_tokens=1, has_cls=True, num_patches=4, width=3)
TINY = MiniViTConfig("test-task", depth=2, width=16, heads=2)


def test_top1_counts_correct_argmax_over_batches():
    top1 = Top1(LAYOUT)
    batches = [(torch.tensor([[2.0, 1.0], [0.0, 1.0], [5.0, -1.0]]), torch.tensor([0, 1, 1])),
               (torch.tensor([[0.0, 3.0]]), torch.tensor([1]))]
    for logits, labels in batches:
        top1.begin_batch(labels, 0)
        top1.on_logits(logits)
    result = top1.result().iloc[0]
    assert result.images == 4 and result.top1 == pytest.approx(75.0)


def _stream(check: FiniteCheck, layer_values: dict[str, torch.Tensor]) -> None:
    for layer in LAYOUT.layer_names:
        check.on_tokens(layer, layer_values.get(layer, torch.zeros(2, 5, 3)))


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, "both infinities"])
def test_finite_check_names_the_first_layer_with_a_bad_value(bad):
    tokens = torch.ones(2, 5, 3)
    if bad == "both infinities":  # +inf and -inf in one batch sum to NaN: still caught
        tokens[0, 1, 2], tokens[1, 3, 0] = math.inf, -math.inf
    else:
        tokens[1, 4, 1] = bad
    check = FiniteCheck(LAYOUT)
    _stream(check, {"2": tokens, "head": tokens})
    _stream(check, {})  # a second, clean batch
    with pytest.raises(NonFiniteActivationError, match=r"layer '2' produced NaN/inf activations in 1 batch"):
        check.check()


def test_finite_check_passes_finite_activations_of_any_working_size():
    check = FiniteCheck(LAYOUT)
    _stream(check, {"1": torch.full((2, 5, 3), 1e30), "2": torch.full((2, 5, 3), -1e30)})
    check.check()
    assert check.result().nonfinite.sum() == 0


def test_a_model_with_nan_weights_stops_the_pass_and_caches_nothing(synthetic, tmp_path):
    torch.manual_seed(0)
    model = build_mini_vit(TINY).eval()
    with torch.no_grad():
        model.blocks[1].mlp.fc2.bias[3] = math.nan  # block 2 is the first layer to go bad
    data = synthetic.subset(torch.arange(8)).as_dataset()

    def compute():
        return geometry_tables(model, data, PassConfig(batch_size=4, progress=False))

    with pytest.raises(NonFiniteActivationError, match=r"layer '2'.*in 2 batch\(es\).*Nothing was cached"):
        cached_tables("geometry", {"model": "nan-weights"}, compute, root=tmp_path)
    assert [p.name for p in tmp_path.iterdir()] in ([], [".locks"])  # no entry, at most its lock
    assert not list(tmp_path.glob("geometry-*")) and not list(tmp_path.glob(".geometry-*"))
