"""The evaluation results a run stores beside its weights (``bizoo_results.json``), which ``bizoo export`` turns into
the model card's ``model-index``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .command import CommandError
from .output_folders import atomic_write_text

RESULTS_FILE = "bizoo_results.json"


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
