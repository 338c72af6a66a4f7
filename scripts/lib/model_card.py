"""The model card (README.md) of a bizoo checkpoint or export: Hub metadata (tags, pipeline_tag, model-index with
the results recorded in the checkpoint) as YAML front matter, then what the model is, how to load it, its results
and configuration, rendered from ``hub_cards/model_card.md``.

The metadata is a ``huggingface_hub.ModelCardData`` (its ``EvalResult``s make the model-index), so the YAML is the
Hub's own serialisation, and the card is checked by ``huggingface_hub.ModelCard``. Each metric is listed under the
id it was recorded with and a name that says what was computed: ``METRIC_NAMES``, or the record's own
``metric_names`` (e.g. "strict span F1" for the tagging F1, "macro F1" for a dataset that is not GLUE).

``bizoo export`` writes the card of an export (with its code files: it loads with ``trust_remote_code=True``);
``write_checkpoint_card`` writes the card of a folder a training command saved (it loads with bizoo installed).
An export's card is named after its folder (title, model-index name) and its snippets load the folder; ``bizoo push``
uploads the card ``card_for_repo`` makes of it, named after the repository and whose snippets load it by its id.
"""

from __future__ import annotations

import ast
import inspect
import json
import math
import re
import string
from importlib import resources
from pathlib import Path

import yaml
from huggingface_hub import EvalResult, ModelCard, ModelCardData
from transformers import PreTrainedConfig

import bizoo

from .command import CommandError
from .output_folders import atomic_write_text
from .models import model_spec
from .remote_code import PACKAGE
from .results import read_results

CARD_TEMPLATE = "hub_cards/model_card.md"
#: The license a card declares unless told otherwise (bizoo's own; ``bizoo export --license`` names another).
DEFAULT_LICENSE = "apache-2.0"
#: A Hub license id (https://huggingface.co/docs/hub/repositories-licenses): "mit", "cc-by-4.0", "openrail++", "other".
LICENSE_ID = re.compile(r"[a-z0-9][a-z0-9.+-]*")

#: Architecture class-name suffix -> the Hub's pipeline_tag (the task a `pipeline(...)` call runs).
PIPELINE_TAGS = {
    "ForMaskedLM": "fill-mask",
    "ForSequenceClassification": "text-classification",
    "ForTokenClassification": "token-classification",
    "Model": "feature-extraction",
}


#: Metric id as recorded -> what it is, for the model-index's metric ``name`` (a record's ``metric_names`` wins).
METRIC_NAMES = {
    "accuracy": "Accuracy",
    "f1": "F1",
    "precision": "Precision",
    "recall": "Recall",
    "matthews_correlation": "Matthews correlation",
    "pearson": "Pearson correlation",
    "spearman": "Spearman correlation",
    "masked_accuracy": "Masked-token accuracy",
    "perplexity": "Perplexity",
}

#: The comment after an export card's ``model_id = "<folder name>"`` line (``card_for_repo`` drops it on the Hub).
EXPORT_ID_COMMENT = "  # this folder (the card bizoo push uploads names its Hub id, ORG/NAME)"
#: A Python string literal on one line, single- or double-quoted, with its backslash escapes.
_STRING_LITERAL = r"""(?:"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')"""
#: The line of a card's loading snippet that names the model (group "literal": the name as a Python string literal),
#: with or without its comment.
_MODEL_ID_LINE = re.compile(rf"^model_id = (?P<literal>{_STRING_LITERAL})(?:  #[^\n]*)?$", flags=re.M)
#: A card's YAML front matter.
_FRONT_MATTER = re.compile(r"---\n.*?\n---\n", flags=re.S)
#: What a non-finite metric shows in the card's results table (the model-index leaves it out).
NOT_A_NUMBER = "n/a"


def python_string(value: str) -> str:
    """``value`` as a Python string literal that a card's snippet can hold: double-quoted as the snippets are written
    (``"lion-d"``), quotes, backslashes and control characters escaped, so a folder named ``a"b\\c`` still makes a
    snippet that compiles and names that folder (a name with a character that does not print, a line separator
    say, all in ASCII escapes). Falls back to ``repr`` where a JSON string is not that literal."""
    literal = json.dumps(value, ensure_ascii=not value.isprintable())
    try:
        if ast.literal_eval(literal) == value:
            return literal
    except (ValueError, SyntaxError):  # e.g. a lone surrogate from an undecodable file name
        pass
    return repr(value)


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
    """The Hub's model-index ``results`` from bizoo's recorded results (``lib.results.read_results``).

    Each record {"task": {"type", "name"}, "dataset": {"name", "type", "split", ...}, "metrics": {id: value},
    optionally "metric_names": {id: name}} becomes {task: {type, name}, dataset: {name, type, split},
    metrics: [{type: id, value, name}]}, the name from ``metric_names`` or ``METRIC_NAMES``. Metrics that are not
    finite numbers (a NaN correlation) are left out, and so is a record left with none. Raises ``CommandError``
    naming the record for anything malformed.
    """
    entries = []
    for entry in recorded_results(results, source):
        metrics = [metric for metric in entry["metrics"] if math.isfinite(metric["value"])]
        if metrics:
            entries.append({**entry, "metrics": metrics})
    return entries


def recorded_results(results: list[dict], source: str = "the results") -> list[dict]:
    """``model_index_results`` with every metric kept, the non-finite ones too: what the card's results table shows
    (each metric under the name the model-index gives it)."""
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
        names = record.get("metric_names") or {}
        if not isinstance(names, dict) or not all(isinstance(v, str) for v in names.values()):
            raise CommandError(f"{where}: 'metric_names' must be an object of metric id -> name, got {names!r}")
        entry_metrics = [
            {"type": metric, "value": value, "name": names.get(metric, METRIC_NAMES.get(metric, metric))}
            for metric, value in metrics.items()
        ]
        entries.append({"task": entry_task, "dataset": entry_dataset, "metrics": entry_metrics})
    return entries


def _first_paragraph(text: str | None) -> str:
    """The first paragraph of a docstring on one line, reST ``code`` turned into Markdown `code`."""
    paragraph = inspect.cleandoc(text or "").split("\n\n")[0]
    return " ".join(paragraph.split()).replace("``", "`")


def _markdown_cell(value) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _results_table(results: list[dict]) -> str:
    """The results as a Markdown table, row for row what the model-index holds (the same task, dataset and metric
    names and values), and a non-finite metric, which the model-index leaves out, as ``NOT_A_NUMBER``."""
    rows, not_a_number = [], False
    for entry in recorded_results(results):
        task, dataset = entry["task"], entry["dataset"]
        for metric in entry["metrics"]:
            value = metric["value"]
            not_a_number |= not math.isfinite(value)
            cells = (task["name"], dataset["name"], dataset.get("split", ""), metric["name"],
                     value if math.isfinite(value) else NOT_A_NUMBER)
            rows.append("| " + " | ".join(_markdown_cell(c) for c in cells) + " |")
    if not rows:
        return "No evaluation results were recorded with this checkpoint."
    table = "| Task | Dataset | Split | Metric | Value |\n|---|---|---|---|---|\n" + "\n".join(rows)
    if not_a_number:
        table += (f"\n\n{NOT_A_NUMBER}: the metric is not a finite number (NaN: a correlation of constant predictions, "
                  "say); the metadata's model-index leaves it out.")
    return table


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
    """The fields and their values as a Markdown table; each value's repr in a code span, its ``|`` escaped (a bare
    one would split the cell, e.g. a label ``B-A|B``)."""
    values = [(name, getattr(config, name)) for name in _config_fields(config) if hasattr(config, name)]
    if architecture.endswith(("ForSequenceClassification", "ForTokenClassification")):
        values.append(("id2label", dict(config.id2label)))
    rows = [f"| `{name}` | `{_markdown_cell(repr(value))}` |" for name, value in values]
    return "| Field | Value |\n|---|---|\n" + "\n".join(rows)


def card_for_repo(card: str, repo_id: str) -> str | None:
    """The model card ``card`` of an export as the Hub repository ``repo_id`` shows it, or None when ``card`` has no
    snippet of bizoo's that names the model (a card its author wrote: it is uploaded as it is).

    An export's card is named after its folder: its title (``# lion-export``), its model-index ``name`` and its
    Python snippets (``model_id = "lion-export"`` and ``pipeline(..., model="lion-export")``: they run beside the
    folder). On the Hub the snippets name ``repo_id`` and the title and model-index name are the repository's NAME,
    as transformers' Trainer names the card it pushes (the Hub shows ORG/NAME above the card already). Only those
    change, and only where they still hold the folder's name (the one the ``model_id`` line names); the
    ``model_id`` line loses its comment (which says that the id changes on the Hub); the rest stays as exported.
    """
    blocks = list(re.finditer(r"^```python\n(.*?)^```", card, flags=re.M | re.S))
    literals = {m.group("literal") for b in blocks for m in _MODEL_ID_LINE.finditer(b.group(1))}
    values = {literal: _string_value(literal) for literal in literals}
    literals = {literal for literal, value in values.items() if value is not None}
    names = {values[literal] for literal in literals}
    if len(names) != 1:
        return None
    name = names.pop()
    repo_literal = python_string(repo_id)
    card = _named_in_metadata(card, name, repo_id.rsplit("/", 1)[-1])
    pieces, end = [], 0
    for block in re.finditer(r"^```python\n(.*?)^```", card, flags=re.M | re.S):
        body = _MODEL_ID_LINE.sub(
            lambda m: f"model_id = {repo_literal}" if m.group("literal") in literals else m.group(0), block.group(1)
        )
        for literal in literals:
            body = body.replace(f"model={literal}", f"model={repo_literal}")
        pieces += [card[end:block.start(1)], body]
        end = block.end(1)
    return "".join(pieces) + card[end:]


def _string_value(literal: str) -> str | None:
    """The string a Python string literal stands for; None for one that does not parse (``"\\N"``, say)."""
    try:
        return ast.literal_eval(literal)
    except (ValueError, SyntaxError):
        return None


def _named_in_metadata(card: str, name: str, new_name: str) -> str:
    """``card`` with its model-index ``name`` and its title (the first ``# `` heading after the front matter) turned
    from ``name`` into ``new_name``; where either is something else, or the metadata does not parse, it stays."""
    front_matter = _FRONT_MATTER.match(card)
    if front_matter is not None:
        try:
            parsed = ModelCard(card)
        except (ValueError, yaml.YAMLError):  # the Hub's own check refuses such metadata; it is not ours to mend
            parsed = None
        if parsed is not None and parsed.data.eval_results and parsed.data.model_name == name:
            parsed.data.model_name = new_name
            card = parsed.content  # written back in its original order: as exported but for the name
            front_matter = _FRONT_MATTER.match(card)
    start = front_matter.end() if front_matter is not None else 0
    title = re.compile(r"^# (.*)$", flags=re.M).search(card, start)
    if title is not None and title.group(1) == name:
        card = card[:title.start(1)] + new_name + card[title.end(1):]
    return card


def _usage(auto_class: str, pipeline_tag: str | None, model_id: str, tokenizer, exported: bool,
           baseline: bool = False) -> tuple[str, str]:
    """(loading example, pipeline example) as Python source for the card: with ``trust_remote_code=True`` for an
    export, with ``import bizoo`` for a plain checkpoint of a bizoo model, with neither for a ``baseline`` (a model
    transformers ships, which loads without bizoo). ``model_id`` and the text are string literals (``python_string``),
    so the source compiles whatever the folder is called."""
    task = pipeline_tag or "feature-extraction"
    text = "The king gave his crown to the queen."
    if task == "fill-mask":
        mask = tokenizer.mask_token if tokenizer is not None and tokenizer.mask_token else "[MASK]"
        text = f"The king gave his {mask} to the queen."
    if tokenizer is not None:
        # An export's AutoTokenizer gets it too, whatever the tokenizer's class: AutoTokenizer.from_pretrained reads
        # the folder's config.json first (AutoConfig), whose auto_map names remote code, and without
        # trust_remote_code it stops to ask on stdin (a script without a terminal goes on with a warning).
        trust = ", trust_remote_code=True" if exported else ""
        tokenizer_line = f"tokenizer = AutoTokenizer.from_pretrained(model_id{trust})"
        pipeline_tokenizer = ""
    else:  # the card says so; the user brings the tokenizer the model was trained with
        tokenizer_line = 'tokenizer = AutoTokenizer.from_pretrained("YOUR-TOKENIZER")  # no tokenizer ships here'
        pipeline_tokenizer = ', tokenizer="YOUR-TOKENIZER"'
    remote = ", trust_remote_code=True" if exported else ""
    needs_bizoo = not exported and not baseline  # only `import bizoo` registers bizoo's classes with the Auto ones
    header = f"from transformers import {auto_class}, AutoTokenizer\n\n"
    if needs_bizoo:
        header = "import bizoo  # registers bizoo's models with the Auto classes\n" + header
    where = EXPORT_ID_COMMENT if exported else ""
    load = (
        header
        + f"model_id = {python_string(model_id)}{where}\n"
        + f"{tokenizer_line}\n"
        f"model = {auto_class}.from_pretrained(model_id{remote})\n"
        f'outputs = model(**tokenizer("The king gave his crown to the queen.", return_tensors="pt"))'
    )
    call = (
        ("import bizoo\n" if needs_bizoo else "")
        + "from transformers import pipeline\n\n"
        + f'pipe = pipeline("{task}", model={python_string(model_id)}{pipeline_tokenizer}{remote})\n'
        f"print(pipe({python_string(text)}))"
    )
    return load, call


def _about(exported: bool, baseline: bool, tokenizer) -> str:
    """The card's last paragraph: who wrote the folder and what it holds, as it is (an export ships bizoo's code; a
    checkpoint a bizoo command saved holds none; a tokenizer is named only when one is there)."""
    tokenizer_part = ", the tokenizer" if tokenizer is not None else ""
    if exported:
        return (
            f"`bizoo export` wrote this folder: the configuration, the weights in safetensors{tokenizer_part} and a "
            "flat copy of bizoo's code for this model type whose imports point at the files beside it. With bizoo "
            "installed, `import bizoo` registers the same classes with the `Auto*` classes."
        )
    if baseline:
        return (
            f"A bizoo command saved this folder (the configuration, the weights in safetensors{tokenizer_part}); the "
            "model is transformers' own and needs neither bizoo nor remote code."
        )
    return (
        f"A bizoo command saved this folder (the configuration, the weights in safetensors{tokenizer_part}); it holds "
        "no code, so it loads where bizoo is installed. `bizoo export` writes a copy that ships bizoo's code and "
        "loads with `trust_remote_code=True` without bizoo."
    )


def check_license(license_id: str) -> str:
    """``license_id`` if it has the form of a Hub license id (``LICENSE_ID``); ``CommandError`` otherwise."""
    if not isinstance(license_id, str) or not LICENSE_ID.fullmatch(license_id):
        raise CommandError(
            f"--license must be a Hub license id such as {DEFAULT_LICENSE}, mit or cc-by-4.0 (lowercase letters, "
            f"digits, '.', '+' and '-'; see https://huggingface.co/docs/hub/repositories-licenses), got {license_id!r}"
        )
    return license_id


def model_card(model, spec: bizoo.ModelSpec, tokenizer, results: list[dict], name: str, code_files: list[str],
               license_id: str = DEFAULT_LICENSE) -> str:
    """README.md for an export of ``model`` (``code_files``: the code shipped beside it) or, with no ``code_files``,
    for a checkpoint a bizoo command saved: YAML front matter (Hub metadata; ``license_id``, its ``license``) and the
    body, rendered from ``hub_cards/model_card.md`` with ``string.Template``."""
    config = model.config
    architecture = type(model).__name__
    # the Auto class the spec registers the model under (AutoModel loads the encoder of any other head)
    auto_class = next((a for a, cls in spec.models.items() if cls is type(model)), "AutoModel")
    pipeline_tag = pipeline_tag_for(architecture)
    variant = variant_of(config, spec)
    index_results = model_index_results(results)

    tags = [PACKAGE, spec.model_type]
    if variant is not None:
        tags.append(f"{spec.model_type}-{variant}")
    baseline = spec.model_type not in bizoo.MODEL_SPECS  # a model transformers ships (bizoo pretrain --model bert)
    if not baseline:
        tags.append("custom_code")
    if pipeline_tag is not None:
        tags.append(pipeline_tag)
    # Hub dataset ids only: "text" is how a run on plain text files (e.g. bizoo's Shakespeare sample) is recorded,
    # a file format ("csv", "json", "parquet", as the file's suffix was written: "CSV" for train.CSV; "conll" or
    # "conllu" for tagged files) how a run on local files is.
    local = {"text", "csv", "tsv", "json", "jsonl", "parquet", "file", "conll", "conllu"}
    datasets = [d for d in dict.fromkeys(e["dataset"]["type"] for e in index_results) if d.lower() not in local]
    card_data = ModelCardData(
        library_name="transformers", license=check_license(license_id), tags=tags, datasets=datasets or None,
        pipeline_tag=pipeline_tag, model_name=name if index_results else None,
        eval_results=[
            EvalResult(
                task_type=entry["task"]["type"], task_name=entry["task"]["name"],
                dataset_type=entry["dataset"]["type"], dataset_name=entry["dataset"]["name"],
                dataset_config=entry["dataset"].get("config"), dataset_split=entry["dataset"].get("split"),
                dataset_revision=entry["dataset"].get("revision"),
                metric_type=metric["type"], metric_value=metric["value"], metric_name=metric["name"],
            )
            for entry in index_results for metric in entry["metrics"]
        ] or None,
    )

    model_doc = _first_paragraph(inspect.getmodule(type(model)).__doc__)
    class_doc = _first_paragraph(type(model).__doc__)
    variant_settings = ", ".join(f"{k}={v!r}" for k, v in spec.variants.get(variant, {}).items())
    exported = bool(code_files)
    load_example, pipeline_example = _usage(auto_class, pipeline_tag, name, tokenizer, exported, baseline)
    if exported:
        how_to_load = (
            f"The modeling code ships with the weights ({', '.join(f'`{f}`' for f in code_files)}), so bizoo does not "
            "need to be installed: load the model with `trust_remote_code=True` (read the code first, as with any "
            "remote code)."
        )
    elif baseline:
        how_to_load = (
            f"This is transformers' own {architecture}, trained by a bizoo command as a baseline: it loads with the "
            "`Auto*` classes, without bizoo."
        )
    else:
        how_to_load = (
            "This folder is a bizoo checkpoint: with bizoo installed, `import bizoo` registers its classes with the "
            "`Auto*` classes. `bizoo export` writes a copy that loads with `trust_remote_code=True` where bizoo is "
            "not installed."
        )
    template = resources.files(PACKAGE).joinpath(CARD_TEMPLATE).read_text(encoding="utf-8")
    text = string.Template(template).substitute(
        front_matter=card_data.to_yaml() + "\n",
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
        about=_about(exported, baseline, tokenizer),
    )
    ModelCard(text)  # the Hub's own parser must read the front matter back (it raises on malformed metadata)
    return text


def write_checkpoint_card(folder: str | Path, model, tokenizer) -> None:
    """Write README.md, the model card of a checkpoint saved by a bizoo command (no code files: it loads with
    bizoo installed; ``bizoo export`` makes the copy that does not need it)."""
    folder = Path(folder)
    spec = model_spec(model.config.model_type)  # a bizoo model type, or a baseline (BERT) bizoo pretrained
    card = model_card(model, spec, tokenizer, read_results(folder), name=folder.resolve().name, code_files=[])
    atomic_write_text(folder / "README.md", card)
