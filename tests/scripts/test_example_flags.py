"""transformers' example scripts' flags that bizoo takes with their meaning: run_mlm.py's --mlm_probability,
--streaming, --line_by_line and --pad_to_max_length (pretrain), run_ner.py's --task_name and
--return_entity_level_metrics (finetune-ner), and run_glue.py / run_ner.py's --pad_to_max_length (finetune-glue,
finetune-ner); the Hub and cache options of the three (--cache_dir, --model_revision, --trust_remote_code, ...: what
each does is tests/scripts/test_hub_options.py's) and run_glue.py / run_ner.py's --ignore_mismatched_sizes.

Each flag parses into the namespace of its bizoo spelling; a flag and its other spelling disagreeing is an error;
--pad_to_max_length really pads every batch to --max-length (the collator's batches are recorded) and, bizoo's
models not depending on padding, a tiny run scores what the same run padding per batch scores.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import transformers

from bizoo.scripts import finetune_glue, finetune_ner, pretrain
from tests.scripts.conftest import call

COMMANDS = {"pretrain": pretrain, "finetune-glue": finetune_glue, "finetune-ner": finetune_ner}
REQUIRED = {
    "pretrain": ["--output-dir", "out"],
    "finetune-glue": ["--model-name-or-path", "lion", "--task", "sst2", "--data-dir", "glue", "--output-dir", "out"],
    "finetune-ner": ["--model-name-or-path", "lion", "--data-dir", "conll", "--output-dir", "out"],
}
TINY = ["--model-config", "hidden_size=32", "num_hidden_layers=1", "num_attention_heads=4", "intermediate_size=64"]
#: Without dropout, whose masks are drawn over the batch's shape: the same run padded to another length draws others.
NO_DROPOUT = {"lion": [*TINY, "hidden_dropout_prob=0"],
              "bilstm_crf": ["--model-config", "embedding_dropout=0", "hidden_dropout_prob=0"]}
MAX_LENGTH = 32
FAST = ["--max-steps", "3", "--batch-size", "4", "--logging-steps", "1", "--save-steps", "100",
        "--max-length", str(MAX_LENGTH), "--seed", "7"]


def parsed(command: str, argv: list[str]) -> dict:
    """The namespace of ``bizoo <command> <required options> argv``, without the parser's own bookkeeping."""
    parser = argparse.ArgumentParser(prog=f"bizoo {command}")
    COMMANDS[command].add_arguments(parser)
    args = vars(parser.parse_args([*REQUIRED[command], *argv]))
    args.pop("_one_value_given", None)
    return args


@pytest.mark.parametrize("command, example, bizoo", [
    ("pretrain", ["--mlm_probability", "0.3"], ["--mlm-probability", "0.3"]),
    ("pretrain", ["--streaming"], ["--stream"]),
    ("pretrain", ["--streaming", "true"], ["--stream"]),
    ("pretrain", ["--streaming", "false"], []),
    ("finetune-ner", ["--task_name", "pos"], ["--task", "pos"]),
    ("finetune-ner", ["--task-name", "chunk"], ["--task", "chunk"]),
    ("finetune-ner", ["--return_entity_level_metrics"], ["--return-entity-level-metrics"]),
    ("finetune-ner", ["--pad_to_max_length"], ["--pad-to-max-length"]),
    ("finetune-ner", ["--pad_to_max_length", "True"], ["--pad-to-max-length"]),
    ("finetune-glue", ["--pad_to_max_length"], ["--pad-to-max-length"]),
    ("finetune-glue", ["--pad_to_max_length", "false"], []),
    ("finetune-glue", ["--no_pad_to_max_length"], []),  # run_glue.py pads by default; this turns it off
    ("pretrain", ["--line_by_line"], ["--line-by-line"]),
    ("pretrain", ["--pad_to_max_length"], ["--pad-to-max-length"]),
    # the Hub and cache options (tests/scripts/test_hub_options.py: what each does)
    *[(command, ["--cache_dir", "hub"], ["--cache-dir", "hub"]) for command in COMMANDS],
    *[(command, ["--model_revision", "v2"], ["--model-revision", "v2"]) for command in COMMANDS],
    *[(command, ["--trust_remote_code"], ["--trust-remote-code"]) for command in COMMANDS],
    *[(command, ["--trust_remote_code", "false"], []) for command in COMMANDS],
    *[(command, ["--overwrite_cache", "true"], ["--overwrite-cache"]) for command in COMMANDS],
    *[(command, ["--use_fast_tokenizer"], []) for command in COMMANDS],  # true: what transformers 5 always loads
    *[(command, ["--preprocessing_num_workers", "1"], ["--preprocessing-num-workers", "1"]) for command in COMMANDS],
    ("finetune-glue", ["--ignore_mismatched_sizes"], ["--ignore-mismatched-sizes"]),
    # run_mlm.py's dtype of the weights (transformers 4's --torch_dtype; tests/scripts/test_weights_dtype.py)
    *[(command, ["--torch_dtype", "bfloat16"], ["--dtype", "bfloat16"]) for command in COMMANDS],
    ("pretrain", ["--torch-dtype", "auto"], ["--dtype", "auto"]),
    *[(command, ["--low_cpu_mem_usage"], ["--low-cpu-mem-usage"]) for command in COMMANDS],
    ("finetune-ner", ["--ignore_mismatched_sizes", "True"], ["--ignore-mismatched-sizes"]),
])
def test_an_example_flag_is_its_bizoo_spelling(command: str, example: list[str], bizoo: list[str]) -> None:
    assert parsed(command, example) == parsed(command, bizoo)
    if bizoo:  # and it changes something: not a flag the parser ignores
        assert parsed(command, bizoo) != parsed(command, [])


@pytest.mark.parametrize("command, argv, message", [
    ("pretrain", ["--mlm-probability", "0.2", "--mlm_probability", "0.3"],
     "--mlm-probability 0.2 and --mlm_probability 0.3"),
    ("finetune-ner", ["--task", "ner", "--task_name", "pos"], "--task ner and --task_name pos"),
    ("finetune-ner", ["--pad_to_max_length", "--pad-to-max-length", "false"],
     "--pad_to_max_length True and --pad-to-max-length False"),
    ("finetune-glue", ["--cache-dir", "a", "--cache_dir", "b"], "--cache-dir a and --cache_dir b"),
    ("pretrain", ["--model_revision", "v1", "--model-revision", "v2"], "--model_revision v1 and --model-revision v2"),
    ("finetune-ner", ["--trust_remote_code", "--trust-remote-code", "false"],
     "--trust_remote_code True and --trust-remote-code False"),
    ("finetune-glue", ["--dtype", "auto", "--torch_dtype", "bfloat16"], "--dtype auto and --torch_dtype bfloat16"),
])
def test_two_spellings_at_different_values_are_an_error(command, argv, message, tmp_path, capsys) -> None:
    output = tmp_path / "out"
    required = [*REQUIRED[command][:-1], str(output)]
    assert call(COMMANDS[command].main, [*required, *argv]) == 2
    error = capsys.readouterr().err
    assert message in error, error
    assert "give one of them" in error
    assert not output.exists()


def test_the_same_value_twice_is_no_error() -> None:
    assert parsed("pretrain", ["--mlm-probability", "0.3", "--mlm_probability", "0.3"])["mlm_probability"] == 0.3
    assert parsed("finetune-ner", ["--task", "pos", "--task_name", "pos"])["task"] == "pos"


def test_the_help_says_entity_level_metrics_are_always_reported(capsys) -> None:
    assert call(finetune_ner.main, ["--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--return_entity_level_metrics" in text and "always reports the scores of each type" in text


# ----------------------------------------------------------------------------------- --pad_to_max_length, end to end


def recording(monkeypatch, name: str) -> list[tuple[int, ...]]:
    """Replace transformers' collator ``name`` (imported by the command when it runs) by one that records the
    shape of every input_ids batch it makes."""
    shapes: list[tuple[int, ...]] = []
    base = getattr(transformers, name)

    class Recording(base):
        def __call__(self, *args, **kwargs):
            batch = super().__call__(*args, **kwargs)
            shapes.append(tuple(batch["input_ids"].shape))
            return batch

    monkeypatch.setattr(transformers, name, Recording)
    return shapes


def final_metrics(output: Path) -> dict:
    """The final evaluation's metrics, and the training loss: the same training, not only the same scores."""
    results = json.loads((output / "eval_results.json").read_text(encoding="utf-8"))
    return {**results["metrics"], "train_loss": results["train_loss"]}


def flat(metrics: dict, prefix: str = "") -> dict[str, float]:
    """{"per_type.LOC.f1": 0.5, ...}: the numbers of a nested metrics dict."""
    numbers = {}
    for key, value in metrics.items():
        if isinstance(value, dict):
            numbers.update(flat(value, f"{prefix}{key}."))
        elif isinstance(value, (int, float)):
            numbers[f"{prefix}{key}"] = value
    return numbers


def assert_same_numbers(padded: dict, dynamic: dict) -> None:
    padded, dynamic = flat(padded), flat(dynamic)
    assert padded.keys() == dynamic.keys()
    for key in padded:
        assert padded[key] == pytest.approx(dynamic[key], abs=1e-5), key


@pytest.mark.parametrize("task", ["SST-2", "STS-B"])
def test_glue_pad_to_max_length_pads_every_batch_and_scores_the_same(task, glue_dir, tmp_path, monkeypatch) -> None:
    shapes = recording(monkeypatch, "DataCollatorWithPadding")
    runs = {}
    for name, flag in (("dynamic", []), ("padded", ["--pad_to_max_length"])):
        shapes.clear()
        output = tmp_path / name
        assert call(finetune_glue.main, ["--model-name-or-path", "lion", "--task", task, "--data-dir", glue_dir,
                                         "--output-dir", output, *NO_DROPOUT["lion"], *FAST, *flag]) == 0
        runs[name] = (final_metrics(output), list(shapes))
    dynamic_lengths = {shape[1] for shape in runs["dynamic"][1]}
    assert dynamic_lengths and max(dynamic_lengths) < MAX_LENGTH  # the sentences are short: padding per batch
    assert runs["padded"][1] and {shape[1] for shape in runs["padded"][1]} == {MAX_LENGTH}
    assert_same_numbers(runs["padded"][0], runs["dynamic"][0])


@pytest.mark.parametrize("model", ["lion", "bilstm_crf"])
def test_ner_pad_to_max_length_pads_every_batch_and_scores_the_same(model, conll_dir, tmp_path, monkeypatch) -> None:
    shapes = recording(monkeypatch, "DataCollatorForTokenClassification")
    runs = {}
    for name, flag in (("dynamic", []), ("padded", ["--pad_to_max_length", "--return_entity_level_metrics"])):
        shapes.clear()
        output = tmp_path / name
        assert call(finetune_ner.main, ["--model-name-or-path", model, "--data-dir", conll_dir,
                                        "--output-dir", output, *NO_DROPOUT[model], *FAST, *flag]) == 0
        runs[name] = (final_metrics(output), list(shapes))
    dynamic_lengths = {shape[1] for shape in runs["dynamic"][1]}
    assert dynamic_lengths and max(dynamic_lengths) < MAX_LENGTH
    assert runs["padded"][1] and {shape[1] for shape in runs["padded"][1]} == {MAX_LENGTH}
    assert_same_numbers(runs["padded"][0], runs["dynamic"][0])
    # --return_entity_level_metrics: bizoo's scores per entity type, there with or without it
    assert set(runs["padded"][0]["per_type"]) == {"PER", "LOC"}


def test_run_ner_task_name_pos_reports_per_tag_scores(conll_dir, tmp_path) -> None:
    """run_ner.py's ``--task_name pos --return_entity_level_metrics``: a pos run, its scores per tag reported, for
    the part-of-speech tags (the fixture's CoNLL-2003 files: word POS chunk NER, every POS NNP), not the entities."""
    output = tmp_path / "pos"
    assert call(finetune_ner.main, ["--model-name-or-path", "lion", "--data-dir", conll_dir, "--output-dir", output,
                                    *TINY, *FAST, "--task_name", "pos", "--return_entity_level_metrics"]) == 0
    results = json.loads((output / "eval_results.json").read_text(encoding="utf-8"))
    assert results["tagging_task"] == "pos"
    assert "accuracy" in results["metrics"] and set(results["metrics"]["per_tag"]) == {"NNP"}
    assert results["metrics"]["per_tag"]


# ------------------------------------------------------------------------- pretrain --line_by_line, end to end

PRETRAIN_LENGTH = 16
LONG_LINE = " ".join(["castle sword crown"] * 12)  # far more than PRETRAIN_LENGTH tokens: cut
PRETRAIN_FAST = ["--max-steps", "2", "--batch-size", "4", "--max-length", str(PRETRAIN_LENGTH), "--vocab-size", "120",
                 "--logging-steps", "1", "--seed", "3", "--model-config", *TINY[1:], "hidden_dropout_prob=0"]


@pytest.fixture
def line_files(tmp_path, synthetic):
    import random

    rng = random.Random(5)
    train = [synthetic.sentence(rng) for _ in range(30)] + [LONG_LINE] + [synthetic.sentence(rng) for _ in range(9)]
    held_out = [synthetic.sentence(rng) for _ in range(7)]
    (tmp_path / "train.txt").write_text("\n".join(train[:20] + ["", "   "] + train[20:]) + "\n", encoding="utf-8")
    (tmp_path / "dev.txt").write_text("\n\n".join(held_out) + "\n", encoding="utf-8")
    return tmp_path / "train.txt", train, tmp_path / "dev.txt", held_out


def pretrain_run(monkeypatch, train_file, eval_file, output, *flags) -> dict:
    """Run pretrain; the blocks it built, the held-out result it computed, and its training losses."""
    seen = {}

    def build_blocks(*args, **kwargs):
        seen["blocks"] = original_blocks(*args, **kwargs)
        return seen["blocks"]

    def evaluate_model(*args, **kwargs):
        seen["evaluation"] = original_evaluate(*args, **kwargs)
        return seen["evaluation"]

    original_blocks, original_evaluate = pretrain.build_blocks, pretrain.evaluate_model
    monkeypatch.setattr(pretrain, "build_blocks", build_blocks)
    monkeypatch.setattr(pretrain, "evaluate_model", evaluate_model)
    assert call(pretrain.main, ["--train_file", train_file, "--validation_file", eval_file, "--output-dir", output,
                                *PRETRAIN_FAST, *flags]) == 0
    monkeypatch.setattr(pretrain, "build_blocks", original_blocks)
    monkeypatch.setattr(pretrain, "evaluate_model", original_evaluate)
    log = json.loads((output / "training_log.json").read_text(encoding="utf-8"))
    seen["losses"] = [entry["loss"] for entry in log if "loss" in entry]
    return seen


def test_line_by_line_makes_one_example_per_line_cut_to_max_length(line_files, tmp_path, monkeypatch) -> None:
    train_file, train, eval_file, held_out = line_files
    output = tmp_path / "lines"
    blocks = pretrain_run(monkeypatch, train_file, eval_file, output, "--line_by_line")["blocks"]
    tokenizer = transformers.AutoTokenizer.from_pretrained(output)

    def expected(lines):
        return [[tokenizer.cls_token_id, *tokenizer(line, add_special_tokens=False)["input_ids"][:PRETRAIN_LENGTH - 2],
                 tokenizer.sep_token_id] for line in lines]

    assert blocks.train_ids == expected(train)  # a line each, blank ones skipped, in order
    assert blocks.held_out_ids == expected(held_out)  # the held-out text line by line too
    assert len(blocks.train_ids[train.index(LONG_LINE)]) == PRETRAIN_LENGTH  # the long line cut, not split
    assert all(len(ids) <= PRETRAIN_LENGTH for ids in blocks.train_ids + blocks.held_out_ids)

    packed = pretrain_run(monkeypatch, train_file, eval_file, tmp_path / "packed")["blocks"]
    assert len(packed.train_ids) != len(train)  # without it: blocks packed across the lines of the file


def test_pretrain_pad_to_max_length_pads_every_batch_and_scores_the_same(line_files, tmp_path, monkeypatch) -> None:
    train_file, _, eval_file, _ = line_files
    shapes = recording(monkeypatch, "DataCollatorForTokenClassification")
    runs = {}
    for name, flags in (("dynamic", ["--line_by_line"]), ("padded", ["--line_by_line", "--pad_to_max_length"])):
        shapes.clear()
        runs[name] = (pretrain_run(monkeypatch, train_file, eval_file, tmp_path / name, *flags), list(shapes))
    assert runs["dynamic"][1] and max(shape[1] for shape in runs["dynamic"][1]) < PRETRAIN_LENGTH
    assert runs["padded"][1] and {shape[1] for shape in runs["padded"][1]} == {PRETRAIN_LENGTH}
    padded, dynamic = runs["padded"][0], runs["dynamic"][0]
    assert padded["evaluation"].accuracy == pytest.approx(dynamic["evaluation"].accuracy, abs=1e-5)
    assert padded["evaluation"].eval_loss == pytest.approx(dynamic["evaluation"].eval_loss, abs=1e-5)
    assert padded["losses"] == pytest.approx(dynamic["losses"], abs=1e-5) and len(padded["losses"]) == 2


@pytest.mark.parametrize("argv, message", [
    (["--line_by_line", "--stream", "--max-steps", "2"], "--line-by-line applies to subword models"),
    (["--pad_to_max_length", "--model", "elmo"], "--pad-to-max-length applies to subword models"),
])
def test_line_by_line_and_padding_are_refused_where_they_do_not_apply(argv, message, line_files, tmp_path,
                                                                        capsys) -> None:
    train_file, _, eval_file, _ = line_files
    output = tmp_path / "out"
    assert call(pretrain.main, ["--text", train_file, "--eval-text", eval_file, "--output-dir", output, *argv]) == 2
    assert message in capsys.readouterr().err
    assert not output.exists()


def test_the_same_spelling_given_again_overrides_as_argparse_does():
    """A setting appended to a command line in the same spelling wins, as for every other option (only the other
    spelling at another value is a contradiction)."""
    parser = argparse.ArgumentParser()
    pretrain.add_arguments(parser)
    args = parser.parse_args(["--output-dir", "out", "--mlm-probability", "0.15", "--mlm-probability", "0.3"])
    assert args.mlm_probability == 0.3
