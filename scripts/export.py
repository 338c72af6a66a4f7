"""Write a Hub-ready folder from a bizoo checkpoint, one that loads with trust_remote_code=True where bizoo
is not installed.

The folder DIR holds:

  config.json            the checkpoint's configuration plus an "auto_map" that names, for AutoConfig and
                         every Auto model class of the model type, the class in the code files below
  model.safetensors      the weights (safetensors only: checkpoints saved as pickled .bin files are refused)
  tokenizer files        when the checkpoint has a tokenizer; when it is one of bizoo's own tokenizer classes
                         (WordCharTokenizerFast), its tokenizer_config.json gets an "auto_map" naming that class in
                         the code files below, so AutoTokenizer loads it with trust_remote_code=True too
  README.md              a model card: Hub metadata (tags, pipeline_tag, model-index with the results recorded
                         in the checkpoint), what the model is, how to load it, results, configuration
  configuration_*.py     bizoo's code for this model type, flattened into one folder: transformers copies a
  modeling_*.py          remote-code module and the sibling files it imports with `from .name import ...`,
  kernels_*.py           so bizoo's nested packages (modeling/, kernels/lion/, ...) become flat files and
  tokenization_*.py      their relative imports are rewritten to point at each other

Nothing is written until the checkpoint has been checked (a config.json of a model type bizoo has, readable
safetensors weights, valid recorded results) and loaded. Everything then goes to a temporary folder beside DIR
that is renamed into place at the end: a failure leaves neither a half-written DIR nor a changed old one. An
existing non-empty DIR is replaced only with --overwrite.

example:
  bizoo export runs/lion hub/lion-d
  bizoo push hub/lion-d --repo-id my-org/lion-d
"""

from __future__ import annotations

import argparse
import ast
import inspect
import json
import math
import re
import string
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml
from safetensors import SafetensorError, safe_open
from transformers import AutoModel, AutoModelForPreTraining, AutoTokenizer, PreTrainedConfig

import bizoo

from ..modeling.tokenization_wordchar import WordCharTokenizerFast
from .common import CommandError, atomic_write_text, check_output_dir, read_results, run_command, staged_output_dir

PROG = "bizoo export"
PACKAGE = "bizoo"
CARD_TEMPLATE = "hub_cards/model_card.md"

WEIGHTS_FILE = "model.safetensors"
WEIGHTS_INDEX_FILE = "model.safetensors.index.json"
#: Files whose presence says the checkpoint has a tokenizer.
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
)
#: bizoo's own tokenizer classes, by the names tokenizer_config.json may give them ("tokenizer_class": transformers
#: saves a fast tokenizer's name without its "Fast"). They load by class, whether or not AutoTokenizer knows them.
BIZOO_TOKENIZER_CLASSES = {
    name: cls for cls in (WordCharTokenizerFast,) for name in (cls.__name__, cls.__name__.removesuffix("Fast"))
}
#: Weight files that are Python pickles: loading one can run arbitrary code.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")

#: Architecture class-name suffix -> the Hub's pipeline_tag (the task a `pipeline(...)` call runs).
PIPELINE_TAGS = {
    "ForMaskedLM": "fill-mask",
    "ForSequenceClassification": "text-classification",
    "ForTokenClassification": "token-classification",
    "Model": "feature-extraction",
}


# ----------------------------------------------------------------------------------------------------------------
# Flat code: bizoo's modules for one model type, as sibling files with same-folder imports
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Module:
    """A module of the bizoo package and its file."""

    name: str  # dotted, e.g. "bizoo.kernels.lion"
    path: Path  # e.g. <root>/kernels/lion/__init__.py
    is_package: bool


def _package_root() -> Path:
    return Path(bizoo.__file__).resolve().parent


def _find_module(name: str, root: Path) -> _Module | None:
    """The file of bizoo module ``name`` (``bizoo.a.b`` -> a/b.py or a/b/__init__.py), or None if there is none
    (an attribute, a namespace folder such as ``bizoo.kernels``, or the package root itself)."""
    parts = name.split(".")
    if parts[0] != PACKAGE or len(parts) < 2:
        return None
    base = root.joinpath(*parts[1:])
    if (base / "__init__.py").is_file():
        return _Module(name, base / "__init__.py", True)
    if base.with_suffix(".py").is_file():
        return _Module(name, base.with_suffix(".py"), False)
    return None


def flat_module_name(module_name: str) -> str:
    """The flat file stem of a bizoo module: the path parts below ``bizoo`` joined with ``_``, ``__init__``
    dropped, and a part that already starts with the previous part's name replacing it rather than repeating it;
    a part that starts with ``tokenization_`` replaces all the parts before it (transformers' name for a tokenizer
    module).

    ``bizoo.configuration.configuration_lion`` -> ``configuration_lion``; ``bizoo.modeling.heads`` ->
    ``modeling_heads``; ``bizoo.kernels.lion`` -> ``kernels_lion``; ``bizoo.kernels.lion.reference`` ->
    ``kernels_lion_reference``; ``bizoo.kernels.dispatch`` -> ``kernels_dispatch``;
    ``bizoo.modeling.tokenization_wordchar`` -> ``tokenization_wordchar``.
    """
    parts = module_name.split(".")
    if parts[0] != PACKAGE or len(parts) < 2:
        raise ValueError(f"flat_module_name: {module_name!r} is not a module inside the {PACKAGE} package")
    flat: list[str] = []
    for part in parts[1:]:
        if part == "__init__":
            continue
        if part.startswith("tokenization_"):
            flat = [part]  # "modeling" + "tokenization_wordchar" -> "tokenization_wordchar"
        elif flat and part.startswith(flat[-1] + "_"):
            flat[-1] = part  # "configuration" + "configuration_lion" -> "configuration_lion"
        else:
            flat.append(part)
    return "_".join(flat)


def _char_offsets(source: str):
    """A function (lineno, byte col_offset) -> index into ``source``: ``ast`` counts columns in UTF-8 bytes."""
    lines = source.splitlines(keepends=True)
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))

    def offset(lineno: int, col: int) -> int:
        line = lines[lineno - 1] if lineno - 1 < len(lines) else ""
        return starts[lineno - 1] + len(line.encode("utf-8")[:col].decode("utf-8"))

    return offset


class _Flattener:
    """Collects the closure of bizoo modules imported relatively from some start modules, and rewrites each one's
    relative imports to same-folder imports of the flat files."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.modules: dict[str, _Module] = {}
        self.sources: dict[str, str] = {}  # flat file name -> rewritten source
        self.origins: dict[str, str] = {}  # flat file name -> module name

    def add(self, module_name: str) -> None:
        pending = [module_name]
        while pending:
            name = pending.pop()
            if name in self.modules:
                continue
            module = _find_module(name, self.root)
            if module is None:
                raise ValueError(f"bizoo export: no source file for module {name!r} under {self.root}")
            self.modules[name] = module
            source, dependencies, marked = self._rewrite(module)
            file_name = flat_module_name(name) + ".py"
            if file_name in self.origins:
                other = self.origins[file_name]
                raise ValueError(f"bizoo export: modules {other!r} and {name!r} both flatten to {file_name!r}")
            self.origins[file_name] = name
            relative_path = module.path.relative_to(self.root).as_posix()
            header = (
                f"# {PACKAGE}/{relative_path} (bizoo {bizoo.__version__}), flattened by `bizoo export`: its imports\n"
                "# of other bizoo modules point at the sibling files of this folder. Edit bizoo, not this copy.\n"
            )
            if marked:
                header += (
                    "# A line `from .x import __name__ as _x_module` only names the file x.py for transformers'\n"
                    "# remote-code loader, which copies the siblings that `from .x import` lines name.\n"
                )
            self.sources[file_name] = header + source
            pending.extend(sorted(dependencies - set(self.modules), reverse=True))

    # ------------------------------------------------------------------------------------------------------------
    def _resolve_base(self, module: _Module, node: ast.ImportFrom) -> str:
        """The absolute module a relative ``from <dots><name> import`` names (before its imported names)."""
        package = module.name if module.is_package else module.name.rpartition(".")[0]
        parts = package.split(".")
        climb = node.level - 1
        statement = "from " + "." * node.level + (node.module or "") + " import ..."
        if climb >= len(parts):
            raise ValueError(
                f"{module.name}: line {node.lineno}: `{statement}` climbs above the {PACKAGE} package; "
                f"exported code may import only modules inside {PACKAGE}"
            )
        base = ".".join(parts[: len(parts) - climb])
        return f"{base}.{node.module}" if node.module else base

    def _rewrite(self, module: _Module) -> tuple[str, set[str], bool]:
        """``module``'s source with every relative import rewritten, the bizoo modules it imports, and whether a
        marker line (see below) was added."""
        source = module.path.read_text(encoding="utf-8")
        tree = ast.parse(source, filename=str(module.path))
        offset = _char_offsets(source)
        dependencies: set[str] = set()
        plans = []  # (node, target module, [(alias, submodule or None)])

        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == PACKAGE:
                        raise ValueError(
                            f"{module.name}: line {node.lineno}: `import {alias.name}` is an absolute import of "
                            f"{PACKAGE}; exported code must import bizoo modules relatively (from ..kernels.lion "
                            "import ...) so that they can be flattened"
                        )
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                if (node.module or "").split(".")[0] == PACKAGE:
                    raise ValueError(
                        f"{module.name}: line {node.lineno}: `from {node.module} import ...` is an absolute import "
                        f"of {PACKAGE}; exported code must import bizoo modules relatively (from ..kernels.lion "
                        "import ...) so that they can be flattened"
                    )
            elif isinstance(node, ast.ImportFrom):
                target = self._resolve_base(module, node)
                target_module = _find_module(target, self.root)
                names = []
                for alias in node.names:
                    submodule = _find_module(f"{target}.{alias.name}", self.root) if alias.name != "*" else None
                    if submodule is None and target_module is None:
                        raise ValueError(
                            f"{module.name}: line {node.lineno}: imports {alias.name!r} from {target!r}, which is "
                            f"not a module file of {PACKAGE} (the package root and namespace folders such as "
                            f"{PACKAGE}.kernels cannot be exported); import from the module that defines it"
                        )
                    names.append((alias, submodule))
                    dependencies.add(submodule.name if submodule is not None else target)
                plans.append((node, target, names))

        # `from .x import ...` statements name their file for transformers' loader; a module imported as a name
        # (`from . import reference`) gets a marker line of that form unless another statement names its file.
        named_by_from = {flat_module_name(target) for _, target, names in plans if any(s is None for _, s in names)}
        marked = False
        edits = []
        for node, target, names in plans:
            start = offset(node.lineno, node.col_offset)
            end = offset(node.end_lineno, node.end_col_offset)
            segment = source[start:end]
            if node.module is not None and all(submodule is None for _, submodule in names):
                # Keep the imported names as written (multi-line, comments); replace only `from <dots><module>`.
                head = re.search(r"\bimport\b", segment)
                replacement = f"from .{flat_module_name(target)} " + segment[head.start():]
            else:
                statements = []
                attributes = [alias for alias, submodule in names if submodule is None]
                if attributes:
                    listed = ", ".join(a.name + (f" as {a.asname}" if a.asname else "") for a in attributes)
                    statements.append(f"from .{flat_module_name(target)} import {listed}")
                for alias, submodule in names:
                    if submodule is None:
                        continue
                    flat = flat_module_name(submodule.name)
                    bound = alias.asname or alias.name
                    statements.append(f"from . import {flat}" + (f" as {bound}" if bound != flat else ""))
                    if flat not in named_by_from:
                        statements.append(f"from .{flat} import __name__ as _{flat}_module")
                        named_by_from.add(flat)
                        marked = True
                line_start = source.rfind("\n", 0, start) + 1
                indent = source[line_start:start]
                separator = "\n" + indent if not indent.strip() else "; "
                replacement = separator.join(statements)
            edits.append((start, end, replacement))

        for start, end, replacement in sorted(edits, reverse=True):
            source = source[:start] + replacement + source[end:]
        return source, dependencies, marked


def _defining_module(cls: type) -> str:
    name = cls.__module__
    if name.split(".")[0] != PACKAGE:
        raise ValueError(
            f"bizoo export: {cls.__name__} is defined in {name!r}, outside {PACKAGE}; an export ships bizoo's own "
            "code only"
        )
    return name


def flatten_modules(module_names: list[str], root: str | Path | None = None) -> dict[str, str]:
    """The modules ``module_names`` of the bizoo package and every bizoo module they import relatively, as flat
    files: file name -> source text (see ``flat_sources``). ``root`` is the package folder (default: bizoo's own;
    tests pass a folder of made-up modules)."""
    flattener = _Flattener(Path(root) if root is not None else _package_root())
    for name in module_names:
        flattener.add(name)
    return dict(sorted(flattener.sources.items()))


def is_bizoo_tokenizer(tokenizer) -> bool:
    """Whether ``tokenizer`` is an instance of a class of the bizoo package (its code must ship with an export)."""
    return tokenizer is not None and type(tokenizer).__module__.split(".")[0] == PACKAGE


def flat_sources(spec: bizoo.ModelSpec, tokenizer=None) -> dict[str, str]:
    """The code of model type ``spec`` (and of ``tokenizer`` when its class is bizoo's) as flat files: file name ->
    source text.

    Starts from the modules defining ``spec.config_class``, ``spec.models``' classes and a bizoo tokenizer, follows
    their relative imports (parsed with ``ast``; lazy imports inside functions and ``try`` blocks included) through
    the bizoo package, and names each module of the closure with ``flat_module_name``. Every relative import statement
    is rewritten to a same-folder one, ``from ..kernels.lion import lion_attention`` to ``from .kernels_lion import
    lion_attention`` and ``from . import reference`` to ``from . import kernels_lion_reference as reference``, the
    forms transformers' remote-code loader follows (it copies the siblings a file names in ``from .x import``
    lines; a module imported by name alone gets such a line as well). Absolute imports of third-party packages
    (torch, transformers, a ``triton`` inside ``try``) are left as they are.

    Raises ``ValueError`` naming the module and line for an absolute ``import bizoo...``, a relative import that
    leaves the package or names something that is not a module file, or two modules with the same flat name.
    """
    modules = [_defining_module(cls) for cls in (spec.config_class, *spec.models.values())]
    if is_bizoo_tokenizer(tokenizer):
        modules.append(_defining_module(type(tokenizer)))
    return flatten_modules(modules)


def auto_map(spec: bizoo.ModelSpec) -> dict[str, str]:
    """config.json's ``auto_map``: ``AutoConfig`` and each Auto class of ``spec`` -> ``<flat module>.<Class>``."""
    entries = {"AutoConfig": f"{flat_module_name(_defining_module(spec.config_class))}.{spec.config_class.__name__}"}
    for auto_name, cls in spec.models.items():
        entries[auto_name] = f"{flat_module_name(_defining_module(cls))}.{cls.__name__}"
    return entries


def tokenizer_auto_map(tokenizer) -> dict[str, list] | None:
    """tokenizer_config.json's ``auto_map`` for a bizoo tokenizer: ``{"AutoTokenizer": [None, "<module>.<Class>"]}``,
    no slow class and the fast one in the flat code files. None for any other tokenizer."""
    if not is_bizoo_tokenizer(tokenizer):
        return None
    cls = type(tokenizer)
    return {"AutoTokenizer": [None, f"{flat_module_name(_defining_module(cls))}.{cls.__name__}"]}


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
    return config, bizoo.get_spec(model_type)


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
    """The checkpoint's model: the class named in ``architectures[0]`` when it is one of the spec's classes,
    else the bare model (AutoModel)."""
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
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise CommandError(
            f"checkpoint {str(checkpoint)!r} lacks weights of {type(model).__name__} (or has them in another shape): "
            f"{shown}; exporting would ship randomly initialised values"
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
# Model card
# ----------------------------------------------------------------------------------------------------------------


def pipeline_tag_for(architecture: str) -> str | None:
    """The Hub's ``pipeline_tag`` of a model class name: ``...ForMaskedLM`` -> ``fill-mask``,
    ``...ForSequenceClassification`` -> ``text-classification``, ``...ForTokenClassification`` ->
    ``token-classification``, a bare ``...Model`` -> ``feature-extraction``; None for other heads."""
    for suffix, tag in PIPELINE_TAGS.items():
        if architecture.endswith(suffix):
            return tag
    return None


def variant_of(config: PreTrainedConfig, spec: bizoo.ModelSpec) -> str | None:
    """The name of the spec variant whose settings ``config`` has (LION: "lit", "d" or "s"), or None."""
    for name, settings in spec.variants.items():
        if settings and all(getattr(config, key, None) == value for key, value in settings.items()):
            return name
    return None


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def model_index_results(results: list[dict], source: str = "the results") -> list[dict]:
    """The Hub's model-index ``results`` from bizoo's recorded results (``scripts.common.read_results``).

    Each record {"task": {"type", "name"}, "dataset": {"name", "type", "split", ...}, "metrics": {name: value}}
    becomes {task: {type, name}, dataset: {name, type, split}, metrics: [{type, value, name}]}. Metrics that are
    not finite numbers (a NaN correlation) are left out. Raises ``CommandError`` naming the record for anything
    malformed.
    """
    entries = []
    for number, record in enumerate(results):
        where = f"{source}, result {number}"
        if not isinstance(record, dict):
            raise CommandError(f"{where}: each result must be a JSON object, got {type(record).__name__}")
        task, dataset, metrics = record.get("task"), record.get("dataset"), record.get("metrics")
        if not isinstance(task, dict) or not isinstance(task.get("type"), str):
            raise CommandError(f"{where}: 'task' must be an object with a string 'type', got {task!r}")
        if not isinstance(dataset, dict) or not all(isinstance(dataset.get(k), str) for k in ("name", "type")):
            raise CommandError(f"{where}: 'dataset' must be an object with string 'name' and 'type', got {dataset!r}")
        if not isinstance(metrics, dict) or not metrics:
            raise CommandError(
                f"{where}: 'metrics' must be a non-empty object of metric name -> number, got {metrics!r}"
            )
        bad = {name: value for name, value in metrics.items() if not _number(value)}
        if bad:
            raise CommandError(f"{where}: metric values must be numbers, got {bad}")
        entry_task = {"type": task["type"], "name": str(task.get("name", task["type"]))}
        entry_dataset = {key: dataset[key] for key in ("name", "type", "config", "split", "revision") if key in dataset}
        entry_metrics = [
            {"type": name, "value": value, "name": name} for name, value in metrics.items() if math.isfinite(value)
        ]
        if entry_metrics:
            entries.append({"task": entry_task, "dataset": entry_dataset, "metrics": entry_metrics})
    return entries


def _first_paragraph(text: str | None) -> str:
    """The first paragraph of a docstring on one line, reST ``code`` turned into Markdown `code`."""
    paragraph = inspect.cleandoc(text or "").split("\n\n")[0]
    return " ".join(paragraph.split()).replace("``", "`")


def _markdown_cell(value) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _results_table(results: list[dict]) -> str:
    rows = []
    for record in results:
        task, dataset = record["task"], record["dataset"]
        for name, value in record["metrics"].items():
            cells = (task.get("name", task["type"]), dataset["name"], dataset.get("split", ""), name, value)
            rows.append("| " + " | ".join(_markdown_cell(c) for c in cells) + " |")
    if not rows:
        return "No evaluation results were recorded with this checkpoint."
    return "| Task | Dataset | Split | Metric | Value |\n|---|---|---|---|---|\n" + "\n".join(rows)


def _config_fields(config: PreTrainedConfig) -> list[str]:
    """The fields the model's own config classes define (LionConfig's, then BizooConfig's), in signature order."""
    fields: list[str] = []
    for cls in type(config).__mro__:
        if cls in (PreTrainedConfig, object) or not issubclass(cls, PreTrainedConfig):
            continue
        for name, parameter in inspect.signature(cls.__init__).parameters.items():
            if name != "self" and parameter.kind is parameter.POSITIONAL_OR_KEYWORD and name not in fields:
                fields.append(name)
    return fields


def _config_table(config: PreTrainedConfig, architecture: str) -> str:
    rows = [f"| `{name}` | `{getattr(config, name)!r}` |" for name in _config_fields(config) if hasattr(config, name)]
    if architecture.endswith(("ForSequenceClassification", "ForTokenClassification")):
        rows.append(f"| `id2label` | `{dict(config.id2label)!r}` |")
    return "| Field | Value |\n|---|---|\n" + "\n".join(rows)


def _usage(auto_class: str, pipeline_tag: str | None, model_id: str, tokenizer, exported: bool) -> tuple[str, str]:
    """(loading example, pipeline example) as Python source for the card: with ``trust_remote_code=True`` for an
    export, with ``import bizoo`` for a plain checkpoint."""
    task = pipeline_tag or "feature-extraction"
    text = "The king gave his crown to the queen."
    if task == "fill-mask":
        mask = tokenizer.mask_token if tokenizer is not None and tokenizer.mask_token else "[MASK]"
        text = f"The king gave his {mask} to the queen."
    if tokenizer is not None:
        trust = ", trust_remote_code=True" if exported and is_bizoo_tokenizer(tokenizer) else ""
        tokenizer_line = f"tokenizer = AutoTokenizer.from_pretrained(model_id{trust})"
        pipeline_tokenizer = ""
    else:  # the card says so; the user brings the tokenizer the model was trained with
        tokenizer_line = 'tokenizer = AutoTokenizer.from_pretrained("YOUR-TOKENIZER")  # no tokenizer ships here'
        pipeline_tokenizer = ', tokenizer="YOUR-TOKENIZER"'
    remote = ", trust_remote_code=True" if exported else ""
    header = f"from transformers import {auto_class}, AutoTokenizer\n\n"
    if not exported:
        header = "import bizoo  # registers bizoo's models with the Auto classes\n" + header
    load = (
        header
        + (f'model_id = "{model_id}"  # this folder, or its Hub id (ORG/NAME) after `bizoo push`\n' if exported else f'model_id = "{model_id}"\n')
        + f"{tokenizer_line}\n"
        f"model = {auto_class}.from_pretrained(model_id{remote})\n"
        f'outputs = model(**tokenizer("The king gave his crown to the queen.", return_tensors="pt"))'
    )
    call = (
        ("from transformers import pipeline\n\n" if exported else "import bizoo\nfrom transformers import pipeline\n\n")
        + f'pipe = pipeline("{task}", model="{model_id}"{pipeline_tokenizer}{remote})\n'
        f'print(pipe("{text}"))'
    )
    return load, call


def _other_auto_class(model) -> str:
    """The Auto class of a head outside the spec's four: "AutoModelForPreTraining" for the one registered there
    (ELMo's biLM), else "AutoModel" (which loads the encoder of any head)."""
    try:
        if AutoModelForPreTraining._model_mapping[type(model.config)] is type(model):
            return "AutoModelForPreTraining"
    except KeyError:
        pass
    return "AutoModel"


def model_card(model, spec: bizoo.ModelSpec, tokenizer, results: list[dict], name: str, code_files: list[str]) -> str:
    """README.md for an export of ``model``: YAML front matter (Hub metadata) and the body, rendered from
    ``hub_cards/model_card.md`` with ``string.Template``."""
    config = model.config
    architecture = type(model).__name__
    auto_class = next((a for a, cls in spec.models.items() if cls is type(model)), None) or _other_auto_class(model)
    pipeline_tag = pipeline_tag_for(architecture)
    variant = variant_of(config, spec)
    index_results = model_index_results(results)

    tags = [PACKAGE, spec.model_type]
    if variant is not None:
        tags.append(f"{spec.model_type}-{variant}")
    tags.append("custom_code")
    if pipeline_tag is not None:
        tags.append(pipeline_tag)
    metadata: dict = {"library_name": "transformers", "license": "apache-2.0", "tags": tags}
    # Hub dataset ids only: "text" is how a run on plain text files (e.g. bizoo's Shakespeare sample) is recorded.
    datasets = list(dict.fromkeys(e["dataset"]["type"] for e in index_results if e["dataset"]["type"] != "text"))
    if datasets:
        metadata["datasets"] = datasets
    if pipeline_tag is not None:
        metadata["pipeline_tag"] = pipeline_tag
    if index_results:
        metadata["model-index"] = [{"name": name, "results": index_results}]

    model_doc = _first_paragraph(inspect.getmodule(type(model)).__doc__)
    class_doc = _first_paragraph(type(model).__doc__)
    variant_settings = ", ".join(f"{k}={v!r}" for k, v in spec.variants.get(variant, {}).items())
    exported = bool(code_files)
    load_example, pipeline_example = _usage(auto_class, pipeline_tag, name, tokenizer, exported)
    if exported:
        how_to_load = (
            f"The modeling code ships with the weights ({', '.join(f'`{f}`' for f in code_files)}), so bizoo does not "
            "need to be installed: load the model with `trust_remote_code=True` (read the code first, as with any "
            "remote code)."
        )
    else:
        how_to_load = (
            "This folder is a bizoo checkpoint: with bizoo installed, `import bizoo` registers its classes with the "
            "`Auto*` classes. `bizoo export` writes a copy that loads with `trust_remote_code=True` where bizoo is "
            "not installed."
        )
    template = resources.files(PACKAGE).joinpath(CARD_TEMPLATE).read_text(encoding="utf-8")
    return string.Template(template).substitute(
        front_matter=yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True),
        name=name,
        model_type=spec.model_type,
        description=model_doc,
        architecture=architecture,
        architecture_description=class_doc,
        auto_class=auto_class,
        variant=f"`{variant}` ({variant_settings})" if variant is not None else "none",
        num_parameters=f"{model.num_parameters():,}",
        tokenizer="included" if tokenizer is not None else "not included (bring the one the model was trained with)",
        how_to_load=how_to_load,
        load_example=load_example,
        pipeline_example=pipeline_example,
        results_table=_results_table(results),
        config_table=_config_table(config, architecture),
        bizoo_version=bizoo.__version__,
    )


# ----------------------------------------------------------------------------------------------------------------
# The export
# ----------------------------------------------------------------------------------------------------------------


def _write_config(path: Path, entries: dict[str, str]) -> None:
    """Add ``auto_map`` to the config.json that save_pretrained wrote (same JSON layout as transformers')."""
    config = json.loads(path.read_text(encoding="utf-8"))
    config["auto_map"] = entries
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _write_tokenizer_config(path: Path, entries: dict[str, list]) -> None:
    """Add ``auto_map`` to the tokenizer_config.json that save_pretrained wrote (transformers' JSON layout)."""
    tokenizer_config = json.loads(path.read_text(encoding="utf-8"))
    tokenizer_config["auto_map"] = entries
    text = json.dumps(tokenizer_config, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    path.write_text(text, encoding="utf-8")


def _write_code(folder: Path, sources: dict[str, str]) -> None:
    for file_name, text in sources.items():
        (folder / file_name).write_text(text, encoding="utf-8")


def _write_card(folder: Path, card: str) -> None:
    atomic_write_text(folder / "README.md", card)


def write_checkpoint_card(folder: str | Path, model, tokenizer) -> None:
    """Write README.md, the model card of a checkpoint saved by a bizoo command (no code files: it loads with
    bizoo installed; ``bizoo export`` makes the copy that does not need it)."""
    folder = Path(folder)
    spec = bizoo.get_spec(model.config.model_type)
    card = model_card(model, spec, tokenizer, read_results(folder), name=folder.resolve().name, code_files=[])
    _write_card(folder, card)


def export_model(checkpoint: str | Path, output_dir: str | Path, overwrite: bool = False) -> Path:
    """Write the Hub-ready folder of ``checkpoint`` to ``output_dir`` and return its path.

    All checks and loading happen first (``CommandError``, a ``ValueError``, for bad input: a missing folder, no
    config.json, a model type bizoo does not have, no safetensors weights or pickled ones only, an unreadable
    safetensors file, malformed recorded results, an existing non-empty ``output_dir`` without ``overwrite``, or
    ``output_dir`` being the checkpoint itself). The files are then written into a temporary sibling folder that is
    renamed to ``output_dir`` at the end; an exception on the way leaves ``output_dir`` as it was.
    """
    source = Path(checkpoint)
    config, spec = _read_config(source)
    weight_files = _weight_files(source)
    _check_weights(weight_files)
    target = check_output_dir(output_dir, overwrite)
    if target.resolve() == source.resolve():
        raise CommandError(f"output folder {str(target)!r} is the checkpoint folder itself; choose another folder")
    results = read_results(source)
    model_index_results(results, str(source / "bizoo_results.json"))  # validate before writing anything
    model = _load_model(source, spec, config)
    tokenizer = _load_tokenizer(source)
    sources = flat_sources(spec, tokenizer)
    entries = auto_map(spec)
    tokenizer_entries = tokenizer_auto_map(tokenizer)
    card = model_card(model, spec, tokenizer, results, name=target.resolve().name, code_files=list(sources))

    with staged_output_dir(target, overwrite) as staging:
        model.save_pretrained(str(staging))
        pickles = [p.name for p in staging.iterdir() if p.suffix in PICKLE_SUFFIXES]
        if pickles or not any(staging.glob("model*.safetensors")):
            raise RuntimeError(f"save_pretrained wrote {sorted(p.name for p in staging.iterdir())}, not safetensors")
        _write_config(staging / "config.json", entries)
        if tokenizer is not None:
            tokenizer.save_pretrained(str(staging))
            if tokenizer_entries is not None:
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


def run(args: argparse.Namespace) -> int:
    """Export ``args.checkpoint`` to ``args.output_dir``; 0 on success, 2 on bad input."""

    def body() -> int:
        path = export_model(args.checkpoint, args.output_dir, overwrite=args.overwrite)
        files = sorted(p.name for p in path.iterdir())
        print(f"exported {args.checkpoint} to {path} ({len(files)} files: {', '.join(files)})")
        print(f"load it with AutoModel*.from_pretrained({str(path)!r}, trust_remote_code=True)")
        return 0

    return run_command(PROG, body)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``bizoo export`` and ``python -m bizoo.scripts.export``."""
    from .common import command_main

    return command_main(__name__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
