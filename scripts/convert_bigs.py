"""Convert a checkpoint of the original BiGS code (Wang et al. 2022, jxiw/BiGS) into a bizoo BiGS model folder.

SRC is a folder, or the weights file in it, or a Hub repository id (owner/name[@revision]: its config.json and
weights are fetched into the Hub's cache, read from the cache only under HF_HUB_OFFLINE=1); config.json (the original
BiGSConfig) sits beside the weights:

  flax_model.msgpack       the released Flax models (FlaxBiGSForMaskedLM, ...ForSequenceClassification,
                           ...ForTokenClassification): flax.serialization's msgpack, read as plain data by a small
                           decoder (no pickle); the tree may be wrapped in "params", its base named "s4_bert",
                           "BiGS" or "bigs"
  pytorch_model.bin        the authors' PyTorch port (BiGSForMaskedLM, ...): read with
                           torch.load(weights_only=True), which refuses anything but tensors and plain containers
  model.safetensors        the PyTorch port saved as safetensors (a *.index.json of shards works for both)

Every tensor is mapped to its bizoo name (Flax Dense kernels transposed, LayerNorm scale -> weight, Embed
embedding -> weight; the original's pooler -> classifier.dense, its classifier -> classifier.out_proj, the MLM
transform -> lm_head.dense / lm_head.layer_norm, cls.predictions.bias -> lm_head.decoder.bias, the decoder tied to
the word embeddings) and every tensor must be accounted for. A missing or unexpected tensor, a wrong shape, NaN or
infinite weights, a config.json that contradicts the tensors (num_hidden_layers, num_ssm, hidden_size, ...), or a
malformed or truncated file is an error that names the tensor or field with the value found and the one expected;
nothing is written then. The only tensors left out are ones the original model class never uses: the pooler of a
masked-LM or token-classification checkpoint (the PyTorch port always builds one), the next-sentence head of a Flax
pretraining checkpoint and the port's position_ids buffer; the summary lists them.

The converted model computes what the original computes (fp32): pad_mode="legacy" pads every input to
max_position_embeddings and runs the backward SSM over the padding as the original does, gate_act is the tanh
GELU for a Flax source (flax.linen.gelu) and the exact GELU for the PyTorch port, classifier_pooling is the
original's mean over non-pad tokens. With --max-length N the position table is cut to its first N rows and the
inputs are padded to N: the PyTorch port's kernel follows the padded input length, so N is the length its inputs
were padded to (max_seq_length); the Flax models always run at max_position_embeddings (keep the default).

The model class comes from the tensors (an MLM head: masked-LM; a classifier: sequence classification when a
pooler is present, token classification otherwise; config.json's "architectures" settles the port's case, whose
every checkpoint has a pooler); --model-class overrides it. The folder is written with save_pretrained
(safetensors) into a temporary sibling renamed into place at the end.

examples:
  bizoo convert-bigs BiGS_512/ runs/bigs-512 --tokenizer bert-base-uncased/
  bizoo convert-bigs bigs-sst2/pytorch_model.bin runs/bigs-sst2 --max-length 128
  bizoo convert-bigs JunxiongWang/BiGS_512 runs/bigs-512 --tokenizer google-bert/bert-base-uncased
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

import bizoo

from .lib.command import CommandError, command_main, listing, report, run_command
from .lib.models import pretrained_tokenizer
from .lib.msgpack_reader import MsgpackError, decode_msgpack
from .lib.output_folders import check_output_dir, staged_output_dir
from .lib.sources import resolve_source

PROG = "bizoo convert-bigs"

FLAX_FILE = "flax_model.msgpack"
SAFETENSORS_FILE = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
TORCH_FILE = "pytorch_model.bin"
TORCH_INDEX = "pytorch_model.bin.index.json"
FORMAT_NAMES = {"flax": "Flax msgpack", "torch": "PyTorch port"}

MODEL_CLASSES = {
    "masked-lm": "BiGSForMaskedLM",
    "sequence-classification": "BiGSForSequenceClassification",
    "token-classification": "BiGSForTokenClassification",
}
#: Class-name endings of the original's "architectures" -> our model class (None: a class bizoo does not convert).
ARCHITECTURE_CLASSES = {
    "ForMaskedLM": "masked-lm",
    "ForPreTraining": "masked-lm",
    "ForSequenceClassification": "sequence-classification",
    "ForTokenClassification": "token-classification",
    "ForMultipleChoice": None,
    "ForQuestionAnswering": None,
    "ForNextSentencePrediction": None,
}

#: The original BiGSConfig's defaults: what the original builds when config.json leaves a field out.
ORIGINAL_DEFAULTS = dict(
    vocab_size=30522,
    hidden_size=768,
    num_hidden_layers=24,
    intermediate_size=3072,
    hidden_act="gelu",
    hidden_dropout_prob=0.1,
    max_position_embeddings=512,
    type_vocab_size=2,
    initializer_range=0.02,
    layer_norm_eps=1e-12,
    pad_token_id=0,
    position_embedding_type="absolute",
    classifier_dropout=None,
    num_ssm=64,
    pre_norm=True,
    scaling="hippo",
    pooler_type="non_padding_mean",
    tie_word_embeddings=True,
)
#: Shape letters -> the config field that sets them.
DIMENSIONS = dict(
    V="vocab_size", d="hidden_size", I="intermediate_size", P="max_position_embeddings", T="type_vocab_size",
    N="num_ssm", K="num_labels",
)
SSM_NAMES = ("A_re", "A_im", "C", "log_step", "D")
#: Fields of a bizoo BiGSConfig that the original's config.json never has.
BIZOO_ONLY_FIELDS = ("gate_act", "pad_mode", "bigs_form", "ssm_scaling", "classifier_pooling")


#: numpy dtype names (flax writes ``ndarray.dtype.name``) -> torch dtypes.
NUMPY_DTYPES = {
    "float32": torch.float32,
    "float64": torch.float64,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "int8": torch.int8,
    "int16": torch.int16,
    "int32": torch.int32,
    "int64": torch.int64,
    "uint8": torch.uint8,
    "bool": torch.bool,
}


def _tensor_from_bytes(shape, dtype_name, raw, where: str) -> torch.Tensor:
    if not isinstance(shape, list) or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape):
        raise MsgpackError(f"the array at {where} has shape {shape!r}, not a list of sizes")
    if dtype_name not in NUMPY_DTYPES:
        raise MsgpackError(f"the array at {where} has dtype {dtype_name!r}; supported: {', '.join(NUMPY_DTYPES)}")
    if not isinstance(raw, bytes):
        raise MsgpackError(f"the array at {where} holds its data as {type(raw).__name__}, not bytes")
    dtype = NUMPY_DTYPES[dtype_name]
    numel = math.prod(shape)
    need = numel * torch.empty((), dtype=dtype).element_size()
    if len(raw) != need:
        raise MsgpackError(
            f"the array at {where} of shape {tuple(shape)} and dtype {dtype_name} needs {need} bytes, has {len(raw)}"
        )
    if numel == 0:
        return torch.empty(shape, dtype=dtype)
    # little-endian and C order, as numpy writes it on x86 and TPU hosts
    tensor = torch.frombuffer(bytearray(raw), dtype=dtype)
    if sys.byteorder != "little" and tensor.element_size() > 1:
        tensor = torch.from_numpy(tensor.numpy().byteswap())
    return tensor.reshape(shape)


def _flax_ext(code: int, payload: memoryview, start: int):
    """flax.serialization's extension types: 1 = ndarray ([shape, dtype name, bytes]), 3 = numpy scalar
    ([dtype name, bytes]); 2 (a complex number) has no place in BiGS weights."""
    where = f"byte {start}"
    if code == 1:
        items = decode_msgpack(bytes(payload))
        if not isinstance(items, list) or len(items) != 3:
            raise MsgpackError(f"the array at {where} is not [shape, dtype, data]")
        return _tensor_from_bytes(items[0], items[1], items[2], where)
    if code == 3:
        items = decode_msgpack(bytes(payload))
        if not isinstance(items, list) or len(items) != 2:
            raise MsgpackError(f"the scalar at {where} is not [dtype, data]")
        return _tensor_from_bytes([], items[0], items[1], where)
    if code == 2:
        raise MsgpackError(f"a complex number at {where}: BiGS checkpoints hold real arrays only")
    raise MsgpackError(f"an extension value of type {code} at {where}: flax writes types 1 (arrays) and 3 (scalars)")


def _unchunk(node: dict, name: str) -> torch.Tensor:
    """flax's form of an array over 1 GiB:
    {"__msgpack_chunked_array__": True, "shape": {"0": n0, ...}, "chunks": {"0": flat part, ...}}."""
    try:
        shape = [node["shape"][str(i)] for i in range(len(node["shape"]))]
        chunks = [node["chunks"][str(i)] for i in range(len(node["chunks"]))]
        if not all(isinstance(c, torch.Tensor) and c.dim() == 1 for c in chunks) or not chunks:
            raise TypeError("chunks must be flat arrays")
        return torch.cat(chunks).reshape(shape)
    except (KeyError, TypeError, RuntimeError, AttributeError) as err:
        raise MsgpackError(f"{name} is a malformed chunked array: {err}") from None


def _flatten(tree: dict, prefix: str, out: dict) -> None:
    for key, value in tree.items():
        if not isinstance(key, str):
            raise MsgpackError(f"{prefix or 'the top level'} has a key {key!r} that is not a string")
        name = f"{prefix}/{key}" if prefix else key
        if isinstance(value, dict):
            if "__msgpack_chunked_array__" in value:
                out[name] = _unchunk(value, name)
            else:
                _flatten(value, name, out)
        elif isinstance(value, torch.Tensor):
            out[name] = value
        else:
            raise MsgpackError(f"{name} holds a {type(value).__name__}, not an array")


def read_flax_msgpack(path: Path) -> dict[str, torch.Tensor]:
    """The arrays of a flax.serialization msgpack file as {"a/b/c": tensor}, a top-level "params" unwrapped."""
    try:
        tree = decode_msgpack(path.read_bytes(), _flax_ext)
        if not isinstance(tree, dict):
            raise MsgpackError(f"the file holds a {type(tree).__name__}, not a map of parameters")
        if set(tree) == {"params"} and isinstance(tree["params"], dict):
            tree = tree["params"]
        flat: dict[str, torch.Tensor] = {}
        _flatten(tree, "", flat)
    except MsgpackError as err:
        raise CommandError(f"{path} is not a valid Flax msgpack checkpoint (truncated or corrupted?): {err}") from None
    if not flat:
        raise CommandError(f"{path} holds no arrays")
    return flat


# ----------------------------------------------------------------------------------------------------------------
# PyTorch weights
# ----------------------------------------------------------------------------------------------------------------


def _read_torch_file(path: Path) -> dict[str, torch.Tensor]:
    if path.name.endswith(".safetensors"):
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state = load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError, RuntimeError) as err:
            raise CommandError(f"{path} is not a readable safetensors file (truncated or corrupted?): {err}") from None
    else:
        try:
            state = torch.load(path, weights_only=True, map_location="cpu")
        except Exception as err:  # noqa: BLE001 (an untrusted file may fail in any way; none of it runs)
            raise CommandError(
                f"{path} does not load with torch.load(weights_only=True) ({_load_failure(err)}); bizoo reads "
                "PyTorch files as tensors only and never unpickles other objects. Load it where you trust it, keep "
                "the state dict (a dict of tensors) and save that again"
            ) from None
    if not isinstance(state, dict) or not state:
        raise CommandError(f"{path} holds a {type(state).__name__}, not a non-empty state dict (names -> tensors)")
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise CommandError(
                f"{path} is not a state dict: entry {key!r} holds a {type(value).__name__}, not a tensor"
            )
    return dict(state)


def _load_failure(err: Exception) -> str:
    """The informative line of a torch.load error: the object weights_only refused, else the first line."""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in str(err).splitlines()]
    lines = [line for line in lines if line]
    refused = [line for line in lines if "Unsupported global" in line or "Unsupported operand" in line]
    detail = (refused or lines or [""])[0]
    detail = detail.split(" Please use ")[0]  # the refused object; not the advice to allow it
    return f"{type(err).__name__}: {detail}" if detail else type(err).__name__


def _read_index(index: Path) -> list[Path]:
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        shards = sorted(set(weight_map.values()))
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError) as err:
        raise CommandError(f"{index} is not a valid weights index (a JSON object with a weight_map): {err}") from None
    missing = [shard for shard in shards if not (index.parent / shard).is_file()]
    if missing:
        raise CommandError(f"{index} lists weight files that are missing beside it: {missing}")
    return [index.parent / shard for shard in shards]


def read_torch_weights(files: list[Path]) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = {}
    for path in files:
        for key, value in _read_torch_file(path).items():
            if key in state:
                raise CommandError(f"tensor {key!r} appears in more than one weight file ({path.name} among them)")
            state[key] = value
    return state


# ----------------------------------------------------------------------------------------------------------------
# The source: which files, which format, which configuration
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class Source:
    format: str  # "flax" or "torch"
    files: list[Path]
    config_path: Path

    @property
    def description(self) -> str:
        return f"{FORMAT_NAMES[self.format]} ({listing(sorted(p.name for p in self.files), 3)})"


def _format_of_file(path: Path) -> str:
    name = path.name
    if name.endswith(".msgpack"):
        return "flax"
    if name.endswith((".safetensors", ".bin", ".pt", ".pth", ".index.json")):
        return "torch"
    raise CommandError(
        f"SRC {str(path)!r}: unknown weights file type; give {FLAX_FILE}, {TORCH_FILE}, {SAFETENSORS_FILE} (or a "
        "*.index.json of shards), or the folder that holds one"
    )


#: The files of a Hub repository that a conversion reads (SRC given as owner/name[@revision]).
HUB_PATTERNS = [
    "config.json", FLAX_FILE, SAFETENSORS_FILE, "model-*.safetensors", f"{SAFETENSORS_FILE}.index.json",
    TORCH_FILE, "pytorch_model-*.bin", f"{TORCH_FILE}.index.json",
]


#: The files of a tokenizer in a Hub repository (--tokenizer given as owner/name): never the model's weights.
TOKENIZER_PATTERNS = ["tokenizer*", "special_tokens_map.json", "vocab*", "merges.txt", "*.model", "added_tokens.json"]


def find_source(src: str | Path, weights_format: str | None = None) -> Source:
    """The weights and config.json of ``src``; ``weights_format`` ("flax" or "torch") picks one where a folder holds
    both (as the authors' Hub repositories do)."""
    path = resolve_source(str(src), "SRC", allow_patterns=HUB_PATTERNS)
    if path.is_file():
        folder, fmt = path.parent, _format_of_file(path)
        files = _read_index(path) if path.name.endswith(".index.json") else [path]
    else:
        folder = path
        flax = path / FLAX_FILE
        torch_candidates = [path / SAFETENSORS_FILE, path / SAFETENSORS_INDEX, path / TORCH_FILE, path / TORCH_INDEX]
        torch_file = next((p for p in torch_candidates if p.is_file()), None)  # safetensors first: no pickle
        if flax.is_file() and torch_file is not None and weights_format is None:
            raise CommandError(
                f"SRC {str(src)!r} holds both a Flax checkpoint ({FLAX_FILE}) and a PyTorch one ({torch_file.name}); "
                "choose one with --weights-format flax|torch (or give the file to convert as SRC)"
            )
        if not flax.is_file() and torch_file is None:
            raise CommandError(
                f"SRC folder {str(path)!r} has no BiGS weights ({FLAX_FILE}, {SAFETENSORS_FILE}, {TORCH_FILE} or an "
                "index of shards)"
            )
        fmt = weights_format or ("flax" if flax.is_file() else "torch")
        if fmt == "flax":
            if not flax.is_file():
                raise CommandError(f"SRC {str(src)!r} has no {FLAX_FILE} (--weights-format flax)")
            files = [flax]
        else:
            if torch_file is None:
                raise CommandError(f"SRC {str(src)!r} has no PyTorch weights (--weights-format torch)")
            files = _read_index(torch_file) if torch_file.name.endswith(".index.json") else [torch_file]
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise CommandError(f"{str(folder)!r} has no config.json beside the weights (the original BiGSConfig)")
    return Source(fmt, files, config_path)


def read_original_config(path: Path) -> tuple[dict, set]:
    """The original BiGSConfig's fields: config.json over the original defaults, and the names config.json sets."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CommandError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(raw, dict):
        raise CommandError(f"{path} must hold a JSON object, got {type(raw).__name__}")
    bizoo_fields = [name for name in BIZOO_ONLY_FIELDS if name in raw]
    if bizoo_fields:
        raise CommandError(
            f"{path} has bizoo's own fields ({', '.join(bizoo_fields)}): this is a bizoo checkpoint already; load it "
            "with from_pretrained"
        )
    model_type = raw.get("model_type")
    if model_type is not None and str(model_type).lower() != "bigs":
        raise CommandError(f"{path} has model_type {model_type!r}; the original BiGS config has 'BiGS'")
    values = {**ORIGINAL_DEFAULTS, **raw}
    for name in ("vocab_size", "hidden_size", "num_hidden_layers", "intermediate_size", "max_position_embeddings",
                 "type_vocab_size", "num_ssm"):
        value = values[name]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise CommandError(f"{path}: {name} must be a positive int, got {value!r}")
    if values["scaling"] not in ("hippo", "lin", "inv"):
        raise CommandError(f"{path}: scaling must be 'hippo', 'lin' or 'inv', got {values['scaling']!r}")
    if values["pooler_type"] not in ("non_padding_mean", "mean"):
        raise CommandError(f"{path}: pooler_type must be 'non_padding_mean' or 'mean', got {values['pooler_type']!r}")
    for name in ("pre_norm", "tie_word_embeddings"):
        if not isinstance(values[name], bool):
            raise CommandError(f"{path}: {name} must be true or false, got {values[name]!r}")
    return values, set(raw)


# ----------------------------------------------------------------------------------------------------------------
# The key map
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One tensor of the original checkpoint: its name, its bizoo name (None: left out, unused by the original
    model class), its shape in letters of DIMENSIONS (as stored in the source), whether it is a Flax Dense kernel
    ((in, out): transposed)."""

    source: str
    target: str | None
    shape: tuple
    transpose: bool = False


class Layout:
    """The original names of one format: the PyTorch port's dotted state-dict names or the Flax tree's paths."""

    def __init__(self, fmt: str, base: str):
        self.fmt = fmt
        self.sep = "/" if fmt == "flax" else "."
        self.base = base  # "" or e.g. "s4_bert/", "bigs."

    def name(self, *parts) -> str:
        return self.sep.join(str(p) for p in parts)

    def dense(self, rows: list, source: str, target: str | None, out_dim, in_dim) -> None:
        if self.fmt == "flax":
            rows.append(Row(self.name(source, "kernel"), target and f"{target}.weight", (in_dim, out_dim), True))
        else:
            rows.append(Row(self.name(source, "weight"), target and f"{target}.weight", (out_dim, in_dim)))
        rows.append(Row(self.name(source, "bias"), target and f"{target}.bias", (out_dim,)))

    def layer_norm(self, rows: list, source: str, target: str | None) -> None:
        scale = "scale" if self.fmt == "flax" else "weight"
        rows.append(Row(self.name(source, scale), target and f"{target}.weight", ("d",)))
        rows.append(Row(self.name(source, "bias"), target and f"{target}.bias", ("d",)))

    def embedding(self, rows: list, source: str, target: str, rows_dim) -> None:
        table = "embedding" if self.fmt == "flax" else "weight"
        rows.append(Row(self.name(source, table), f"{target}.weight", (rows_dim, "d")))

    def layer_prefix(self, i: int) -> str:
        return f"{self.base}{self.name('encoder', 'layer', i)}"

    def layer_pattern(self) -> re.Pattern:
        return re.compile(re.escape(self.base + self.name("encoder", "layer", "")) + r"(\d+)" + re.escape(self.sep))

    def ssm(self, layer: str, direction: str, name: str) -> str:
        if self.fmt == "torch" and name != "D":
            return self.name(layer, direction, "kernel", name)
        return self.name(layer, direction, name)

    def mlm(self, *parts) -> str:
        return self.name("cls", "predictions", *parts)

    def pooler(self) -> str:
        return f"{self.base}{self.name('pooler', 'dense')}"


def _base(fmt: str, keys) -> str:
    keys = list(keys)
    if fmt == "flax":
        tops = {key.split("/", 1)[0] for key in keys}
        bases = [name for name in ("s4_bert", "BiGS", "bigs") if name in tops]
        if len(bases) > 1:
            raise CommandError(f"the Flax checkpoint has more than one BiGS base: {bases}")
        if bases:
            return bases[0] + "/"
        if "embeddings" in tops:
            return ""  # saved from the bare FlaxBiGSModel
        raise CommandError(
            f"the Flax checkpoint has no BiGS base ('s4_bert', 'BiGS', 'bigs' or a bare 'embeddings') at its top "
            f"level; it has {sorted(tops)}"
        )
    if any(key.startswith("bigs.") for key in keys):
        return "bigs."
    if any(key.startswith("embeddings.") for key in keys):
        return ""  # the bare BiGSModel
    shown = ", ".join(sorted(keys)[:5])
    raise CommandError(
        f"the PyTorch checkpoint has no BiGS tensors (bigs.embeddings.*, bigs.encoder.*); it has {shown}, ..."
    )


def expected_rows(layout: Layout, config: dict, model_class: str) -> list[Row]:
    """Every tensor the original checkpoint of ``model_class`` holds, with its bizoo name."""
    rows: list[Row] = []
    emb = layout.base + "embeddings"
    layout.embedding(rows, layout.name(emb, "word_embeddings"), "bigs.embeddings.word_embeddings", "V")
    layout.embedding(rows, layout.name(emb, "position_embeddings"), "bigs.embeddings.position_embeddings", "P")
    layout.embedding(rows, layout.name(emb, "token_type_embeddings"), "bigs.embeddings.token_type_embeddings", "T")
    layout.layer_norm(rows, layout.name(emb, "LayerNorm"), "bigs.embeddings.layer_norm")
    if layout.fmt == "torch":
        rows.append(Row(layout.name(emb, "position_ids"), None, (1, "P")))
    for i in range(config["num_hidden_layers"]):
        src, dst = layout.layer_prefix(i), f"bigs.layers.{i}"
        layout.layer_norm(rows, layout.name(src, "LayerNorm"), f"{dst}.LayerNorm")
        for name, out_dim, in_dim in (("dv", "I", "d"), ("du_forward", "d", "d"), ("du_backward", "d", "d"),
                                      ("duc_forward", "d", "d"), ("duc_backward", "d", "d"), ("dol", "I", "d"),
                                      ("do", "d", "I")):
            layout.dense(rows, layout.name(src, name), f"{dst}.{name}", out_dim, in_dim)
        for direction in ("fs4", "bs4"):
            for name, shape in zip(SSM_NAMES, (("N",), ("N",), ("N", 2), (1,), (1,))):
                rows.append(Row(layout.ssm(src, direction, name), f"{dst}.{direction}.{name}", shape))
    pooler_target = "classifier.dense" if model_class == "sequence-classification" else None
    layout.dense(rows, layout.pooler(), pooler_target, "d", "d")
    if model_class == "masked-lm":
        layout.dense(rows, layout.mlm("transform", "dense"), "lm_head.dense", "d", "d")
        layout.layer_norm(rows, layout.mlm("transform", "LayerNorm"), "lm_head.layer_norm")
        rows.append(Row(layout.mlm("bias"), "lm_head.decoder.bias", ("V",)))
        tied = config["tie_word_embeddings"]
        if layout.fmt == "torch":
            # The port's decoder.bias is the same tensor as cls.predictions.bias; its decoder weight is the word
            # embeddings when tied (a state dict may hold these names or not).
            rows.append(Row(layout.mlm("decoder", "bias"), "lm_head.decoder.bias", ("V",)))
            target = "bigs.embeddings.word_embeddings.weight" if tied else "lm_head.decoder.weight"
            rows.append(Row(layout.mlm("decoder", "weight"), target, ("V", "d")))
        elif not tied:
            rows.append(Row(layout.mlm("decoder", "kernel"), "lm_head.decoder.weight", ("d", "V"), True))
        if layout.fmt == "flax":  # FlaxBiGSForPreTraining's next-sentence head: unused by masked-LM
            layout.dense(rows, layout.name("cls", "seq_relationship"), None, 2, "d")
    else:
        target = "classifier.out_proj" if model_class == "sequence-classification" else "classifier.classifier"
        layout.dense(rows, "classifier", target, "K", "d")
    return rows


def _shape_of(symbols: tuple, dims: dict) -> tuple:
    return tuple(dims[s] if isinstance(s, str) else s for s in symbols)


def _fields_note(symbols: tuple, dims: dict, explicit: set) -> str:
    notes = []
    for s in dict.fromkeys(s for s in symbols if isinstance(s, str)):
        field = DIMENSIONS[s]
        note = f"{field}={dims[s]}"
        if field not in explicit and field != "num_labels":
            note += ", the original's default: config.json does not set it"
        notes.append(note)
    return "; ".join(notes)


# ----------------------------------------------------------------------------------------------------------------
# Conversion
# ----------------------------------------------------------------------------------------------------------------


def _architecture_class(config: dict) -> tuple[str | None, str | None]:
    """(our model class or None, the architecture name) from config.json's "architectures"."""
    architectures = config.get("architectures") or []
    if not isinstance(architectures, list) or not architectures or not isinstance(architectures[0], str):
        return None, None
    name = architectures[0]
    for ending, model_class in ARCHITECTURE_CLASSES.items():
        if name.endswith(ending):
            return model_class, name
    return None, name


def choose_model_class(layout: Layout, keys: set, config: dict, requested: str, config_path: Path) -> str:
    if requested != "auto":
        return requested
    has_mlm = any(key.startswith(layout.mlm("")) for key in keys)
    has_classifier = any(key.startswith(layout.name("classifier", "")) for key in keys)
    has_pooler = any(key.startswith(layout.pooler() + layout.sep) for key in keys)
    arch_class, arch_name = _architecture_class(config)
    if arch_name is not None and arch_class is None and any(arch_name.endswith(e) for e in ARCHITECTURE_CLASSES):
        raise CommandError(
            f"{config_path} names the architecture {arch_name!r}; bizoo converts masked-LM, sequence-classification "
            "and token-classification checkpoints (pass --model-class to convert the tensors as one of those)"
        )
    if has_mlm and has_classifier:
        raise CommandError(
            "the checkpoint has both a masked-LM head (cls.predictions) and a classifier; pass --model-class"
        )
    if has_mlm:
        found = "masked-lm"
    elif has_classifier:
        found = "sequence-classification" if has_pooler else "token-classification"
        if arch_class in ("sequence-classification", "token-classification"):
            found = arch_class  # the port builds a pooler for every model: its architecture decides
    else:
        raise CommandError(
            "the checkpoint has neither a masked-LM head (cls.predictions) nor a classifier (classifier): bizoo "
            f"converts {', '.join(MODEL_CLASSES.values())} checkpoints"
        )
    if arch_class is not None and (arch_class == "masked-lm") != (found == "masked-lm"):
        raise CommandError(
            f"{config_path} names the architecture {arch_name!r} but the tensors are those of a "
            f"{MODEL_CLASSES[found]} ({'an MLM head' if has_mlm else 'a classifier'}); pass --model-class"
        )
    return found


def _check_layers(layout: Layout, keys: set, config: dict, explicit: set, config_path: Path) -> None:
    pattern = layout.layer_pattern()
    found = sorted({int(m.group(1)) for key in keys if (m := pattern.match(key))})
    n = config["num_hidden_layers"]
    if found != list(range(n)):
        default = "" if "num_hidden_layers" in explicit else " (the original's default: config.json does not set it)"
        if not found:
            have = f"no layers ({layout.layer_prefix(0)}{layout.sep}...)"
        elif found == list(range(len(found))):
            have = f"{len(found)} layers ({layout.layer_prefix(0)} … {found[-1]})"
        else:
            have = f"layers numbered {found} ({layout.layer_prefix(found[0])} …)"
        raise CommandError(f"{config_path} has num_hidden_layers={n}{default}, but the checkpoint has {have}")


@dataclass
class Conversion:
    model: object
    model_class: str
    source: Source
    dropped: list[str]
    notes: list[str]


def _labels(config: dict, num_labels: int, config_path: Path) -> dict:
    """num_labels / id2label / label2id / problem_type for a classifier of ``num_labels`` rows."""
    out: dict = {"num_labels": num_labels}
    if "num_labels" in config and config["num_labels"] != num_labels:
        raise CommandError(
            f"{config_path} has num_labels={config['num_labels']!r}, but the classifier has {num_labels} rows"
        )
    id2label = config.get("id2label")
    if id2label is not None:
        try:
            id2label = {int(k): str(v) for k, v in dict(id2label).items()}
        except (TypeError, ValueError) as err:
            raise CommandError(f"{config_path}: id2label must map label ids to names: {err}") from None
        if sorted(id2label) != list(range(num_labels)):
            raise CommandError(
                f"{config_path} has id2label for ids {sorted(id2label)}, but the classifier has {num_labels} rows "
                f"(ids 0 … {num_labels - 1})"
            )
        out["id2label"] = id2label
        out["label2id"] = {name: i for i, name in id2label.items()}
    if config.get("problem_type") is not None:
        out["problem_type"] = config["problem_type"]
    return out


def _check_accounted(rows: list[Row], keys: set, model_class: str, source: Source) -> None:
    """Every tensor of the checkpoint has a row and every bizoo tensor a present source (``CommandError``)."""
    groups: dict[str, list[Row]] = {}
    for row in rows:
        if row.target is not None:
            groups.setdefault(row.target, []).append(row)
    unexpected = sorted(keys - {row.source for row in rows})
    missing = [members[0].source for members in groups.values() if not any(r.source in keys for r in members)]
    if unexpected or missing:
        problems = []
        if missing:
            problems.append(f"{len(missing)} missing tensor(s): {listing(sorted(missing))}")
        if unexpected:
            problems.append(f"{len(unexpected)} unexpected tensor(s): {listing(sorted(unexpected))}")
        raise CommandError(
            f"the checkpoint does not match the original {MODEL_CLASSES[model_class]} that {source.config_path} "
            f"describes ({source.description}): {'; '.join(problems)}"
        )


def _check_shapes(rows: list[Row], weights: dict, dims: dict, explicit: set, source: Source, layout: Layout) -> None:
    """Each present tensor has the shape config.json implies and floating-point values (``CommandError``)."""
    for row in rows:
        if row.source not in weights:
            continue
        tensor = weights[row.source]
        expected = _shape_of(row.shape, dims)
        if tuple(tensor.shape) != expected:
            raise CommandError(
                f"{row.source} has shape {tuple(tensor.shape)}, but {source.config_path.name} implies {expected} "
                f"({_fields_note(row.shape, dims, explicit) or 'fixed by the architecture'})"
            )
        if row.target is not None and not tensor.is_floating_point():
            raise CommandError(f"{row.source} holds {tensor.dtype} values; expected floating point weights")
        if row.target is not None and not bool(torch.isfinite(tensor).all()):
            raise CommandError(
                f"{row.source} holds NaN or infinite values ({source.description}); the checkpoint is corrupted or "
                "was saved after training diverged"
            )
    position_ids = layout.name(layout.base + "embeddings", "position_ids")
    if position_ids in weights and not torch.equal(weights[position_ids].long().flatten(), torch.arange(dims["P"])):
        raise CommandError(f"{position_ids} is not 0 … {dims['P'] - 1}: the original's positions would differ")


def _map_tensors(rows: list[Row], weights: dict) -> tuple[dict, list[str]]:
    """({bizoo name: fp32 tensor in bizoo's layout}, [original names left out]); aliases must agree."""
    groups: dict[str, list[Row]] = {}
    for row in rows:
        if row.target is not None and row.source in weights:
            groups.setdefault(row.target, []).append(row)
    state: dict[str, torch.Tensor] = {}
    for target, present in groups.items():
        values = [weights[r.source].T if r.transpose else weights[r.source] for r in present]
        for row, value in zip(present[1:], values[1:]):
            if not torch.equal(value, values[0]):
                why = "; config.json ties them (tie_word_embeddings is true)" if "word_embeddings" in target else ""
                raise CommandError(
                    f"{row.source} differs from {present[0].source}, but the original uses one tensor for both{why}"
                )
        state[target] = values[0].to(torch.float32).contiguous()
    dropped = sorted(row.source for row in rows if row.target is None and row.source in weights)
    return state, dropped


def _classifier_rows(layout: Layout, weights: dict, model_class: str) -> int:
    """num_labels: the rows of the original classifier (0 for masked-LM or when it is missing)."""
    key = layout.name("classifier", "kernel" if layout.fmt == "flax" else "weight")
    if model_class == "masked-lm" or key not in weights:
        return 0
    shape = tuple(weights[key].shape)
    if len(shape) != 2 or 0 in shape:
        raise CommandError(f"{key} has shape {shape}, expected a matrix (num_labels by hidden_size)")
    return shape[1] if layout.fmt == "flax" else shape[0]


def convert(src: str | Path, model_class: str = "auto", max_length: int | None = None,
            weights_format: str | None = None) -> Conversion:
    """Read, check and map an original BiGS checkpoint; return the bizoo model in eval mode (nothing is written).

    ``CommandError`` (a ``ValueError``) for every problem of the input: see the module docstring.
    """
    if model_class not in ("auto", *MODEL_CLASSES):
        raise CommandError(f"--model-class must be one of {('auto', *MODEL_CLASSES)}, got {model_class!r}")
    source = find_source(src, weights_format)
    config, explicit = read_original_config(source.config_path)
    cpath, fmt = source.config_path, source.format
    positions = config["max_position_embeddings"]
    length = positions if max_length is None else max_length
    if isinstance(length, bool) or not isinstance(length, int) or not 1 <= length <= positions:
        raise CommandError(
            f"--max-length must be between 1 and max_position_embeddings={positions} (the rows of the position "
            f"table), got {length!r}"
        )
    weights = read_flax_msgpack(source.files[0]) if fmt == "flax" else read_torch_weights(source.files)
    keys = set(weights)
    layout = Layout(fmt, _base(fmt, keys))
    model_class = choose_model_class(layout, keys, config, model_class, cpath)
    _check_layers(layout, keys, config, explicit, cpath)
    if fmt == "flax" and not config["pre_norm"]:
        raise CommandError(
            f"{cpath} has pre_norm=false (the Flax layer then normalises after the residual); bizoo's BiGS layer is "
            "pre-norm, as every released model"
        )
    if model_class == "sequence-classification" and config["pooler_type"] != "non_padding_mean":
        raise CommandError(
            f"{cpath} has pooler_type={config['pooler_type']!r} (a mean over every position, padding included); "
            "bizoo's BiGS pools with the mean over non-pad tokens ('non_padding_mean')"
        )

    dims = {s: config[field] for s, field in DIMENSIONS.items() if field != "num_labels"}
    dims["K"] = _classifier_rows(layout, weights, model_class)
    rows = expected_rows(layout, config, model_class)
    _check_accounted(rows, keys, model_class, source)
    _check_shapes(rows, weights, dims, explicit, source, layout)
    state, dropped = _map_tensors(rows, weights)

    notes: list[str] = []
    position_key = "bigs.embeddings.position_embeddings.weight"
    if length != positions:
        state[position_key] = state[position_key][:length].clone()
        notes.append(f"position table cut to its first {length} of {positions} rows; inputs are padded to {length}")
        if fmt == "flax":
            notes.append(
                f"the Flax original runs at max_position_embeddings={positions} only: outputs match it at the "
                "default --max-length"
            )
    with_positions = fmt == "flax" or config["position_embedding_type"] == "absolute"
    if not with_positions:  # the port adds positions only when position_embedding_type is "absolute"
        state.pop(position_key)
        dropped.append(layout.name(layout.base + "embeddings", "position_embeddings", "weight"))
        notes.append(f"position_embedding_type={config['position_embedding_type']!r}: the port adds no positions")
    tied = config["tie_word_embeddings"]
    fields = dict(
        vocab_size=dims["V"],
        hidden_size=dims["d"],
        num_hidden_layers=config["num_hidden_layers"],
        intermediate_size=dims["I"],
        max_position_embeddings=length,
        type_vocab_size=dims["T"],
        hidden_dropout_prob=config["hidden_dropout_prob"],
        layer_norm_eps=config["layer_norm_eps"],
        pad_token_id=config["pad_token_id"],
        hidden_act=config["hidden_act"],
        gate_act="gelu_pytorch_tanh" if fmt == "flax" else "gelu",  # flax.linen.gelu is the tanh approximation
        num_ssm=dims["N"],
        ssm_scaling=config["scaling"],
        pad_mode="legacy",
        position_embedding_type="absolute" if with_positions else "none",
        classifier_pooling="mean",
        classifier_dropout=config["classifier_dropout"],
        initializer_range=config["initializer_range"],
        tie_word_embeddings=tied,
    )
    if model_class != "masked-lm":
        fields.update(_labels(config, dims["K"], cpath))
    try:
        bizoo_config = bizoo.BiGSConfig(**fields)
    except ValueError as err:
        raise CommandError(f"{cpath} does not make a valid bizoo BiGS configuration: {err}") from None
    if model_class == "masked-lm" and tied:
        state["lm_head.decoder.weight"] = state["bigs.embeddings.word_embeddings.weight"]

    cls = getattr(bizoo, MODEL_CLASSES[model_class])
    model = cls(bizoo_config)
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:  # a gap in the key map above, not bad input
        raise RuntimeError(
            f"convert-bigs: the key map does not cover {cls.__name__}: missing {result.missing_keys}, "
            f"unexpected {result.unexpected_keys}"
        )
    if model_class == "masked-lm" and tied:
        if model.get_output_embeddings().weight.data_ptr() != model.get_input_embeddings().weight.data_ptr():
            raise RuntimeError("convert-bigs: the masked-LM decoder is not tied to the word embeddings")
    model.eval()
    return Conversion(model, model_class, source, sorted(dropped), notes)


def _load_tokenizer(folder: str, vocab_size: int, pad_token_id):
    """The --tokenizer (a folder, or a Hub id whose tokenizer files only are fetched), checked against the model's
    vocabulary and padding."""
    path = resolve_source(folder, "--tokenizer", allow_patterns=TOKENIZER_PATTERNS)
    if not path.is_dir():
        raise CommandError(f"--tokenizer {folder!r} is not a folder")
    tokenizer = pretrained_tokenizer(str(path), "--tokenizer")
    if len(tokenizer) > vocab_size:
        raise CommandError(
            f"--tokenizer {folder!r} has {len(tokenizer)} tokens but the model's vocabulary has {vocab_size}"
        )
    if tokenizer.pad_token_id is not None and pad_token_id is not None and tokenizer.pad_token_id != pad_token_id:
        raise CommandError(
            f"--tokenizer {folder!r} pads with id {tokenizer.pad_token_id}, but the model's pad_token_id is "
            f"{pad_token_id}: the original's padding would differ"
        )
    return tokenizer


def convert_checkpoint(src, output_dir, model_class="auto", max_length=None, tokenizer=None, overwrite=False,
                       weights_format=None):
    """Convert ``src`` and write the bizoo folder ``output_dir``; returns the ``Conversion``.

    Every check (see the module docstring) runs before anything is written; the folder is written into a temporary
    sibling renamed to ``output_dir`` at the end.
    """
    # --overwrite replaces the folder whole: refused before any work if that would take SRC or --tokenizer with it
    inputs = [Path(path) for path in (str(src), tokenizer) if path is not None and Path(path).exists()]
    target = check_output_dir(output_dir, overwrite, inputs=inputs)
    src_path = resolve_source(str(src), "SRC", allow_patterns=HUB_PATTERNS)
    src_folder = src_path if src_path.is_dir() else src_path.parent
    if target.exists() and target.resolve() == src_folder.resolve():
        raise CommandError(f"output folder {str(target)!r} is the source folder itself; choose another folder")
    conversion = convert(src_path, model_class, max_length, weights_format)
    config = conversion.model.config
    tok = _load_tokenizer(tokenizer, config.vocab_size, config.pad_token_id) if tokenizer is not None else None
    with staged_output_dir(target, overwrite) as staging:
        conversion.model.save_pretrained(str(staging))
        if tok is not None:
            tok.save_pretrained(str(staging))
    return conversion


# ----------------------------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this command's arguments to ``parser``."""
    parser.add_argument("src", metavar="SRC", help=f"the original checkpoint: a folder, or its {FLAX_FILE}, "
                        f"{TORCH_FILE} or {SAFETENSORS_FILE} (config.json beside it), or a Hub repository id "
                        "owner/name[@revision] holding them")
    parser.add_argument("dst", metavar="DST", help="the bizoo folder to write (must be new or empty, see --overwrite)")
    parser.add_argument(
        "--max-length", type=int, default=None, metavar="N",
        help="the length the original's inputs were padded to (default: max_position_embeddings); the position "
        "table keeps its first N rows",
    )
    parser.add_argument(
        "--model-class", choices=("auto", *MODEL_CLASSES), default="auto",
        help="the bizoo class to convert to (default: auto, from the checkpoint's heads and architectures)",
    )
    parser.add_argument(
        "--tokenizer", metavar="DIR",
        help="a tokenizer folder or Hub repository id to save with the model (e.g. BERT's uncased WordPiece)"
    )
    parser.add_argument(
        "--weights-format", choices=("flax", "torch"), default=None,
        help="which weights to convert where SRC holds both a Flax and a PyTorch checkpoint (the authors' Hub "
        "repositories do)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace DST if it already holds files")


def run(args: argparse.Namespace) -> int:
    """Convert ``args.src`` to ``args.dst``; 0 on success, 2 on bad input."""

    def body() -> int:
        conversion = convert_checkpoint(
            args.src, args.dst, model_class=args.model_class, max_length=args.max_length,
            tokenizer=args.tokenizer, overwrite=args.overwrite, weights_format=args.weights_format,
        )
        model, config = conversion.model, conversion.model.config
        parameters = sum(p.numel() for p in model.parameters())
        report(f"converted {args.src} to {args.dst}")
        report(f"  source: {conversion.source.description}")
        report(
            f"  model: {type(model).__name__}, {config.num_hidden_layers} layers, hidden {config.hidden_size}, "
            f"num_ssm {config.num_ssm}, vocab {config.vocab_size}, {parameters:,} parameters"
            + (f", {config.num_labels} labels" if conversion.model_class != "masked-lm" else "")
        )
        report(
            f"  pad_mode=legacy (inputs padded to {config.max_position_embeddings}), gate_act={config.gate_act}, "
            f"hidden_act={config.hidden_act}, ssm_scaling={config.ssm_scaling}"
        )
        if conversion.dropped:
            report(f"  left out (unused by the original {type(model).__name__}): {', '.join(conversion.dropped)}")
        for note in conversion.notes:
            report(f"  note: {note}")
        if args.tokenizer is not None:
            report(f"  tokenizer: {args.tokenizer}")
        return 0

    return run_command(PROG, body)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``bizoo convert-bigs`` and ``python -m bizoo.scripts.convert_bigs``."""
    return command_main(__name__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
