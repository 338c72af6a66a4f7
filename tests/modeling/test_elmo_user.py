"""ELMo as a user of bilm-tf / AllenNLP expects it: a frozen biLM is a fixed feature extractor (no dropout inside it
while the tagger trains), and the word table is the LM softmax (an untied table, which no loss reads, is refused)."""

from __future__ import annotations

import pytest
import torch

from bizoo import ElmoForBidirectionalLM, ElmoForTokenClassification
from tests.modeling.test_elmo import V, tiny
from tests.modeling.test_elmo_tagger import widen

def tagger_inputs(model: ElmoForTokenClassification, chars: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """What the tagger's BiLSTM reads (B, L, tagger_input_size) in one forward pass."""
    seen = {}
    handle = model.tagger.register_forward_pre_hook(lambda module, args: seen.update(x=args[0].detach().clone()))
    try:
        model(char_ids=chars, attention_mask=mask)
    finally:
        handle.remove()
    return seen["x"]


@pytest.mark.parametrize("freeze", [True, False], ids=["frozen", "fine-tuned"])
def test_a_frozen_bilm_gives_its_evaluation_features_while_the_tagger_trains(freeze):
    """freeze_elmo: the biLM's LSTMs run without their input dropout in training, so the mix the tagger reads is the
    one evaluation gives (bilm-tf's and AllenNLP's pretrained biLM run their inference graph, without dropout);
    a biLM that is fine-tuned keeps its dropout."""
    torch.manual_seed(0)
    config = tiny(hidden_dropout_prob=0.5, tagger_dropout=0.0, freeze_elmo=freeze, num_labels=3)
    model = widen(ElmoForTokenClassification(config))
    chars = torch.randint(1, 262, (2, 6, 7), generator=torch.Generator().manual_seed(1))
    mask = torch.ones(2, 6, dtype=torch.long)
    mask[1, 4:] = 0
    real = mask.bool()
    evaluated = tagger_inputs(model.eval(), chars, mask)
    model.train()
    first, second = (tagger_inputs(model, chars, mask) for _ in range(2))
    if freeze:
        torch.testing.assert_close(first[real], evaluated[real], rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(second[real], evaluated[real], rtol=1e-6, atol=1e-6)
    else:  # the dropout is there and moves the mix (so the frozen case above is not vacuous)
        assert (first[real] - evaluated[real]).abs().amax() > 1e-2
        assert (first[real] - second[real]).abs().amax() > 1e-2
    # the biLM's own objective keeps bilm-tf's training dropout, with the tagger's field set too (a tagger's config
    # loaded into another head: that head trains the LSTMs)
    lm = widen(ElmoForBidirectionalLM(tiny(hidden_dropout_prob=0.5, freeze_elmo=True)))
    ids = torch.randint(5, V, (2, 6), generator=torch.Generator().manual_seed(2))
    lm.train()
    a = lm.elmo(char_ids=chars, attention_mask=mask).top_layer
    b = lm.elmo(char_ids=chars, attention_mask=mask).top_layer
    assert (a - b).abs().amax() > 1e-2
    assert torch.isfinite(lm(input_ids=ids, char_ids=chars, attention_mask=mask, labels=ids).loss)


def test_a_loaded_frozen_tagger_stays_frozen(tmp_path):
    """transformers' loader puts new, trainable parameters in place of those the tagger froze when built: the frozen
    biLM's character CNN and LSTMs were trainable again after from_pretrained (and under DDP never got a gradient)."""
    model = ElmoForTokenClassification(tiny(freeze_elmo=True, num_labels=3))
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert any(name.startswith("elmo.scalar_mixes.") for name in trainable)
    assert not any(name.startswith("elmo.layers.") for name in trainable)
    model.save_pretrained(tmp_path)
    loaded = ElmoForTokenClassification.from_pretrained(tmp_path)
    assert {name for name, p in loaded.named_parameters() if p.requires_grad} == trainable
    loaded, _ = ElmoForTokenClassification.from_pretrained(tmp_path, output_loading_info=True)
    assert {name for name, p in loaded.named_parameters() if p.requires_grad} == trainable


def test_an_untied_word_table_is_refused_by_name():
    """ELMo's encoder reads characters only: its word table is the LM softmax. An untied table would be read by no
    loss (never trained; no gradient, which DDP refuses), and a tagger's word vectors (tagger_word_features) loaded from
    such a biLM would be that random table, not the biLM's softmax rows."""
    with pytest.raises(ValueError, match=r"ElmoConfig: tie_word_embeddings must be True.*got False"):
        tiny(tie_word_embeddings=False)
    for model_class in (ElmoForBidirectionalLM, ElmoForTokenClassification):
        with pytest.raises(ValueError, match="tie_word_embeddings"):
            model_class(tiny(tie_word_embeddings=False, num_labels=3, tagger_word_features=True))
    config = tiny()
    config.tie_word_embeddings = False  # set after construction: the model's check refuses it too
    with pytest.raises(ValueError, match="tie_word_embeddings"):
        ElmoForBidirectionalLM(config)


def test_the_tagger_reads_the_softmax_rows_of_a_saved_bilm(tmp_path):
    """A biLM trained and saved, then a tagger with word features: its word vectors are the LM softmax the biLM
    trained (tied: one table), and every biLM parameter got a gradient in the LM step."""
    torch.manual_seed(0)
    lm = ElmoForBidirectionalLM(tiny()).train()
    ids = torch.randint(5, V, (2, 6), generator=torch.Generator().manual_seed(3))
    chars = torch.randint(1, 262, (2, 6, 7), generator=torch.Generator().manual_seed(4))
    lm(input_ids=ids, char_ids=chars, labels=ids).loss.backward()
    assert [n for n, p in lm.named_parameters() if p.grad is None] == []
    lm.save_pretrained(tmp_path / "bilm")
    tagger = ElmoForTokenClassification.from_pretrained(tmp_path / "bilm", num_labels=3, tagger_word_features=True)
    assert torch.equal(tagger.elmo.word_embeddings.weight, lm.lm_head.weight)


def test_the_taggers_character_cnn_leaves_out_bilm_padding():
    """ELMo's tagger CNN (Ma & Hovy's, over bilm-tf's character ids) takes its max over a word's real characters: the
    scheme's in-word padding 261 entered it (windows of padding alone, the learned 261 row at the word's end)."""
    from tests.modeling.test_bilstm_crf_user import bilm_char_ids, real_rows, widened

    model = ElmoForTokenClassification(tiny(num_labels=3, tagger_char_cnn_filters=6))
    cnn = widened(model.char_cnn)
    _, char_ids = bilm_char_ids(12)
    ours = cnn(char_ids[0])  # (N, F)
    for i, real in enumerate(real_rows(char_ids)):
        oracle = cnn.conv(cnn.embed(torch.tensor(real))[None].transpose(1, 2)).amax(-1)[0]
        torch.testing.assert_close(ours[i], oracle, rtol=1e-5, atol=1e-5)
