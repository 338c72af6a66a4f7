"""No host synchronisation in a compiled training step, read from the graphs themselves (a CPU-side check of what
``torch.cuda.set_sync_debug_mode("error")`` checks on a GPU, where ``bizoo bench models`` runs it).

A custom ``aot_autograd`` backend receives the forward and the backward graphs of a training step (masked LM with
dropout; token classification with a CRF, whose likelihood and Viterbi have value-dependent paths in eager mode)
and lists every operator in them. An operator that needs a value on the host (``.item()`` is
``aten._local_scalar_dense``; ``nonzero``, ``masked_select``, ``unique`` have sizes that depend on values; ``equal``
and ``is_nonzero`` return Python values; a copy to the CPU) would stall a GPU's pipeline in every step.
"""

import pytest
import torch
from functorch.compile import make_boxed_func
from torch._dynamo.backends.common import aot_autograd
from transformers import AutoModelForMaskedLM, AutoModelForTokenClassification

import bizoo

# aten operators whose result is needed on the host, or whose output size depends on tensor values.
SYNC_OPS = {"_local_scalar_dense", "item", "nonzero", "masked_select", "unique", "_unique", "_unique2",
            "unique_consecutive", "unique_dim", "equal", "is_nonzero", "bincount", "repeat_interleave"}


def _operators(graph: torch.fx.GraphModule) -> set[str]:
    """The aten operator names called in ``graph`` (overload stripped), and ``to:cpu`` for a copy to the host."""
    names = set()
    for node in graph.graph.nodes:
        if node.op != "call_function":
            continue
        packet = getattr(node.target, "overloadpacket", None)
        names.add(packet.__name__ if packet is not None else getattr(node.target, "__name__", str(node.target)))
        device = node.kwargs.get("device")
        if device is not None and torch.device(device).type == "cpu" and node.args and _on_device(node.args[0]):
            names.add("to:cpu")
    return names


def _on_device(arg) -> bool:
    value = getattr(arg, "meta", {}).get("val")
    return isinstance(value, torch.Tensor) and value.device.type != "cpu"


def _graphs_of_a_training_step(model, inputs):
    """(forward operators, backward operators) of one compiled training step."""
    seen = {"forward": set(), "backward": set()}

    def recorder(which):
        def compile_graph(graph, example_inputs):
            seen[which] |= _operators(graph)
            return make_boxed_func(graph)

        return compile_graph

    backend = aot_autograd(fw_compiler=recorder("forward"), bw_compiler=recorder("backward"))
    torch._dynamo.reset()
    loss = torch.compile(model, backend=backend, fullgraph=True)(**inputs).loss
    loss.backward()
    assert torch.isfinite(loss)
    return seen["forward"], seen["backward"]


def _inputs(case, make_inputs, labels):
    ids = torch.randint(5, 120, (3, 12), generator=torch.Generator().manual_seed(0))
    mask = torch.ones(3, 12, dtype=torch.long)
    mask[1, 9:] = 0
    return make_inputs(case, ids, mask, labels=labels(ids, mask))


CASES = sorted((model_type, variant) for model_type, spec in bizoo.MODEL_SPECS.items()
               for variant in (spec.variants or {"default": {}}))


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{c[1]}")
def test_a_compiled_masked_lm_training_step_has_no_host_sync(case, make_config, make_inputs):
    torch.manual_seed(0)
    config = make_config(case)
    if hasattr(config, "hidden_dropout_prob"):
        config.hidden_dropout_prob = 0.1
    model = AutoModelForMaskedLM.from_config(config).train()
    inputs = _inputs(case, make_inputs, lambda ids, mask: ids.masked_fill(mask == 0, -100))
    forward, backward = _graphs_of_a_training_step(model, inputs)
    assert forward and backward
    assert not forward & SYNC_OPS, sorted(forward & SYNC_OPS)
    assert not backward & SYNC_OPS, sorted(backward & SYNC_OPS)


@pytest.mark.parametrize("model_type", sorted(bizoo.MODEL_SPECS))
def test_a_compiled_crf_tagger_training_step_has_no_host_sync(model_type, make_config, make_inputs):
    case = next(c for c in CASES if c[0] == model_type)
    labels = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    config = make_config(case, use_crf=True, num_labels=5, id2label=dict(enumerate(labels)),
                         label2id={name: i for i, name in enumerate(labels)})
    torch.manual_seed(0)
    model = AutoModelForTokenClassification.from_config(config).train()
    tags = torch.tensor([0, 1, 3])[torch.randint(0, 3, (3, 12), generator=torch.Generator().manual_seed(1))]
    inputs = _inputs(case, make_inputs, lambda ids, mask: tags.masked_fill(mask == 0, -100))
    forward, backward = _graphs_of_a_training_step(model, inputs)
    assert not forward & SYNC_OPS, sorted(forward & SYNC_OPS)
    assert not backward & SYNC_OPS, sorted(backward & SYNC_OPS)
