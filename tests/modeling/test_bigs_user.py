"""BiGS as a user meets it: a frozen SSM stays frozen through from_pretrained, and the SSM parameters stay fp32
through the casts a user applies to a built model (``.to(dtype)``, ``.half()``, ``.bfloat16()``)."""

import pytest
import torch
from transformers import AutoModelForMaskedLM

import bizoo
from tests.modeling.test_bigs import tiny


def ssm_parameters(model):
    return [(n, p) for n, p in model.named_parameters() if ".fs4." in n or ".bs4." in n]


def test_from_pretrained_keeps_a_frozen_ssm_frozen(tmp_path):
    """config.freeze_ssm=True (saved with the checkpoint, or passed to from_pretrained): the loaded model's SSM
    parameters do not train, and every other parameter does."""
    bizoo.BiGSForMaskedLM(tiny(freeze_ssm=True)).save_pretrained(tmp_path / "frozen")
    bizoo.BiGSForMaskedLM(tiny()).save_pretrained(tmp_path / "plain")
    loaded = [
        bizoo.BiGSForMaskedLM.from_pretrained(tmp_path / "frozen"),
        bizoo.BiGSForSequenceClassification.from_pretrained(tmp_path / "frozen", num_labels=2),
        bizoo.BiGSForMaskedLM.from_pretrained(tmp_path / "plain", freeze_ssm=True),
        AutoModelForMaskedLM.from_pretrained(tmp_path / "plain", freeze_ssm=True, dtype=torch.bfloat16),
        bizoo.BiGSModel.from_pretrained(tmp_path / "plain", freeze_ssm=True, output_loading_info=True)[0],
    ]
    for model in loaded:
        assert model.config.freeze_ssm
        ssm = ssm_parameters(model)
        assert ssm and not [n for n, p in ssm if p.requires_grad], type(model).__name__
        assert all(p.requires_grad for n, p in model.named_parameters() if ".fs4." not in n and ".bs4." not in n)
        groups = model.parameter_groups(1e-3, 0.01)
        assert not {id(p) for _, p in ssm} & {id(p) for g in groups for p in g["params"]}
    trainable = bizoo.BiGSForMaskedLM.from_pretrained(tmp_path / "frozen", freeze_ssm=False)
    assert all(p.requires_grad for _, p in ssm_parameters(trainable))


def _slow_modes(model):
    """Long memories (A_re near its clamp, a small step) with phases that turn over a long sequence."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("fs4.A_re", "bs4.A_re")):
                p.fill_(-0.003)
            elif name.endswith(("fs4.log_step", "bs4.log_step")):
                p.fill_(-1.0)


@pytest.mark.parametrize("cast", ["to", "bfloat16", "half"])
def test_casting_a_built_model_keeps_the_ssm_in_fp32(cast):
    """``model.to(torch.bfloat16)`` (what Trainer's bf16_full_eval does), ``.bfloat16()`` and ``.half()`` leave
    the SSM parameters fp32, as from_pretrained(dtype=...) does; the other weights take the dtype."""
    torch.manual_seed(0)
    model = bizoo.BiGSModel(tiny(max_position_embeddings=1024)).eval()
    _slow_modes(model)
    ids = torch.randint(5, 40, (1, 1000))
    with torch.no_grad():
        reference = model(input_ids=ids).last_hidden_state
    half_dtype = torch.float16 if cast == "half" else torch.bfloat16
    cast_model = bizoo.BiGSModel(tiny(max_position_embeddings=1024)).eval()
    cast_model.load_state_dict(model.state_dict())
    cast_model = cast_model.to(torch.bfloat16) if cast == "to" else getattr(cast_model, cast)()
    for name, p in ssm_parameters(cast_model):
        assert p.dtype == torch.float32, name
        torch.testing.assert_close(p, dict(model.named_parameters())[name], rtol=0, atol=0)  # not rounded
    assert cast_model.layers[0].dv.weight.dtype == half_dtype
    with torch.no_grad():
        out = cast_model(input_ids=ids).last_hidden_state
    assert out.dtype == half_dtype
    error = ((out.float() - reference).norm() / reference.norm()).item()
    assert error < 0.1, f"relative error {error:.3f} against fp32"  # about 0.03; 1.3 with an 8-bit SSM
    back = cast_model.float()
    assert all(p.dtype == torch.float32 for p in back.parameters())
    if cast == "to":  # a float64 cast still reaches the SSM
        assert cast_model.double().layers[0].fs4.A_im.dtype == torch.float64


def test_casting_keeps_fp32_gradients_of_the_ssm():
    model = bizoo.BiGSModel(tiny())
    model(input_ids=torch.randint(5, 40, (2, 9))).last_hidden_state.sum().backward()
    grad = model.layers[0].fs4.A_im.grad.clone()
    model.bfloat16()
    assert model.layers[0].fs4.A_im.grad.dtype == torch.float32
    assert torch.equal(model.layers[0].fs4.A_im.grad, grad)
