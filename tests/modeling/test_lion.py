"""LION-specific behaviour: forms switchable after loading, variants, feature maps, normalisation, precision,
initialisation, the paper's sizes, and clear errors for bad input."""

import pytest
import torch
from transformers import AutoModel, AutoModelForMaskedLM, AutoModelForSequenceClassification, BertConfig, BertModel

import bizoo
from bizoo import LionConfig, LionModel
from bizoo.modeling.modeling_lion import LionAttention, retnet_decays
from tests.tiny_configs import TINY_CONFIGS

TINY = TINY_CONFIGS["lion"]


def tiny(**overrides):
    return LionConfig(**{**TINY, "vocab_size": 50, **overrides})


def ids(batch=2, length=12, seed=0):
    return torch.randint(5, 50, (batch, length), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("variant", ["lit", "d", "s"])
def test_forms_are_switchable_after_loading(variant, tmp_path):
    LionModel(tiny(lion_variant=variant)).save_pretrained(tmp_path)
    model = AutoModel.from_pretrained(tmp_path).eval()
    x = ids()
    mask = torch.ones_like(x)
    mask[0, 9:] = 0
    outputs = {}
    for form in ("attention", "rnn", "chunk", "auto"):
        model.config.lion_form = form
        outputs[form] = model(input_ids=x, attention_mask=mask).last_hidden_state
    for form in ("rnn", "chunk"):
        torch.testing.assert_close(outputs[form], outputs["attention"], rtol=1e-5, atol=1e-5)
    loaded_rnn = AutoModel.from_pretrained(tmp_path, lion_form="rnn").eval()
    assert loaded_rnn.config.lion_form == "rnn"
    torch.testing.assert_close(loaded_rnn(input_ids=x, attention_mask=mask).last_hidden_state, outputs["attention"], rtol=1e-5, atol=1e-5)
    model.config.lion_form = "parallel"
    with pytest.raises(ValueError, match="lion_form"):
        model(input_ids=x)


def test_variant_defaults_and_overrides():
    lit, d, s = (LionConfig(lion_variant=v) for v in ("lit", "d", "s"))
    assert (lit.feature_map, lit.position_embedding_type) == ("elu1", "absolute")
    assert (d.feature_map, d.position_embedding_type) == ("silu_norm", "none")
    assert (s.feature_map, s.position_embedding_type) == ("silu_norm", "none")
    custom = LionConfig(lion_variant="d", feature_map="elu1", position_embedding_type="absolute")
    assert (custom.feature_map, custom.position_embedding_type) == ("elu1", "absolute")
    assert LionModel(tiny(lion_variant="d")).embeddings.position_embeddings is None
    assert LionModel(tiny(lion_variant="lit")).embeddings.position_embeddings is not None


def test_feature_maps():
    x = torch.randn(2, 3, 5, 8)
    from bizoo.modeling.modeling_lion import feature_map

    assert (feature_map(x, "elu1") > 0).all()
    silu = feature_map(x, "silu_norm")
    assert (silu > 0).all()
    torch.testing.assert_close(silu.norm(dim=-1), torch.ones(2, 3, 5))
    assert torch.equal(feature_map(x, "identity"), x)


def test_normalization_none_uses_a_layer_norm_after_the_mixer_and_identity_needs_it():
    model = LionModel(tiny(lion_variant="d", normalization="none", feature_map="identity")).eval()
    assert isinstance(model.layers[0].mixer.mixer_norm, torch.nn.LayerNorm)
    assert model.layers[0].mixer.mixer_norm is not None
    assert torch.isfinite(model(input_ids=ids()).last_hidden_state).all()
    assert LionModel(tiny()).layers[0].mixer.mixer_norm is None
    with pytest.raises(ValueError, match="feature_map='identity' with normalization='rowsum'"):
        tiny(feature_map="identity")


def test_post_layer_norm_is_pad_invariant_and_has_no_final_norm():
    model = LionModel(tiny(layer_norm_position="post", lion_variant="s")).eval()
    assert model.final_layer_norm is None
    x = ids(1, 8)
    alone = model(input_ids=x).last_hidden_state
    padded = torch.cat([torch.zeros(1, 3, dtype=torch.long), x], 1)
    mask = torch.cat([torch.zeros(1, 3, dtype=torch.long), torch.ones(1, 8, dtype=torch.long)], 1)
    torch.testing.assert_close(model(input_ids=padded, attention_mask=mask).last_hidden_state[:, 3:], alone, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("variant", ["d", "s"])
def test_decay_parameters_stay_in_fp32_when_loaded_in_bf16(variant, tmp_path):
    AutoModelForMaskedLM.from_config(tiny(lion_variant=variant)).save_pretrained(tmp_path)
    model = AutoModelForMaskedLM.from_pretrained(tmp_path, dtype=torch.bfloat16)
    decay = {n: p for n, p in model.named_parameters() if ".decay." in n}
    assert decay and all(p.dtype == torch.float32 for p in decay.values())
    assert model.lion.layers[0].mixer.q_proj.weight.dtype == torch.bfloat16
    out = model(input_ids=ids()).logits
    assert out.dtype == torch.bfloat16 and torch.isfinite(out.float()).all()


def test_decay_initialisation():
    heads = TINY["num_attention_heads"]
    expected = retnet_decays(heads).float()
    d = LionModel(tiny(lion_variant="d", decay_init="retnet"))
    torch.testing.assert_close(torch.sigmoid(d.layers[0].mixer.decay.logits), expected)
    s = LionModel(tiny(lion_variant="s", decay_init="retnet"))
    torch.testing.assert_close(torch.sigmoid(-s.layers[0].mixer.decay.bias), expected)
    paper = LionModel(tiny(lion_variant="d")).layers[0].mixer.decay.logits
    assert paper.std() > 0.1  # a_h ~ N(0, 1), not a constant
    assert expected[0] == pytest.approx(1 - 2**-5) and expected[-1] == pytest.approx(1 - 2 ** -(5 + heads - 1))


def test_paper_sizes_match_bert():
    """BERT-base and BERT-large shapes: LION-LIT has BERT's encoder parameters (no pooler) plus the pre-LN final
    LayerNorm; LION-D drops the position table and adds one decay logit per head and layer."""
    for hidden, layers, heads, ffn in ((768, 12, 12, 3072), (1024, 24, 16, 4096)):
        sizes = dict(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads, intermediate_size=ffn)
        with torch.device("meta"):
            lit = LionModel(LionConfig(lion_variant="lit", **sizes))
            d = LionModel(LionConfig(lion_variant="d", **sizes))
            bert = BertModel(BertConfig(**sizes), add_pooling_layer=False)
        count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
        assert count(lit) == count(bert) + 2 * hidden
        assert count(d) == count(lit) - 512 * hidden + layers * heads


def test_docstrings_state_the_math_and_repr_is_informative():
    assert "M_ij" in LionAttention.__doc__ and "Σ_j M_ij (q_i·k_j) v_j" in LionAttention.__doc__
    assert "BERT-large" in LionConfig.__doc__
    text = repr(LionModel(tiny(lion_variant="s")))
    assert "variant='s'" in text and "form='auto'" in text


def test_kernel_backend_option(monkeypatch):
    model = LionModel(tiny(kernel_backend="reference")).eval()
    model(input_ids=ids())
    model.config.kernel_backend = "triton"
    monkeypatch.setenv("TRITON_INTERPRET", "0")  # CPU tensors and no interpreter: Triton cannot run them
    with pytest.raises(ValueError, match="triton"):
        model(input_ids=ids())


# --------------------------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(input_ids=torch.tensor([[5, 50]])), ValueError, r"input_ids holds 50, outside \[0, vocab_size=50\)"),
        (dict(input_ids=torch.tensor([[5, -1]])), ValueError, "input_ids holds -1"),
        (dict(input_ids=torch.tensor([5, 6])), ValueError, r"input_ids must be a \(batch, length\) tensor"),
        (dict(input_ids=torch.tensor([[5.0, 6.0]])), ValueError, "integer tensor"),
        (dict(input_ids=torch.zeros(0, 4, dtype=torch.long)), ValueError, "the batch is empty"),
        (dict(input_ids=ids(), attention_mask=torch.ones(2, 5)), ValueError, "attention_mask must have shape"),
        (dict(input_ids=ids(), attention_mask=torch.full((2, 12), 2)), ValueError, "only 0 .padding. and 1"),
        (dict(input_ids=ids(), token_type_ids=torch.full((2, 12), 7)), ValueError, "token_type_ids holds 7"),
        (dict(input_ids=ids(), token_type_ids=torch.zeros(2, 3, dtype=torch.long)), ValueError, "token_type_ids must have shape"),
        (dict(input_ids=ids(), inputs_embeds=torch.zeros(2, 12, 32)), ValueError, "exactly one of"),
        (dict(), ValueError, "exactly one of"),
        (dict(inputs_embeds=torch.full((1, 3, 32), float("nan"))), ValueError, "NaN or inf"),
        (dict(inputs_embeds=torch.zeros(1, 3, 31)), ValueError, "hidden_size=32"),
        (dict(input_ids=ids(1, 65)), ValueError, "max_position_embeddings=64"),
        (dict(input_ids=ids(), position_ids=torch.zeros(2, 12)), TypeError, "position_ids"),
        (dict(input_ids=ids(), output_attentions="yes"), ValueError, "output_attentions must be True, False or None"),
    ],
)
def test_bad_inputs_are_clear_errors(kwargs, error, message):
    model = LionModel(tiny(lion_variant="lit")).eval()
    with pytest.raises(error, match=message):
        model(**kwargs)


def test_long_sequences_are_fine_without_learned_positions():
    model = LionModel(tiny(lion_variant="d")).eval()
    assert model(input_ids=ids(1, 200)).last_hidden_state.shape == (1, 200, 32)


def test_padding_beyond_the_position_table_is_fine():
    """Only real tokens count against max_position_embeddings (P), and positions count real tokens only
    (p_t = cumsum(mask)_t - 1): in a batch P + 6 tokens long, a right-padded row, a left-padded one, one with holes
    spread over every column and one of exactly P real tokens each give, at their real positions, what they give
    alone. The position table is widened so that a shifted position changes the output."""
    model = LionModel(tiny(lion_variant="lit")).eval()
    table = model.embeddings.position_embeddings.weight  # (P, d)
    P = table.shape[0]
    L = P + 6
    with torch.no_grad():
        table.copy_(torch.randn(table.shape, generator=torch.Generator().manual_seed(1)))
    x = ids(4, L)
    mask = torch.zeros(4, L, dtype=torch.long)
    mask[0, :10] = 1  # right padding
    mask[1, L - 10 :] = 1  # left padding: its real tokens sit in columns past the table
    mask[2, ::7] = 1  # holes: every 7th column
    mask[3, L - P :] = 1  # the whole table: P real tokens
    padded = model(input_ids=x, attention_mask=mask).last_hidden_state  # (4, L, d)
    for b in range(4):
        real = mask[b].bool()
        alone = model(input_ids=x[b : b + 1, real]).last_hidden_state[0]  # (n, d)
        torch.testing.assert_close(padded[b, real], alone, rtol=1e-5, atol=1e-5, msg=lambda m: f"row {b}: {m}")
    # the embeddings by their formula: LayerNorm(word[x_t] + table[p_t] + type[0]), p_t = real tokens before t
    emb = model.embeddings
    for b in range(4):
        real = mask[b].nonzero().flatten().tolist()
        words = x[b, real]  # (n,)
        summed = emb.word_embeddings.weight[words] + table[: len(real)] + emb.token_type_embeddings.weight[0]
        got = emb(x[b : b + 1], None, None, mask[b : b + 1])[0, real]  # (n, d)
        torch.testing.assert_close(got, emb.layer_norm(summed), rtol=1e-5, atol=1e-5, msg=lambda m: f"row {b}: {m}")
    with torch.no_grad():  # not vacuous: every token one position on changes the output
        table.copy_(table.roll(-1, 0))
    shifted = model(input_ids=x[:1, :10]).last_hidden_state[0]  # (10, d)
    assert (shifted - padded[0, :10]).abs().max() > 0.1


@pytest.mark.parametrize(
    "labels, message",
    [(torch.tensor([2, 9]), r"labels hold 9; allowed are 0..2 and -100"), (torch.tensor([[1, 0]]), "labels must have shape")],
)
def test_bad_labels_are_clear_errors(labels, message):
    model = AutoModelForSequenceClassification.from_config(tiny(num_labels=3)).eval()
    with pytest.raises(ValueError, match=message):
        model(input_ids=ids(), labels=labels)


def test_masked_lm_labels_outside_the_vocabulary():
    model = AutoModelForMaskedLM.from_config(tiny()).eval()
    labels = torch.full((2, 12), -100)
    labels[0, 3] = 77
    with pytest.raises(ValueError, match="labels hold 77"):
        model(input_ids=ids(), labels=labels)


@pytest.mark.parametrize(
    "field, value",
    [
        ("lion_variant", "x"), ("lion_form", "parallel"), ("feature_map", "relu"), ("normalization", "softmax"),
        ("decay_init", "zeros"), ("position_embedding_type", "rotary"), ("layer_norm_position", "sandwich"),
        ("chunk_size", 0), ("num_attention_heads", 5), ("type_vocab_size", -1), ("hidden_act", "swiglu"),
    ],
)
def test_lion_config_rejects_invalid_values(field, value):
    with pytest.raises(ValueError, match=field if field != "num_attention_heads" else "multiple of num_attention_heads"):
        tiny(**{field: value})
