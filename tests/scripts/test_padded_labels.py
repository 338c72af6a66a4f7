"""Labels at padded positions (``attention_mask`` 0) and the count the ``Trainer`` divides a loss by.

The Trainer passes ``num_items_in_batch`` = the labels that are not -100 over the accumulated batch, padding
included. A user's collator may pad labels with a tag (``DataCollatorForTokenClassification(label_pad_token_id=0)``,
the "O" tag) instead of -100. Per head:

* softmax token classification and masked LM: the loss reads the label at every position, padding included, as
  BERT's heads do (they ignore the attention mask); the count is the labels read, so ``eval_loss`` is the model's
  own loss. Unchanged.
* a CRF head scores the real tokens only: a label at a padded position is in no path and is not read, yet the
  Trainer counted it, so the loss was divided by too many tokens (``eval_loss`` 20-22% below the model's own loss in
  these batches, and an accumulated step that depends on how micro-batches are padded), silently. With the count it
  is now a ``ValueError`` that names the padded position and says to label it -100; without the count (a loop of the
  user's own) the padded labels are ignored, as before.
* ELMo's biLM already refuses such a count (``tests/scripts/test_accumulation.py``).
"""

import pytest
import torch
from transformers import AutoModelForTokenClassification, DataCollatorForTokenClassification, Trainer

from bizoo.modeling.value_checks import wait_for_input_checks
from tests.conftest import tiny_config, tokenizer_for, trainer_args

BIO = {0: "O", 1: "B-X", 2: "I-X"}
ONE_VARIANT_PER_TYPE = [("lion", "d"), ("bigs", "conv"), ("bilstm_crf", "cnn"), ("elmo", "default")]
PADDED_LABEL_ERROR = r"labels hold \d+ tag\(s\) other than -100 at padded positions .*row \d+, position \d+.*-100"


def tagging_examples(tokenizer, sentences, n=8):
    """Sentences of different lengths with legal BIO tags (O, B-X, I-X, O, ...)."""
    examples = []
    for i, text in enumerate(sentences(n)):
        encoded = dict(tokenizer(text))
        tags = [(j + i) % 3 for j in range(len(encoded["input_ids"]))]
        if tags[0] == 2:
            tags[0] = 0  # no I-X first
        examples.append({**encoded, "labels": tags})
    return examples


def crf_tagger(case, tokenizer):
    torch.manual_seed(0)
    config = tiny_config(case, vocab_size=len(tokenizer), num_labels=3, use_crf=True, id2label=BIO,
                         label2id={v: k for k, v in BIO.items()})
    return AutoModelForTokenClassification.from_config(config).eval()


@pytest.mark.parametrize("case", ONE_VARIANT_PER_TYPE, ids="-".join)
def test_crf_head_refuses_a_trainer_count_of_labels_at_padding(case, tokenizer, sentences, tmp_path):
    """A collator that pads labels with "O" (0): ``Trainer.evaluate`` reported a loss 20-22% below the model's own
    (the same rows, the same model: the Trainer's count took the padded labels the CRF does not read), and training
    divided by the same count; now a ``ValueError`` names the padded position. The model's own loss (no count) is
    unchanged, and with -100 at padding ``eval_loss`` is the model's own loss."""
    tokenizer = tokenizer_for(case, tokenizer)
    data = tagging_examples(tokenizer, sentences)
    model = crf_tagger(case, tokenizer)
    o_padded = DataCollatorForTokenClassification(tokenizer, label_pad_token_id=0)
    collator = DataCollatorForTokenClassification(tokenizer)  # labels -100 at padding
    batch, o_batch = collator(data), o_padded(data)
    assert ((o_batch["attention_mask"] == 0) & (o_batch["labels"] == 0)).any()  # rows of different lengths
    with torch.no_grad():
        own = model(**batch).loss
        torch.testing.assert_close(model(**o_batch).loss, own)  # without the count the padded labels are ignored
    args = trainer_args(tmp_path, per_device_eval_batch_size=8)
    trainer = Trainer(model=model, args=args, eval_dataset=data, data_collator=o_padded)
    with pytest.raises(ValueError, match=PADDED_LABEL_ERROR):
        trainer.evaluate()  # before: eval_loss 0.76 against LION's 0.95
    trainer = Trainer(model=model, args=args, eval_dataset=data, data_collator=collator)
    assert trainer.evaluate()["eval_loss"] == pytest.approx(float(own), rel=1e-5)


def test_crf_padded_label_check_of_a_gpu_input_is_read_later(tokenizer, sentences, as_on_a_gpu):
    """On a GPU the check is read later, without a host sync (``modeling/value_checks.py``): the call goes on and
    the next check, or ``wait_for_input_checks()``, raises. A hole inside a row (a 0 between real tokens) is a
    padded position too."""
    case = ("lion", "d")
    model = crf_tagger(case, tokenizer)
    batch = DataCollatorForTokenClassification(tokenizer)(tagging_examples(tokenizer, sentences, n=3))
    batch["attention_mask"][0, 2] = 0  # a hole; its label stays a tag
    count = (batch["labels"] != -100).sum()
    with torch.no_grad():
        loss = model(**batch, num_items_in_batch=count).loss
    assert torch.isfinite(loss)
    with pytest.raises(ValueError, match=r"labels hold 1 tag\(s\) .* at batch row 0, position 2"):
        wait_for_input_checks()
