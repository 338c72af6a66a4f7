"""What the command line writes and where (scripts/lib/command.py): status lines through logging at the run's level
(--log_level, TRANSFORMERS_VERBOSITY, the replica rule of distributed runs), transformers' and datasets' loggers at a
level given, the results on stdout at every level, errors as before; and no print left in scripts/."""

import argparse
import ast
import contextlib
import io
import logging
import sys
from pathlib import Path

import datasets
import pytest
import transformers

from bizoo.scripts import cli, export, pretrain
from bizoo.scripts.bench import gpu_check
from bizoo.scripts.lib import command

REPO_ROOT = Path(__file__).resolve().parents[2]
TINY = ["hidden_size=32", "num_hidden_layers=1", "num_attention_heads=4", "intermediate_size=64"]
STATUS = "working on it"
RESULT = "the result: 42"


@pytest.fixture(autouse=True)
def no_level_from_outside(monkeypatch):
    """Each test sets the level it means: none from the environment, one process."""
    for name in ("TRANSFORMERS_VERBOSITY", "LOCAL_RANK", "RANK"):
        monkeypatch.delenv(name, raising=False)


def fake_run(args: argparse.Namespace) -> int:
    """A command body: a status line, a warning, and its result."""
    log = logging.getLogger("bizoo.scripts.fake")
    log.info(STATUS)
    log.warning("careful")
    command.report(RESULT)
    return 0


def run_fake(argv: list[str], capsys, training: bool = False) -> tuple[int, str, str]:
    """Parse ``argv`` as a command with our --log-level (or, ``training``, as pretrain's TrainingArguments fields) and
    run ``fake_run`` as ``bizoo <command>`` runs a command."""
    parser = argparse.ArgumentParser(prog="bizoo fake")
    command.add_command_arguments(parser, pretrain.add_arguments if training else (lambda p: None))
    argv = [*argv, "--output-dir", "unused"] if training else argv
    code = command.run_parsed("bizoo fake", fake_run, parser.parse_args(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("training", [False, True], ids=["own-option", "training-arguments"])
def test_log_level_warning_silences_status_not_results_or_warnings(capsys, training):
    code, out, err = run_fake([], capsys, training)
    assert code == 0
    assert out == f"{STATUS}\n{RESULT}\n"  # info: plain text on stdout, no prefix
    assert err == "bizoo fake: warning: careful\n"
    for spelling in ("--log_level", "--log-level"):
        code, out, err = run_fake([spelling, "warning"], capsys, training)
        assert code == 0 and out == f"{RESULT}\n" and err == "bizoo fake: warning: careful\n"
    code, out, err = run_fake(["--log_level", "error"], capsys, training)
    assert out == f"{RESULT}\n" and err == ""  # the results are printed at every level
    code, out, err = run_fake(["--log_level", "passive"], capsys, training)
    assert out == f"{STATUS}\n{RESULT}\n"  # passive: as if none were given


def test_transformers_verbosity_is_honoured_and_the_command_line_wins(capsys, monkeypatch):
    monkeypatch.setenv("TRANSFORMERS_VERBOSITY", "error")
    assert run_fake([], capsys)[1:] == (f"{RESULT}\n", "")
    assert run_fake(["--log-level", "info"], capsys)[1] == f"{STATUS}\n{RESULT}\n"
    monkeypatch.setenv("TRANSFORMERS_VERBOSITY", "info")
    assert run_fake([], capsys)[1] == f"{STATUS}\n{RESULT}\n"
    monkeypatch.setenv("TRANSFORMERS_VERBOSITY", "loud")
    code, out, err = run_fake([], capsys)
    assert code == 2 and out == ""
    assert err.startswith("bizoo fake: error: the environment variable TRANSFORMERS_VERBOSITY 'loud' is not a log "
                          "level; one of: detail, debug, info")


def test_replicas_of_a_distributed_run_log_at_the_replica_level(capsys, monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("RANK", "3")
    assert run_fake([], capsys, training=True)[1] == f"{RESULT}\n"  # --log_level_replica: warning by default
    assert run_fake(["--log_level", "info"], capsys, training=True)[1] == f"{RESULT}\n"  # the main process's level
    assert run_fake(["--log_level_replica", "info"], capsys, training=True)[1] == f"{STATUS}\n{RESULT}\n"
    monkeypatch.setenv("LOCAL_RANK", "0")  # the first process of the second machine: a main process of its node
    assert run_fake([], capsys, training=True)[1] == f"{STATUS}\n{RESULT}\n"
    assert run_fake(["--log_on_each_node", "false"], capsys, training=True)[1] == f"{RESULT}\n"  # RANK 3 is not 0


def test_the_levels_are_those_of_training_arguments():
    from transformers.training_args import trainer_log_levels

    assert [*command.LOG_LEVELS, command.PASSIVE] == list(trainer_log_levels)
    assert {name: level for name, level in trainer_log_levels.items() if level >= 0} == command.LOG_LEVELS


def test_the_libraries_follow_a_level_given_and_are_restored(capsys, monkeypatch):
    """transformers' and datasets' loggers at the level given (command line or TRANSFORMERS_VERBOSITY), left at their
    own without one, and as they were after the run; bizoo's handler gone after the run."""
    seen = []

    def record(args):
        seen.append((transformers.logging.get_verbosity(), datasets.logging.get_verbosity(),
                     logging.getLogger("bizoo").getEffectiveLevel()))
        return 0

    monkeypatch.setattr(export, "run", record)
    before = transformers.logging.get_verbosity(), datasets.logging.get_verbosity()
    handlers = list(logging.getLogger("bizoo").handlers)
    assert cli.main(["export", "ckpt", "out", "--log-level", "error"]) == 0
    assert command.command_main(export.__name__, ["ckpt", "out", "--log-level", "debug"]) == 0
    assert cli.main(["export", "ckpt", "out"]) == 0
    monkeypatch.setenv("TRANSFORMERS_VERBOSITY", "critical")
    assert cli.main(["export", "ckpt", "out"]) == 0
    assert seen == [(logging.ERROR, logging.ERROR, logging.ERROR), (logging.DEBUG, logging.DEBUG, logging.DEBUG),
                    (*before, logging.INFO), (logging.CRITICAL, logging.CRITICAL, logging.CRITICAL)]
    assert (transformers.logging.get_verbosity(), datasets.logging.get_verbosity()) == before
    assert logging.getLogger("bizoo").handlers == handlers


def test_progress_bars_are_off_when_only_errors_are_logged(monkeypatch):
    """As TrainingArguments' own default: no Trainer progress bars above warning; else on a terminal only."""
    from bizoo.scripts.lib.training import bizoo_defaults

    args = argparse.Namespace(seed=1, batch_size=8)
    monkeypatch.setattr(sys, "stderr", type("Terminal", (io.StringIO,), {"isatty": lambda self: True})())
    for level, disabled in ((logging.INFO, False), (logging.WARNING, False), (logging.ERROR, True)):
        with command.command_logging("bizoo fake", level, libraries=False):
            assert bizoo_defaults(args)["disable_tqdm"] is disabled, level
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # not a terminal: no bars at any level
    assert bizoo_defaults(args)["disable_tqdm"] is True


def test_status_goes_to_the_stdout_of_the_moment(capsys):
    """The handler looks the stream up at each message: one redirected inside the run gets the lines."""
    redirected = io.StringIO()

    def run(args):
        with contextlib.redirect_stdout(redirected):
            logging.getLogger("bizoo.scripts.fake").info(STATUS)
        return 0

    assert command.run_parsed("bizoo fake", run, argparse.Namespace()) == 0
    assert redirected.getvalue() == f"{STATUS}\n" and capsys.readouterr().out == ""


def test_a_command_run_with_python_dash_m_logs_under_bizoo(monkeypatch):
    """``python -m bizoo.scripts.<command>`` runs the module as __main__: command_main runs the module under its
    package name, whose logger is under bizoo's (a logger named __main__ would be silent)."""
    fake_main = type(sys)("__main__")
    fake_main.__spec__ = export.__spec__
    monkeypatch.setitem(sys.modules, "__main__", fake_main)
    assert command._command_module("__main__") is export


def test_a_commands_status_and_results_reach_capsys(tmp_path, monkeypatch, capsys):
    """A developer tool run as its users run it: its status lines at info, its result at every level."""
    script = "print('child output')"

    def plan(out, quick, steps):
        return [{"name": "stand-in", "step": "lion-launches", "key": "stand_in", "needs_cuda": False,
                 "command": [sys.executable, "-c", script], "log": out / "stand_in.txt", "timeout": 10, "tail": 5}]

    monkeypatch.setattr(gpu_check, "plan", plan)
    out = tmp_path / "check"
    argv = [str(out), "--steps", "lion-launches", "--budget", "100"]
    assert gpu_check.main(argv) == 0
    printed = capsys.readouterr().out
    assert "[gpu_check] stand-in (limit " in printed and "[gpu_check] stand-in: ok" in printed
    assert f"[gpu_check] summary: {out / 'summary.md'}" in printed
    assert gpu_check.main([*argv, "--log-level", "warning"]) == 0
    printed = capsys.readouterr().out
    assert "[gpu_check] stand-in" not in printed and f"[gpu_check] summary: {out / 'summary.md'}" in printed


@pytest.mark.parametrize("level", ["info", "warning"])
def test_pretrain_logs_status_at_its_level_and_always_its_results(tmp_path, sentences, monkeypatch, capsys, level):
    """A training run end to end: --log_level (TrainingArguments' field) decides bizoo's status lines and the level
    transformers and datasets log at while the Trainer trains; the results are printed either way."""
    seen = []
    train = transformers.Trainer.train

    def recording_train(self, *args, **kwargs):
        seen.append((transformers.logging.get_verbosity(), datasets.logging.get_verbosity()))
        return train(self, *args, **kwargs)

    monkeypatch.setattr(transformers.Trainer, "train", recording_train)
    text = tmp_path / "text.txt"
    text.write_text("\n".join(sentences(60, seed=1)) + "\n")
    code = pretrain.main(
        ["--text", str(text), "--eval-text", str(text), "--output-dir", str(tmp_path / "run"), "--max-steps", "1",
         "--batch-size", "4", "--max-length", "32", "--vocab-size", "120", "--model-config", *TINY,
         "--log_level", level]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "held-out masked-token accuracy" in printed and f"saved to {tmp_path / 'run'}" in printed
    status = ["bizoo pretrain: lion", "held-out blocks of <= 32 tokens", "M parameters"]
    assert [line in printed for line in status] == [level == "info"] * len(status), printed
    assert seen == [(logging.getLevelName(level.upper()),) * 2]


# ---------------------------------------------------------------------------------------------- no print in scripts/

#: The one module of scripts/ that writes to the terminal itself: report, write_error and the log handler.
ALLOWED_WRITERS = {"scripts/lib/command.py"}


def output_violations(root: Path = REPO_ROOT) -> list[str]:
    """``path:line: what`` for every way around the rules of scripts/lib/command.py in scripts/: ``print`` (called or
    passed), a write to ``sys.stdout``/``sys.stderr``, ``file=sys.stdout/stderr``, logging through the root logger
    (``logging.info(...)``, ``logging.basicConfig``), and a module logger other than ``logging.getLogger(__name__)``."""
    found = []
    for path in sorted((root / "scripts").rglob("*.py")):
        where = path.relative_to(root).as_posix()
        if where in ALLOWED_WRITERS:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            problem = None
            if isinstance(node, ast.Name) and node.id == "print":
                problem = "print"
            elif (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
                  and isinstance(node.value.value, ast.Name) and node.value.value.id == "sys"
                  and node.value.attr in ("stdout", "stderr") and node.attr in ("write", "writelines")):
                problem = f"sys.{node.value.attr}.{node.attr}"
            elif isinstance(node, ast.keyword) and node.arg == "file" and ast.unparse(node.value) in (
                    "sys.stdout", "sys.stderr"):
                problem = f"file={ast.unparse(node.value)}"
            elif (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "logging"
                  and node.attr in ("basicConfig", "debug", "info", "warning", "error", "critical", "exception")):
                problem = f"logging.{node.attr}: the root logger"
            elif (isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "logger" for t in node.targets)
                  and ast.unparse(node.value) != "logging.getLogger(__name__)"):
                problem = f"logger = {ast.unparse(node.value)}: not logging.getLogger(__name__)"
            if problem is not None:
                found.append(f"{where}:{node.lineno}: {problem}")
    return found


def test_no_print_in_scripts_outside_lib_command():
    """Status through logging, results through report (scripts/lib/command.py), nothing printed past them."""
    assert output_violations() == []


PLANTED = {
    "scripts/lib/command.py": "import sys\n\n\ndef report(text):\n    print(text)\n    sys.stdout.write(text)\n",
    "scripts/export.py": (
        "import logging\nimport sys\n\nlogger = logging.getLogger('export')\n\n\ndef run(args):\n"
        "    print('saved')\n    sys.stderr.write('oops')\n    return 0\n"
    ),
    "scripts/lib/data.py": "import logging\nimport sys\n\nshow = print\nlogging.basicConfig()\nlogging.info('x')\n",
    "scripts/bench/lion.py": (
        "import sys\n\n\ndef table(rows):\n    for row in rows:\n        print(row, file=sys.stderr)\n"
    ),
    "scripts/bench/harness.py": "import logging\n\nlogger = logging.getLogger(__name__)\nlogger.info('fine')\n",
}


def test_the_output_rules_catch_planted_violations(tmp_path):
    for name, text in PLANTED.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    found = output_violations(tmp_path)
    assert sorted(found) == [
        "scripts/bench/lion.py:6: file=sys.stderr",
        "scripts/bench/lion.py:6: print",
        "scripts/export.py:4: logger = logging.getLogger('export'): not logging.getLogger(__name__)",
        "scripts/export.py:8: print",
        "scripts/export.py:9: sys.stderr.write",
        "scripts/lib/data.py:4: print",
        "scripts/lib/data.py:5: logging.basicConfig: the root logger",
        "scripts/lib/data.py:6: logging.info: the root logger",
    ], found
