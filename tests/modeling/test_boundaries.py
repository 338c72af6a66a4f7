"""Models and configurations at their edges: config fields changed after construction (``from_dict``'s kwargs,
``update``, ``update_from_string``) are checked as at construction, and fp16 on a CPU keeps gradients finite where a
model zeroes padded rows exactly (the LayerNorms and ELMo's normalised scalar mix that read them)."""

import pytest
import torch
from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification

import bizoo
from bizoo.modeling.common import HalfSafeLayerNorm

CONFIG_TYPES = sorted(bizoo.MODEL_SPECS)


def _config(model_type, make_config, **overrides):
    variant = next(iter(bizoo.get_spec(model_type).variants or {"default": {}}))
    return make_config((model_type, variant), **overrides)


# ------------------------------------------------------------------------------------------------------------------
# Config fields set after construction
# ------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model_type", CONFIG_TYPES)
def test_from_dict_checks_the_fields_its_kwargs_set(model_type, make_config, tmp_path):
    config = _config(model_type, make_config)
    with pytest.raises(ValueError, match=r"hidden_dropout_prob must be a number in \[0, 1\), got 2.0"):
        type(config).from_dict(config.to_dict(), hidden_dropout_prob=2.0)
    config.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"num_hidden_layers must be an int >= 1, got 0"):
        AutoConfig.from_pretrained(tmp_path, num_hidden_layers=0)
    # a good value is set, and the unused kwargs come back as transformers returns them
    again, unused = AutoConfig.from_pretrained(tmp_path, hidden_dropout_prob=0.25, return_unused_kwargs=True, foo=1)
    assert again.hidden_dropout_prob == 0.25 and unused == {"foo": 1}


@pytest.mark.parametrize("model_type", CONFIG_TYPES)
def test_update_checks_the_fields_and_leaves_a_refused_config_as_it_was(model_type, make_config):
    config = _config(model_type, make_config, id2label={0: "a", 1: "b"})
    before = config.to_dict()
    with pytest.raises(ValueError, match=r"hidden_dropout_prob must be a number in \[0, 1\), got 1.5"):
        config.update({"initializer_range": 0.5, "brand_new_field": 1, "hidden_dropout_prob": 1.5})
    with pytest.raises(ValueError, match=r"num_labels must be an int >= 1"):
        config.update({"num_labels": 0})  # a property that rewrites id2label and label2id
    with pytest.raises(ValueError, match=r"initializer_range must be a number > 0, got -1.0"):
        config.update_from_string("hidden_dropout_prob=0.3,initializer_range=-1.0")
    assert config.to_dict() == before and not hasattr(config, "brand_new_field")
    config.update({"hidden_dropout_prob": 0.3, "brand_new_field": 1})
    config.update_from_string("initializer_range=0.5")
    assert (config.hidden_dropout_prob, config.brand_new_field, config.initializer_range) == (0.3, 1, 0.5)


def test_update_may_change_fields_that_only_agree_together(make_config):
    config = make_config(("lion", "lit"))  # hidden_size 32, 4 heads
    config.update({"hidden_size": 36, "num_attention_heads": 6})
    assert (config.hidden_size, config.head_dim) == (36, 6)
    with pytest.raises(ValueError, match=r"hidden_size \(36\) must be a multiple of num_attention_heads \(5\)"):
        config.update({"num_attention_heads": 5})
    assert config.num_attention_heads == 6


# ------------------------------------------------------------------------------------------------------------------
# fp16 on a CPU: rows a model zeroes exactly
# ------------------------------------------------------------------------------------------------------------------


def _padded_batch(vocab_size=120, pad_id=0):
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(2, vocab_size, (2, 7), generator=generator)
    mask = torch.ones(2, 7, dtype=torch.long)
    mask[1, 4:] = 0
    return ids.masked_fill(mask == 0, pad_id), mask


def _fp16_step(model_case, make_config, make_inputs, **overrides):
    """(fp32 loss, fp16 loss, the parameters whose fp16 gradient is not finite) of one training step of a sequence
    classifier on a padded batch, the fp16 model a copy of the fp32 one."""
    config = make_config(model_case, num_labels=3, **overrides)
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(config).train()
    half = AutoModelForSequenceClassification.from_config(config)
    half.load_state_dict(model.state_dict())
    half = half.half().train()
    ids, mask = _padded_batch()
    inputs = make_inputs(model_case, ids, mask)
    labels = torch.tensor([0, 2])
    loss32 = model(**inputs, labels=labels).loss
    loss16 = half(**inputs, labels=labels).loss
    loss16.backward()
    bad = [name for name, p in half.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
    return loss32.item(), loss16.item(), bad


@pytest.mark.parametrize(
    "case, overrides",
    [
        # the mixer's output is 0 at padding and normalization="none" puts a LayerNorm after it
        (("lion", "lit"), dict(normalization="none", feature_map="elu1")),
        (("lion", "s"), dict(normalization="none", feature_map="identity", layer_norm_position="post")),
        # the pad token's embedding row is 0 and nothing else is added to it: the embeddings' LayerNorm reads a 0 row
        (("lion", "d"), dict(type_vocab_size=0)),
        (("bigs", "conv"), dict(type_vocab_size=0, position_embedding_type="none")),
        # the scalar mix normalises each layer, 0 at padding
        (("elmo", "default"), dict(mix_layer_norm=True)),
    ],
    ids=["lion-mixer-norm", "lion-s-post", "lion-d-no-types", "bigs-no-positions", "elmo-mix-layer-norm"],
)
def test_fp16_training_step_on_padded_rows_has_finite_gradients(case, overrides, make_config, make_inputs):
    loss32, loss16, bad = _fp16_step(case, make_config, make_inputs, **overrides)
    assert not bad, f"non-finite fp16 gradients in {bad}"
    assert loss16 == pytest.approx(loss32, abs=5e-3)


@pytest.mark.parametrize("case", [("bilstm_crf", "cnn"), ("elmo", "default")], ids=["bilstm_crf", "elmo"])
def test_fp16_masked_lm_step_projecting_every_position_has_finite_gradients(case, make_config, make_inputs):
    """These encoders give exactly 0 at padding and the head's dense bias starts at 0: with every position projected
    (sparse_prediction=False, as in compiled and exported graphs) the masked-LM head's LayerNorm reads 0 rows."""
    from transformers import AutoModelForMaskedLM

    config = make_config(case, sparse_prediction=False)
    torch.manual_seed(0)
    model = AutoModelForMaskedLM.from_config(config).half().train()
    ids, mask = _padded_batch()
    labels = ids.masked_fill(mask == 0, -100)
    model(**make_inputs(case, ids, mask), labels=labels).loss.backward()
    bad = [name for name, p in model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
    assert not bad, f"non-finite fp16 gradients in {bad}"


def test_elmo_normalised_mix_is_zero_at_padding_in_fp16(make_config, make_inputs):
    case = ("elmo", "default")
    model = AutoModel.from_config(make_config(case, mix_layer_norm=True)).eval()
    ids, mask = _padded_batch()
    inputs = make_inputs(case, ids, mask)
    with torch.no_grad():
        full = model(**inputs).last_hidden_state
        half = model.half()(**inputs).last_hidden_state
    assert half.dtype == torch.float16
    assert torch.equal(half[1, 4:], torch.zeros_like(half[1, 4:]))  # ElmoScalarMix: zeros at padding
    torch.testing.assert_close(half.float()[mask.bool()], full[mask.bool()], atol=2e-2, rtol=2e-2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_half_safe_layer_norm_is_layer_norm(dtype):
    torch.manual_seed(0)
    plain = torch.nn.LayerNorm(8, eps=1e-12)
    with torch.no_grad():
        plain.weight.normal_()
        plain.bias.normal_()
    safe = HalfSafeLayerNorm(8, eps=1e-12)
    safe.load_state_dict(plain.state_dict())
    assert isinstance(safe, torch.nn.LayerNorm)
    plain, safe = plain.to(dtype), safe.to(dtype)
    x = torch.randn(3, 8).to(dtype)
    x[2] = 0  # a zeroed (padded) row
    ours = safe(x.clone().requires_grad_())
    assert ours.dtype == dtype
    torch.testing.assert_close(ours, plain(x), atol=1e-2 if dtype != torch.float32 else 1e-6, rtol=1e-2)
    x = x.requires_grad_()
    safe(x)[:2].float().sum().backward()
    assert torch.isfinite(safe.weight.grad).all() and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("cast", ["to", "bfloat16", "half"])
def test_casting_a_built_model_keeps_the_strict_fp32_modules(cast, make_config):
    """model.to(bf16) / .bfloat16() / .half() of a built model: LION's decays and the CRF's scores stay fp32 with their
    values (StrictFp32Modules._apply), as at loading; every other weight takes the dtype."""
    from transformers import AutoModelForTokenClassification

    torch.manual_seed(0)
    model = AutoModelForTokenClassification.from_config(make_config(("lion", "d"), num_labels=3, use_crf=True))
    kept = {name: p.detach().clone() for name, p in model.named_parameters() if ".decay." in name or "crf" in name}
    assert any(".decay." in name for name in kept) and any("crf" in name for name in kept)
    dtype = torch.float16 if cast == "half" else torch.bfloat16
    model = model.to(dtype) if cast == "to" else getattr(model, cast)()
    for name, p in model.named_parameters():
        if name in kept:
            assert p.dtype == torch.float32 and torch.equal(p, kept[name]), name
        else:
            assert p.dtype == dtype, name
    assert all(p.dtype == torch.float32 for p in model.float().parameters())


def test_casting_keeps_exactly_the_strict_modules_when_parameters_are_replaced(make_config):
    """Under torch's overwrite-on-conversion mode the cast replaces each parameter (and its gradient) by a new
    tensor; a freed tensor's id, taken again by an ordinary gradient, must not keep that gradient fp32 (the next
    backward then failed: "a gradient with dtype 'float' to a tensor with grad_dtype 'Half'")."""
    from transformers import AutoModelForMaskedLM

    torch.manual_seed(0)
    model = AutoModelForMaskedLM.from_config(make_config(("bigs", "conv")))
    ids, mask = _padded_batch()
    model(input_ids=ids, attention_mask=mask, labels=ids).loss.backward()
    previous = torch.__future__.get_overwrite_module_params_on_conversion()
    torch.__future__.set_overwrite_module_params_on_conversion(True)
    try:
        model.half()
    finally:
        torch.__future__.set_overwrite_module_params_on_conversion(previous)
    for name, p in model.named_parameters():
        strict = ".fs4." in name or ".bs4." in name
        assert p.dtype == (torch.float32 if strict else torch.float16), name
        assert p.grad is None or p.grad.dtype == p.dtype, name
