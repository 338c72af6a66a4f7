"""Safety: nothing we load can run code, damaged files are clear errors, and an interrupted write loses nothing.

* The package's own source never deserialises with pickle: no ``pickle``/``marshal``/``dill`` loads, no ``eval`` or
  ``exec``, ``torch.load`` only with ``weights_only=True`` (checked on the syntax tree of every module).
* A checkpoint folder whose weights are a pickle that would run code when unpickled is refused by
  ``from_pretrained`` (transformers reads ``.bin`` files with ``weights_only=True``) and the code does not run.
* Truncated, emptied or overwritten safetensors files and a broken config.json are errors that name the file.
* A truncated bilm-tf HDF5 file is a ``bizoo convert-elmo`` usage error (exit 2), nothing written.
* Output folders (``scripts/lib/output_folders.py``): ``staged_output_dir`` (export, converters, train-tokenizer) and
  ``move_into`` (the final save of pretrain and the fine-tuning commands) are interrupted at every step — by an
  exception and by SIGKILL of a child process — and the folder is afterwards exactly as before the write
  (``recover_interrupted`` runs at the start of the next command given that folder).
(The export's own refusals and its "only our code" file list: tests/scripts/test_export.py; the converters'
damaged inputs: tests/scripts/test_convert_elmo.py and test_convert_bigs.py.)
"""

from __future__ import annotations

import ast
import json
import os
import pickle
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from transformers import AutoModel

import bizoo
from bizoo.scripts.lib import output_folders
from bizoo.scripts.lib.command import CommandError
from bizoo.scripts.lib.output_folders import (
    REPLACED_DIR,
    atomic_write_text,
    check_output_dir,
    clear_previous_run,
    move_into,
    recover_interrupted,
    staged_output_dir,
    staging_dir,
)

PACKAGE_ROOT = Path(bizoo.__file__).resolve().parent
SOURCE_DIRS = ("configuration", "modeling", "kernels", "scripts")


# ----------------------------------------------------------------------------------------------------------------
# No code runs on load
# ----------------------------------------------------------------------------------------------------------------


def _package_modules() -> list[Path]:
    files = [PACKAGE_ROOT / "__init__.py"]
    for folder in SOURCE_DIRS:
        files += sorted((PACKAGE_ROOT / folder).rglob("*.py"))
    return files


def unsafe_calls(source: str) -> list[str]:
    """Calls in ``source`` that can run code from data: pickle-family loads, eval/exec, torch.load without
    ``weights_only=True``, numpy loads with ``allow_pickle=True``, yaml.load without a safe loader."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) else [])
            if any(n and n.split(".")[0] in ("pickle", "cPickle", "dill", "marshal", "shelve") for n in names):
                found.append(f"line {node.lineno}: imports {', '.join(n for n in names if n)}")
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
        owner = func.value.id if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) else ""
        keywords = {k.arg: k.value for k in node.keywords}
        if name in ("eval", "exec") and (isinstance(func, ast.Name) or owner == "builtins"):  # not nn.Module.eval()
            found.append(f"line {node.lineno}: {name}()")
        if owner == "torch" and name == "load":
            flag = keywords.get("weights_only")
            if not (isinstance(flag, ast.Constant) and flag.value is True):
                found.append(f"line {node.lineno}: torch.load without weights_only=True")
        if owner in ("np", "numpy") and name == "load":
            flag = keywords.get("allow_pickle")
            if isinstance(flag, ast.Constant) and flag.value is True:
                found.append(f"line {node.lineno}: numpy.load with allow_pickle=True")
        if owner == "yaml" and name in ("load", "unsafe_load", "full_load"):
            loader = keywords.get("Loader")
            if name != "load" or not (isinstance(loader, ast.Attribute) and loader.attr.startswith("Safe")):
                found.append(f"line {node.lineno}: yaml.{name} without SafeLoader")
    return found


def test_the_checker_finds_what_it_looks_for():
    bad = textwrap.dedent("""
        import pickle
        torch.load(f)
        torch.load(f, weights_only=False)
        np.load(f, allow_pickle=True)
        yaml.load(text)
        eval("1")
        builtins.exec("x = 1")
    """)
    found = unsafe_calls(bad)
    assert [int(re.match(r"line (\d+):", f).group(1)) for f in found] == [2, 3, 4, 5, 6, 7, 8], found
    good = "torch.load(f, weights_only=True)\nnp.load(f)\nyaml.safe_load(t)\nmodel.eval()\nbuild(n).to(d).eval()\n"
    assert unsafe_calls(good) == []


def test_no_module_of_the_package_deserialises_code():
    files = _package_modules()
    assert len(files) > 30  # the walk found the package
    problems = {str(f.relative_to(PACKAGE_ROOT)): unsafe_calls(f.read_text(encoding="utf-8")) for f in files}
    assert {k: v for k, v in problems.items() if v} == {}


class _RunsCodeWhenUnpickled:
    """A pickle payload: unpickling it calls ``open(marker, "w")``, i.e. it would create the marker file."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture
def saved(tmp_path, make_config) -> Path:
    folder = tmp_path / "ckpt"
    AutoModel.from_config(make_config(("lion", "s"), vocab_size=60)).save_pretrained(folder)
    return folder


def test_a_pickled_checkpoint_cannot_run_code(saved, tmp_path):
    """Pickle protocol 2 (torch.save's own) so that the weights-only unpickler reads the file up to the payload's
    global, ``open`` (pickled as ``io.open``), and refuses that, not an opcode of a newer protocol."""
    marker = tmp_path / "the-payload-ran"
    (saved / "model.safetensors").unlink()
    state = {"embeddings.word_embeddings.weight": _RunsCodeWhenUnpickled(marker)}
    with open(saved / "pytorch_model.bin", "wb") as f:
        pickle.dump(state, f, protocol=2)
    refused = r"(?s)^Weights only load failed\..*Unsupported global: GLOBAL io\.open was not an allowed global"
    with pytest.raises(pickle.UnpicklingError, match=refused):
        AutoModel.from_pretrained(saved)
    assert not marker.exists(), "unpickling ran the payload"


@pytest.mark.parametrize(
    "damage",
    ["truncated to half", "header only", "empty", "overwritten with text"],
)
def test_a_damaged_safetensors_file_is_an_error_naming_it(saved, damage):
    weights = saved / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(
        {
            "truncated to half": data[: len(data) // 2],
            "header only": data[:8],
            "empty": b"",
            "overwritten with text": b"this is not a safetensors file\n" * 4,
        }[damage]
    )
    damaged = (r"^LionModel\.from_pretrained\('.*ckpt'\): the weights file \(model\.safetensors or one of its shards\) "
               r"is truncated or corrupted \(Error while deserializing header")
    with pytest.raises(OSError, match=damaged):
        AutoModel.from_pretrained(saved)


def test_a_broken_config_is_an_error_naming_it(saved):
    (saved / "config.json").write_text('{"model_type": "lion", "hidden_si')
    with pytest.raises(OSError, match=r"config file at '.*ckpt/config\.json' is not a valid JSON file"):
        AutoModel.from_pretrained(saved)


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.95])
def test_a_truncated_hdf5_file_is_a_usage_error(tmp_path, capsys, fraction):
    """A bilm-tf checkpoint (written with bilm-tf's dataset names, random weights) cut short: a usage error naming
    the file, nothing written."""
    pytest.importorskip("h5py")
    from bizoo.scripts.cli import main as cli_main
    from tests.modeling.test_elmo_semantics import VARIANTS, write_bilm_files

    source = tmp_path / "bilm"
    source.mkdir()
    write_bilm_files(source, VARIANTS["original-like"])  # source/options.json, source/w.hdf5
    data = (source / "w.hdf5").read_bytes()
    weights = tmp_path / "weights.hdf5"
    weights.write_bytes(data[: int(len(data) * fraction)])
    out = tmp_path / "out"
    code = cli_main(["convert-elmo", "--options", str(source / "options.json"), "--weights", str(weights),
                     "--output-dir", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "bizoo convert-elmo: error:" in err and "weights.hdf5" in err, err
    assert "Traceback" not in err
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]


# ----------------------------------------------------------------------------------------------------------------
# Nothing lost: interrupted writes
# ----------------------------------------------------------------------------------------------------------------


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path -> bytes)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def make_folder(path: Path, files: dict[str, str]) -> dict[str, bytes]:
    path.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    return snapshot(path)


OLD = {"config.json": '{"old": 1}', "model.safetensors": "old weights", "checkpoint-2/state.txt": "kept",
       "training_log.json": "[old]"}
NEW = {"config.json": '{"new": 1}', "model.safetensors": "new weights", "model-extra.txt": "a new file",
       "training_log.json": "[new]"}


class Interrupt(BaseException):
    """Stands for KeyboardInterrupt / a signal handler raising at an arbitrary point."""


def _failing_replace(after: int):
    calls = {"n": 0}
    real = os.replace

    def replace(src, dst):  # one interruption, at the rename numbered ``after``; the clean-up's renames then work
        calls["n"] += 1
        if calls["n"] - 1 == after:
            raise Interrupt(f"interrupted at rename {after}")
        return real(src, dst)

    return replace, calls


def _count_renames(monkeypatch, body) -> int:
    replace, calls = _failing_replace(10**9)
    monkeypatch.setattr(output_folders.os, "replace", replace)
    body()
    monkeypatch.undo()
    return calls["n"]


def test_move_into_interrupted_at_every_rename_leaves_the_old_files(tmp_path, monkeypatch):
    def fresh():
        dest = tmp_path / "run"
        if dest.exists():
            shutil.rmtree(dest)
        before = make_folder(dest, OLD)
        staging = staging_dir(dest, "final")
        make_folder(staging, NEW)
        return dest, staging, before

    dest, staging, _ = fresh()
    total = _count_renames(monkeypatch, lambda: move_into(staging, dest))
    assert total >= len(NEW) + 3  # each replaced file aside, each new file in, the journal files
    expected_after = {**{k: v.encode() for k, v in OLD.items()}, **{k: v.encode() for k, v in NEW.items()}}
    assert snapshot(dest) == expected_after
    for step in range(total):
        dest, staging, before = fresh()
        replace, _ = _failing_replace(step)
        monkeypatch.setattr(output_folders.os, "replace", replace)
        with pytest.raises(Interrupt):
            move_into(staging, dest)
        monkeypatch.undo()
        assert snapshot(dest) == before, f"interrupted at rename {step}"
        assert not (dest / REPLACED_DIR).exists()


def test_move_into_killed_is_undone_by_the_next_command(tmp_path):
    """SIGKILL (nothing runs on the way out): the folder is left without config.json — so it cannot load a mix of
    old and new weights — until ``recover_interrupted`` (which ``check_output_dir`` and ``move_into`` call) puts
    the old files back."""
    dest = tmp_path / "run"
    before = make_folder(dest, OLD)
    script = textwrap.dedent(f"""
        import os, signal
        from pathlib import Path
        from bizoo.scripts.lib import output_folders
        real = os.replace
        def replace(src, dst):
            if str(dst).endswith("model.safetensors") and "{REPLACED_DIR}" not in str(dst):
                os.kill(os.getpid(), signal.SIGKILL)  # the new weights are about to move in
            return real(src, dst)
        staging = output_folders.staging_dir(Path({str(dest)!r}), "final")
        for name, text in {NEW!r}.items():
            (staging / name).write_text(text)
        output_folders.os.replace = replace
        output_folders.move_into(staging, Path({str(dest)!r}))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr
    assert not (dest / "config.json").exists()  # half done: not loadable
    assert (dest / REPLACED_DIR).is_dir()
    output_folders.check_output_dir(dest, resume=True)  # what the next command does first
    assert snapshot(dest) == before
    recover_interrupted(dest)  # and the staging sibling of the dead process is gone
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".run.")]


def test_staged_output_dir_interrupted_at_every_step_keeps_the_old_folder(tmp_path, monkeypatch):
    out = tmp_path / "export"
    make_folder(out, OLD)

    def write():
        with staged_output_dir(out, overwrite=True) as staging:
            make_folder(staging, NEW)

    total = _count_renames(monkeypatch, write)
    assert total == 2 and snapshot(out) == {k: v.encode() for k, v in NEW.items()}
    for step in range(total):
        shutil.rmtree(out)
        before = make_folder(out, OLD)
        replace, _ = _failing_replace(step)
        monkeypatch.setattr(output_folders.os, "replace", replace)
        with pytest.raises(Interrupt):
            write()
        monkeypatch.undo()
        assert snapshot(out) == before, f"interrupted at rename {step}"
        assert [p.name for p in tmp_path.iterdir()] == ["export"]  # no staging or retired sibling left


@pytest.mark.parametrize("when", ["while writing", "between the renames"])
def test_export_killed_keeps_the_old_folder(tmp_path, when):
    """A child process runs ``staged_output_dir`` over an existing folder and is killed with SIGKILL part way;
    the old folder is intact (at once, or after the next command's recovery) and the dead staging is removed."""
    out = tmp_path / "export"
    before = make_folder(out, OLD)
    kill = "os.kill(os.getpid(), signal.SIGKILL)"
    script = textwrap.dedent(f"""
        import os, signal
        from pathlib import Path
        from bizoo.scripts.lib import output_folders
        real = os.replace
        def replace(src, dst):
            if {when == "between the renames"!r} and Path(dst).name == "old":
                real(src, dst)
                {kill}
            return real(src, dst)
        output_folders.os.replace = replace
        with output_folders.staged_output_dir({str(out)!r}, overwrite=True) as staging:
            (staging / "config.json").write_text("new")
            if {when == "while writing"!r}:
                {kill}
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr
    if when == "between the renames":
        assert not out.exists()  # moved aside, the new one not yet in
    output_folders.check_output_dir(out, overwrite=True)  # the next command's first step
    assert snapshot(out) == before
    assert [p.name for p in tmp_path.iterdir()] == ["export"]


def test_a_live_process_staging_folder_is_left_alone(tmp_path):
    out = tmp_path / "export"
    mine = staging_dir(out)
    recover_interrupted(out)
    assert mine.is_dir()  # this process is alive: its staging folder is in use


def test_atomic_write_text_replaces_or_keeps(tmp_path, monkeypatch):
    path = tmp_path / "bizoo_results.json"
    path.write_text(json.dumps({"old": True}))
    monkeypatch.setattr(output_folders.os, "replace", _failing_replace(0)[0])
    with pytest.raises(Interrupt):
        atomic_write_text(path, json.dumps({"new": True}))
    monkeypatch.undo()
    assert json.loads(path.read_text()) == {"old": True}
    assert [p.name for p in tmp_path.iterdir()] == ["bizoo_results.json"]  # no temporary file left
    atomic_write_text(path, json.dumps({"new": True}))
    assert json.loads(path.read_text()) == {"new": True}
    mask = os.umask(0o022)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask  # as a plain write would leave it
    assert staging_dir(tmp_path / "folder").stat().st_mode & 0o777 == 0o777 & ~mask


def test_an_output_folder_that_cannot_be_made_is_refused_before_any_work(tmp_path):
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(CommandError, match=r"cannot be made: .*a-file' is a file, not a folder"):
        check_output_dir(tmp_path / "a-file" / "run")
    locked = tmp_path / "locked"
    locked.mkdir()
    os.chmod(locked, 0o500)
    try:
        if os.geteuid() == 0:  # root writes anywhere a mode allows nothing: a file system that refuses instead
            import unittest.mock

            with unittest.mock.patch.object(output_folders.tempfile, "mkdtemp",
                                            side_effect=PermissionError(13, "Permission denied")):
                with pytest.raises(CommandError, match=r"cannot be written: .*locked' refuses new folders"):
                    check_output_dir(locked / "run")
        else:
            with pytest.raises(CommandError, match=r"cannot be written: .*locked' refuses new folders"):
                check_output_dir(locked / "run")
    finally:
        os.chmod(locked, 0o700)
    assert check_output_dir(tmp_path / "new" / "run") == tmp_path / "new" / "run"  # makable: nothing made yet
    assert not (tmp_path / "new").exists() and not list(tmp_path.glob(".bizoo-probe-*"))


def test_clear_previous_run_removes_a_runs_files_only(tmp_path):
    folder = tmp_path / "run"
    for name in ("checkpoint-4/model.safetensors", "runs/events", "model-00001-of-00002.safetensors",
                 "bizoo_results.json", "README.md", "notes.txt", "data/train.csv",
                 "predictions.txt", "predict_results.json", "predict_results_mnli-mm.txt"):  # --do_predict's files
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text("x")
    with pytest.raises(CommandError, match="an input of this run"):
        clear_previous_run(folder, [folder / "checkpoint-4"])
    with pytest.raises(CommandError, match="an input of this run"):
        check_output_dir(folder, overwrite=True, inputs=[folder / "data" / "train.csv"])  # a whole replacement
    assert (folder / "checkpoint-4").is_dir()  # refused before anything was removed
    clear_previous_run(folder, [folder / "data" / "train.csv"])  # the data is not a run's: it stays
    assert sorted(p.name for p in folder.iterdir()) == ["data", "notes.txt"]
