"""What a loss adds up to across batches under transformers' ``Trainer``: the count it passes as
``num_items_in_batch`` (gradient accumulation, and ``eval_loss`` in transformers >= 5) must be the count the model's
loss divides by, whatever the padding side.

* ELMo's biLM: the Trainer counts ``labels[..., 1:] != -100`` (its ``loss_type`` is a causal LM's), which is the
  number of words the forward LM predicts only when every row starts at position 0. A left-padded row's first real
  word was counted though no direction predicts it from the left, so the loss was divided by too many words
  (``eval_loss`` 8% low here, the training loss and its gradient likewise), silently. The model now refuses a count
  taken over labels it does not predict, naming the padding; ``bizoo pretrain``'s collator pads on the right whatever
  the tokenizer says, so the command's loss is the model's own.
"""

import pytest
import torch
from transformers import AutoModelForPreTraining, DataCollatorForTokenClassification, Trainer

from tests.conftest import tiny_config, tokenizer_for, trainer_args

ELMO = ("elmo", "default")


def bilm_examples(tokenizer, sentences, n=8):
    """Sentences of different lengths, labels = the word ids (what a biLM predicts)."""
    return [{**dict(tokenizer(text)), "labels": tokenizer(text)["input_ids"]} for text in sentences(n)]


@pytest.fixture
def left_padding_tokenizer(tokenizer):
    wordchar = tokenizer_for(ELMO, tokenizer)
    side = wordchar.padding_side
    wordchar.padding_side = "left"
    yield wordchar
    wordchar.padding_side = side


def test_bilm_refuses_a_trainer_count_of_words_it_does_not_predict(left_padding_tokenizer, sentences, tmp_path):
    """Left padding: the Trainer's count (labels[..., 1:] != -100) includes each padded row's first real word, which
    the forward LM does not predict. ``Trainer.evaluate`` reported a loss 8% below the model's own (the same rows,
    the same model), and training divided by the same wrong count; now a ``ValueError`` names the padding. The model's
    own loss (no count) and the count of right-padded rows are unchanged."""
    data = bilm_examples(left_padding_tokenizer, sentences)
    torch.manual_seed(0)
    model = AutoModelForPreTraining.from_config(tiny_config(ELMO, vocab_size=len(left_padding_tokenizer))).eval()
    collator = DataCollatorForTokenClassification(left_padding_tokenizer)
    batch = collator(data)
    assert (batch["attention_mask"][:, 0] == 0).any()  # some rows are padded on the left
    with torch.no_grad():
        own = model(**batch).loss
    trainer = Trainer(model=model, args=trainer_args(tmp_path, per_device_eval_batch_size=8), eval_dataset=data,
                      data_collator=collator)
    with pytest.raises(ValueError, match=r"num_items_in_batch.*labels\[\.\.\., 1:\].*padding_side"):
        trainer.evaluate()  # before: eval_loss = 3.46 against the model's 3.76
    left_padding_tokenizer.padding_side = "right"
    assert trainer.evaluate()["eval_loss"] == pytest.approx(float(own), rel=1e-5)


def test_pretrain_bilm_collator_pads_on_the_right(left_padding_tokenizer, sentences, tmp_path):
    """``bizoo pretrain --objective bilm`` collates with ``BiLMCollator``: its batches are right-padded whatever the
    tokenizer's ``padding_side``, so the Trainer's count is the model's and the held-out loss its own."""
    from bizoo.scripts.pretrain import BiLMCollator

    tokenizer = left_padding_tokenizer
    data = [{k: v for k, v in dict(tokenizer(text)).items() if k in ("input_ids", "char_ids")}
            for text in sentences(8)]
    collator = BiLMCollator(tokenizer)
    batch = collator(data)
    assert (batch["attention_mask"][:, 0] == 1).all()
    torch.manual_seed(0)
    model = AutoModelForPreTraining.from_config(tiny_config(ELMO, vocab_size=len(tokenizer))).eval()
    with torch.no_grad():
        own = model(**batch).loss
    trainer = Trainer(model=model, args=trainer_args(tmp_path, per_device_eval_batch_size=3), eval_dataset=data,
                      data_collator=collator)
    items = trainer._get_num_items_in_batch([batch], torch.device("cpu"))
    with torch.no_grad():
        torch.testing.assert_close(model(**batch, num_items_in_batch=items).loss, own, rtol=1e-5, atol=1e-6)
    assert tokenizer.padding_side == "left"  # the tokenizer is left as it was


@pytest.mark.parametrize("end", ["first", "last"])
def test_bilm_refuses_a_count_only_one_of_its_lms_matches(tokenizer, sentences, end):
    """A right-padded row labelled -100 at only one end (its first or its last real word): the Trainer's count equals
    the forward LM's and not the backward LM's (or the reverse), and no one count normalises both sums; the loss was
    8-10% off the model's own, silently. Labelled -100 at both ends, both counts match again."""
    wordchar = tokenizer_for(ELMO, tokenizer)
    batch = DataCollatorForTokenClassification(wordchar)(bilm_examples(wordchar, sentences, n=3))
    assert (batch["attention_mask"][:, 0] == 1).all()  # right padding
    lengths = batch["attention_mask"].sum(-1)
    torch.manual_seed(0)
    model = AutoModelForPreTraining.from_config(tiny_config(ELMO, vocab_size=len(wordchar))).eval()
    labels = batch["labels"].clone()
    labels[0, 0 if end == "first" else lengths[0] - 1] = -100
    counted = (labels[:, 1:] != -100).sum()
    with pytest.raises(ValueError, match=r"forward LM predicts \d+ .*backward LM \d+.*only one of its ends"):
        model(**{**batch, "labels": labels}, num_items_in_batch=counted)
    labels[0, 0] = labels[0, lengths[0] - 1] = -100  # both ends: each LM predicts every counted word
    with torch.no_grad():
        own = model(**{**batch, "labels": labels}).loss
        counted = (labels[:, 1:] != -100).sum()
        torch.testing.assert_close(model(**{**batch, "labels": labels}, num_items_in_batch=counted).loss, own)
