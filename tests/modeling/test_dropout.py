"""The models' dropout (``modeling.common.Dropout``): ``nn.Dropout`` with its mask drawn by ``torch.rand`` on a CPU in
eager training. Checked against the definition: each element kept with probability 1 - p and scaled by 1 / (1 - p),
the gradient through the same mask; ``nn.Dropout`` itself wherever else it runs."""

import math

import pytest
import torch
from torch import nn

from bizoo.kernels import dispatch
from bizoo.modeling.common import Dropout


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_keeps_each_element_with_probability_one_minus_p_scaled(p, dtype):
    torch.manual_seed(0)
    n = 400_000
    x = (torch.rand(n) + 0.5).to(dtype).requires_grad_()  # no zeros: a zero output is a dropped element
    layer = Dropout(p).train()
    y = layer(x)
    kept = y != 0
    # the kept fraction within 5 standard deviations of 1 - p
    assert abs(kept.float().mean().item() - (1 - p)) < 5 * math.sqrt(p * (1 - p) / n)
    scale = 1 / (1 - p)
    assert torch.equal(y[kept], (x * scale)[kept])  # kept elements scaled, exactly as x * keep * scale
    g = torch.randn(n).to(dtype)
    y.backward(g)
    assert torch.equal(x.grad, g * kept * scale)  # the gradient through the same mask


def test_inplace_and_the_cases_it_leaves_to_nn_dropout(monkeypatch):
    torch.manual_seed(1)
    x = torch.rand(1000) + 0.5
    layer = Dropout(0.3, inplace=True).train()
    y = x.clone()
    out = layer(y)
    assert out is y and (out == 0).any() and ((out == 0) | torch.isclose(out, x / 0.7)).all()

    assert isinstance(Dropout(0.1), nn.Dropout)  # what code that looks for dropout layers finds
    assert torch.equal(Dropout(0.5).eval()(x), x)  # evaluation: the identity
    assert torch.equal(Dropout(0.0).train()(x), x)
    assert torch.equal(Dropout(1.0).train()(x), torch.zeros_like(x))
    # traced graphs (torch.compile, torch.export) run nn.Dropout's own op: the same draws for the same seed
    for traced in ("tracing", "exporting"):
        with monkeypatch.context() as m:
            m.setattr(dispatch, traced, lambda: True)
            torch.manual_seed(2)
            ours = Dropout(0.4).train()(x)
        torch.manual_seed(2)
        assert torch.equal(ours, nn.Dropout(0.4).train()(x))


def test_every_model_layer_uses_it(make_config):
    """Every dropout layer of every model and head is this one (a model built with ``nn.Dropout`` would take the slow
    CPU draw again)."""
    from transformers import (
        AutoModelForMaskedLM,
        AutoModelForPreTraining,
        AutoModelForSequenceClassification,
        AutoModelForTokenClassification,
    )

    import bizoo

    seen = 0
    for model_type, spec in bizoo.MODEL_SPECS.items():
        for variant in (*spec.variants, None) if spec.variants else (None,):
            for auto in (AutoModelForMaskedLM, AutoModelForPreTraining, AutoModelForSequenceClassification,
                         AutoModelForTokenClassification):
                config = make_config((model_type, variant), num_labels=3)
                if type(config) not in auto._model_mapping:
                    continue
                model = auto.from_config(config)
                layers = [m for m in model.modules() if isinstance(m, nn.Dropout)]
                assert layers and all(type(m) is Dropout for m in layers), (model_type, variant, auto.__name__)
                seen += 1
    assert seen >= 10
