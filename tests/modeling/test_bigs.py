"""BiGS specifics (the Hugging Face contract is in test_conformance.py): the forms of one set of weights agree,
fp64 gradients, the legacy padding mode, SSM parameter handling (fp32, parameter groups, freezing) and presets."""

import pytest
import torch

import bizoo
from bizoo.configuration.configuration_bigs import PRESETS
from bizoo.modeling.modeling_bigs import S4D
from tests.tiny_configs import TINY_CONFIGS


def tiny(**overrides):
    return bizoo.BiGSConfig(**{**TINY_CONFIGS["bigs"], "vocab_size": 40, "initializer_range": 0.2, **overrides})


def padded_batch():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 40, (3, 20), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 13:] = 0  # right padding
    mask[2, :6] = 0  # left padding
    return ids.masked_fill(mask == 0, 0), mask


def test_every_form_of_the_same_weights_agrees():
    model = bizoo.BiGSModel(tiny()).eval()
    ids, mask = padded_batch()
    outputs = {}
    for form in ("toeplitz", "fft", "recurrent", "conv"):
        model.config.bigs_form = form
        outputs[form] = model(input_ids=ids, attention_mask=mask).last_hidden_state
    for form in ("fft", "recurrent", "conv"):
        torch.testing.assert_close(outputs[form], outputs["toeplitz"], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("form", ["toeplitz", "fft", "recurrent"])
def test_fp64_gradients(form):
    torch.manual_seed(0)
    config = tiny(hidden_size=8, intermediate_size=12, num_hidden_layers=1, num_ssm=4, bigs_form=form)
    model = bizoo.BiGSModel(config).double().eval()
    ids = torch.randint(5, 40, (2, 6))
    mask = torch.tensor([[1] * 6, [0, 1, 1, 1, 1, 0]])
    embeds = model.get_input_embeddings()(ids).detach().requires_grad_(True)

    def run(x):
        return model(inputs_embeds=x, attention_mask=mask).last_hidden_state

    assert torch.autograd.gradcheck(run, (embeds,), eps=1e-6, atol=1e-5)
    layer = model.layers[0]
    out = run(embeds).sum()
    grads = torch.autograd.grad(out, [layer.fs4.A_re, layer.fs4.log_step, layer.bs4.C, layer.bs4.D])
    assert all(torch.isfinite(g).all() and g.abs().sum() > 0 for g in grads)


def test_legacy_mode_pads_to_the_maximum_length_and_mixes_padding_in():
    """pad_mode="legacy" computes on inputs padded to max_position_embeddings, without the mask: the real outputs
    depend on how much padding follows (as in the original), and equal an explicit padded call's."""
    config = tiny(pad_mode="legacy", max_position_embeddings=24)
    model = bizoo.BiGSModel(config).eval()
    ids = torch.randint(5, 40, (1, 10))
    out = model(input_ids=ids).last_hidden_state  # (1, 10, d)
    padded = torch.nn.functional.pad(ids, (0, 14), value=0)
    full = model(input_ids=padded).last_hidden_state  # (1, 24, d)
    torch.testing.assert_close(out, full[:, :10])
    masked = bizoo.BiGSModel(tiny(pad_mode="masked", max_position_embeddings=24)).eval()
    masked.load_state_dict(model.state_dict())
    assert not torch.allclose(masked(input_ids=ids).last_hidden_state, out, atol=1e-4)  # the padding mattered
    with pytest.raises(ValueError, match="pad_mode='legacy'"):
        model(input_ids=torch.randint(5, 40, (1, 30)))


def test_ssm_initialisation_follows_the_config():
    fresh = bizoo.BiGSModel(tiny(ssm_scaling="lin")).layers[0].fs4
    assert isinstance(fresh, S4D)
    torch.testing.assert_close(fresh.A_re, torch.full_like(fresh.A_re, -0.5))
    torch.testing.assert_close(fresh.A_im, torch.pi * torch.arange(fresh.A_im.shape[0]).float())
    assert torch.equal(fresh.D, torch.ones(1))
    assert ((fresh.log_step >= torch.log(torch.tensor(0.01)) - 1e-6) & (fresh.log_step <= 1e-6)).all()
    hippo = bizoo.BiGSModel(tiny(ssm_scaling="hippo")).layers[0].bs4
    torch.testing.assert_close(hippo.A_re, torch.full_like(hippo.A_re, -0.5))
    assert (hippo.A_im[1:] >= hippo.A_im[:-1]).all()  # eigenvalues, ascending


def test_fp32_ssm_after_loading_in_bf16(tmp_path):
    bizoo.BiGSModel(tiny()).save_pretrained(tmp_path)
    loaded = bizoo.BiGSModel.from_pretrained(tmp_path, dtype=torch.bfloat16)
    assert loaded.layers[0].fs4.A_re.dtype == torch.float32
    assert loaded.layers[0].dv.weight.dtype == torch.bfloat16
    out = loaded(input_ids=torch.randint(5, 40, (2, 7))).last_hidden_state
    assert torch.isfinite(out.float()).all()


def test_parameter_groups_and_freezing():
    model = bizoo.BiGSForMaskedLM(tiny(ssm_lr_multiplier=0.1))
    groups = model.parameter_groups(learning_rate=1e-3, weight_decay=0.01)
    by_id = {id(p): g for g in groups for p in g["params"]}
    layer = model.bigs.layers[0]
    assert by_id[id(layer.fs4.A_re)]["lr"] == pytest.approx(1e-4) and by_id[id(layer.fs4.A_re)]["weight_decay"] == 0
    assert by_id[id(layer.bs4.log_step)]["lr"] == pytest.approx(1e-4)
    assert by_id[id(layer.fs4.C)]["lr"] == 1e-3 and by_id[id(layer.fs4.C)]["weight_decay"] == 0
    assert by_id[id(layer.dv.weight)]["weight_decay"] == 0.01 and by_id[id(layer.dv.bias)]["weight_decay"] == 0
    assert by_id[id(layer.LayerNorm.weight)]["weight_decay"] == 0
    assert sum(len(g["params"]) for g in groups) == len({id(p) for p in model.parameters()})
    torch.optim.AdamW(groups)  # a valid optimizer

    frozen = bizoo.BiGSForMaskedLM(tiny(freeze_ssm=True))
    ssm = [p for n, p in frozen.named_parameters() if ".fs4." in n or ".bs4." in n]
    assert ssm and not any(p.requires_grad for p in ssm)
    assert all(p.requires_grad for n, p in frozen.named_parameters() if ".fs4." not in n and ".bs4." not in n)
    assert not any(id(p) in {id(q) for q in ssm} for g in frozen.parameter_groups(1e-3, 0.0) for p in g["params"])


def test_presets_of_the_released_models():
    config = bizoo.BiGSConfig.from_preset("large-4096")
    assert (config.num_hidden_layers, config.hidden_size, config.intermediate_size, config.num_ssm) == (23, 1024, 3072, 64)
    assert config.max_position_embeddings == 4096 and config.vocab_size == 30522
    assert sorted(PRESETS) == ["large-1024", "large-128", "large-4096", "large-512"]
    with pytest.raises(ValueError, match="large-128"):
        bizoo.BiGSConfig.from_preset("base")


@pytest.mark.parametrize(
    "field, value",
    [("pad_mode", "pad"), ("bigs_form", "scan"), ("ssm_scaling", "legs"), ("num_ssm", 0), ("ssm_dt_min", 2.0)],
)
def test_config_checks(field, value):
    with pytest.raises(ValueError, match=field):
        tiny(**{field: value})


def test_training_commands_use_the_parameter_groups():
    import argparse

    from bizoo.scripts.lib.training import trainer_optimizers

    args = argparse.Namespace(learning_rate=1e-3, weight_decay=0.01)
    optimizer, scheduler = trainer_optimizers(bizoo.BiGSForMaskedLM(tiny()), args)
    assert scheduler is None and sorted(g["lr"] for g in optimizer.param_groups) == pytest.approx([1e-4, 1e-3, 1e-3])
    assert trainer_optimizers(bizoo.LionForMaskedLM(bizoo.LionConfig(hidden_size=32, num_hidden_layers=1,
                                                                     num_attention_heads=4, intermediate_size=64)),
                              args) == (None, None)
