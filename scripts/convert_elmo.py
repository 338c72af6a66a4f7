"""Convert a bilm-tf ELMo (Peters et al. 2018; allenai/bilm-tf) into a bizoo ELMo folder.

A bilm-tf model is two files: options.json (the architecture) and an HDF5 weights file (what bilm-tf's
dump_weights writes, e.g. elmo_2x4096_512_2048cnn_2xhighway_weights.hdf5). The folder written holds an ElmoModel
(safetensors) and its tokenizer: a WordCharTokenizerFast with bilm-tf's character ids (char_scheme="bilm") and
<S> ... </S> around every sentence, whose word vocabulary is --vocab (bilm-tf's vocabulary file: one word per line,
with <S>, </S> and <UNK>) or, without it, the special tokens only (ELMo's representation reads characters; the
word ids matter only to a language-model head).

The weights are read as data with h5py (``pip install bizoo[elmo]``), never executed. Layout and mapping:

  char_embed                       (261, E)        -> char_encoder.char_embeddings.weight, a zero row 0 added
                                                      (id 0 = a padded word; bilm-tf's ids are shifted by +1)
  CNN/W_cnn_k, b_cnn_k             (1, w, E, n)    -> char_encoder.convolutions.k (weight as (n, E, w))
  CNN_high_k/W_carry, b_carry      (F, F), (F,)    -> char_encoder.highways.k.gate (transposed)
  CNN_high_k/W_transform, b_transform              -> char_encoder.highways.k.transform (transposed)
  CNN_proj/W_proj, b_proj          (F, P), (P,)    -> char_encoder.projection (absent when F = P)
  RNN_d/RNN/MultiRNNCell/Cell{j}/LSTMCell/         d = 0 forward, 1 backward; j = the layer
      W_0                          (P + P, 4H)     -> layers.j.{forward,backward}_cell.weight_ih / weight_hh
                                                      (the rows of the input, then of the recurrent state)
      B                            (4H,)           -> .bias (gate order i, g, f, o kept; the forget bias 1.0 is
                                                      added at run time, as TensorFlow's LSTMCell does)
      W_P_0                        (H, P)          -> .weight_proj (absent when H = P)

Every dataset must be there with the shape options.json implies, and nothing else may be; a missing, extra or
misshapen dataset, non-finite values, an options.json that is not valid JSON or not a bilm-tf model, or a
vocabulary without its special tokens is an error that names the problem (exit code 2), and nothing is written.
The folder is written into a temporary sibling and renamed into place at the end.

An options.json written by bilm-tf's training (with n_tokens_vocab, dropout, n_negative_samples_batch, ...) is read
too: its dropout becomes hidden_dropout_prob; n_negative_samples_batch becomes sampled_softmax_size when it is smaller
than the converted vocabulary and otherwise the full softmax (sampled_softmax_size 0, which a sample of every word
equals; a note says so), so that the conversion without --vocab or with a small one is not refused.

The LSTMs start every batch from a zero state. (bilm-tf's inference graph is stateful: each batch starts from the
states the previous batch ended with; bizoo's outputs equal bilm-tf's on a fresh graph, sentence by sentence.)

The files may also come from a folder or a Hub repository (--source owner/name[@revision]: fetched into the Hub's
cache, read from the cache only under HF_HUB_OFFLINE=1), with --options/--weights/--vocab naming files inside it;
by default options.json (or the folder's one *options.json, as the released elmo_..._options.json), its one *.hdf5
file and vocab.txt when there. A vocabulary file may start with a byte-order mark and end its lines with \r\n.

examples:
  bizoo convert-elmo --source elmo-original/ --output-dir runs/elmo-original
  bizoo convert-elmo --options elmo_options.json --weights elmo_weights.hdf5 --output-dir runs/elmo-original
  bizoo convert-elmo --options options.json --weights lm_weights.hdf5 --vocab vocab.txt --output-dir runs/elmo
"""

from __future__ import annotations

import argparse
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..configuration.configuration_elmo import ElmoConfig
from ..modeling.modeling_elmo import ElmoModel
from ..modeling.tokenization_wordchar import BOS, EOS, MASK, PAD, UNK, WordCharTokenizerFast
from .lib.command import CommandError, command_main, listing, report, run_command
from .lib.output_folders import check_output_dir, staged_output_dir
from .lib.sources import resolve_source

PROG = "bizoo convert-elmo"
INSTALL_HINT = "pip install bizoo[elmo]"
#: bilm-tf's vocabulary marks, and the tokens bizoo's tokenizer uses for them.
BILM_BOS, BILM_EOS, BILM_UNK = "<S>", "</S>", "<UNK>"
BILM_VOCAB_SKIP = "!!!MAXTERMID"  # a line bilm-tf's Vocabulary skips
OPTIONS_FILE, VOCAB_FILE = "options.json", "vocab.txt"  # the default names inside --source
#: the released files' names end so: elmo_2x4096_512_2048cnn_2xhighway_options.json
OPTIONS_PATTERN = "*options.json"
VOCAB_LINE_END = re.compile(r"\r\n|\r|\n")


def import_h5py():
    """h5py, or ``CommandError`` saying how to install it."""
    try:
        import h5py
    except ImportError:
        raise CommandError(
            f"convert-elmo reads bilm-tf's HDF5 weights with h5py, which is not installed: {INSTALL_HINT}"
        ) from None
    return h5py


# ----------------------------------------------------------------------------------------------------------------
# Reading the inputs
# ----------------------------------------------------------------------------------------------------------------


def read_options(path: str | Path):
    """The ``ElmoConfig`` of a bilm-tf options.json (``CommandError`` naming the problem)."""
    path = Path(path)
    if not path.is_file():
        raise CommandError(f"--options {str(path)!r} does not exist or is not a file")
    try:
        options = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise CommandError(f"--options {str(path)!r} is not UTF-8 text: {err}") from None
    except json.JSONDecodeError as err:
        raise CommandError(f"--options {str(path)!r} is not valid JSON: {err}") from None
    try:  # the architecture; the sampled softmax depends on the vocabulary, set in ``convert``
        return options, ElmoConfig.from_bilm_options(options, sampled_softmax_size=0)
    except (ValueError, TypeError) as err:
        raise CommandError(f"--options {str(path)!r}: {err}") from None


def expected_datasets(config) -> dict[str, tuple[tuple[int, ...], str]]:
    """HDF5 dataset path -> (shape, which options set it) for a bilm-tf model of ``config``."""
    E, P, H, F = config.char_embedding_size, config.projection_size, config.lstm_size, config.num_filters
    expected = {"char_embed": ((config.char_vocab_size - 1, E), "char_cnn.embedding.dim; 261 character ids")}
    for k, (width, count) in enumerate(config.char_filters):
        expected[f"CNN/W_cnn_{k}"] = ((1, width, E, count), f"char_cnn.filters[{k}] = {[width, count]}, embedding.dim")
        expected[f"CNN/b_cnn_{k}"] = ((count,), f"char_cnn.filters[{k}] = {[width, count]}")
    for k in range(config.n_highway):
        why = f"char_cnn.n_highway = {config.n_highway}; width = the filters' total {F}"
        for name in ("W_carry", "W_transform"):
            expected[f"CNN_high_{k}/{name}"] = ((F, F), why)
        for name in ("b_carry", "b_transform"):
            expected[f"CNN_high_{k}/{name}"] = ((F,), why)
    if F != P:
        expected["CNN_proj/W_proj"] = ((F, P), f"the filters' total {F} and lstm.projection_dim {P}")
        expected["CNN_proj/b_proj"] = ((P,), "lstm.projection_dim")
    for direction in (0, 1):
        for j in range(config.num_hidden_layers):
            root = f"RNN_{direction}/RNN/MultiRNNCell/Cell{j}/LSTMCell"
            why = f"lstm.n_layers = {config.num_hidden_layers}, projection_dim = {P}, dim = {H}"
            expected[f"{root}/W_0"] = ((2 * P, 4 * H), why)
            expected[f"{root}/B"] = ((4 * H,), why)
            if P < H:
                expected[f"{root}/W_P_0"] = ((H, P), why)
    return expected


def read_weights(path: str | Path, config) -> dict[str, torch.Tensor]:
    """Every dataset of the bilm-tf weights file as an fp32 tensor, checked against ``config``."""
    h5py = import_h5py()
    path = Path(path)
    if not path.is_file():
        raise CommandError(f"--weights {str(path)!r} does not exist or is not a file")
    expected = expected_datasets(config)
    try:
        with h5py.File(path, "r") as handle:
            found: dict[str, object] = {}

            def visit(name, item):
                if isinstance(item, h5py.Dataset):
                    found[name] = item

            handle.visititems(visit)
            missing = [name for name in expected if name not in found]
            unexpected = sorted(name for name in found if name not in expected)
            if missing or unexpected:
                problems = []
                if missing:
                    problems.append(f"missing dataset(s) {listing(missing)}")
                if unexpected:
                    problems.append(f"unexpected dataset(s) {listing(unexpected)}")
                raise CommandError(
                    f"--weights {str(path)!r} does not hold the bilm-tf model options.json describes "
                    f"({config.num_hidden_layers} LSTM layers, {config.n_highway} highway layers, "
                    f"{len(config.char_filters)} filter widths): {'; '.join(problems)}"
                )
            weights = {}
            for name, (shape, why) in expected.items():
                dataset = found[name]
                if tuple(dataset.shape) != shape:
                    raise CommandError(
                        f"--weights: dataset {name} has shape {tuple(dataset.shape)}, but options.json implies {shape} "
                        f"({why})"
                    )
                if dataset.dtype.kind != "f":
                    raise CommandError(f"--weights: dataset {name} holds {dataset.dtype} values, not floating point")
                tensor = torch.from_numpy(dataset[()].astype("float32", copy=False)).contiguous()
                if not torch.isfinite(tensor).all():
                    raise CommandError(f"--weights: dataset {name} holds NaN or infinite values")
                weights[name] = tensor
    except OSError as err:
        raise CommandError(f"--weights {str(path)!r} is not a readable HDF5 file: {err}") from None
    return weights


def read_vocabulary(path: str | Path) -> list[str]:
    """The words of a bilm-tf vocabulary file, in its order, without its special tokens (``CommandError`` when
    <S>, </S> or <UNK> is missing or a word repeats)."""
    path = Path(path)
    if not path.is_file():
        raise CommandError(f"--vocab {str(path)!r} does not exist or is not a file")
    try:  # a byte-order mark is not part of the first word; lines end at \n, \r\n or \r only, as when bilm-tf's
        # Vocabulary iterates over the file (str.splitlines would also split words at \x85, \u2028, \x0c, ...)
        lines = VOCAB_LINE_END.split(path.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError as err:
        raise CommandError(f"--vocab {str(path)!r} is not UTF-8 text: {err}") from None
    words, seen, specials = [], {}, set()
    for number, line in enumerate(lines, start=1):
        word = line.strip()
        if not word or word == BILM_VOCAB_SKIP:
            continue
        if word in seen:
            raise CommandError(f"--vocab {str(path)!r}: line {number} repeats {word!r} (first on line {seen[word]})")
        seen[word] = number
        if word in (BILM_BOS, BILM_EOS, BILM_UNK):
            specials.add(word)
        else:
            words.append(word)
    missing = [token for token in (BILM_BOS, BILM_EOS, BILM_UNK) if token not in specials]
    if missing:
        raise CommandError(f"--vocab {str(path)!r} lacks bilm-tf's special tokens {missing} (one word per line)")
    return words


def build_tokenizer(words: list[str], config):
    """A bilm-scheme WordCharTokenizerFast: [PAD] [UNK] [MASK] <S> </S>, then ``words``."""
    specials = [PAD, UNK, MASK, BOS, EOS]
    vocab = {token: index for index, token in enumerate(specials)}
    clashes = [word for word in words if word in vocab]
    if clashes:
        raise CommandError(f"--vocab holds {clashes}, which are bizoo's own special tokens; rename them")
    for word in words:
        vocab[word] = len(vocab)
    return WordCharTokenizerFast(
        vocab=vocab,
        char_scheme="bilm",
        max_word_length=config.max_characters_per_token,
        add_sentence_boundaries=True,
        model_max_length=1_000_000,
    )


# ----------------------------------------------------------------------------------------------------------------
# Mapping
# ----------------------------------------------------------------------------------------------------------------


def map_weights(weights: dict[str, torch.Tensor], config) -> dict[str, torch.Tensor]:
    """bilm-tf datasets -> an ElmoModel state dict (see the module docstring)."""
    P, H = config.projection_size, config.lstm_size
    char_embed = weights["char_embed"]
    state = {
        "char_encoder.char_embeddings.weight": torch.cat([char_embed.new_zeros(1, char_embed.shape[1]), char_embed]),
    }
    for k in range(len(config.char_filters)):
        state[f"char_encoder.convolutions.{k}.weight"] = weights[f"CNN/W_cnn_{k}"][0].permute(2, 1, 0)  # (n, E, w)
        state[f"char_encoder.convolutions.{k}.bias"] = weights[f"CNN/b_cnn_{k}"]
    for k in range(config.n_highway):
        root = f"CNN_high_{k}"
        state[f"char_encoder.highways.{k}.gate.weight"] = weights[f"{root}/W_carry"].T
        state[f"char_encoder.highways.{k}.gate.bias"] = weights[f"{root}/b_carry"]
        state[f"char_encoder.highways.{k}.transform.weight"] = weights[f"{root}/W_transform"].T
        state[f"char_encoder.highways.{k}.transform.bias"] = weights[f"{root}/b_transform"]
    if "CNN_proj/W_proj" in weights:
        state["char_encoder.projection.weight"] = weights["CNN_proj/W_proj"].T
        state["char_encoder.projection.bias"] = weights["CNN_proj/b_proj"]
    for direction, cell_name in ((0, "forward_cell"), (1, "backward_cell")):
        for j in range(config.num_hidden_layers):
            root = f"RNN_{direction}/RNN/MultiRNNCell/Cell{j}/LSTMCell"
            kernel = weights[f"{root}/W_0"]  # (P + P, 4H): [input; recurrent state] @ kernel
            prefix = f"layers.{j}.{cell_name}"
            state[f"{prefix}.weight_ih"] = kernel[:P].T  # (4H, P)
            state[f"{prefix}.weight_hh"] = kernel[P:].T  # (4H, P)
            state[f"{prefix}.bias"] = weights[f"{root}/B"]
            if P < H:
                state[f"{prefix}.weight_proj"] = weights[f"{root}/W_P_0"].T  # (P, H)
    return {name: tensor.contiguous().clone() for name, tensor in state.items()}


def sampled_softmax_fields(options, vocab_size: int, notes: list[str]) -> dict:
    """The ElmoConfig fields for bilm-tf's training option ``n_negative_samples_batch`` (the sampled softmax's
    candidates per batch; 8192 in the options.json bilm-tf's training writes) over the converted vocabulary of
    ``vocab_size`` words: ``{}`` (``from_bilm_options`` reads the option) or, when the candidates would cover the whole
    vocabulary (no --vocab, or a small one), ``{"sampled_softmax_size": 0}``, the full softmax, which a sample of
    every word equals (``sampled_softmax_loss``), with a note in ``notes``. A value that is not an int is left to
    ``from_bilm_options`` to refuse."""
    count = options.get("n_negative_samples_batch")
    if not options.get("sample_softmax", True) or isinstance(count, bool) or not isinstance(count, int):
        return {}
    if count < vocab_size:
        return {}
    notes.append(
        f"n_negative_samples_batch={count} covers the whole vocabulary of {vocab_size} words: the converted model "
        "trains with the full softmax (sampled_softmax_size=0), which such a sample equals"
    )
    return {"sampled_softmax_size": 0}


@dataclass
class Conversion:
    model: object
    tokenizer: object
    notes: list[str] = field(default_factory=list)


def convert(options: str | Path, weights: str | Path, vocab: str | Path | None = None) -> Conversion:
    """Read and check the bilm-tf files; return the ElmoModel (eval mode) and its tokenizer. Nothing is written."""
    options_dict, config = read_options(options)
    tensors = read_weights(weights, config)
    words = read_vocabulary(vocab) if vocab is not None else []
    tokenizer = build_tokenizer(words, config)
    sizes = dict(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, unk_token_id=tokenizer.unk_token_id)
    notes = []
    sizes.update(sampled_softmax_fields(options_dict, len(tokenizer), notes))
    try:
        config = ElmoConfig.from_bilm_options(options_dict, **sizes)
    except ValueError as err:
        raise CommandError(f"the bilm-tf model does not make a valid bizoo ELMo configuration: {err}") from None
    model = ElmoModel(config)
    state = map_weights(tensors, config)
    result = model.load_state_dict(state, strict=False)
    left = sorted(k for k in result.missing_keys if k != "word_embeddings.weight" and not k.startswith("scalar_mixes."))
    if left or result.unexpected_keys:  # a gap in the map above, not bad input
        raise RuntimeError(
            f"convert-elmo: the map does not cover ElmoModel: missing {left}, unexpected {result.unexpected_keys}"
        )
    notes.insert(
        0,
        "the word table (the LM softmax, vocab_size × projection_dim) is not in bilm-tf weight files: it is newly "
        "initialised, as are the scalar-mix weights (the mean of the layers)",
    )
    if vocab is None:
        notes.append("no --vocab: the word vocabulary is the special tokens only (the representation reads characters)")
    return Conversion(model.eval(), tokenizer, notes)


def convert_checkpoint(options, weights, output_dir, vocab=None, overwrite: bool = False) -> Conversion:
    """Convert and write the bizoo folder ``output_dir`` (model + tokenizer); returns the ``Conversion``."""
    target = check_output_dir(output_dir, overwrite)
    for flag, source in (("--options", options), ("--weights", weights), ("--vocab", vocab)):
        if source is not None and target.exists() and Path(source).resolve().is_relative_to(target.resolve()):
            raise CommandError(f"--output-dir {str(target)!r} holds the {flag} file; choose another folder")
    conversion = convert(options, weights, vocab)
    with staged_output_dir(target, overwrite) as staging:
        conversion.model.save_pretrained(str(staging))
        conversion.tokenizer.save_pretrained(str(staging))
    return conversion


# ----------------------------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------------------------


def default_options_name(folder: Path, source: str) -> str:
    """options.json in ``folder``, else its one file named *options.json (the released files' naming,
    elmo_2x4096_512_2048cnn_2xhighway_options.json); ``CommandError`` when neither or several are there."""
    if (folder / OPTIONS_FILE).is_file():
        return OPTIONS_FILE
    found = sorted(p.name for p in folder.glob(OPTIONS_PATTERN) if p.is_file())
    if len(found) == 1:
        return found[0]
    raise CommandError(
        f"--source {source!r} holds no {OPTIONS_FILE} and {len(found)} {OPTIONS_PATTERN} files "
        f"({', '.join(found) or 'none'}); name the options file with --options"
    )


def source_files(source: str | None, options: str | None, weights: str | None, vocab: str | None):
    """(options, weights, vocab) paths: as given without ``source``; with it, names inside the folder or Hub
    repository ``source`` (``lib.sources.resolve_source``), defaulting to options.json (else the one *options.json
    file, as the released files are named), the one *.hdf5 file and vocab.txt when present."""
    if source is None:
        missing = [name for name, value in (("--options", options), ("--weights", weights)) if value is None]
        if missing:
            raise CommandError(f"give {' and '.join(missing)} (or --source, a folder or Hub repository holding them)")
        return options, weights, vocab
    folder = resolve_source(source, "--source", allow_patterns=["*.json", "*.hdf5", "*.txt"])
    if not folder.is_dir():
        raise CommandError(f"--source {source!r} is not a folder or a Hub repository")
    if weights is None:
        found = sorted(p.name for p in folder.glob("*.hdf5"))
        if len(found) != 1:
            raise CommandError(
                f"--source {source!r} holds {len(found)} *.hdf5 files ({', '.join(found) or 'none'}); name the "
                "weights with --weights"
            )
        weights = found[0]
    if options is None:
        options = default_options_name(folder, source)
    if vocab is None and (folder / VOCAB_FILE).is_file():
        vocab = VOCAB_FILE
    inside = [folder / name if name is not None else None for name in (options, weights, vocab)]
    for option, path in zip(("--options", "--weights", "--vocab"), inside):
        if path is not None and not path.is_file():
            raise CommandError(f"{option}: {path.name!r} is not a file in --source {source!r}")
    return tuple(str(p) if p is not None else None for p in inside)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this command's arguments to ``parser``."""
    parser.add_argument(
        "--source", metavar="SRC",
        help="a folder or Hub repository id (owner/name[@revision]) holding the bilm-tf files; --options, --weights "
        f"and --vocab then name files inside it (defaults: {OPTIONS_FILE} or else its one {OPTIONS_PATTERN} file, "
        f"its one *.hdf5 file, {VOCAB_FILE} when there)",
    )
    parser.add_argument("--options", metavar="FILE", help="bilm-tf's options.json (required without --source)")
    parser.add_argument(
        "--weights", metavar="FILE", help="bilm-tf's HDF5 weights (dump_weights; required without --source)"
    )
    parser.add_argument("--output-dir", required=True, metavar="DIR", help="the bizoo folder to write (new or empty)")
    parser.add_argument(
        "--vocab", metavar="FILE",
        help="bilm-tf's vocabulary file (one word per line, with <S>, </S>, <UNK>) for the tokenizer's word ids "
        "(default: the special tokens only)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace --output-dir if it already holds files")


def run(args: argparse.Namespace) -> int:
    """Convert; 0 on success, 2 on bad input."""

    def body() -> int:
        options, weights, vocab = source_files(args.source, args.options, args.weights, args.vocab)
        conversion = convert_checkpoint(options, weights, args.output_dir, vocab, args.overwrite)
        model, config = conversion.model, conversion.model.config
        encoder = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("word_embeddings"))
        report(f"converted {weights} to {args.output_dir}")
        report(
            f"  ElmoModel: {len(config.char_filters)} filter widths ({config.num_filters} filters), "
            f"{config.n_highway} highway, {config.num_hidden_layers} × 2 LSTM layers of {config.lstm_size} cells → "
            f"{config.projection_size}, cell_clip={config.cell_clip}, proj_clip={config.proj_clip}, "
            f"skip connections {config.use_skip_connections}; {encoder:,} encoder parameters"
        )
        report(f"  tokenizer: {len(conversion.tokenizer):,} words, bilm-tf character ids, <S> ... </S>")
        for note in conversion.notes:
            report(f"  note: {note}")
        return 0

    return run_command(PROG, body)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``bizoo convert-elmo`` and ``python -m bizoo.scripts.convert_elmo``."""
    return command_main(__name__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
