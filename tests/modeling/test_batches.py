"""Batches as transformers builds them, read by bizoo models.

* ``DataCollatorWithFlattening`` packs a batch into one row, ``position_ids`` restarting at every sequence and no
  attention mask (BERT in transformers 5 reads the restarts as a block-diagonal attention mask). A bizoo model reads
  one sequence per row and would run each sequence's recurrence into the next: it refuses the packing keywords
  with a message that names the collator and what to use instead; ``position_ids=None`` (BERT's default) is
  accepted and changes nothing.
"""

import pytest
import torch
from transformers import (
    AutoModelForTokenClassification,
    DataCollatorWithFlattening,
)

from tests.conftest import generated_sentences, tiny_config, tokenizer_for

ONE_VARIANT_PER_TYPE = [("lion", "d"), ("lion", "lit"), ("bigs", "conv"), ("bilstm_crf", "cnn"), ("elmo", "default")]


# --------------------------------------------------------------------------------------------------------------
# Packed rows (DataCollatorWithFlattening)
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ONE_VARIANT_PER_TYPE, ids="-".join)
def test_packed_rows_are_refused_by_name_and_position_ids_none_is_accepted(case, tokenizer):
    """The flattening collator's batch (input_ids (1, N), position_ids restarting at 0, labels) and its
    flash-attention keywords are a TypeError that names the collator and the padding collators (before: "got
    unexpected keyword arguments ['position_ids']", which says neither why nor what to do, and invites dropping
    position_ids, after which the packed row is read silently as one sequence). ``position_ids=None`` was refused
    too; it is what BERT takes by default and changes nothing."""
    tok = tokenizer_for(case, tokenizer)
    features = [dict(tok(text)) for text in generated_sentences(3)]
    for feature in features:
        feature["labels"] = [0] * len(feature["input_ids"])
    model = AutoModelForTokenClassification.from_config(tiny_config(case, vocab_size=len(tok), num_labels=3)).eval()
    packed = DataCollatorWithFlattening()(features)
    assert packed["input_ids"].shape[0] == 1 and (packed["position_ids"] == 0).sum() == 3
    with pytest.raises(TypeError, match=r"position_ids.*DataCollatorWithFlattening.*DataCollatorWithPadding"):
        model(**packed)
    varlen = DataCollatorWithFlattening(return_position_ids=False, return_flash_attn_kwargs=True)(features)
    with pytest.raises(TypeError, match=r"cu_seq_lens_k, cu_seq_lens_q.*DataCollatorWithFlattening"):
        model(**varlen)
    batch = tok([generated_sentences(2)[0], generated_sentences(2)[1]], padding=True, return_tensors="pt")
    with torch.no_grad():
        plain = model(**batch).logits
        given_none = model(**batch, position_ids=None).logits
    torch.testing.assert_close(given_none, plain, rtol=0, atol=0)
