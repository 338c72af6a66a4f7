"""No host synchronisation in a training step, compiled or eager: a CPU-side check of what
``torch.cuda.set_sync_debug_mode("error")`` checks on a GPU (where ``bizoo bench models`` runs it).

An operator that needs a value on the host (``.item()`` is ``aten._local_scalar_dense``; ``nonzero``,
``masked_select``, ``unique`` have sizes that depend on values; ``equal`` and ``is_nonzero`` return Python values; a
copy to the CPU) would stall a GPU's pipeline in every step.

* Compiled: a custom ``aot_autograd`` backend receives the forward and the backward graphs of a training step
  (masked LM with dropout; token classification with a CRF, whose likelihood and Viterbi have value-dependent paths
  in eager mode) and lists every operator in them.
* Eager: every operator a training step dispatches is listed (a ``TorchDispatchMode``) while the tensors are taken
  for GPU tensors (``dispatch.values_on_host`` patched): the input checks are then read later
  (``modeling.value_checks``) and the kernels' value checks are left out, as for CUDA tensors. What this cannot see
  on a CPU: a copy to the host (every tensor is there already).
"""

import traceback

import pytest
import torch
from functorch.compile import make_boxed_func
from torch._dynamo.backends.common import aot_autograd
from torch.utils._python_dispatch import TorchDispatchMode
from transformers import (
    AutoModelForMaskedLM,
    AutoModelForPreTraining,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
)

import bizoo
from bizoo.modeling import value_checks

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


# --------------------------------------------------------------------------------------------------------------
# Eager training steps, with the tensors taken for GPU tensors
# --------------------------------------------------------------------------------------------------------------


class SyncRecorder(TorchDispatchMode):
    """Lists each host-reading operator dispatched inside it, with the bizoo lines that called it."""

    def __init__(self):
        super().__init__()
        self.found = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name in ("index", "index_put", "index_put_", "_index_put_impl_") and any(
            isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in (args[1] if len(args) > 1 else ())
        ):
            name = "nonzero"  # indexing by a boolean mask: its size is the mask's count (a CPU kernel counts inline)
        if name == "lift_fresh":
            name = "tensor-from-host-data"  # torch.tensor(...): on a GPU a copy from pageable memory, a sync
        if name in SYNC_OPS or name == "tensor-from-host-data":
            where = [f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno}" for f in traceback.extract_stack()
                     if "bizoo" in f.filename or "/modeling/" in f.filename or "/kernels/" in f.filename]
            self.found.append((name, where[-3:]))
        return func(*args, **(kwargs or {}))


def _words(ids, mask):
    return ids.masked_fill(mask == 0, -100)


def _tags(ids, mask):
    return (ids % 3).masked_fill(mask == 0, -100)


HEADS = {  # head: (Auto class, config fields, labels(ids, mask))
    "masked-lm": (AutoModelForMaskedLM, {"sparse_prediction": False}, _words),
    "sequence": (AutoModelForSequenceClassification, {"num_labels": 3}, lambda ids, mask: ids[:, 0] % 3),
    "token": (AutoModelForTokenClassification, {"num_labels": 3}, _tags),
    "token-crf": (AutoModelForTokenClassification, {"num_labels": 3, "use_crf": True, "tag_scheme": "none"}, _tags),
    "bilm": (AutoModelForPreTraining, {"sparse_prediction": False}, _words),
}


def eager_step_syncs(model, inputs) -> list:
    """The host-reading operators of one eager training step (forward, backward), with where they were called."""
    with SyncRecorder() as recorder:
        loss = model(**inputs).loss
        loss.backward()
    assert torch.isfinite(loss)
    return recorder.found


# every head of every model on each backend it has: the biLM objective is ELMo's; BiGS's recurrent form runs on the
# reference backend only
STEP_CASES = [pytest.param(case, head, backend, id=f"{case[0]}-{case[1]}-{head}-{backend}")
              for case in CASES for head in sorted(HEADS) for backend in ("reference", "triton")
              if (head != "bilm" or case[0] == "elmo") and (backend == "reference" or case != ("bigs", "recurrent"))]


@pytest.mark.parametrize("case, head, backend", STEP_CASES)
def test_an_eager_training_step_reads_nothing_back_from_a_gpu(case, head, backend, make_config, make_inputs,
                                                              as_on_a_gpu):
    """Every head of every model, on the reference kernels and on the Triton ones (their launch code: under the
    interpreter the kernels' own bodies run in numpy, out of this check's sight)."""
    auto, fields, make_labels = HEADS[head]
    model_case = case
    config = make_config(model_case, **fields, kernel_backend=backend)
    if hasattr(config, "hidden_dropout_prob"):
        config.hidden_dropout_prob = 0.1
    model = auto.from_config(config).train()
    ids = torch.randint(5, 120, (3, 12), generator=torch.Generator().manual_seed(0))
    mask = torch.ones(3, 12, dtype=torch.long)
    mask[1, 9:] = 0
    mask[2, :2] = 0  # left padding too
    inputs = make_inputs(model_case, ids.masked_fill(mask == 0, 0), mask, labels=make_labels(ids, mask))
    assert eager_step_syncs(model, inputs) == []
    value_checks.wait_for_input_checks()  # the good input passes its checks, read now


def test_the_sparse_masked_lm_gather_is_the_one_read_back_of_a_masked_lm_step(make_config, make_inputs, as_on_a_gpu):
    """With ``sparse_prediction`` (the default) the masked-LM head projects only the labelled positions, whose number
    the host must know: one read back per step, chosen over the vocabulary projection of every position (the check
    above would catch any other)."""
    model = AutoModelForMaskedLM.from_config(make_config(("lion", "d"))).train()
    ids = torch.randint(5, 120, (3, 12), generator=torch.Generator().manual_seed(0))
    labels = ids.masked_fill(torch.rand(3, 12, generator=torch.Generator().manual_seed(1)) > 0.3, -100)
    found = eager_step_syncs(model, make_inputs(("lion", "d"), ids, torch.ones_like(ids), labels=labels))
    assert {name for name, _ in found} == {"nonzero"}, found  # the boolean gathers and their backward
    assert all("heads.py" in line for _, where in found for line in where if not line.startswith("test_")), found
    assert any("heads.py" in line for _, where in found for line in where), found


# --------------------------------------------------------------------------------------------------------------
# The kernel ops called directly, with and without a mask
# --------------------------------------------------------------------------------------------------------------


def _op_calls():
    """name -> call(backend, mask): a forward and backward of each op on small random inputs."""
    from bizoo.kernels.crf import crf_log_likelihood, crf_max_marginals, crf_viterbi
    from bizoo.kernels.lion import lion_attention
    from bizoo.kernels.ssm import bidirectional_ssm

    g = torch.Generator().manual_seed(0)
    B, L, H, D, K = 2, 20, 2, 16, 5

    def rand(*shape):
        return torch.randn(*shape, generator=g).requires_grad_()

    def lion(backend, mask, form="chunk"):
        q, k, v = (torch.rand(B, H, L, D, generator=g).requires_grad_() for _ in range(3))
        log_decay = -torch.rand(B, H, L, generator=g).requires_grad_()
        return lion_attention(q, k, v, log_decay, mask, form=form, chunk_size=16, backend=backend).sum()

    def lion_attention_form(backend, mask):  # on Triton, the parallel schedule
        return lion(backend, mask, form="attention")

    def ssm(backend, mask):
        u_fwd, u_bwd, k_fwd, k_bwd = rand(B, L, H), rand(B, L, H), rand(L), rand(L)
        y_fwd, y_bwd = bidirectional_ssm(u_fwd, u_bwd, k_fwd, k_bwd, rand(1), rand(1), mask, backend=backend)
        return y_fwd.sum() + y_bwd.sum()

    def crf(backend, mask):
        emissions, transitions, start, end = rand(B, L, K), rand(K, K), rand(K), rand(K)
        tags = torch.randint(0, K, (B, L), generator=g)
        if mask is not None:
            tags = tags.masked_fill(mask == 0, -100)
        loss = -crf_log_likelihood(emissions, mask, transitions, start, end, tags, backend=backend).sum()
        crf_viterbi(emissions.detach(), mask, transitions.detach(), start.detach(), end.detach(), backend=backend)
        crf_max_marginals(emissions.detach(), mask, transitions.detach(), start.detach(), end.detach(),
                          backend=backend)
        return loss

    return {"lion-chunk": lion, "lion-attention": lion_attention_form, "ssm": ssm, "crf": crf}


@pytest.mark.parametrize("masked", [False, True], ids=["no-mask", "mask"])
@pytest.mark.parametrize("backend", ["reference", "triton"])
@pytest.mark.parametrize("op", ["lion-chunk", "lion-attention", "ssm", "crf"])
def test_the_kernel_ops_read_nothing_back_from_a_gpu(op, backend, masked, as_on_a_gpu):
    """Each op's Python side (dispatch, checks, buffers, row ranges, launches) with the tensors taken for GPU
    tensors: no value read back, no tensor made from host data (on a GPU, a copy from pageable memory)."""
    mask = None
    if masked:
        mask = torch.ones(2, 20, dtype=torch.long)
        mask[0, 15:] = 0
        mask[1, :3] = 0
    call = _op_calls()[op]
    with SyncRecorder() as recorder:
        call(backend, mask).backward()
    assert recorder.found == []
