"""Tests for ``bizoo convert-bigs``: synthetic checkpoints of the original BiGS in both layouts (the PyTorch port's
state dict, saved with torch.save and as safetensors, and the Flax msgpack, written by the small encoder below)
convert to bizoo models whose outputs equal the original forward pass (tests/bigs_original.py) at fp32 precision;
every malformed input is an error (exit code 2) that names the problem and leaves no output folder."""

from __future__ import annotations

import importlib.util
import json
import math
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from transformers import AutoModelForMaskedLM, AutoTokenizer
from transformers.activations import ACT2FN

import bizoo
from bizoo.scripts import convert_bigs
from bizoo.scripts.cli import main as cli_main
from bizoo.scripts.lib.msgpack_reader import MsgpackError, decode_msgpack

try:  # tests/ is on sys.path under pytest's default import mode, not under --import-mode=importlib
    from bigs_original import OriginalBiGS
except ImportError:
    _path = Path(__file__).resolve().parents[1] / "bigs_original.py"
    _spec = importlib.util.spec_from_file_location("bigs_original", _path)
    _module = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_module)
    OriginalBiGS = _module.OriginalBiGS

V, D, LAYERS, INNER, N, P, LABELS = 50, 16, 2, 48, 8, 12, 3
CONFIG = dict(
    model_type="BiGS",
    vocab_size=V,
    hidden_size=D,
    num_hidden_layers=LAYERS,
    intermediate_size=INNER,
    hidden_act="gelu",
    hidden_dropout_prob=0.1,
    max_position_embeddings=P,
    type_vocab_size=2,
    initializer_range=0.02,
    layer_norm_eps=1e-12,
    pad_token_id=0,
    num_ssm=N,
    pre_norm=True,
    scaling="hippo",
    pooler_type="non_padding_mean",
)
ATOL = 1e-5


# ----------------------------------------------------------------------------------------------------------------
# A msgpack encoder written from the format's specification (independent of the decoder under test)
# ----------------------------------------------------------------------------------------------------------------

NUMPY_NAMES = {torch.float32: "float32", torch.float64: "float64", torch.bfloat16: "bfloat16", torch.int64: "int64"}


def _sized(small_tag: int | None, small_max: int, tags: tuple, n: int) -> bytes:
    """A header: the fix form ``small_tag | n`` when n < small_max, else the 8/16/32-bit length forms ``tags``."""
    if small_tag is not None and n < small_max:
        return bytes([small_tag | n])
    for tag, size, fmt in zip(tags, (1, 2, 4), (">B", ">H", ">I")):
        if tag is not None and n < 1 << (8 * size):
            return bytes([tag]) + struct.pack(fmt, n)
    raise ValueError(n)


def pack(obj) -> bytes:
    if obj is None:
        return b"\xc0"
    if obj is True or obj is False:
        return b"\xc3" if obj else b"\xc2"
    if isinstance(obj, int):
        if 0 <= obj < 128:
            return bytes([obj])
        if -32 <= obj < 0:
            return struct.pack(">b", obj)
        if obj >= 0:
            return b"\xcf" + struct.pack(">Q", obj)
        return b"\xd3" + struct.pack(">q", obj)
    if isinstance(obj, float):
        return b"\xcb" + struct.pack(">d", obj)
    if isinstance(obj, str):
        raw = obj.encode("utf-8")
        return _sized(0xA0, 32, (0xD9, 0xDA, 0xDB), len(raw)) + raw
    if isinstance(obj, bytes):
        return _sized(None, 0, (0xC4, 0xC5, 0xC6), len(obj)) + obj
    if isinstance(obj, (list, tuple)):
        return _sized(0x90, 16, (None, 0xDC, 0xDD), len(obj)) + b"".join(pack(x) for x in obj)
    if isinstance(obj, dict):
        return _sized(0x80, 16, (None, 0xDE, 0xDF), len(obj)) + b"".join(pack(k) + pack(v) for k, v in obj.items())
    if isinstance(obj, torch.Tensor):  # flax.serialization: ExtType 1, payload msgpack [shape, dtype name, bytes]
        t = obj.detach().contiguous()
        raw = t.view(torch.int16).numpy().tobytes() if t.dtype == torch.bfloat16 else t.numpy().tobytes()
        return ext(1, pack([list(t.shape), NUMPY_NAMES[t.dtype], raw]))
    raise TypeError(type(obj))


def ext(code: int, payload: bytes) -> bytes:
    fixed = {1: 0xD4, 2: 0xD5, 4: 0xD6, 8: 0xD7, 16: 0xD8}
    if len(payload) in fixed:
        return bytes([fixed[len(payload)], code]) + payload
    head = _sized(None, 0, (0xC7, 0xC8, 0xC9), len(payload))
    return head + struct.pack(">b", code) + payload


# ----------------------------------------------------------------------------------------------------------------
# Synthetic original checkpoints (the original's names and shapes, random values)
# ----------------------------------------------------------------------------------------------------------------


def _ssm(gen) -> dict:
    A_re = -0.5 + 0.2 * torch.randn(N, generator=gen)
    A_re[0] = 0.3  # clamped to -1e-4 by the original
    return {
        "A_re": A_re,
        "A_im": torch.sort(3 * torch.randn(N, generator=gen)).values,
        "C": torch.randn(N, 2, generator=gen) * math.sqrt(0.5),
        "log_step": torch.rand(1, generator=gen) * math.log(100) + math.log(0.01),
        "D": torch.randn(1, generator=gen),
    }


def _linear(gen, out_dim, in_dim) -> tuple[torch.Tensor, torch.Tensor]:
    """(out, in) weight and bias, scaled so that activations stay O(1)."""
    return torch.randn(out_dim, in_dim, generator=gen) / math.sqrt(in_dim), 0.1 * torch.randn(out_dim, generator=gen)


def _norm(gen) -> tuple[torch.Tensor, torch.Tensor]:
    return 1 + 0.1 * torch.randn(D, generator=gen), 0.1 * torch.randn(D, generator=gen)


DENSES = (("dv", INNER, D), ("du_forward", D, D), ("du_backward", D, D), ("duc_forward", D, D),
          ("duc_backward", D, D), ("dol", INNER, D), ("do", D, INNER))


def torch_state(head: str, seed: int = 0, labels: int = LABELS) -> dict:
    """A state dict of the PyTorch port's BiGSFor{MaskedLM,SequenceClassification,TokenClassification}."""
    gen = torch.Generator().manual_seed(seed)
    s: dict[str, torch.Tensor] = {}
    s["bigs.embeddings.word_embeddings.weight"] = 0.3 * torch.randn(V, D, generator=gen)  # logits O(1)
    s["bigs.embeddings.position_embeddings.weight"] = torch.randn(P, D, generator=gen)
    s["bigs.embeddings.token_type_embeddings.weight"] = torch.randn(2, D, generator=gen)
    s["bigs.embeddings.LayerNorm.weight"], s["bigs.embeddings.LayerNorm.bias"] = _norm(gen)
    s["bigs.embeddings.position_ids"] = torch.arange(P).expand(1, -1).clone()
    for i in range(LAYERS):
        pre = f"bigs.encoder.layer.{i}"
        s[f"{pre}.LayerNorm.weight"], s[f"{pre}.LayerNorm.bias"] = _norm(gen)
        for name, out_dim, in_dim in DENSES:
            s[f"{pre}.{name}.weight"], s[f"{pre}.{name}.bias"] = _linear(gen, out_dim, in_dim)
        for direction in ("fs4", "bs4"):
            for name, value in _ssm(gen).items():
                key = f"{pre}.{direction}.D" if name == "D" else f"{pre}.{direction}.kernel.{name}"
                s[key] = value
    s["bigs.pooler.dense.weight"], s["bigs.pooler.dense.bias"] = _linear(gen, D, D)  # the port always has one
    if head == "mlm":
        s["cls.predictions.transform.dense.weight"], s["cls.predictions.transform.dense.bias"] = _linear(gen, D, D)
        s["cls.predictions.transform.LayerNorm.weight"], s["cls.predictions.transform.LayerNorm.bias"] = _norm(gen)
        s["cls.predictions.bias"] = 0.1 * torch.randn(V, generator=gen)
        s["cls.predictions.decoder.weight"] = s["bigs.embeddings.word_embeddings.weight"]  # tied: one tensor
        s["cls.predictions.decoder.bias"] = s["cls.predictions.bias"]
    else:
        s["classifier.weight"], s["classifier.bias"] = _linear(gen, labels, D)
    return s


def flax_params(head: str, seed: int = 1, labels: int = LABELS) -> dict:
    """The params tree of FlaxBiGSFor{MaskedLM,SequenceClassification,TokenClassification} (kernels (in, out))."""
    gen = torch.Generator().manual_seed(seed)

    def dense(out_dim, in_dim):
        weight, bias = _linear(gen, out_dim, in_dim)
        return {"kernel": weight.T.contiguous(), "bias": bias}

    def norm():
        scale, bias = _norm(gen)
        return {"scale": scale, "bias": bias}

    base = {
        "embeddings": {
            "word_embeddings": {"embedding": 0.3 * torch.randn(V, D, generator=gen)},  # logits O(1)
            "position_embeddings": {"embedding": torch.randn(P, D, generator=gen)},
            "token_type_embeddings": {"embedding": torch.randn(2, D, generator=gen)},
            "LayerNorm": norm(),
        },
        "encoder": {"layer": {}},
    }
    for i in range(LAYERS):
        layer = {"LayerNorm": norm()}
        for name, out_dim, in_dim in DENSES:
            layer[name] = dense(out_dim, in_dim)
        layer["fs4"], layer["bs4"] = _ssm(gen), _ssm(gen)
        base["encoder"]["layer"][str(i)] = layer
    tree = {"s4_bert": base}
    if head == "mlm":
        tree["cls"] = {"predictions": {"transform": {"dense": dense(D, D), "LayerNorm": norm()},
                                       "bias": 0.1 * torch.randn(V, generator=gen)}}
    else:
        if head == "seq":
            base["pooler"] = {"dense": dense(D, D)}
        tree["classifier"] = dense(labels, D)
    return tree


def flatten(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        name = f"{prefix}/{key}" if prefix else key
        out.update(flatten(value, name) if isinstance(value, dict) else {name: value})
    return out


def write_config(folder: Path, **changes) -> dict:
    config = {**CONFIG, **changes}
    config = {k: v for k, v in config.items() if v is not None}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return config


def write_torch(folder: Path, state: dict, safetensors: bool = False, **config) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    if safetensors:  # safetensors keeps one name per tensor: the tied aliases go, as save_pretrained drops them
        state = {k: v.contiguous() for k, v in state.items() if not k.startswith("cls.predictions.decoder.")}
        save_file(state, str(folder / "model.safetensors"))
    else:
        torch.save(state, folder / "pytorch_model.bin")
    return write_config(folder, **config)


def write_flax(folder: Path, tree: dict, wrap: bool = False, **config) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "flax_model.msgpack").write_bytes(pack({"params": tree} if wrap else tree))
    return write_config(folder, **config)


def inputs(generator_seed: int = 3):
    """Two sequences (lengths 12 and 7) padded to max_position_embeddings with the pad id 0, and their mask."""
    gen = torch.Generator().manual_seed(generator_seed)
    ids = torch.randint(1, V, (2, P), generator=gen)
    mask = torch.ones(2, P, dtype=torch.long)
    ids[1, 7:], mask[1, 7:] = 0, 0
    types = torch.zeros(2, P, dtype=torch.long)
    types[0, 6:] = 1
    return ids, mask, types


def convert(src: Path, dst: Path, *extra: str) -> int:
    return cli_main(["convert-bigs", str(src), str(dst), *extra])


def assert_close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    torch.testing.assert_close(actual.double(), expected.double(), atol=ATOL, rtol=0)


# ----------------------------------------------------------------------------------------------------------------
# The decoder
# ----------------------------------------------------------------------------------------------------------------


def test_msgpack_decoder_reads_every_form_the_encoder_writes():
    value = {
        "ints": [0, 127, 128, 70000, 2**40, -1, -32, -33, -2**40],
        "text": ["", "a" * 31, "b" * 32, "c" * 300, "é" * 40000],
        "bytes": [b"", b"x" * 300, b"y" * 70000],
        "big list": list(range(20)),
        "big map": {f"k{i}": i for i in range(20)},
        "other": [None, True, False, 1.5],
    }
    assert decode_msgpack(pack(value)) == value
    tensor = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    decoded = decode_msgpack(pack({"a": tensor, "b": tensor.to(torch.bfloat16)}), convert_bigs._flax_ext)
    assert torch.equal(decoded["a"], tensor) and decoded["b"].dtype == torch.bfloat16
    assert torch.equal(decoded["b"].float(), tensor)


def test_flax_chunked_arrays_are_joined(tmp_path):
    """flax writes an array over 1 GiB as {"__msgpack_chunked_array__": True, "shape": ..., "chunks": ...}."""
    tensor = torch.randn(3, 4)
    chunked = {"__msgpack_chunked_array__": True, "shape": {"0": 3, "1": 4},
               "chunks": {"0": tensor.flatten()[:5], "1": tensor.flatten()[5:]}}
    (tmp_path / "f.msgpack").write_bytes(pack({"params": {"a": {"b": chunked, "c": tensor}}}))
    flat = convert_bigs.read_flax_msgpack(tmp_path / "f.msgpack")
    assert set(flat) == {"a/b", "a/c"} and torch.equal(flat["a/b"], tensor) and torch.equal(flat["a/c"], tensor)


@pytest.mark.parametrize(
    "data, message",
    [
        (pack({"a": [1, 2, 3]})[:-1], "truncated"),
        (pack([1]) + b"\x01", "follow the value"),
        (b"\xc1", "starts no msgpack value"),
        (b"\xdd\xff\xff\xff\xff", "only 0 bytes left"),
        (pack({"a": 1})[:1] + b"\x90\x01", "not a scalar"),
        (b"\x82\xa1a\x01\xa1a\x02", "repeats a key"),
    ],
)
def test_msgpack_decoder_rejects_malformed_bytes(data, message):
    with pytest.raises(MsgpackError, match=message):
        decode_msgpack(data)


def test_flax_array_payload_must_match_its_shape():
    bad = ext(1, pack([[2, 3], "float32", b"\x00" * 20]))
    with pytest.raises(MsgpackError, match="needs 24 bytes, has 20"):
        decode_msgpack(bad, convert_bigs._flax_ext)
    with pytest.raises(MsgpackError, match="dtype 'complex64'"):
        decode_msgpack(ext(1, pack([[1], "complex64", b"\x00" * 8])), convert_bigs._flax_ext)


# ----------------------------------------------------------------------------------------------------------------
# Parity with the original forward pass
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["tree", "params-wrapped", "pretraining"])
def test_flax_masked_lm_matches_the_original(tmp_path, capsys, variant):
    tree = flax_params("mlm")
    base = "s4_bert/"
    if variant == "pretraining":  # FlaxBiGSForPreTraining under the bare model's name: a pooler and an NSP head
        gen = torch.Generator().manual_seed(9)
        tree["BiGS"] = tree.pop("s4_bert")
        tree["BiGS"]["pooler"] = {"dense": {"kernel": torch.randn(D, D, generator=gen), "bias": torch.zeros(D)}}
        tree["cls"]["seq_relationship"] = {"kernel": torch.randn(D, 2, generator=gen), "bias": torch.zeros(2)}
        base = "BiGS/"
    config = write_flax(tmp_path / "src", tree, wrap=variant == "params-wrapped")
    assert convert(tmp_path / "src", tmp_path / "dst") == 0
    out = capsys.readouterr().out
    assert "model: BiGSForMaskedLM, 2 layers" in out and "source: Flax msgpack" in out
    assert "gate_act=gelu_pytorch_tanh" in out
    if variant == "pretraining":
        assert "left out (unused by the original BiGSForMaskedLM): BiGS/pooler/dense/bias" in out
        assert "cls/seq_relationship/kernel" in out

    model = AutoModelForMaskedLM.from_pretrained(tmp_path / "dst").eval()
    assert type(model) is bizoo.BiGSForMaskedLM
    assert model.config.pad_mode == "legacy" and model.config.gate_act == "gelu_pytorch_tanh"
    assert model.lm_head.decoder.weight.data_ptr() == model.bigs.embeddings.word_embeddings.weight.data_ptr()
    ids, mask, types = inputs()
    original = OriginalBiGS(flatten(tree), config, "flax", base=base)
    expected = original.masked_lm_logits(ids, types)
    with torch.no_grad():
        assert_close(model(input_ids=ids, attention_mask=mask, token_type_ids=types).logits, expected)
        # An unpadded input: bizoo pads it to max_position_embeddings itself, as the original requires.
        short = model(input_ids=ids[1:, :7], token_type_ids=types[1:, :7]).logits
    assert_close(short, expected[1:, :7])
    # in float64 the two agree to rounding: the same function, not an approximation of it
    with torch.no_grad():
        exact64 = model.double()(input_ids=ids, attention_mask=mask, token_type_ids=types).logits
    torch.testing.assert_close(exact64, expected, atol=1e-10, rtol=0)
    model.float()
    # the check can tell the GELUs apart: the port's exact GELU in the layers misses the Flax original
    for layer in model.bigs.layers:
        layer.act = ACT2FN["gelu"]
    with torch.no_grad():
        exact = model(input_ids=ids, attention_mask=mask, token_type_ids=types).logits
    assert (exact - expected).abs().max() > 10 * ATOL
    # the padding changes the real outputs in the original (its backward branch runs over it): legacy keeps that
    other = ids.clone()
    other[1, 9] = 5
    assert not torch.allclose(original.masked_lm_logits(other, types)[1, :7], expected[1, :7])


def test_pytorch_port_masked_lm_matches_the_original(tmp_path, capsys):
    state = torch_state("mlm")
    config = write_torch(tmp_path / "src", state)
    assert convert(tmp_path / "src" / "pytorch_model.bin", tmp_path / "dst") == 0
    out = capsys.readouterr().out
    assert "source: PyTorch port (pytorch_model.bin)" in out and "gate_act=gelu," in out
    left_out = "left out (unused by the original BiGSForMaskedLM): bigs.embeddings.position_ids, bigs.pooler.dense.bias"
    assert left_out in out

    model = bizoo.BiGSForMaskedLM.from_pretrained(tmp_path / "dst").eval()
    assert model.config.gate_act == "gelu" and model.config.ssm_scaling == "hippo"
    ids, mask, types = inputs()
    expected = OriginalBiGS(state, config, "torch").masked_lm_logits(ids, types)
    with torch.no_grad():
        assert_close(model(input_ids=ids, attention_mask=mask, token_type_ids=types).logits, expected)
        exact64 = model.double()(input_ids=ids, attention_mask=mask, token_type_ids=types).logits
    torch.testing.assert_close(exact64, expected, atol=1e-10, rtol=0)

    # the same checkpoint as safetensors without the tied aliases, and as two shards with an index: the same model
    write_torch(tmp_path / "st", state, safetensors=True)
    names = sorted(k for k in state if not k.startswith("cls.predictions.decoder."))
    shards = {"a.safetensors": names[:20], "b.safetensors": names[20:]}
    (tmp_path / "sharded").mkdir()
    for shard, keys in shards.items():
        save_file({k: state[k].contiguous() for k in keys}, str(tmp_path / "sharded" / shard))
    index = {"weight_map": {k: shard for shard, keys in shards.items() for k in keys}}
    (tmp_path / "sharded" / "model.safetensors.index.json").write_text(json.dumps(index))
    write_config(tmp_path / "sharded")
    for name in ("st", "sharded"):
        assert convert(tmp_path / name, tmp_path / f"dst-{name}") == 0
        again = bizoo.BiGSForMaskedLM.from_pretrained(tmp_path / f"dst-{name}")
        for (key, a), (_, b) in zip(model.float().state_dict().items(), again.state_dict().items()):
            assert torch.equal(a, b), key


@pytest.mark.parametrize("flavour", ["flax", "torch"])
def test_untied_decoder(tmp_path, flavour):
    """tie_word_embeddings=false: the original's decoder has weights of its own, and so has the converted one."""
    decoder = 0.3 * torch.randn(V, D, generator=torch.Generator().manual_seed(4))
    if flavour == "flax":
        params = flax_params("mlm")
        params["cls"]["predictions"]["decoder"] = {"kernel": decoder.T.contiguous()}
        config = write_flax(tmp_path / "src", params, tie_word_embeddings=False)
        params = flatten(params)
    else:
        params = torch_state("mlm")
        params["cls.predictions.decoder.weight"] = decoder
        config = write_torch(tmp_path / "src", params, tie_word_embeddings=False)
    assert convert(tmp_path / "src", tmp_path / "dst") == 0
    model = bizoo.BiGSForMaskedLM.from_pretrained(tmp_path / "dst").eval()
    assert not model.config.tie_word_embeddings
    assert torch.equal(model.lm_head.decoder.weight, decoder)
    ids, mask, types = inputs()
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask, token_type_ids=types).logits
    assert_close(logits, OriginalBiGS(params, config, flavour).masked_lm_logits(ids, types))


@pytest.mark.parametrize("flavour", ["flax", "torch"])
def test_sequence_classification_matches_the_original(tmp_path, capsys, flavour):
    labels = {"0": "negative", "1": "neutral", "2": "positive"}
    if flavour == "flax":
        params = flax_params("seq")
        config = write_flax(tmp_path / "src", params, id2label=labels)
        params = flatten(params)
    else:
        params = torch_state("seq")
        config = write_torch(tmp_path / "src", params, id2label=labels)
    assert convert(tmp_path / "src", tmp_path / "dst") == 0
    assert "BiGSForSequenceClassification" in capsys.readouterr().out
    model = bizoo.BiGSForSequenceClassification.from_pretrained(tmp_path / "dst").eval()
    assert model.config.id2label == {0: "negative", 1: "neutral", 2: "positive"}
    assert model.config.classifier_pooling == "mean"
    ids, mask, types = inputs()
    expected = OriginalBiGS(params, config, flavour).sequence_logits(ids, mask, types)
    with torch.no_grad():
        assert_close(model(input_ids=ids, attention_mask=mask, token_type_ids=types).logits, expected)


def test_token_classification_from_flax_and_from_the_port(tmp_path):
    ids, mask, types = inputs()
    # Flax: a classifier and no pooler
    params = flax_params("token")
    config = write_flax(tmp_path / "flax", params)
    assert convert(tmp_path / "flax", tmp_path / "dst-flax") == 0
    model = bizoo.BiGSForTokenClassification.from_pretrained(tmp_path / "dst-flax").eval()
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask, token_type_ids=types).logits
    assert_close(logits, OriginalBiGS(flatten(params), config, "flax").token_logits(ids, types))
    # the port: every checkpoint has a pooler; its "architectures" says token classification
    state = torch_state("token")
    config = write_torch(tmp_path / "port", state, architectures=["BiGSForTokenClassification"])
    assert convert(tmp_path / "port", tmp_path / "dst-port") == 0
    model = bizoo.BiGSForTokenClassification.from_pretrained(tmp_path / "dst-port").eval()
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask, token_type_ids=types).logits
    assert_close(logits, OriginalBiGS(state, config, "torch").token_logits(ids, types))
    # without it, a pooler means sequence classification, and --model-class decides
    write_config(tmp_path / "port")
    assert convert(tmp_path / "port", tmp_path / "dst-auto") == 0
    assert json.loads((tmp_path / "dst-auto" / "config.json").read_text())["architectures"] == [
        "BiGSForSequenceClassification"
    ]
    assert convert(tmp_path / "port", tmp_path / "dst-forced", "--model-class", "token-classification") == 0
    assert type(bizoo.BiGSForTokenClassification.from_pretrained(tmp_path / "dst-forced")).__name__ == (
        "BiGSForTokenClassification"
    )


def test_max_length_matches_the_port_run_at_that_length(tmp_path):
    """The port's kernel follows the padded input length: --max-length 8 reproduces inputs padded to 8."""
    state = torch_state("mlm", seed=5)
    config = write_torch(tmp_path / "src", state)
    assert convert(tmp_path / "src", tmp_path / "dst", "--max-length", "8") == 0
    model = bizoo.BiGSForMaskedLM.from_pretrained(tmp_path / "dst").eval()
    assert model.config.max_position_embeddings == 8
    ids, mask, types = (t[:, :8] for t in inputs())
    expected = OriginalBiGS(state, config, "torch").masked_lm_logits(ids, types)
    with torch.no_grad():
        assert_close(model(input_ids=ids, attention_mask=mask, token_type_ids=types).logits, expected)


def test_tokenizer_is_saved_with_the_model(tmp_path, tokenizer, capsys):
    tokenizer.save_pretrained(tmp_path / "tok")
    vocab = len(tokenizer)
    state = torch_state("mlm")
    state["bigs.embeddings.word_embeddings.weight"] = torch.randn(vocab, D)
    state["cls.predictions.decoder.weight"] = state["bigs.embeddings.word_embeddings.weight"]
    state["cls.predictions.bias"] = state["cls.predictions.decoder.bias"] = torch.zeros(vocab)
    write_torch(tmp_path / "src", state, vocab_size=vocab, pad_token_id=tokenizer.pad_token_id)
    assert convert(tmp_path / "src", tmp_path / "dst", "--tokenizer", str(tmp_path / "tok")) == 0
    assert len(AutoTokenizer.from_pretrained(tmp_path / "dst")) == vocab
    assert (tmp_path / "dst" / "model.safetensors").is_file()
    assert not list((tmp_path / "dst").glob("*.bin"))
    # a tokenizer larger than the vocabulary is refused (the synthetic model has 50 tokens)
    write_torch(tmp_path / "small", torch_state("mlm"))
    assert convert(tmp_path / "small", tmp_path / "dst2", "--tokenizer", str(tmp_path / "tok")) == 2
    assert f"has {vocab} tokens but the model's vocabulary has 50" in capsys.readouterr().err
    assert not (tmp_path / "dst2").exists()


def test_overwrite(tmp_path, capsys):
    write_torch(tmp_path / "src", torch_state("mlm"))
    (tmp_path / "dst").mkdir()
    (tmp_path / "dst" / "old.txt").write_text("old")
    assert convert(tmp_path / "src", tmp_path / "dst") == 2
    err = capsys.readouterr().err
    assert "already exists and is not empty" in err and "--resume" not in err  # convert-bigs has no --resume
    assert convert(tmp_path / "src", tmp_path / "dst", "--overwrite") == 0
    assert not (tmp_path / "dst" / "old.txt").exists() and (tmp_path / "dst" / "model.safetensors").is_file()


def test_overwrite_refuses_an_output_folder_holding_the_source(tmp_path, capsys):
    """--overwrite replaces the output folder whole: one that holds SRC (or --tokenizer) is refused before any work,
    and SRC is still there."""
    write_torch(tmp_path / "runs" / "src", torch_state("mlm"))
    before = sorted(p.name for p in (tmp_path / "runs" / "src").iterdir())
    assert convert(tmp_path / "runs" / "src", tmp_path / "runs", "--overwrite") == 2
    assert "src" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "runs" / "src").iterdir()) == before


# ----------------------------------------------------------------------------------------------------------------
# Errors: exit code 2, a message naming the problem, nothing written
# ----------------------------------------------------------------------------------------------------------------


class Payload:
    """An object that is not a tensor: weights_only unpickling must refuse it without building it."""

    built = []

    def __init__(self, note: str):
        self.note = note

    def __setstate__(self, state):  # an unrestricted torch.load would run this
        Payload.built.append(state)


def _drop(key):
    def edit(state):
        del state[key]
    return edit


def _add(key, value):
    def edit(state):
        state[key] = value
    return edit


ERROR_CASES = {
    "missing tensor": (_drop("bigs.encoder.layer.1.fs4.kernel.C"), {},
                       ["1 missing tensor(s): bigs.encoder.layer.1.fs4.kernel.C"]),
    "unexpected tensor": (_add("bigs.encoder.layer.0.extra.weight", torch.zeros(2)), {},
                          ["1 unexpected tensor(s): bigs.encoder.layer.0.extra.weight"]),
    "wrong shape": (_add("bigs.encoder.layer.0.dv.weight", torch.zeros(47, D)), {},
                    ["bigs.encoder.layer.0.dv.weight has shape (47, 16)", "implies (48, 16)", "intermediate_size=48"]),
    "layers contradict the config": (None, {"num_hidden_layers": 3},
                                     ["num_hidden_layers=3", "the checkpoint has 2 layers"]),
    "num_ssm contradicts A_re": (
        None, {"num_ssm": 16}, ["bigs.encoder.layer.0.fs4.kernel.A_re has shape (8,)", "implies (16,)", "num_ssm=16"]
    ),
    "default num_ssm": (None, {"num_ssm": None},
                        ["has shape (8,)", "num_ssm=64, the original's default: config.json does not set it"]),
    "decoder differs from the tied embeddings": (_add("cls.predictions.decoder.weight", torch.zeros(V, D)), {},
                       ["cls.predictions.decoder.weight differs from bigs.embeddings.word_embeddings.weight",
                        "tie_word_embeddings is true"]),
    "labels contradict the classifier": (None, {"id2label": {"0": "a", "1": "b"}, "_head": "seq"},
                                         ["id2label for ids [0, 1]", "the classifier has 3 rows"]),
    "pooler mean over padding": (None, {"pooler_type": "mean", "_head": "seq"}, ["pooler_type='mean'"]),
    "bad hidden_act": (None, {"hidden_act": "quick_gelu"}, ["hidden_act must be one of"]),
    "a bizoo checkpoint": (None, {"pad_mode": "legacy"}, ["this is a bizoo checkpoint already"]),
}


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_bad_checkpoint_is_refused_and_nothing_is_written(tmp_path, capsys, case):
    edit, config, messages = ERROR_CASES[case]
    config = dict(config)
    state = torch_state(config.pop("_head", "mlm"))
    if edit is not None:
        edit(state)
    write_torch(tmp_path / "src", state, **config)
    assert convert(tmp_path / "src", tmp_path / "out" / "dst") == 2
    err = capsys.readouterr().err
    assert err.startswith("bizoo convert-bigs: error: ")
    for message in messages:
        assert message in err
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def _assert_refused(tmp_path, capsys, src, *messages, extra=()):
    assert convert(src, tmp_path / "dst", *extra) == 2
    err = capsys.readouterr().err
    for message in messages:
        assert message in err, err
    assert not (tmp_path / "dst").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".dst")]


@pytest.mark.parametrize(
    "name, message",
    [
        ("flax_model.msgpack", "is not a valid Flax msgpack checkpoint (truncated or corrupted?): the data ends at"),
        ("pytorch_model.bin", "does not load with torch.load(weights_only=True)"),
        ("model.safetensors", "is not a readable safetensors file (truncated or corrupted?)"),
    ],
)
def test_truncated_file(tmp_path, capsys, name, message):
    if name.endswith(".msgpack"):
        write_flax(tmp_path / "src", flax_params("mlm"))
    else:
        write_torch(tmp_path / "src", torch_state("mlm"), safetensors=name.endswith(".safetensors"))
    path = tmp_path / "src" / name
    path.write_bytes(path.read_bytes()[:-100])
    _assert_refused(tmp_path, capsys, tmp_path / "src", message)


def test_flax_shape_error_names_the_flax_path(tmp_path, capsys):
    tree = flax_params("mlm")
    tree["s4_bert"]["encoder"]["layer"]["1"]["do"]["kernel"] = torch.zeros(D, INNER)  # not transposed
    write_flax(tmp_path / "src", tree)
    _assert_refused(tmp_path, capsys, tmp_path / "src", "s4_bert/encoder/layer/1/do/kernel has shape (16, 48)",
                    "implies (48, 16)")


def test_flax_post_norm_is_refused(tmp_path, capsys):
    write_flax(tmp_path / "src", flax_params("mlm"), pre_norm=False)
    _assert_refused(tmp_path, capsys, tmp_path / "src", "pre_norm=false")


def test_pickle_with_an_object_is_refused_by_weights_only(tmp_path, capsys):
    (tmp_path / "src").mkdir()
    torch.save({"state_dict": torch_state("mlm"), "extra": Payload("x")}, tmp_path / "src" / "pytorch_model.bin")
    write_config(tmp_path / "src")
    _assert_refused(tmp_path, capsys, tmp_path / "src", "torch.load(weights_only=True)", "never unpickles")
    assert Payload.built == []
    torch.load(tmp_path / "src" / "pytorch_model.bin", weights_only=False)  # the object the check kept out
    assert Payload.built == [{"note": "x"}]
    Payload.built.clear()
    # a plain nested dict passes weights_only but is not a state dict
    torch.save({"model": torch_state("mlm")}, tmp_path / "src" / "pytorch_model.bin")
    _assert_refused(tmp_path, capsys, tmp_path / "src", "not a state dict", "'model' holds a dict")


def test_wrong_model_class_and_ambiguous_sources(tmp_path, capsys):
    write_torch(tmp_path / "src", torch_state("mlm"))
    _assert_refused(tmp_path, capsys, tmp_path / "src", "does not match the original BiGSForSequenceClassification",
                    "2 missing tensor(s): classifier.bias, classifier.weight",
                    "7 unexpected tensor(s): cls.predictions.bias",
                    extra=("--model-class", "sequence-classification"))
    _assert_refused(tmp_path, capsys, tmp_path / "src", "--max-length must be between 1 and max_position_embeddings=12",
                    extra=("--max-length", "13"))
    (tmp_path / "src" / "flax_model.msgpack").write_bytes(pack(flax_params("mlm")))
    _assert_refused(tmp_path, capsys, tmp_path / "src", "holds both a Flax checkpoint")
    _assert_refused(tmp_path, capsys, tmp_path / "nowhere", "does not exist")


# ----------------------------------------------------------------------------------------------------------------
# SRC and --tokenizer as Hub repository ids (read from a local cache laid out as the Hub's)
# ----------------------------------------------------------------------------------------------------------------


def test_src_as_a_hub_repository_id_converts_what_the_folder_converts(tmp_path, capsys, hub_cache, tokenizer):
    write_flax(tmp_path / "src", flax_params("mlm"))
    write_torch(tmp_path / "port", torch_state("mlm", seed=5))
    flax_files = {p.name: p for p in (tmp_path / "src").iterdir()}
    hub_cache("JunxiongWang/BiGS_tiny", flax_files)
    tokenizer.save_pretrained(tmp_path / "tok")
    hub_cache("google-bert/tiny-uncased", {p.name: p for p in (tmp_path / "tok").iterdir()})
    assert convert(tmp_path / "src", tmp_path / "from-folder") == 0
    assert convert("JunxiongWang/BiGS_tiny", tmp_path / "from-hub") == 0
    want = AutoModelForMaskedLM.from_pretrained(tmp_path / "from-folder").state_dict()
    got = AutoModelForMaskedLM.from_pretrained(tmp_path / "from-hub").state_dict()
    assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want)
    # --tokenizer from the cache too: it loads (and is then refused for its size: the synthetic model has 50 tokens)
    capsys.readouterr()
    _assert_refused(tmp_path, capsys, "JunxiongWang/BiGS_tiny", f"has {len(tokenizer)} tokens but the model's vocab",
                    extra=("--tokenizer", "google-bert/tiny-uncased"))

    # a revision, and a repository holding both formats (as the authors' repositories do): --weights-format picks
    both = {**flax_files, **{p.name: p for p in (tmp_path / "port").iterdir() if p.suffix == ".bin"}}
    hub_cache("JunxiongWang/BiGS_tiny", both, ref="v2")
    capsys.readouterr()
    _assert_refused(tmp_path, capsys, "JunxiongWang/BiGS_tiny@v2", "holds both a Flax checkpoint",
                    "--weights-format flax|torch")
    assert convert("JunxiongWang/BiGS_tiny@v2", tmp_path / "port-dst", "--weights-format", "torch") == 0
    assert "source: PyTorch" in capsys.readouterr().out
    port = AutoModelForMaskedLM.from_pretrained(tmp_path / "port-dst").state_dict()
    assert not all(torch.equal(want[k], port[k]) for k in want)  # the other checkpoint: not the Flax one again
    assert convert("JunxiongWang/BiGS_tiny@v2", tmp_path / "flax-dst", "--weights-format", "flax") == 0
    again = AutoModelForMaskedLM.from_pretrained(tmp_path / "flax-dst").state_dict()
    assert all(torch.equal(want[k], again[k]) for k in want)


def test_a_repository_not_in_the_cache_and_a_missing_path_are_refused(tmp_path, capsys, hub_cache):
    hub_cache("someone/other", {"config.json": b"{}"})
    _assert_refused(tmp_path, capsys, "someone/absent", "is not a local path", "'someone/absent' is not in the cache",
                    "HF_HUB_OFFLINE")
    _assert_refused(tmp_path, capsys, "someone/other@nope", "at 'nope' is not in the cache")
    _assert_refused(tmp_path, capsys, tmp_path / "a" / "b" / "c", "does not exist", "not a Hub repository id")
    write_flax(tmp_path / "src", flax_params("mlm"))
    _assert_refused(tmp_path, capsys, tmp_path / "src", "has no PyTorch weights",
                    extra=("--weights-format", "torch"))


def test_a_hub_tokenizer_fetches_tokenizer_files_only(monkeypatch, tmp_path):
    """--tokenizer owner/name asks the Hub for the tokenizer's files, never the repository's weights."""
    import fnmatch

    import huggingface_hub

    asked = {}

    def snapshot(repo, **kwargs):
        asked.update(kwargs, repo=repo)
        return str(tmp_path)  # an empty folder: the load then fails, after the fetch was asked for

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot)
    with pytest.raises(convert_bigs.CommandError):
        convert_bigs._load_tokenizer("google-bert/bert-base-uncased", 50, 0)
    patterns = asked["allow_patterns"]
    assert asked["repo"] == "google-bert/bert-base-uncased"
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        assert any(fnmatch.fnmatch(name, p) for p in patterns), name
    for name in ("model.safetensors", "pytorch_model.bin", "flax_model.msgpack", "tf_model.h5", "config.json"):
        assert not any(fnmatch.fnmatch(name, p) for p in patterns), name
