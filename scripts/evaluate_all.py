"""``bizoo evaluate-all``: every model against BERT at the same budget: pretrain, fine-tune on GLUE and CoNLL-2003,
tabulate and plot.

For each model (LION-LIT, LION-D, LION-S, BiGS, BiLSTM-CRF, ELMo, and BERT, by default):

1. ``bizoo pretrain`` on the same text (--text / --eval-text, default the Shakespeare sample shipped with bizoo) for
   the same --pretrain-steps of --batch-size blocks of --max-length tokens: masked-LM for the subword models and
   BERT (transformers' ``BertForMaskedLM`` with SDPA attention, the same small shape: ``bizoo pretrain --model
   bert``), ELMo's biLM. The held-out evaluation every --eval-steps (and before the first step) is the learning
   curve: masked-token accuracy (ELMo: perplexity) against the tokens trained on.
   A word-level model that is trained from scratch instead (``FROM_SCRATCH``: the BiLSTM-CRF) skips this step:
   its word vocabulary then comes from each task's training data, as its NER preset does, not from the
   pretraining text (whose words would leave most of a task's words unknown).
2. ``bizoo finetune-glue`` from that checkpoint (or from scratch) on every task of --glue-dir that has a train.tsv
   and a dev file (scored on dev), then ``bizoo finetune-ner`` on --conll-dir (span F1 on valid.txt); each task
   for the same fixed budget for every model: its epochs in ``FINETUNE_EPOCHS`` (--finetune-epochs changes them;
   --finetune-steps N instead trains every task N steps).

Each run is its own process (``python -m bizoo.scripts.<command>``, output and log in ``OUTPUT/<model>/<task>``); a
failed run is reported as such ("failed" in the table) and the others go on (the exit status is then 1). A run whose
folder already holds its results, made by the same command line, is not run again, so a budget can be run in parts:
each finished run records its command line beside its folder (``<task>.command.json``, a fine-tuning run with its
pretraining's), and a folder made by another one (other steps, epochs, batch, seed, ``--pretrain-args``, or a
pretraining run again) is run again, saying which options differ. Then the table: per model, its parameters, the
held-out pretraining result, each task's GLUE score (the mean of the task's official metrics × 100: Matthews
correlation for CoLA, F1 and accuracy for MRPC and QQP, Pearson and Spearman for STS-B, matched and mismatched
accuracy for MNLI, accuracy otherwise), their average, CoNLL dev F1 (strict span F1), and the wall time of all its
runs, in ``OUTPUT/results.json``, ``OUTPUT/results.md`` (with the machine and the settings), ``OUTPUT/results.png`` (a
bar chart) and ``OUTPUT/learning_curves.png``. Every fine-tuned folder keeps its ``bizoo_results.json``, which ``bizoo
export`` turns into the model card's ``model-index``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

from .lib.command import CommandError, command_main, report, run_command
from .lib.data import GLUE_TASKS, glue_task
from .lib.machine import cuda_available, machine_name
from .lib.models import saved_weight_shapes
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
    "bert": ("bert", None),  # the baseline: transformers' BertForMaskedLM (SDPA), bizoo pretrain --model bert
}
#: Word-level models trained from scratch on each task (their vocabulary from its training data), not pretrained.
FROM_SCRATCH = {"bilstm-crf"}
CONLL = "CoNLL-2003"
#: The fine-tuning budget per task, in epochs of its training set, the same for every model. At batch 32 an epoch is
#: CoLA 268 steps, SST-2 2105, MRPC 115, STS-B 180, RTE 78, CoNLL-2003 439: one epoch of the small sets, half of
#: CoLA and CoNLL-2003, a tenth of SST-2 (its 67k sentences would take most of the budget), some 800 steps in all,
#: so that seven models with their pretraining fit the 2-core machine in under two hours (RESULTS.md).
#: Held-out evaluations of a pretraining run after its first, when --eval-steps is not given: every
#: --pretrain-steps // EVAL_POINTS steps (at least 1).
EVAL_POINTS = 10
FINETUNE_EPOCHS = {"CoLA": 0.5, "SST-2": 0.1, "MRPC": 1.0, "STS-B": 1.0, "RTE": 1.0, "QNLI": 0.05, "MNLI": 0.02,
                   "QQP": 0.02, "WNLI": 3.0, CONLL: 0.5}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output-dir", required=True, metavar="DIR", help="folder for every run and the table")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS), metavar="MODEL",
                        help=f"models to evaluate (default: all: {', '.join(MODELS)})")
    parser.add_argument("--glue-dir", default=None, metavar="DIR",
                        help="GLUE folder (<TASK>/train.tsv and dev.tsv); every task there with both is run")
    parser.add_argument("--tasks", nargs="+", default=None, metavar="TASK",
                        help="only these GLUE tasks (each a folder of --glue-dir)")
    parser.add_argument("--conll-dir", default=None, metavar="DIR", help="CoNLL-2003 folder (train.txt, valid.txt)")
    parser.add_argument("--text", nargs="+", default=None, metavar="FILE",
                        help="pretraining text of every model (default: the Shakespeare sample shipped with bizoo)")
    parser.add_argument("--eval-text", nargs="+", default=None, metavar="FILE",
                        help="held-out text (default: Macbeth with the shipped sample, else pretrain's own split)")
    parser.add_argument("--pretrain-steps", type=int, default=300, metavar="N", help="(default: %(default)s)")
    parser.add_argument("--eval-steps", type=int, default=None, metavar="N",
                        help="held-out evaluation every N pretraining steps: the learning curve's points "
                        f"(default: --pretrain-steps // {EVAL_POINTS}, at least 1)")
    parser.add_argument("--finetune-epochs", nargs="+", default=[], metavar="TASK=X",
                        help="fine-tuning epochs per task instead of the defaults (" + ", ".join(
                            f"{k} {v:g}" for k, v in FINETUNE_EPOCHS.items()) + "), e.g. SST-2=0.5 CoNLL-2003=2; "
                        "a bare number sets every task")
    parser.add_argument("--finetune-steps", type=int, default=None, metavar="N",
                        help="train every task N steps instead of its epochs")
    parser.add_argument("--batch-size", type=int, default=32, metavar="N", help="(default: %(default)s)")
    parser.add_argument("--max-length", type=int, default=128, metavar="N", help="(default: %(default)s)")
    parser.add_argument("--seed", type=int, default=42, help="(default: %(default)s)")
    parser.add_argument("--pretrain-args", nargs=argparse.REMAINDER, default=[],
                        help="more options for every `bizoo pretrain` (the rest of the line), e.g. --model-config ...; "
                        "not those evaluate-all sets alike for every model (--seed, --max-steps, --batch-size, "
                        "--max-length, --eval_steps, --model, ...: its own options set them)")


#: ``bizoo pretrain``'s options that evaluate-all sets itself, the same for every model, and the option of its own that
#: sets them: refused in --pretrain-args, whose value would win (it comes last) while the table states evaluate-all's.
#: --text and --eval-text only when evaluate-all's own --text / --eval-text are given.
SHARED_PRETRAIN_OPTIONS = {
    **dict.fromkeys(("--model", "--model-type", "--model_type", "--variant"), "--models"),
    **dict.fromkeys(("--output-dir", "--output_dir"), "--output-dir"),
    **dict.fromkeys(("--max-steps", "--max_steps", "--epochs", "--num_train_epochs", "--num-train-epochs"),
                    "--pretrain-steps"),
    **dict.fromkeys(("--seed", "--data_seed", "--data-seed"), "--seed"),
    **dict.fromkeys(("--batch-size", "--per_device_train_batch_size", "--per-device-train-batch-size"),
                    "--batch-size"),
    **dict.fromkeys(("--max-length", "--max_seq_length", "--max-seq-length"), "--max-length"),
    **dict.fromkeys(("--eval_steps", "--eval-steps"), "--eval-steps"),
}
TEXT_OPTIONS = {"text": ("--text", "--train-file", "--train_file"),
                "eval_text": ("--eval-text", "--validation-file", "--validation_file")}


def shared_in_pretrain_args(args) -> list[tuple[str, str]]:
    """(what --pretrain-args gives, evaluate-all's option for it) for each option of ``SHARED_PRETRAIN_OPTIONS``
    (or --text / --eval-text where evaluate-all's own are given) that --pretrain-args sets, spelled out, with
    ``=VALUE`` or abbreviated as ``bizoo pretrain``'s parser lets it be."""
    shared = dict(SHARED_PRETRAIN_OPTIONS)
    for option, spellings in TEXT_OPTIONS.items():
        if getattr(args, option):
            shared.update(dict.fromkeys(spellings, f"--{option.replace('_', '-')}"))
    found = []
    for token in args.pretrain_args:
        name = token.split("=", 1)[0]
        if not name.startswith("--") or len(name) < 3:
            continue
        ours = shared.get(name) or next((ours for spelling, ours in shared.items() if spelling.startswith(name)), None)
        if ours is not None:
            found.append((token, ours))
    return found


def glue_tasks(glue_dir: Path, only: list[str] | None) -> tuple[list[str], list[str]]:
    """(tasks with a train.tsv and a dev file, tasks skipped for lack of one), in GLUE's order (with ``only``,
    --tasks: in its order). Without ``only`` every task with a folder in ``glue_dir``; a task --tasks names is taken
    once however often (or in whatever spelling) it is named, and one without a folder is refused: its column would
    be missing from the table without a word."""
    if not glue_dir.is_dir():
        raise CommandError(f"--glue-dir {str(glue_dir)!r} is not a folder")
    wanted = list(dict.fromkeys(glue_task(t).name for t in only)) if only else list(GLUE_TASKS)
    absent = [name for name in wanted if only and not (glue_dir / name).is_dir()]
    if absent:
        raise CommandError(f"--tasks {' '.join(absent)}: no such folder in --glue-dir {str(glue_dir)!r} "
                           f"(expected {', '.join(str(glue_dir / name) + '/' for name in absent)})")
    runnable, skipped = [], []
    for name in wanted:
        folder = glue_dir / name
        if not folder.is_dir():
            continue
        has_dev = any(folder.glob("dev*.tsv"))
        (runnable if (folder / "train.tsv").is_file() and has_dev else skipped).append(name)
    return runnable, skipped


def task_score(metrics: dict) -> float:
    """GLUE's per-task score: the mean of the task's official metrics, × 100 (MNLI: of its matched and mismatched
    accuracy, ``run_metrics``'s ``accuracy`` and ``accuracy_mm``)."""
    values = [v for k, v in metrics.items() if isinstance(v, (int, float))]
    return 100.0 * sum(values) / len(values)


#: The name suffix ``run_metrics`` gives the metrics of MNLI's mismatched dev split (transformers' run_glue.py's).
MISMATCHED_SUFFIX = "_mm"


def run_metrics(results: list[dict]) -> dict[str, float]:
    """The metrics of a finished fine-tuning run from the results it recorded (``read_results``; one record per
    evaluation split, the folder's only records since each run starts with ``--overwrite``).

    A task scored on one split: its record's metrics. MNLI, scored on dev_matched and dev_mismatched (one record
    each): the matched split's metrics under their names and the mismatched split's with ``_mm`` added, as
    transformers' run_glue.py names them (``{"accuracy": m, "accuracy_mm": mm}``), so that ``task_score`` is the mean
    of the two, the task score GLUE gives MNLI; reading the last record alone would report mismatched only.
    """
    by_split = {str(record.get("dataset", {}).get("split", "")): record["metrics"] for record in results}
    matched = [split for split in by_split if split.endswith("_matched")]
    mismatched = [split for split in by_split if split.endswith("_mismatched")]
    if not (matched and mismatched):
        return results[-1]["metrics"]
    return {**by_split[matched[-1]],
            **{f"{name}{MISMATCHED_SUFFIX}": value for name, value in by_split[mismatched[-1]].items()}}


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


def command_record(argv: list[str], out: Path, after: dict | None = None) -> dict:
    """What a run's folder records of the command that made it: its command line, with the output folder written
    ``<OUTPUT>`` (a moved output folder stays reusable), and for a fine-tuning run the record of the pretraining it
    started from (``after``; None from scratch)."""
    root = str(out)
    inside = [a == root or a.startswith(root + os.sep) for a in argv]
    return {"argv": [f"<OUTPUT>{a[len(root):]}" if i else a for a, i in zip(argv, inside)], "after": after}


def _record_path(folder: Path) -> Path:
    return folder.parent / f"{folder.name}.command.json"


def _recorded(folder: Path) -> dict | None:
    """The command record kept beside ``folder`` (``command_record``), or None without one."""
    path = _record_path(folder)
    return json.loads(path.read_text()) if path.is_file() else None


def _options(argv: list[str]) -> dict[str, list[str]]:
    """{option or the module run: its values} of a command line, for saying what differs between two."""
    options: dict[str, list[str]] = {}
    current = "command"
    for token in argv:
        if token.startswith("--"):
            current = token
            options.setdefault(current, [])
        else:
            options.setdefault(current, []).append(token)
    return options


def record_differences(old: dict, new: dict) -> str:
    """How two command records differ, in words: the options whose values differ (``--max-steps 2 -> 3``), and
    whether the pretraining they start from differs."""
    before, now = _options(old["argv"]), _options(new["argv"])
    parts = [f"{k} {' '.join(before.get(k, ['(absent)'])) or '(on)'} -> {' '.join(now.get(k, ['(absent)'])) or '(on)'}"
             for k in sorted(set(before) | set(now), key=lambda k: (k not in now, k)) if before.get(k) != now.get(k)]
    if old.get("after") != new.get("after"):
        parts.append("another pretraining run")
    return "; ".join(parts) or "the record's format"


def reusable(folder: Path, finished: bool, record: dict) -> bool:
    """Whether a finished run in ``folder`` is the one ``record`` describes, so that it need not run again. A folder
    whose record differs is run again (said, with what differs); a finished folder without a record (made before
    runs kept theirs) is reused, with a warning."""
    if not finished:
        return False
    old = _recorded(folder)
    if old is None:
        logger.warning(f"{folder} recorded no command line (made by an older bizoo): its results are reused as they "
                       "are; delete the folder to run it again")
        return True
    made = {key: old.get(key) for key in record}
    if made == record and old.get("finished"):
        return True
    why = (f"was made by another command line ({record_differences(made, record)})" if made != record
           else "holds a run that did not finish")
    logger.info(f"{PROG}: {folder} {why}: running it again")
    return False


def _keep_record(folder: Path, record: dict, finished: bool, **extra) -> None:
    """Write a run's command record beside its folder: before it runs (``finished`` False, so that results left by
    an earlier run in the folder are never taken for this one's if it fails) and after it finished (``extra``: a
    pretraining run's mark ``run``, see ``pretraining_run``)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    _record_path(folder).write_text(json.dumps({**record, "finished": finished, **extra}, indent=1) + "\n")


def pretraining_run(pre: Path, record: dict, ran: bool) -> dict:
    """What a fine-tuning run records of the pretraining it starts from (its ``after``): the pretraining's command
    record and, for a run that finished since runs kept it, which run of that command line made the checkpoint
    (``run``: a new mark each time it runs, kept in its record). A pretraining run again with the same command line
    (its folder deleted, or left unfinished) has other weights, so the fine-tuning runs made from the earlier ones are
    run again, not reused. A pretraining folder recorded without the mark (made by an older bizoo) gives the record
    alone, as then."""
    if ran:
        return {**record, "run": uuid.uuid4().hex}
    mark = (_recorded(pre) or {}).get("run")
    return {**record, "run": mark} if mark else record


def _timed(folder: Path, seconds: float | None = None) -> float:
    """The wall time of the run in ``folder``: recorded beside it (``<name>.seconds``) when given, read back else."""
    path = folder.parent / f"{folder.name}.seconds"
    if seconds is not None:
        path.write_text(f"{seconds:.1f}\n")
        return seconds
    return float(path.read_text()) if path.is_file() else 0.0


def finetune_budget(args, task: str) -> list[str]:
    """The fine-tuning budget options of one task: --finetune-steps N, else its epochs (``FINETUNE_EPOCHS``, as
    --finetune-epochs changes them)."""
    if args.finetune_steps is not None:
        return ["--max-steps", str(args.finetune_steps)]
    return ["--max-steps", "-1", "--epochs", f"{args.epochs_per_task.get(task, FINETUNE_EPOCHS.get(task, 1.0)):g}"]


def pretrain_argv(name: str, args, folder: Path) -> list[str]:
    """The ``bizoo pretrain`` command line of one model: the same text, steps, batch and length for all."""
    model_type, variant = MODELS[name]
    argv = ["bizoo.scripts.pretrain", "--model", model_type, "--output-dir", str(folder), "--overwrite",
            "--max-steps", str(args.pretrain_steps), "--seed", str(args.seed), "--batch-size", str(args.batch_size),
            "--max-length", str(args.max_length), "--eval_steps", str(args.eval_steps), "--eval_on_start",
            "--save_steps", str(args.pretrain_steps)]
    if variant:
        argv += ["--variant", variant]
    if args.text:
        argv += ["--text", *args.text]
    if args.eval_text:
        argv += ["--eval-text", *args.eval_text]
    return argv + list(args.pretrain_args)


def evaluate_model(name: str, args, tasks: list[str], out: Path) -> dict:
    """Every run of one model; returns {"pretrain": {...} or None (trained from scratch), "glue": {task: {...}},
    "conll": {...}, "seconds": s}."""
    model_type, variant = MODELS[name]
    row: dict = {"model": name, "glue": {}, "seconds": 0.0, "pretrain": None}
    common = ["--seed", str(args.seed), "--batch-size", str(args.batch_size), "--max-length", str(args.max_length)]
    pretrained = None  # the record of the pretraining run the fine-tuning runs start from (``pretraining_run``)
    if name in FROM_SCRATCH:  # its vocabulary from each task's training words
        start = [model_type, *(["--variant", variant] if variant else [])]
        logger.info(f"{PROG}: {name} is trained from scratch on each task (no pretraining)")
    else:
        pre = out / name / "pretrain"
        argv = pretrain_argv(name, args, pre)
        command = command_record(argv, out)
        if reusable(pre, (pre / "model.safetensors").is_file(), command):
            ok, seconds = True, _timed(pre)
            pretrained = pretraining_run(pre, command, ran=False)
        else:
            _keep_record(pre, command, finished=False)
            ok, seconds = _run(argv, pre, "pretrain.log")
            _timed(pre, seconds)
            pretrained = pretraining_run(pre, command, ran=True)
            _keep_record(pre, command, finished=ok, run=pretrained["run"])
        row["pretrain"] = {"ok": ok, "seconds": round(seconds, 1), "results": _results(pre) if ok else None}
        if ok:
            row["pretrain"].update(learning_curve(pre), parameters=count_parameters(pre))
        row["seconds"] += seconds
        if not ok:
            logger.warning(f"{name} pretrained: FAILED (see {out / name / 'pretrain.log'})")
            return row
        logger.info(f"{PROG}: {name} pretrained: ok")
        start = [str(pre)]
    runs = [(task, ["bizoo.scripts.finetune_glue", "--task", task, "--data-dir", str(args.glue_dir)]) for task in tasks]
    if args.conll_dir:
        runs.append((CONLL, ["bizoo.scripts.finetune_ner", "--data-dir", str(args.conll_dir)]))
    for task, argv in runs:
        folder = out / name / task
        argv = [*argv, "--model-name-or-path", *start, "--output-dir", str(folder), "--overwrite",
                *finetune_budget(args, task), *common]
        record = command_record(argv, out, after=pretrained)
        results = _results(folder)
        if reusable(folder, results is not None, record):
            seconds = _timed(folder)
        else:
            _keep_record(folder, record, finished=False)
            ok, seconds = _run(argv, folder, f"{task}.log")
            results = _results(folder) if ok else None
            _timed(folder, seconds)
            _keep_record(folder, record, finished=results is not None)
        row["seconds"] += seconds
        entry = {"ok": results is not None, "seconds": round(seconds, 1)}
        if results is not None:
            entry["metrics"] = run_metrics(results)
            if task == CONLL and row["pretrain"] is None:  # a model trained from scratch: its size is the tagger's
                entry["parameters"] = count_parameters(folder)
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


def count_parameters(folder: Path) -> int | None:
    """The number of weights in ``folder``'s safetensors files (read from their headers), or None without one."""
    shapes = saved_weight_shapes(folder)
    return sum(math.prod(shape) for shape in shapes.values()) if shapes else None


def learning_curve(folder: Path) -> dict:
    """The held-out evaluations ``bizoo pretrain`` logged (``training_log.json``): {"curve": [{"step", "tokens" (trained
    on so far), "accuracy" (masked-LM) or "perplexity" (biLM)}]}."""
    path = folder / "training_log.json"
    log = json.loads(path.read_text()) if path.is_file() else []
    curve = []
    for entry in log:
        if "eval_loss" not in entry:
            continue
        point = {"step": entry.get("step", 0), "tokens": entry.get("num_input_tokens_seen", 0)}
        if "eval_accuracy" in entry:
            point["accuracy"] = entry["eval_accuracy"]
        else:
            point["perplexity"] = math.exp(min(entry["eval_loss"], 50))
        curve.append(point)
    return {"curve": curve}


def held_out(row: dict) -> str:
    """The held-out pretraining result as a cell: masked-token accuracy × 100, "ppl X" for a biLM, "failed" for a
    failed pretraining run, "—" without one."""
    pre = row.get("pretrain")
    if pre and not pre.get("ok"):
        return "failed"
    if not pre or not pre.get("results"):
        return "—"
    metrics = pre["results"][-1]["metrics"]
    if "accuracy" in metrics:
        return f"{100 * metrics['accuracy']:.1f}"
    if "forward_perplexity" in metrics:
        return f"ppl {metrics['forward_perplexity']:.0f}/{metrics['backward_perplexity']:.0f}"
    return "—"


def parameters(row: dict) -> str:
    """The model's size as a cell: millions of weights of the pretrained checkpoint, its masked-LM (or biLM) head
    included, else of the CoNLL tagger."""
    pre = row.get("pretrain") or {}
    count = pre.get("parameters") or (row.get("conll") or {}).get("parameters")
    return f"{count / 1e6:.2f}M" if count else "—"


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
    head = ["model", "parameters", "held-out MLM acc.", *tasks, "GLUE avg", *([f"{CONLL} F1"] if conll else []),
            "wall time"]
    body = []
    for row in rows:
        cells = [f"{value:.1f}" if value is not None else missing for value, missing in scores(row, tasks, conll)]
        body.append([row["model"], parameters(row), held_out(row), *cells, f"{row['seconds'] / 60:.0f} min"])
    return head, body


def markdown(head: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], tasks: list[str], conll: bool, path: Path, title: str) -> None:
    """Grouped bars: one group per score column (tasks, GLUE avg, CoNLL F1), one bar per model; where a model has no
    score (a failed run, none run, an undefined metric) no bar but what the table shows ("failed", "—"), so that a
    missing score is not read as a score of 0."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = [*tasks, "GLUE avg", *([f"{CONLL} F1"] if conll else [])]
    fig, ax = plt.subplots(figsize=(max(6, 1.4 * len(columns)), 4))
    width = 0.8 / max(len(rows), 1)
    for i, row in enumerate(rows):
        places = [x + i * width for x in range(len(columns))]
        cells = scores(row, tasks, conll)
        missing = [value is None or math.isnan(value) for value, _ in cells]
        bars = ax.bar(places, [0.0 if gone else value for gone, (value, _) in zip(missing, cells)], width,
                      label=row["model"])
        for place, gone, (value, shown), bar in zip(places, missing, cells, bars):
            if gone:
                ax.text(place, 0.5, shown if value is None else "nan", ha="center", va="bottom", rotation=90,
                        fontsize=6, color=bar.get_facecolor())
    ax.set_xticks([x + 0.4 - width / 2 for x in range(len(columns))], columns, rotation=20)
    ax.set_ylabel("dev score × 100")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_learning_curves(rows: list[dict], path: Path, title: str) -> bool:
    """Held-out masked-token accuracy against the tokens trained on, one line per pretrained model (left), and a
    biLM's held-out perplexity (right, when there is one). False (nothing drawn) without any curve."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = [(row["model"], (row.get("pretrain") or {}).get("curve") or []) for row in rows]
    mlm = [(name, [p for p in curve if "accuracy" in p]) for name, curve in curves]
    bilm = [(name, [p for p in curve if "perplexity" in p]) for name, curve in curves]
    mlm, bilm = [c for c in mlm if c[1]], [c for c in bilm if c[1]]
    if not mlm and not bilm:
        return False
    fig, axes = plt.subplots(1, 2 if bilm else 1, figsize=(11 if bilm else 7, 4), squeeze=False)
    ax = axes[0][0]
    for name, points in mlm:
        ax.plot([p["tokens"] / 1e6 for p in points], [100 * p["accuracy"] for p in points], marker=".", label=name)
    ax.set_xlabel("tokens trained on (millions)")
    ax.set_ylabel("held-out masked-token accuracy (%)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    if bilm:
        ax = axes[0][1]
        for name, points in bilm:
            ax.plot([p["tokens"] / 1e6 for p in points], [p["perplexity"] for p in points], marker=".", label=name)
        ax.set_yscale("log")
        ax.set_xlabel("words trained on (millions)")
        ax.set_ylabel("held-out biLM perplexity (log)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def parse_epochs(items: list[str]) -> dict[str, float]:
    """--finetune-epochs: ``["SST-2=0.5", "CoNLL-2003=2"]`` -> {task: epochs}; a bare number sets every task."""
    epochs: dict[str, float] = {}
    for item in items:
        task, sep, value = item.rpartition("=")
        try:
            number = float(value)
        except ValueError:
            number = -1.0
        if number <= 0:
            raise CommandError(f"--finetune-epochs expects TASK=X or X with X > 0, got {item!r}")
        if not sep:
            epochs.update(dict.fromkeys(FINETUNE_EPOCHS, number))
            continue
        name = CONLL if task.lower() in ("conll", CONLL.lower()) else glue_task(task).name
        epochs[name] = number
    return epochs


def run(args: argparse.Namespace) -> int:
    return run_command(PROG, lambda: _evaluate_all(args))


def _evaluate_all(args: argparse.Namespace) -> int:
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # each process would run every step, its children in one group
        raise CommandError(
            f"runs under a distributed launcher (WORLD_SIZE={os.environ['WORLD_SIZE']}): evaluate-all starts each "
            "training command as its own process; run it with python (bizoo evaluate-all ...), not torchrun or "
            "accelerate launch"
        )
    for option in ("pretrain_steps", "finetune_steps", "batch_size", "max_length", "eval_steps"):
        if getattr(args, option) is not None and getattr(args, option) < 1:
            raise CommandError(f"--{option.replace('_', '-')} must be at least 1, got {getattr(args, option)}")
    if not args.glue_dir and not args.conll_dir:
        raise CommandError("nothing to evaluate on: pass --glue-dir and/or --conll-dir")
    if args.tasks and not args.glue_dir:
        raise CommandError("--tasks picks GLUE tasks of --glue-dir: pass --glue-dir too")
    shared = shared_in_pretrain_args(args)
    if shared:
        raise CommandError(
            "--pretrain-args sets what evaluate-all gives every model alike and states in its table: "
            + "; ".join(f"{token} (use {ours})" for token, ours in shared)
        )
    args.models = list(dict.fromkeys(args.models))  # a model named twice is one row, not two
    args.epochs_per_task = parse_epochs(args.finetune_epochs)
    if args.eval_steps is None:
        args.eval_steps = max(args.pretrain_steps // EVAL_POINTS, 1)
    for option in ("text", "eval_text"):
        for path in getattr(args, option) or ():
            if not Path(path).is_file():
                raise CommandError(f"--{option.replace('_', '-')} {path!r} is not a file")
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
    if args.text:
        corpus = ", ".join(Path(p).name for p in args.text)
    else:
        corpus = "the --pretrain-args text" if "--text" in args.pretrain_args else "the shipped Shakespeare sample"
    if args.finetune_steps is not None:
        budget = f"{args.finetune_steps} steps per task"
    else:
        names = [*tasks, *([CONLL] if args.conll_dir else [])]
        budget = "epochs per task: " + ", ".join(
            f"{t} {args.epochs_per_task.get(t, FINETUNE_EPOCHS.get(t, 1.0)):g}" for t in names)
    scratch = [m for m in args.models if m in FROM_SCRATCH]
    settings = (f"pretraining {args.pretrain_steps} steps of {args.batch_size} blocks of {args.max_length} tokens on "
                f"{corpus}; fine-tuning with a fixed budget ({budget}), batch {args.batch_size}, max length "
                f"{args.max_length}, seed {args.seed}"
                + (f"; trained from scratch on each task: {', '.join(scratch)}" if scratch else ""))
    head, body = table(rows, tasks, bool(args.conll_dir))
    title = f"bizoo evaluate-all: dev scores ({machine})"
    (out / "results.json").write_text(json.dumps(
        {"machine": machine, "settings": settings, "skipped": skipped, "rows": rows,
         "seconds": round(time.perf_counter() - started, 1)}, indent=1) + "\n")
    text = markdown(head, body)
    (out / "results.md").write_text(
        f"{title}\n\n{settings}; held-out MLM acc. = masked-token accuracy × 100 on the held-out text after "
        f"pretraining (ELMo: forward/backward perplexity; — not pretrained); GLUE score per task = the mean of its "
        f"official metrics × 100 (MNLI: matched and mismatched accuracy); {CONLL} F1 = strict span F1 × 100 "
        f"(seqeval's strict mode); wall time = all of a model's runs.\n\n{text}"
    )
    plot(rows, tasks, bool(args.conll_dir), out / "results.png", title)
    curves = plot_learning_curves(rows, out / "learning_curves.png", f"bizoo evaluate-all: pretraining ({machine})")
    report(f"\n{text}\n{settings}\nmachine: {machine}; {time.perf_counter() - started:.0f} s in all")
    report(f"{PROG}: table in {out / 'results.md'}, chart in {out / 'results.png'}"
           + (f", learning curves in {out / 'learning_curves.png'}" if curves else ""))
    failed = failed_runs(rows)
    if failed:
        logger.warning(f"{len(failed)} run(s) failed: {', '.join(failed)} (their logs in {out})")
    return 1 if failed else 0


def failed_runs(rows: list[dict]) -> list[str]:
    """The runs that failed, as "model task" ("model pretrain" for a pretraining run): a pretraining run, a GLUE
    task or CoNLL-2003 alike, so that the exit status is 1 when any cell of the table says "failed"."""
    failed = []
    for row in rows:
        pre = row.get("pretrain")
        if pre is not None and not pre.get("ok"):
            failed.append(f"{row['model']} pretrain")
        runs = [*row.get("glue", {}).items(), *([(CONLL, row["conll"])] if row.get("conll") else [])]
        failed += [f"{row['model']} {task}" for task, entry in runs if not entry.get("ok")]
    return failed


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``bizoo evaluate-all`` and ``python -m bizoo.scripts.evaluate_all``."""
    return command_main(__name__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
