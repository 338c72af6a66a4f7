"""The ``PreTrainedModel`` API that users of transformers reach for on any model, checked on every registered model
type, variant and head where the conformance suite (test_conformance.py) does not already."""

import torch

import bizoo


def test_dummy_inputs_run_every_model_and_head(model_case, make_config):
    """``model(**model.dummy_inputs)`` runs, as on every transformers model: the models that read characters
    (BiLSTM-CRF, ELMo) add the ``char_ids`` they need to transformers' dummy ``input_ids`` (3, 5)."""
    config = make_config(model_case, vocab_size=120)
    for cls in bizoo.get_spec(model_case[0]).models.values():
        model = cls(config).eval()
        inputs = model.dummy_inputs
        assert tuple(inputs["input_ids"].shape) == (3, 5)
        with torch.no_grad():
            first = model(**inputs)[0]
        assert first.shape[0] == 3, (cls.__name__, tuple(first.shape))
        assert torch.isfinite(first).all(), cls.__name__
