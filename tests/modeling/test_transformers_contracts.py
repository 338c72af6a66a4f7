"""What transformers' own model tests expect of a model, checked on every registered model type, variant and head
(ARCHITECTURE.md §3): the fp32 module lists, hidden states on the autograd path, a gradient for every parameter of
every head, label2id with string ids, and accelerate's CPU/disk offloading.

* fp32 lists: every model lists, on ``_keep_in_fp32_modules_strict`` alone, exactly the decay, SSM and CRF modules
  its configuration built; built (``from_config``) or loaded (``from_pretrained``, a partial checkpoint included) in
  fp16 or bf16, those modules are fp32 and every other parameter is in the dtype asked for.
* hidden states: ``retain_grad`` on each returned hidden state gets a gradient from the output (each is the tensor
  the next layer reads, not a copy beside the graph).
* gradients: one backward of each head's loss, with and without gradient checkpointing, reaches every parameter
  that requires one, with a non-zero gradient (weights widened from the small init, so that no gradient vanishes
  by underflow): what DDP with ``find_unused_parameters=False`` needs.
* offloading: ``from_pretrained(device_map=..., offload_folder=...)`` with every other module on "disk" gives the
  plain model's outputs (each module reads its weights in its own forward, where accelerate's hooks load them).
"""

import re
from contextlib import contextmanager

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import (
    AutoModel,
    AutoModelForMaskedLM,
    AutoModelForPreTraining,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
)
from transformers.utils import logging

import bizoo
from bizoo.modeling.heads import LinearChainCrf
from bizoo.modeling.modeling_bigs import S4D
from bizoo.modeling.modeling_lion import LionDecay

V = 120
TAGS = ["O", "B-X", "I-X"]
FP32_MODULE_TYPES = (LionDecay, S4D, LinearChainCrf)  # decays, SSMs, CRFs: ARCHITECTURE.md §3, "Precision"


AUTO = bizoo.modeling.registry.AUTO_CLASSES  # the Auto classes a spec may fill


def auto_classes(model_case, config) -> list[tuple[type, type]]:
    """(Auto class, model class) of every model of the type, as its spec registers them."""
    return [(AUTO[name], cls) for name, cls in bizoo.get_spec(model_case[0]).models.items()]


def model_classes(model_case, config) -> list[type]:
    return [cls for _, cls in auto_classes(model_case, config)]


def tagging_config(model_case, make_config, **overrides):
    """The tiny config with a BIO label set (a CRF's tag scheme fits it)."""
    kwargs = dict(vocab_size=V, id2label=dict(enumerate(TAGS)), label2id={t: i for i, t in enumerate(TAGS)})
    return make_config(model_case, **{**kwargs, **overrides})


def batch(model_case, make_inputs, seed=0):
    """Two rows, the second right-padded, with the inputs the model reads."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, V, (2, 7), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    return make_inputs(model_case, ids.masked_fill(mask == 0, 0), mask), ids, mask


def labels_for(model, ids, mask):
    """Labels of each head's loss for ``ids`` (B, L) with padding ``mask``."""
    name = type(model).__name__
    if name.endswith("ForSequenceClassification"):
        return torch.tensor([0, 2])
    if name.endswith("ForTokenClassification"):
        tags = torch.tensor([[0, 1, 2, 0, 1, 2, 0], [1, 2, 2, 0, 0, 0, 0]])  # BIO-legal
        return tags.masked_fill(mask == 0, -100)
    return ids.masked_fill(mask == 0, -100)  # masked LM and the biLM: the words


def fp32_parameter_names(model) -> set[str]:
    """Qualified names of the parameters that must stay fp32: those of every decay, SSM and CRF module."""
    return {
        f"{prefix}.{name}"
        for prefix, module in model.named_modules()
        if isinstance(module, FP32_MODULE_TYPES)
        for name, _ in module.named_parameters()
    }


def listed(names, key: str) -> bool:
    """Whether ``key`` (a state-dict key) falls under one of ``names``, as transformers' model tests match them."""
    return any(re.search(rf"(?:^|\.){re.escape(name)}(?:\.|$)", key) for name in names)


# --------------------------------------------------------------------------------------------------------------
# fp32 module lists
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("use_crf", [False, True])
def test_fp32_lists_name_exactly_the_precision_modules_built(model_case, make_config, use_crf):
    config = tagging_config(model_case, make_config, use_crf=use_crf)
    for cls in model_classes(model_case, config):
        model = cls(config)
        strict = set(model._keep_in_fp32_modules_strict)
        assert not set(model._keep_in_fp32_modules or ()), f"{cls.__name__}: the strict list alone is used"
        keys = set(model.state_dict())
        missing = [name for name in strict if not any(listed([name], key) for key in keys)]
        assert not missing, f"{cls.__name__} lists {missing}, which its config did not build"
        # the list covers the decay, SSM and CRF parameters, and nothing else
        assert {key for key in keys if listed(strict, key)} == fp32_parameter_names(model), cls.__name__
    built = {type(m) for cls in model_classes(model_case, config) for m in cls(config).modules()}
    assert (LinearChainCrf in built) == use_crf  # the CRF-less case does exercise a list without "crf"


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
def test_fp32_modules_stay_fp32_built_or_loaded_in_half_precision(model_case, make_config, tmp_path, dtype):
    config = tagging_config(model_case, make_config, use_crf=True)

    def check(model, how):
        fp32 = fp32_parameter_names(model)
        for name, parameter in model.named_parameters():
            expected = torch.float32 if name in fp32 else dtype
            assert parameter.dtype == expected, f"{type(model).__name__} ({how}): {name} is {parameter.dtype}"
        return fp32

    checked = set()
    for auto, cls in auto_classes(model_case, config):
        checked |= check(auto.from_config(config, dtype=dtype), "from_config")
        folder = tmp_path / cls.__name__
        cls(config).save_pretrained(folder)
        check(cls.from_pretrained(folder, dtype=dtype), "from_pretrained")
    # a partial checkpoint: the CRF, missing from a bare encoder's weights, is built in fp32 and initialised there
    AutoModel.from_config(config).save_pretrained(tmp_path / "encoder")
    tagger = AutoModelForTokenClassification.from_pretrained(tmp_path / "encoder", dtype=dtype)
    assert any(isinstance(m, LinearChainCrf) for m in tagger.modules())
    check(tagger, "from_pretrained of an encoder")
    assert any("crf" in name for name in checked)  # not vacuous: fp32 modules were there to check


# --------------------------------------------------------------------------------------------------------------
# Hidden states on the autograd path
# --------------------------------------------------------------------------------------------------------------


def check_hidden_states_retain_grad(model, inputs):
    out = model(**inputs, output_hidden_states=True)
    hidden_states = out.hidden_states
    assert hidden_states is not None and len(hidden_states) == model.config.num_hidden_layers + 1
    for hidden in hidden_states:
        hidden.retain_grad()
    out[0].float().pow(2).sum().backward()
    for index, hidden in enumerate(hidden_states):
        assert hidden.grad is not None, f"{type(model).__name__}: hidden_states[{index}] is not on the autograd path"
        assert hidden.grad.abs().sum() > 0, f"{type(model).__name__}: hidden_states[{index}] got a zero gradient"
    torch.testing.assert_close(out[0], model(**inputs)[0], rtol=0, atol=0)  # returning them changes nothing


def test_hidden_states_retain_grad(model_case, make_config, make_inputs):
    # without a CRF: a CRF head's logits are its max-marginal scores, which carry no gradient
    config = tagging_config(model_case, make_config, use_crf=False, initializer_range=0.2)
    inputs, _, _ = batch(model_case, make_inputs)
    for cls in model_classes(model_case, config):
        check_hidden_states_retain_grad(cls(config).eval(), inputs)


def test_hidden_states_retain_grad_with_bigs_legacy_padding(make_config, make_inputs):
    """pad_mode="legacy" runs the layers over max_position_embeddings positions and returns the first L."""
    model_case = ("bigs", "conv")
    config = make_config(model_case, vocab_size=V, pad_mode="legacy", max_position_embeddings=16, initializer_range=0.2)
    inputs, _, _ = batch(model_case, make_inputs)
    inputs.pop("attention_mask")
    check_hidden_states_retain_grad(AutoModel.from_config(config).eval(), inputs)


# --------------------------------------------------------------------------------------------------------------
# A gradient for every parameter of every head
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "checkpointing", [None, {"use_reentrant": False}, {"use_reentrant": True}], ids=["plain", "gc", "gc-reentrant"]
)
@pytest.mark.parametrize("use_crf", [False, True])
def test_every_parameter_of_every_head_gets_a_gradient(model_case, make_config, make_inputs, checkpointing, use_crf):
    config = tagging_config(model_case, make_config, use_crf=use_crf, initializer_range=0.3)
    inputs, ids, mask = batch(model_case, make_inputs)
    encoder = bizoo.get_spec(model_case[0]).models["AutoModel"]  # no loss of its own
    for cls in [cls for cls in model_classes(model_case, config) if cls is not encoder]:
        torch.manual_seed(0)
        model = cls(config).train()
        if checkpointing is not None:
            enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
            enable(checkpointing)
            assert any(getattr(m, "gradient_checkpointing", False) for m in model.modules())
        loss = model(**inputs, labels=labels_for(model, ids, mask)).loss
        loss.backward()
        trainable = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
        assert trainable
        none = [name for name, p in trainable if p.grad is None]
        assert not none, f"{cls.__name__}: no gradient reaches {none}"
        zero = [name for name, p in trainable if not p.grad.abs().sum() > 0]
        assert not zero, f"{cls.__name__}: a zero gradient for {zero}"


@contextmanager
def transformers_warnings(caplog):
    """Record transformers' log (its library logger does not propagate to pytest's handler by itself)."""
    caplog.clear()
    logging.enable_propagation()
    try:
        with caplog.at_level("WARNING"):
            yield
    finally:
        logging.disable_propagation()


@pytest.mark.parametrize(
    "auto, dropped",
    [
        (AutoModelForSequenceClassification, ["elmo.word_embeddings.weight", "elmo.scalar_mixes.1.gamma"]),
        (AutoModelForTokenClassification, ["elmo.word_embeddings.weight", "elmo.scalar_mixes.1.gamma"]),
        (AutoModelForMaskedLM, ["elmo.scalar_mixes.1.gamma"]),
        (AutoModelForPreTraining, ["elmo.scalar_mixes.0.gamma", "elmo.scalar_mixes.1.gamma"]),
    ],
    ids=["sequence", "token", "masked-lm", "bilm"],
)
def test_elmo_checkpoints_with_unread_parts_load_silently(make_config, make_inputs, tmp_path, caplog, auto, dropped):
    """ELMo's heads hold only what their loss reads. A bare ElmoModel checkpoint (as convert-elmo writes), with the
    word table and every scalar mix, loads into each head: the parts the head lacks are ignored without a warning,
    the rest is loaded, and the encoder's outputs are the bare model's."""
    model_case = ("elmo", "default")
    config = tagging_config(model_case, make_config, num_output_representations=2, initializer_range=0.3)
    bare = AutoModel.from_config(config).eval()
    bare.save_pretrained(tmp_path)
    saved = {f"elmo.{key}" for key in load_file(tmp_path / "model.safetensors")}
    head = auto.from_config(config)
    assert set(dropped) <= saved and not set(dropped) & set(head.state_dict())
    with transformers_warnings(caplog):
        head, info = auto.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["unexpected_keys"], info
    assert not any("word_embeddings" in r.getMessage() or "scalar_mixes" in r.getMessage() for r in caplog.records)
    assert not [k for k in info["missing_keys"] if k.startswith("elmo.")], info  # every encoder tensor loaded
    inputs, _, _ = batch(model_case, make_inputs)
    with torch.no_grad():
        torch.testing.assert_close(head.eval().elmo(**inputs).top_layer, bare(**inputs).top_layer)
    # a head's own checkpoint saved while it still held those parts (their keys under "elmo.")
    head.save_pretrained(tmp_path / "head")
    weights = load_file(tmp_path / "head" / "model.safetensors")
    bare_weights = load_file(tmp_path / "model.safetensors")
    weights.update({key: bare_weights[key.removeprefix("elmo.")] for key in dropped})
    save_file(weights, tmp_path / "head" / "model.safetensors", metadata={"format": "pt"})
    with transformers_warnings(caplog):
        _, info = auto.from_pretrained(tmp_path / "head", output_loading_info=True)
    assert not info["unexpected_keys"] and not info["missing_keys"], info
    assert not any("word_embeddings" in r.getMessage() or "scalar_mixes" in r.getMessage() for r in caplog.records)


# --------------------------------------------------------------------------------------------------------------
# label2id with string ids
# --------------------------------------------------------------------------------------------------------------


def test_label2id_with_string_ids(model_case, make_config, tmp_path):
    config_class = bizoo.get_spec(model_case[0]).config_class
    # as transformers' ConfigTester passes it: id2label with int ids, label2id with the ids as strings
    config = make_config(model_case, id2label={0: "label"}, label2id={"label": "0"})
    assert config.label2id == {"label": "0"} and config.id2label == {0: "label"}  # kept as given
    config.save_pretrained(tmp_path)
    assert config_class.from_pretrained(tmp_path).id2label == {0: "label"}
    # label2id alone, as config.json files written by other tools hold it
    alone = make_config(model_case, label2id={"O": "0", "B-X": "1", "I-X": "2"})
    assert alone.id2label == {0: "O", 1: "B-X", 2: "I-X"} and alone.num_labels == 3
    assert config_class.from_dict(alone.to_dict()).id2label == alone.id2label
    for bad in ({"O": "x"}, {"O": "0.0"}, {"O": "-0"}, {"O": 0.0}, {"O": True}, {"O": "1"}, {"O": "0", "B-X": "0"}):
        with pytest.raises(ValueError, match="label2id must map label names to the ids 0..n-1"):
            make_config(model_case, label2id=bad)
    with pytest.raises(ValueError, match="label2id must be the inverse of id2label"):
        make_config(model_case, id2label={0: "O", 1: "B-X"}, label2id={"O": "1", "B-X": "0"})


# --------------------------------------------------------------------------------------------------------------
# single-label classification with one output: accepted as transformers' heads accept it, with a warning
# --------------------------------------------------------------------------------------------------------------


def test_single_label_with_one_output_trains_as_in_transformers_and_warns(model_case, make_config, make_inputs,
                                                                        caplog):
    """problem_type='single_label_classification' with num_labels=1, refused by transformers when a config is built
    but set afterwards by its common test: the model is built, its loss is cross-entropy over one class, 0 whatever the logits (as BertForSequenceClassification's),
    backward runs, and a warning says why such a head cannot learn."""
    with pytest.raises(ValueError, match="single_label_classification.*num_labels"):  # refused when built ...
        make_config(model_case, vocab_size=V, num_labels=1, problem_type="single_label_classification")
    config = make_config(model_case, vocab_size=V, num_labels=1)
    config.problem_type = "single_label_classification"  # ... and accepted when set afterwards, as transformers does
    logging.get_logger("bizoo.configuration.common").warning_once.cache_clear()  # said once per process
    with transformers_warnings(caplog):
        model = AutoModelForSequenceClassification.from_config(config)
    assert any("cross-entropy over one class is always 0" in r.getMessage() for r in caplog.records)
    with torch.no_grad():
        for p in model.parameters():  # widened weights: logits far from 0, so only the one-class softmax makes 0
            p.add_(torch.randn_like(p) * 0.5)
    inputs, _, _ = batch(model_case, make_inputs)
    out = model(**inputs, labels=torch.zeros(2, dtype=torch.long))
    assert out.logits.shape == (2, 1) and out.logits.abs().min() > 0
    reference = torch.nn.functional.cross_entropy(out.logits.detach().float(), torch.zeros(2, dtype=torch.long))
    assert out.loss.item() == reference.item() == 0.0
    out.loss.backward()
    with pytest.raises(ValueError, match="labels"):  # a class id outside [0, 1) is still refused
        model(**inputs, labels=torch.ones(2, dtype=torch.long))


def test_single_label_ids_in_a_column_train_as_in_bert(model_case, make_config, make_inputs):
    """Class ids of shape (batch, 1), as a dataset of one-element label lists gives them: BERT's loss reads them with
    labels.view(-1), so the same loss and gradients as (batch,) ids; any other shape is still refused."""
    config = make_config(model_case, vocab_size=V, num_labels=3)
    model = AutoModelForSequenceClassification.from_config(config).eval()
    with torch.no_grad():
        for p in model.parameters():  # widened weights: the two rows' losses differ by far more than rounding
            p.add_(torch.randn_like(p) * 0.5)
    inputs, _, _ = batch(model_case, make_inputs)
    flat, column = torch.tensor([2, 0]), torch.tensor([[2], [0]])
    out = model(**inputs, labels=flat)
    out.loss.backward()
    grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    model.zero_grad()
    out_column = model(**inputs, labels=column)
    out_column.loss.backward()
    assert out_column.loss.item() == out.loss.item() > 0
    reference = torch.nn.functional.cross_entropy(out.logits.detach().float(), flat)
    torch.testing.assert_close(out.loss.detach(), reference)
    assert all(torch.equal(g, p.grad) for g, p in zip(grads, (p for p in model.parameters() if p.grad is not None)))
    with pytest.raises(ValueError, match=r"labels must have shape \(2,\).*got \(1, 2\)"):
        model(**inputs, labels=column.T)


# --------------------------------------------------------------------------------------------------------------
# accelerate's CPU and disk offloading
# --------------------------------------------------------------------------------------------------------------


def offload_map(model, first: str) -> dict[str, str]:
    """A device map that puts every module with parameters of its own on "cpu" or "disk" in turn, starting with
    ``first``; a tied weight's module goes where its source's does (accelerate needs a tied pair together)."""
    owners = [name for name, m in model.named_modules() if next(m.parameters(recurse=False), None) is not None]
    other = {"cpu": "disk", "disk": "cpu"}[first]
    device_map = {name: (first if index % 2 == 0 else other) for index, name in enumerate(owners)}
    for tied, source in model.all_tied_weights_keys.items():
        device_map[tied.rsplit(".", 1)[0]] = device_map[source.rsplit(".", 1)[0]]
    return device_map


def test_device_map_offloading_equals_the_plain_model(model_case, make_config, make_inputs, tmp_path):
    config = tagging_config(model_case, make_config, use_crf=True, initializer_range=0.3)
    inputs, _, _ = batch(model_case, make_inputs)
    for cls in model_classes(model_case, config):
        model = cls(config).eval()
        folder = tmp_path / cls.__name__
        model.save_pretrained(folder)
        with torch.no_grad():
            expected = model(**inputs, output_hidden_states=True)
        for first in ("disk", "cpu"):  # every module with weights offloaded to disk in one of the two runs
            device_map, offload_folder = offload_map(model, first), tmp_path / f"offload-{cls.__name__}-{first}"
            offloaded = cls.from_pretrained(folder, device_map=device_map, offload_folder=offload_folder).eval()
            assert "disk" in offloaded.hf_device_map.values() and "cpu" in offloaded.hf_device_map.values()
            assert any(p.device.type == "meta" for p in offloaded.parameters())  # weights really left out
            with torch.no_grad():
                got = offloaded(**inputs, output_hidden_states=True)
            for key, value in expected.items():
                if isinstance(value, torch.Tensor):
                    torch.testing.assert_close(got[key], value, rtol=0, atol=0, msg=f"{cls.__name__} {key}")
            torch.testing.assert_close(got.hidden_states, expected.hidden_states, rtol=0, atol=0)
