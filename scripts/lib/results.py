"""The evaluation results a run stores beside its weights (``bizoo_results.json``), which ``bizoo export`` turns into
the model card's ``model-index``; and ``all_results``, the flat record transformers' example scripts write
(``all_results.json``), for the tools that read their output folders.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .command import CommandError
from .output_folders import atomic_write_text

RESULTS_FILE = "bizoo_results.json"
ALL_RESULTS_FILE = "all_results.json"  # run_*.py's flat record (``all_results``)


def read_results(folder: str | os.PathLike) -> list[dict]:
    """The results recorded in a checkpoint folder (``[]`` if none)."""
    path = Path(folder) / RESULTS_FILE
    if not path.exists():
        return []
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise CommandError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(results, list):
        raise CommandError(f"{path} must hold a JSON list of results, got {type(results).__name__}")
    return results


def record_results(folder: str | os.PathLike, task: dict, dataset: dict, metrics: dict, **extra) -> None:
    """Append one evaluation to ``folder/bizoo_results.json``.

    ``task``: {"type": "fill-mask" | "text-classification" | "token-classification", "name": ...};
    ``dataset``: {"name": ..., "type": ..., "split": ...}; ``metrics``: {metric name: value}.
    """
    results = read_results(folder)
    results.append({"task": task, "dataset": dataset, "metrics": metrics, **extra})
    atomic_write_text(Path(folder) / RESULTS_FILE, json.dumps(results, indent=2) + "\n")


def all_results(trainer, train_output, train_samples: int | None,
                evaluations: Sequence[tuple[str, dict[str, Any], int]], predicted: dict[str, Any] | None = None,
                extra: dict[str, Any] | None = None) -> str:
    """``all_results.json`` as run_glue.py, run_ner.py and run_mlm.py write it (``Trainer.save_metrics(...,
    combined=True)``): one flat object of numbers for the tools that read those scripts' output folders. The
    training's metrics (``train_loss``, ``train_runtime``, ``train_samples_per_second``, ... and ``train_samples``)
    where the call trained; each evaluation as ``eval_<name>`` with ``eval_loss`` and ``eval_samples``
    (``evaluations``: (suffix, scores with ``loss``, examples; MNLI's mismatched split with the suffix ``_mm``, as
    run_glue.py names it);
    ``extra`` (run_mlm.py's ``perplexity``); a scored test split's ``predict_*`` (``lib.finetuning.predict_results``);
    and ``epoch`` where it trained. ``train_samples`` None: not counted (a streamed corpus)."""
    values: dict[str, Any] = {}
    if train_output.training_loss is not None:  # None: nothing trained in this call (--do_eval alone, a finished run)
        values.update({name: value for name, value in train_output.metrics.items() if isinstance(value, (int, float))})
        if train_samples is not None:
            values["train_samples"] = train_samples
    for suffix, scores, samples in evaluations:
        values.update({f"eval_{name}{suffix}": value for name, value in scores.items() if value is not None})
        values[f"eval_samples{suffix}"] = samples
    values.update(extra or {})
    values.update(predicted or {})
    if trainer.state.epoch:  # none without training
        values["epoch"] = float(trainer.state.epoch)
    return json.dumps(values, indent=2, sort_keys=True) + "\n"
