"""Write a Hub-ready folder from a bizoo checkpoint, one that loads with trust_remote_code=True where bizoo
is not installed.

The folder DIR holds:

  config.json            the checkpoint's configuration plus an "auto_map" that names, for AutoConfig and
                         every Auto model class of the model type, the class in the code files below
  model.safetensors      the weights (safetensors only: checkpoints saved as pickled .bin files are refused)
  tokenizer files        when the checkpoint has a tokenizer; when it is one of bizoo's own tokenizer classes
                         (WordCharTokenizerFast), its tokenizer_config.json gets an "auto_map" naming that class in
                         the code files below, so AutoTokenizer loads it with trust_remote_code=True too; the keys
                         that say how this machine loaded it ("is_local", "local_files_only") are left out
  README.md              a model card: Hub metadata (license: --license, apache-2.0 unless told; tags,
                         pipeline_tag, model-index with the results recorded in the checkpoint), what the model is,
                         how to load it, results, configuration; named after DIR's folder (bizoo push names it
                         after the repository)
  configuration_*.py     bizoo's code for this model type, flattened into one folder: transformers copies a
  modeling_*.py          remote-code module and the sibling files it imports with `from .name import ...`,
  kernels_*.py           so bizoo's nested packages (modeling/, kernels/lion/, ...) become flat files and
  tokenization_*.py      their relative imports are rewritten to point at each other

Nothing is written until the checkpoint has been checked (a config.json of a model type bizoo has, readable
safetensors weights, valid recorded results) and loaded. Everything then goes to a temporary folder beside DIR
that is renamed into place at the end: a failure leaves neither a half-written DIR nor a changed old one. An
existing non-empty DIR is replaced only with --overwrite.

examples:
  bizoo export runs/lion hub/lion-d
  bizoo export runs/my-tagger hub/my-tagger --license mit
  bizoo push hub/lion-d --repo-id my-org/lion-d
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from safetensors import SafetensorError, safe_open
from transformers import AutoModel, AutoTokenizer

import bizoo

from ..modeling.tokenization_wordchar import WordCharTokenizerFast
from .lib.command import CommandError, command_main, listing, report, run_command
from .lib.model_card import DEFAULT_LICENSE, check_license, model_card, model_index_results
from .lib.output_folders import TOKENIZER_FILES, atomic_write_text, check_output_dir, staged_output_dir
from .lib.remote_code import auto_map, flat_sources, tokenizer_auto_map
from .lib.results import read_results

PROG = "bizoo export"

WEIGHTS_FILE = "model.safetensors"
WEIGHTS_INDEX_FILE = "model.safetensors.index.json"
#: bizoo's own tokenizer classes, by the names tokenizer_config.json may give them ("tokenizer_class": transformers
#: saves a fast tokenizer's name without its "Fast"). They load by class, whether or not AutoTokenizer knows them.
BIZOO_TOKENIZER_CLASSES = {
    name: cls for cls in (WordCharTokenizerFast,) for name in (cls.__name__, cls.__name__.removesuffix("Fast"))
}
#: Weight files that are Python pickles: loading one can run arbitrary code.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")
#: Keys transformers' tokenizer save_pretrained writes into tokenizer_config.json from how the tokenizer was loaded
#: here (from a local folder, offline): loading-time state, not the tokenizer's, so an export leaves them out.
LOADING_STATE_KEYS = ("is_local", "local_files_only")


# ----------------------------------------------------------------------------------------------------------------
# Checkpoint checks
# ----------------------------------------------------------------------------------------------------------------


def _read_config(checkpoint: Path) -> tuple[dict, bizoo.ModelSpec]:
    """The checkpoint's config.json and the spec of its model type; ``CommandError`` for anything unusable."""
    if not checkpoint.exists():
        raise CommandError(f"checkpoint folder {str(checkpoint)!r} does not exist")
    if not checkpoint.is_dir():
        raise CommandError(f"checkpoint {str(checkpoint)!r} is a file; give the folder that save_pretrained wrote")
    config_path = checkpoint / "config.json"
    if not config_path.is_file():
        raise CommandError(
            f"checkpoint folder {str(checkpoint)!r} has no config.json; give a folder written by save_pretrained "
            "(e.g. the --output-dir of bizoo pretrain or finetune)"
        )
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CommandError(f"{config_path} is not valid JSON: {err}") from None
    if not isinstance(config, dict):
        raise CommandError(f"{config_path} must hold a JSON object, got {type(config).__name__}")
    model_type = config.get("model_type")
    if model_type not in bizoo.MODEL_SPECS:
        raise CommandError(
            f"{config_path} has model_type {model_type!r}, which is not a bizoo model; bizoo exports "
            f"{sorted(bizoo.MODEL_SPECS)}"
        )
    spec = bizoo.get_spec(model_type)
    architectures = config.get("architectures")
    if isinstance(architectures, str):  # one class name where transformers writes a list of them: what was meant
        config["architectures"] = [architectures]
    elif architectures is not None and (
        not isinstance(architectures, list) or not all(isinstance(name, str) for name in architectures)
    ):
        example = json.dumps([next(iter(spec.models.values())).__name__])
        raise CommandError(
            f"{config_path}: \"architectures\" must be a list of class names such as {example}, or absent; got "
            f"{architectures!r}"
        )
    return config, spec


def _weight_files(checkpoint: Path) -> list[Path]:
    """The checkpoint's safetensors files (one file, or the shards an index lists); refuses pickled weights."""
    single, index = checkpoint / WEIGHTS_FILE, checkpoint / WEIGHTS_INDEX_FILE
    if single.is_file():
        return [single]
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            shards = sorted(set(weight_map.values()))
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError) as err:
            raise CommandError(
                f"{index} is not a valid safetensors index (a JSON object with a weight_map): {err}"
            ) from None
        missing = [shard for shard in shards if not (checkpoint / shard).is_file()]
        if missing:
            raise CommandError(f"{index} lists weight files that are missing from {checkpoint}: {missing}")
        return [checkpoint / shard for shard in shards]
    pickles = sorted(p.name for p in checkpoint.iterdir() if p.suffix in PICKLE_SUFFIXES and p.is_file())
    if pickles:
        raise CommandError(
            f"checkpoint folder {str(checkpoint)!r} holds only pickled PyTorch weights ({', '.join(pickles)}); "
            f"bizoo export reads safetensors only ({WEIGHTS_FILE}), because unpickling a file can run arbitrary "
            "code. Load the model where you trust the file and save it again with save_pretrained, which writes "
            "safetensors"
        )
    raise CommandError(
        f"checkpoint folder {str(checkpoint)!r} has no model weights ({WEIGHTS_FILE} or {WEIGHTS_INDEX_FILE})"
    )


def _check_weights(files: list[Path]) -> None:
    """Open each safetensors file and read every tensor's header: a truncated or corrupted file fails here."""
    for path in files:
        try:
            with safe_open(str(path), framework="pt") as weights:
                keys = list(weights.keys())
        except (SafetensorError, OSError) as err:
            raise CommandError(
                f"{path} is not a readable safetensors file (truncated or corrupted?): {err}. Save the model again "
                "with save_pretrained"
            ) from None
        if not keys:
            raise CommandError(f"{path} holds no tensors; save the model again with save_pretrained")


def _has_tokenizer(checkpoint: Path) -> bool:
    return any((checkpoint / name).is_file() for name in TOKENIZER_FILES)


def _load_model(checkpoint: Path, spec: bizoo.ModelSpec, config: dict):
    """The checkpoint's model: the class named in ``architectures[0]`` (a list of names, as ``_read_config`` leaves
    it) when it is one of the spec's classes, else the bare model (AutoModel). ``CommandError`` if a weight of that
    class is missing from the checkpoint (it would be exported as a random value) or a weight of the checkpoint has
    no place in the class (it would be dropped)."""
    classes = {cls.__name__: cls for cls in spec.models.values()}
    architectures = config.get("architectures") or []
    model_class = classes.get(architectures[0]) if architectures else None
    loader = model_class if model_class is not None else AutoModel
    try:
        model, info = loader.from_pretrained(str(checkpoint), use_safetensors=True, output_loading_info=True)
    except (OSError, ValueError, RuntimeError, KeyError, TypeError) as err:
        raise CommandError(f"checkpoint {str(checkpoint)!r} does not load as {loader.__name__}: {err}") from None
    # Weights that from_pretrained had to initialise would be exported as random values.
    missing = sorted(info.get("missing_keys") or []) + sorted(str(k) for k in info.get("mismatched_keys") or [])
    if missing:
        shown = listing(missing, 5)
        raise CommandError(
            f"checkpoint {str(checkpoint)!r} lacks weights of {type(model).__name__} (or has them in another shape): "
            f"{shown}; exporting would ship randomly initialised values"
        )
    # Weights that the class has no place for would be left out of the export without a word (a head's trained
    # classifier, when config.json's "architectures" does not name the head and the bare model was loaded).
    unexpected = sorted(str(k) for k in info.get("unexpected_keys") or [])
    if unexpected:
        shown = listing(unexpected, 5)
        if model_class is None:
            why = (
                f"config.json's \"architectures\" ({config.get('architectures')!r}) names none of "
                f"{sorted(classes)}, so the bare {type(model).__name__} was loaded; set it to the class the weights "
                "were saved from"
            )
        else:
            why = "save the model again with save_pretrained from the class that has them"
        raise CommandError(
            f"checkpoint {str(checkpoint)!r} holds weights that {type(model).__name__} has no place for: {shown}; "
            f"exporting would drop them. {why}"
        )
    return model


def _bizoo_tokenizer_class(checkpoint: Path) -> type | None:
    """The bizoo class that tokenizer_config.json names in "tokenizer_class", or None (another or no class)."""
    path = checkpoint / "tokenizer_config.json"
    try:
        name = json.loads(path.read_text(encoding="utf-8")).get("tokenizer_class")
    except (OSError, ValueError, AttributeError):
        return None  # AutoTokenizer reports the problem
    return BIZOO_TOKENIZER_CLASSES.get(name) if isinstance(name, str) else None


def _load_tokenizer(checkpoint: Path):
    """The checkpoint's tokenizer: a bizoo tokenizer class by its saved name (AutoTokenizer would fall back to a plain
    fast tokenizer for a class it has not been told about), anything else with AutoTokenizer."""
    if not _has_tokenizer(checkpoint):
        return None
    bizoo_class = _bizoo_tokenizer_class(checkpoint)
    try:
        if bizoo_class is not None:
            return bizoo_class.from_pretrained(str(checkpoint))
        return AutoTokenizer.from_pretrained(str(checkpoint))
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise CommandError(
            f"the tokenizer files in {str(checkpoint)!r} do not load with AutoTokenizer: {err}"
        ) from None


# ----------------------------------------------------------------------------------------------------------------
# The export
# ----------------------------------------------------------------------------------------------------------------


def _write_config(path: Path, entries: dict[str, str]) -> None:
    """Add ``auto_map`` to the config.json that save_pretrained wrote (same JSON layout as transformers')."""
    config = json.loads(path.read_text(encoding="utf-8"))
    config["auto_map"] = entries
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _write_tokenizer_config(path: Path, entries: dict[str, list] | None) -> None:
    """Rewrite the tokenizer_config.json that save_pretrained wrote (transformers' JSON layout): without the
    ``LOADING_STATE_KEYS``, with ``auto_map`` set to ``entries`` unless they are None."""
    tokenizer_config = json.loads(path.read_text(encoding="utf-8"))
    for key in LOADING_STATE_KEYS:
        tokenizer_config.pop(key, None)
    if entries is not None:
        tokenizer_config["auto_map"] = entries
    text = json.dumps(tokenizer_config, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    path.write_text(text, encoding="utf-8")


def _write_code(folder: Path, sources: dict[str, str]) -> None:
    for file_name, text in sources.items():
        (folder / file_name).write_text(text, encoding="utf-8")


def _write_card(folder: Path, card: str) -> None:
    atomic_write_text(folder / "README.md", card)


def export_model(checkpoint: str | Path, output_dir: str | Path, overwrite: bool = False,
                 license_id: str = DEFAULT_LICENSE) -> Path:
    """Write the Hub-ready folder of ``checkpoint`` to ``output_dir`` and return its path; its card declares the Hub
    license ``license_id``.

    All checks and loading happen first (``CommandError``, a ``ValueError``, for bad input: a license id of another
    form, a missing folder, no config.json, a model type bizoo does not have, no safetensors weights or pickled ones
    only, an unreadable safetensors file, malformed recorded results, weights that do not fit the class config.json
    names (missing ones, or ones it would drop), an existing non-empty ``output_dir`` without ``overwrite``, or
    ``output_dir`` being the checkpoint itself). The files are then written into a temporary sibling folder that is
    renamed to ``output_dir`` at the end; an exception on the way leaves ``output_dir`` as it was.
    """
    check_license(license_id)
    source = Path(checkpoint)
    config, spec = _read_config(source)
    weight_files = _weight_files(source)
    _check_weights(weight_files)
    if Path(output_dir).resolve() == source.resolve():
        raise CommandError(f"output folder {str(output_dir)!r} is the checkpoint folder itself; choose another folder")
    target = check_output_dir(output_dir, overwrite, inputs=[source])
    results = read_results(source)
    model_index_results(results, str(source / "bizoo_results.json"))  # validate before writing anything
    model = _load_model(source, spec, config)
    tokenizer = _load_tokenizer(source)
    sources = flat_sources(spec, tokenizer)
    entries = auto_map(spec)
    tokenizer_entries = tokenizer_auto_map(tokenizer)
    card = model_card(model, spec, tokenizer, results, name=target.resolve().name, code_files=list(sources),
                      license_id=license_id)

    with staged_output_dir(target, overwrite) as staging:
        model.save_pretrained(str(staging))
        pickles = [p.name for p in staging.iterdir() if p.suffix in PICKLE_SUFFIXES]
        if pickles or not any(staging.glob("model*.safetensors")):
            raise RuntimeError(f"save_pretrained wrote {sorted(p.name for p in staging.iterdir())}, not safetensors")
        _write_config(staging / "config.json", entries)
        if tokenizer is not None:
            tokenizer.save_pretrained(str(staging))
            if (staging / "tokenizer_config.json").is_file():
                _write_tokenizer_config(staging / "tokenizer_config.json", tokenizer_entries)
        _write_code(staging, sources)
        _write_card(staging, card)
    return target


# ----------------------------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this command's arguments to ``parser``."""
    parser.add_argument(
        "checkpoint", metavar="CKPT", help="a checkpoint folder written by save_pretrained (bizoo pretrain/finetune)"
    )
    parser.add_argument("output_dir", metavar="DIR", help="the folder to write (must be new or empty, see --overwrite)")
    parser.add_argument("--overwrite", action="store_true", help="replace DIR if it already holds files")
    parser.add_argument(
        "--license", dest="license_id", default=DEFAULT_LICENSE, metavar="ID",
        help="the Hub license id the model card declares (default: %(default)s, bizoo's own), e.g. mit, cc-by-4.0 "
        "or other; weights converted from someone else's come under their license: name it",
    )


def run(args: argparse.Namespace) -> int:
    """Export ``args.checkpoint`` to ``args.output_dir``; 0 on success, 2 on bad input."""

    def body() -> int:
        path = export_model(args.checkpoint, args.output_dir, overwrite=args.overwrite, license_id=args.license_id)
        files = sorted(p.name for p in path.iterdir())
        report(f"exported {args.checkpoint} to {path} ({len(files)} files: {', '.join(files)})")
        report(f"load it with AutoModel*.from_pretrained({str(path)!r}, trust_remote_code=True)")
        return 0

    return run_command(PROG, body)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``bizoo export`` and ``python -m bizoo.scripts.export``."""
    return command_main(__name__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
