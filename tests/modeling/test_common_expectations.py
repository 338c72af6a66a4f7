"""What transformers' common model tests expect of every model, where bizoo's other suites do not already check it;
run on every registered model type, variant and head.

* Frozen layers below a trainable one: with every parameter frozen but those of the top encoder layer (an adapter's
  case), reentrant gradient checkpointing still passes a gradient to that layer. transformers'
  ``gradient_checkpointing_enable`` (and PEFT) call ``enable_input_require_grads`` for it, whose hook must sit on what
  the layers read.
"""

import re

import pytest
import torch

import bizoo

V = 120
TAGS = ["O", "B-X", "I-X"]


def tagging_config(model_case, make_config, **overrides):
    kwargs = dict(vocab_size=V, id2label=dict(enumerate(TAGS)), label2id={t: i for i, t in enumerate(TAGS)})
    return make_config(model_case, **{**kwargs, **overrides})


def padded_batch(model_case, make_inputs):
    """Two rows, the second right-padded; the labels of every head's loss."""
    ids = torch.randint(5, V, (2, 6), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[1, 4:] = 0
    ids = ids.masked_fill(mask == 0, 0)
    labels = {
        "ForSequenceClassification": torch.tensor([1, 2]),
        "ForTokenClassification": torch.tensor([[0, 1, 2, 0, 1, 2], [1, 2, 0, 0, 0, 0]]).masked_fill(mask == 0, -100),
    }
    return make_inputs(model_case, ids, mask), labels, ids.masked_fill(mask == 0, -100)


def heads_with_a_loss(model_case):
    encoder = bizoo.get_spec(model_case[0]).models["AutoModel"]
    return [cls for cls in bizoo.get_spec(model_case[0]).models.values() if cls is not encoder]


@pytest.mark.parametrize("use_crf", [False, True])
def test_reentrant_checkpointing_trains_a_layer_above_frozen_ones(model_case, make_config, make_inputs, use_crf):
    config = tagging_config(model_case, make_config, use_crf=use_crf, initializer_range=0.3)
    inputs, task_labels, word_labels = padded_batch(model_case, make_inputs)
    top = rf"(^|\.)layers\.{config.num_hidden_layers - 1}\."
    for cls in heads_with_a_loss(model_case):
        model = cls(config).train()
        for name, parameter in model.named_parameters():
            parameter.requires_grad_(re.search(top, name) is not None)
        trainable = [name for name, parameter in model.named_parameters() if parameter.requires_grad]
        assert trainable, f"{cls.__name__}: no parameter under {top}"
        enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
        enable({"use_reentrant": True})  # transformers' default since 5.x is False
        labels = next((v for suffix, v in task_labels.items() if cls.__name__.endswith(suffix)), word_labels)
        loss = model(**inputs, labels=labels).loss
        assert loss.requires_grad, f"{cls.__name__}: the loss does not reach the trainable top layer"
        loss.backward()
        dead = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.any())]
        assert not dead, f"{cls.__name__}: no gradient for {dead}"


def test_disable_input_require_grads_removes_every_hook(model_case, make_config, make_inputs):
    config = tagging_config(model_case, make_config)
    inputs, _, _ = padded_batch(model_case, make_inputs)
    for cls in bizoo.get_spec(model_case[0]).models.values():
        model = cls(config).eval().requires_grad_(False)
        model.enable_input_require_grads()
        assert model(**inputs, output_hidden_states=True).hidden_states[-1].requires_grad, cls.__name__
        model.disable_input_require_grads()
        assert not any(module._forward_hooks for module in model.modules()), cls.__name__
        assert not model(**inputs, output_hidden_states=True).hidden_states[-1].requires_grad, cls.__name__
