"""ELMo's tagger as Peters et al. (2018): the BiLSTM reads [ELMo mix ; word vector ; character CNN], the word vectors
start from the biLM's own (pretrained) word table, the biLM's encoder can be frozen; checked against a hand composition of the parts,
a training step, a saved biLM, torch.compile and torch.export."""

import pytest
import torch

import bizoo
from bizoo import ElmoConfig, ElmoForBidirectionalLM, ElmoForTokenClassification
from bizoo.modeling.char_encoders import CharCnnEncoder

PETERS = dict(tagger_word_features=True, tagger_char_cnn_filters=5, freeze_elmo=True, tagger_dropout=0.0)
CASE = ("elmo", "default")


def tagger(make_config, seed=0, **fields):
    torch.manual_seed(seed)
    return ElmoForTokenClassification(make_config(CASE, num_labels=4, **{**PETERS, **fields})).eval()


def widen(model: torch.nn.Module) -> torch.nn.Module:
    """Weights large enough that every part moves the output (a small init passes little between positions)."""
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if parameter.dim() > 1 and "crf" not in name:
                parameter.normal_(0.0, 0.7)
    return model


def batch(make_inputs, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 120, (3, 9), generator=g)
    mask = torch.ones(3, 9, dtype=torch.long)
    mask[1, 6:] = 0
    return make_inputs(CASE, ids, mask)


def test_the_bilstm_reads_the_mix_the_word_vector_and_the_character_cnn(make_config, make_inputs):
    model = widen(tagger(make_config))
    inputs = batch(make_inputs)
    seen = {}
    model.tagger.register_forward_pre_hook(lambda module, args: seen.update(x=args[0]))
    model(**inputs)
    mask = inputs["attention_mask"].bool()
    mixed = model.elmo(char_ids=inputs["char_ids"], attention_mask=inputs["attention_mask"]).last_hidden_state
    words = model.elmo.word_embeddings.weight[inputs["input_ids"]]  # the biLM's table, row per word id
    chars = torch.zeros(*mask.shape, 5)
    for b, t in zip(*torch.nonzero(mask, as_tuple=True)):  # word by word, real words only
        chars[b, t] = model.char_cnn(inputs["char_ids"][b, t][None])[0]
    expected = torch.cat([mixed, words, chars], dim=-1)
    assert seen["x"].shape == (3, 9, model.config.tagger_input_size) == (3, 9, 2 * 8 + 8 + 5)
    torch.testing.assert_close(seen["x"][mask], expected[mask])
    for part in (slice(0, 16), slice(16, 24), slice(24, 29)):  # every part is non-trivial
        assert seen["x"][mask][:, part].abs().amax() > 0.1


def test_an_unknown_word_is_told_apart_by_its_characters(make_config, make_inputs):
    model = widen(tagger(make_config, tagger_word_features=True, freeze_elmo=False))
    inputs = batch(make_inputs)
    inputs.pop("labels", None)
    unk = model.config.unk_token_id
    inputs["input_ids"][0, 2] = inputs["input_ids"][0, 3] = unk  # two different words, both out of the vocabulary
    assert not torch.equal(inputs["char_ids"][0, 2], inputs["char_ids"][0, 3])
    seen = {}
    model.tagger.register_forward_pre_hook(lambda module, args: seen.update(x=args[0]))
    model(**inputs)
    x = seen["x"][0]
    assert torch.equal(x[2, 16:24], x[3, 16:24])  # the same [UNK] word vector
    assert (x[2, 24:] - x[3, 24:]).abs().amax() > 1e-3  # the character CNN differs


def test_a_frozen_bilm_keeps_its_weights_and_the_mix_and_tagger_learn(make_config, make_inputs):
    model = tagger(make_config).train()
    inputs = batch(make_inputs)
    inputs["labels"] = torch.randint(0, 4, (3, 9)).masked_fill(inputs["attention_mask"] == 0, -100)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trained = [n for n, p in model.named_parameters() if p.requires_grad]
    assert all(n.startswith(("elmo.scalar_mixes.", "elmo.word_embeddings.", "char_cnn.", "tagger.", "classifier."))
               for n in trained)
    assert "elmo.word_embeddings.weight" in trained and any(n.startswith("elmo.scalar_mixes.") for n in trained)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model(**inputs).loss.backward()
    optimizer.step()
    for name, parameter in model.named_parameters():
        moved = not torch.equal(parameter, before[name])
        if name.startswith("elmo.") and not name.startswith(("elmo.scalar_mixes.", "elmo.word_embeddings.")):
            assert not moved and parameter.grad is None, name
    assert not torch.equal(model.tagger.weight_ih_l0, before["tagger.weight_ih_l0"])
    assert not torch.equal(model.elmo.scalar_mixes[0].scalar_weights, before["elmo.scalar_mixes.0.scalar_weights"])


def test_loaded_from_a_bilm_the_word_vectors_are_the_bilms_table(tmp_path, make_config):
    torch.manual_seed(3)
    bilm = ElmoForBidirectionalLM(make_config(CASE))
    bilm.save_pretrained(tmp_path / "bilm")
    model = ElmoForTokenClassification.from_pretrained(tmp_path / "bilm", num_labels=3, **PETERS)
    assert torch.equal(model.elmo.word_embeddings.weight, bilm.elmo.word_embeddings.weight)
    assert torch.equal(model.elmo.layers[0].forward_cell.weight_ih, bilm.elmo.layers[0].forward_cell.weight_ih)
    inputs = dict(input_ids=torch.randint(5, 120, (2, 6)), char_ids=torch.randint(1, 40, (2, 6, 6)),
                  labels=torch.randint(0, 3, (2, 6)))
    model.train()(**inputs).loss.backward()  # loaded weights: the biLM's get no gradient, whatever their flags
    fixed = [(n, p) for n, p in model.elmo.named_parameters() if not n.startswith(("scalar_mixes.", "word_embeddings."))]
    assert fixed and all(p.grad is None for n, p in fixed)
    assert model.tagger.weight_ih_l0.grad is not None and model.elmo.scalar_mixes[0].gamma.grad is not None
    assert model.elmo.word_embeddings.weight.grad is not None  # the word vectors are fine-tuned
    model.save_pretrained(tmp_path / "tagger")
    again = ElmoForTokenClassification.from_pretrained(tmp_path / "tagger")
    assert again.config.tagger_char_cnn_filters == 5 and isinstance(again.char_cnn, CharCnnEncoder)
    assert torch.equal(again.char_cnn.conv.weight, model.char_cnn.conv.weight)


def test_the_default_tagger_reads_the_mix_alone(make_config):
    model = ElmoForTokenClassification(make_config(CASE, num_labels=3))
    assert model.elmo.word_embeddings is None and model.char_cnn is None
    assert model.tagger.weight_ih_l0.shape[1] == 2 * 8
    assert all(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("head", ["sequence", "token"])
def test_resizing_a_classifier_without_a_word_table_grows_the_vocabulary_it_accepts(make_config, make_inputs, tmp_path,
                                                                                    head):
    """The classifiers read characters only (no word table): ``resize_token_embeddings`` after
    ``tokenizer.add_tokens`` has nothing to resize but the vocabulary ``input_ids`` are checked against; the outputs
    do not change, and the size survives save and load."""
    cls = bizoo.ElmoForSequenceClassification if head == "sequence" else ElmoForTokenClassification
    model = cls(make_config(CASE, num_labels=3)).eval()
    assert model.get_input_embeddings() is None
    inputs = batch(make_inputs)
    expected = model(**inputs).logits
    inputs["input_ids"][0, 0] = 125  # a word the tokenizer added
    with pytest.raises(ValueError, match=r"input_ids holds 125, outside \[0, vocab_size=120\)"):
        model(**inputs)
    assert model.resize_token_embeddings(126, pad_to_multiple_of=8) is None
    assert model.config.vocab_size == 128 and model.elmo.config.vocab_size == 128
    torch.testing.assert_close(model(**inputs).logits, expected, rtol=0, atol=0)
    model.save_pretrained(tmp_path)
    assert cls.from_pretrained(tmp_path).config.vocab_size == 128
    with pytest.raises(ValueError, match="new_num_tokens must be an int >= 1, got 0"):
        model.resize_token_embeddings(0)


def test_resizing_the_tagger_with_word_vectors_grows_its_table(make_config):
    model = tagger(make_config)
    table = model.resize_token_embeddings(130)
    assert table is model.elmo.word_embeddings and table.num_embeddings == 130 and model.config.vocab_size == 130


def test_word_vectors_need_input_ids(make_config, make_inputs):
    model = tagger(make_config)
    inputs = batch(make_inputs)
    with pytest.raises(ValueError, match="reads word vectors .* pass input_ids"):
        model(char_ids=inputs["char_ids"], attention_mask=inputs["attention_mask"])


@pytest.mark.parametrize("field, value", [("tagger_char_cnn_filters", -1), ("tagger_char_cnn_filters", 2.5),
                                          ("tagger_dropout", 1.0), ("tagger_word_features", "yes"),
                                          ("freeze_elmo", 1)])
def test_bad_tagger_fields_are_refused(field, value):
    with pytest.raises(ValueError, match=field):
        ElmoConfig(**{field: value})


def test_compiles_without_graph_breaks_and_exports(make_config, make_inputs):
    model = widen(tagger(make_config))
    inputs = batch(make_inputs)
    inputs["labels"] = torch.randint(0, 4, (3, 9)).masked_fill(inputs["attention_mask"] == 0, -100)
    explanation = torch._dynamo.explain(model)(**inputs)
    assert explanation.graph_break_count == 0
    torch._dynamo.reset()
    expected = model(**inputs)
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)(**inputs)
    exported = torch.export.export(model, args=(), kwargs=inputs).module()(**inputs)
    for got in (compiled, exported):
        torch.testing.assert_close(got["loss"], expected.loss, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(got["logits"], expected.logits, rtol=1e-5, atol=1e-6)
    assert bizoo.get_spec("elmo").models["AutoModelForTokenClassification"] is ElmoForTokenClassification
