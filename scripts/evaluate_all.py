"""``bizoo evaluate-all``: pretrain every model briefly, fine-tune it on every GLUE task and on CoNLL-2003, tabulate.

For each model (LION-LIT, LION-D, LION-S, BiGS, BiLSTM-CRF, ELMo by default):

1. ``bizoo pretrain`` on the Shakespeare sample shipped with bizoo (masked-LM; ELMo's biLM), ``--pretrain-steps``;
2. ``bizoo finetune-glue`` from that checkpoint on every task of ``--glue-dir`` that has a train.tsv and a dev
   file (scored on dev), ``--finetune-steps`` each;
3. ``bizoo finetune-ner`` from it on ``--conll-dir`` (train.txt / valid.txt; span F1 on valid).

Each run is its own process (``python -m bizoo.scripts.<command>``, output and log in ``OUTPUT/<model>/<task>``);
a failed run is reported as such and the others go on; a run whose folder already holds its results is not run
again (delete the folder to redo it). Then the table: per model, each task's GLUE score (the mean of the task's
official metrics × 100: Matthews correlation for CoLA, F1 and accuracy for MRPC, Pearson and Spearman for STS-B,
accuracy otherwise), their average, CoNLL dev F1, and the wall time of all its runs, in ``OUTPUT/results.json``,
``OUTPUT/results.md`` (with the machine and the settings) and ``OUTPUT/results.png`` (a bar chart). Every fine-tuned
folder keeps its ``bizoo_results.json``, which ``bizoo export`` turns into the model card's ``model-index``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

from .lib.command import CommandError, command_main, report, run_command
from .lib.data import GLUE_TASKS, glue_task
from .lib.machine import cuda_available, machine_name
from .lib.results import read_results

PROG = "bizoo evaluate-all"

logger = logging.getLogger(__name__)

#: name -> (model type, variant or None)
MODELS = {
    "lion-lit": ("lion", "lit"),
    "lion-d": ("lion", "d"),
    "lion-s": ("lion", "s"),
    "bigs": ("bigs", None),
    "bilstm-crf": ("bilstm_crf", None),
    "elmo": ("elmo", None),
}
CONLL = "CoNLL-2003"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output-dir", required=True, metavar="DIR", help="folder for every run and the table")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS), metavar="MODEL",
                        help=f"models to evaluate (default: all: {', '.join(MODELS)})")
    parser.add_argument("--glue-dir", default=None, metavar="DIR",
                        help="GLUE folder (<TASK>/train.tsv and dev.tsv); every task there with both is run")
    parser.add_argument("--tasks", nargs="+", default=None, metavar="TASK", help="only these GLUE tasks")
    parser.add_argument("--conll-dir", default=None, metavar="DIR", help="CoNLL-2003 folder (train.txt, valid.txt)")
    parser.add_argument("--pretrain-steps", type=int, default=300, metavar="N", help="(default: %(default)s)")
    parser.add_argument("--finetune-steps", type=int, default=300, metavar="N", help="per task (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=32, metavar="N", help="(default: %(default)s)")
    parser.add_argument("--max-length", type=int, default=128, metavar="N", help="(default: %(default)s)")
    parser.add_argument("--seed", type=int, default=42, help="(default: %(default)s)")
    parser.add_argument("--pretrain-args", nargs=argparse.REMAINDER, default=[],
                        help="more options for every `bizoo pretrain` (the rest of the line), e.g. --model-config ...")


def glue_tasks(glue_dir: Path, only: list[str] | None) -> tuple[list[str], list[str]]:
    """(tasks with a train.tsv and a dev file, tasks skipped for lack of one), in GLUE's order."""
    if not glue_dir.is_dir():
        raise CommandError(f"--glue-dir {str(glue_dir)!r} is not a folder")
    wanted = [glue_task(t).name for t in only] if only else list(GLUE_TASKS)
    runnable, skipped = [], []
    for name in wanted:
        folder = glue_dir / name
        if not folder.is_dir():
            continue
        has_dev = any(folder.glob("dev*.tsv"))
        (runnable if (folder / "train.tsv").is_file() and has_dev else skipped).append(name)
    return runnable, skipped


def task_score(metrics: dict) -> float:
    """GLUE's per-task score: the mean of the task's official metrics, × 100."""
    values = [v for k, v in metrics.items() if isinstance(v, (int, float))]
    return 100.0 * sum(values) / len(values)


def _run(argv: list[str], folder: Path, log_name: str) -> tuple[bool, float]:
    """Run ``python -m bizoo.scripts.<argv>``; its output in ``folder/../<log_name>``. (ok, seconds)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    log = folder.parent / log_name
    start = time.perf_counter()
    with open(log, "w", encoding="utf-8") as handle:
        done = subprocess.run([sys.executable, "-m", *argv], stdout=handle, stderr=subprocess.STDOUT,
                              env=dict(os.environ, TOKENIZERS_PARALLELISM="false"))
    return done.returncode == 0, time.perf_counter() - start


def _results(folder: Path) -> list[dict] | None:
    """The results a finished run recorded in ``folder`` (``read_results``), or None if it recorded none."""
    return read_results(folder) or None


def _timed(folder: Path, seconds: float | None = None) -> float:
    """The wall time of the run in ``folder``: recorded beside it (``<name>.seconds``) when given, read back else."""
    path = folder.parent / f"{folder.name}.seconds"
    if seconds is not None:
        path.write_text(f"{seconds:.1f}\n")
        return seconds
    return float(path.read_text()) if path.is_file() else 0.0


def evaluate_model(name: str, args, tasks: list[str], out: Path) -> dict:
    """Every run of one model; returns {"pretrain": {...}, "glue": {task: {...}}, "conll": {...}, "seconds": s}."""
    model_type, variant = MODELS[name]
    row: dict = {"model": name, "glue": {}, "seconds": 0.0}
    common = ["--seed", str(args.seed), "--batch-size", str(args.batch_size), "--max-length", str(args.max_length)]
    pre = out / name / "pretrain"
    if (pre / "model.safetensors").is_file():
        ok, seconds = True, _timed(pre)
    else:
        argv = ["bizoo.scripts.pretrain", "--model", model_type, "--output-dir", str(pre), "--overwrite",
                "--max-steps", str(args.pretrain_steps), *common, *args.pretrain_args]
        if variant:
            argv += ["--variant", variant]
        ok, seconds = _run(argv, pre, "pretrain.log")
        _timed(pre, seconds)
    row["pretrain"] = {"ok": ok, "seconds": round(seconds, 1), "results": _results(pre) if ok else None}
    row["seconds"] += seconds
    if ok:
        logger.info(f"{PROG}: {name} pretrained: ok")
    else:
        logger.warning(f"{name} pretrained: FAILED (see {out / name / 'pretrain.log'})")
    if not ok:
        return row
    runs = [(task, ["bizoo.scripts.finetune_glue", "--task", task, "--data-dir", str(args.glue_dir)]) for task in tasks]
    if args.conll_dir:
        runs.append((CONLL, ["bizoo.scripts.finetune_ner", "--data-dir", str(args.conll_dir)]))
    for task, argv in runs:
        folder = out / name / task
        results = _results(folder)
        if results is None:
            argv = [*argv, "--model-name-or-path", str(pre), "--output-dir", str(folder), "--overwrite",
                    "--max-steps", str(args.finetune_steps), *common]
            ok, seconds = _run(argv, folder, f"{task}.log")
            results = _results(folder) if ok else None
            _timed(folder, seconds)
        else:
            seconds = _timed(folder)
        row["seconds"] += seconds
        entry = {"ok": results is not None, "seconds": round(seconds, 1)}
        if results is not None:
            entry["metrics"] = results[-1]["metrics"]
        if task == CONLL:
            row["conll"] = entry
        else:
            row["glue"][task] = entry
        if results is None:
            logger.warning(f"{name} {task}: FAILED (see {folder.parent / f'{task}.log'}; {seconds:.0f} s)")
            continue
        if task == CONLL:
            shown = f"F1 {entry['metrics'].get('f1', float('nan')) * 100:.1f}"
        else:
            shown = f"{task_score(entry['metrics']):.1f}"
        logger.info(f"{PROG}: {name} {task}: {shown} ({seconds:.0f} s)")
    return row


def scores(row: dict, tasks: list[str], conll: bool) -> list[tuple[float | None, str]]:
    """A model's score columns (each task, GLUE avg, CoNLL F1) as (value × 100, or None; what to show without one:
    "failed" or "—")."""
    columns, task_scores = [], []
    for task in tasks:
        entry = row["glue"].get(task)
        value = task_score(entry["metrics"]) if entry and entry["ok"] else None
        columns.append((value, "failed" if entry else "—"))
        task_scores.append(value)
    complete = task_scores and None not in task_scores
    columns.append((sum(task_scores) / len(task_scores) if complete else None, "—"))
    if conll:
        entry = row.get("conll")
        columns.append((100 * entry["metrics"]["f1"] if entry and entry["ok"] else None, "failed" if entry else "—"))
    return columns


def table(rows: list[dict], tasks: list[str], conll: bool) -> tuple[list[str], list[list[str]]]:
    """The results table: header and one row of strings per model."""
    head = ["model", *tasks, "GLUE avg", *([f"{CONLL} F1"] if conll else []), "wall time"]
    body = []
    for row in rows:
        cells = [f"{value:.1f}" if value is not None else missing for value, missing in scores(row, tasks, conll)]
        body.append([row["model"], *cells, f"{row['seconds'] / 60:.0f} min"])
    return head, body


def markdown(head: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], tasks: list[str], conll: bool, path: Path, title: str) -> None:
    """Grouped bars: one group per score column (tasks, GLUE avg, CoNLL F1), one bar per model (0 where missing)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = [*tasks, "GLUE avg", *([f"{CONLL} F1"] if conll else [])]
    fig, ax = plt.subplots(figsize=(max(6, 1.4 * len(columns)), 4))
    width = 0.8 / max(len(rows), 1)
    for i, row in enumerate(rows):
        values = [value or 0.0 for value, _ in scores(row, tasks, conll)]
        ax.bar([x + i * width for x in range(len(columns))], values, width, label=row["model"])
    ax.set_xticks([x + 0.4 - width / 2 for x in range(len(columns))], columns, rotation=20)
    ax.set_ylabel("dev score × 100")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(args: argparse.Namespace) -> int:
    return run_command(PROG, lambda: _evaluate_all(args))


def _evaluate_all(args: argparse.Namespace) -> int:
    for option in ("pretrain_steps", "finetune_steps", "batch_size", "max_length"):
        if getattr(args, option) < 1:
            raise CommandError(f"--{option.replace('_', '-')} must be at least 1, got {getattr(args, option)}")
    if not args.glue_dir and not args.conll_dir:
        raise CommandError("nothing to evaluate on: pass --glue-dir and/or --conll-dir")
    if args.tasks and not args.glue_dir:
        raise CommandError("--tasks picks GLUE tasks of --glue-dir: pass --glue-dir too")
    out = Path(args.output_dir)
    if not str(args.output_dir).strip() or (out.exists() and not out.is_dir()):
        raise CommandError(f"--output-dir {args.output_dir!r} must be a folder (new or existing), not a file")
    tasks, skipped = glue_tasks(Path(args.glue_dir), args.tasks) if args.glue_dir else ([], [])
    if args.glue_dir and not tasks:
        found = f" (without a train.tsv and a dev file: {', '.join(skipped)})" if skipped else ""
        raise CommandError(
            f"--glue-dir {args.glue_dir!r} holds no GLUE task to run{found}: expected folders such as SST-2/ or "
            "RTE/ holding train.tsv and dev.tsv"
        )
    if args.conll_dir:
        if not Path(args.conll_dir).is_dir():
            raise CommandError(f"--conll-dir {args.conll_dir!r} does not exist or is not a folder")
        for name in ("train.txt", "valid.txt"):
            if not (Path(args.conll_dir) / name).is_file():
                raise CommandError(f"--conll-dir {args.conll_dir!r} holds no {name} (CoNLL-2003: train.txt, valid.txt)")
    for task in skipped:
        logger.warning(f"GLUE {task} has no train.tsv (or no dev file) in {args.glue_dir}: skipped")
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    rows = [evaluate_model(name, args, tasks, out) for name in args.models]
    machine = machine_name("cuda" if cuda_available() else "cpu")
    corpus = "the --pretrain-args text" if "--text" in args.pretrain_args else "the shipped Shakespeare sample"
    settings = (f"pretraining {args.pretrain_steps} steps on {corpus}, fine-tuning "
                f"{args.finetune_steps} steps per task, batch {args.batch_size}, max length {args.max_length}, "
                f"seed {args.seed}")
    head, body = table(rows, tasks, bool(args.conll_dir))
    title = f"bizoo evaluate-all: dev scores ({machine})"
    (out / "results.json").write_text(json.dumps(
        {"machine": machine, "settings": settings, "skipped": skipped, "rows": rows,
         "seconds": round(time.perf_counter() - started, 1)}, indent=1) + "\n")
    text = markdown(head, body)
    (out / "results.md").write_text(
        f"{title}\n\n{settings}; GLUE score per task = the mean of its official metrics × 100; wall time = all of "
        f"a model's runs.\n\n{text}"
    )
    plot(rows, tasks, bool(args.conll_dir), out / "results.png", title)
    report(f"\n{text}\n{settings}\nmachine: {machine}; {time.perf_counter() - started:.0f} s in all")
    report(f"{PROG}: table in {out / 'results.md'}, chart in {out / 'results.png'}")
    return 0 if all(r["pretrain"]["ok"] for r in rows) else 1


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``bizoo evaluate-all`` and ``python -m bizoo.scripts.evaluate_all``."""
    return command_main(__name__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
