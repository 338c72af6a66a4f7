"""Output folders written safely: a command's output is either all there or not there at all.

* ``check_output_dir``: refuse an output path that is a file, or a non-empty folder without --overwrite/--resume;
  first undo what a killed write left behind (``recover_interrupted``).
* ``clear_previous_run``: what --overwrite does: remove what a previous run wrote (``RUN_OUTPUTS``), never another
  file of the folder, never an input of this run, never the working folder.
* ``staged_output_dir``: write into a temporary sibling folder, rename it into place at the end; a failure leaves
  the old folder (or nothing) behind, never a half-written one.
* ``staged_update`` / ``move_into``: move a finished staging folder's files into an existing folder (which keeps its
  other files, e.g. checkpoints) as one journaled update that a killed process cannot leave half done.
* ``atomic_write_text``: one file, replaced whole.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import logging
import os
import shutil
import socket
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from .command import CommandError

logger = logging.getLogger(__name__)



#: Inside a folder being updated in place (``move_into``): the files the update replaces, kept until it is done.
REPLACED_DIR = ".bizoo-replaced"
#: In ``REPLACED_DIR``: the names the update moves in, written before the first of them is moved.
INCOMING_FILE = "incoming.json"
#: In ``REPLACED_DIR``: written once every replaced file is aside, before the first new file moves in.
MOVING_IN_FILE = "moving-in"


#: The files a saved tokenizer consists of, in the names transformers writes and reads (WordPiece, BPE,
#: SentencePiece vocabularies; chat templates): what a run's final save holds, what ``bizoo export`` copies and what
#: ``bizoo push`` replaces.
TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "vocab.txt",
    "vocab.json", "merges.txt", "tokenizer.model", "spiece.model", "sentencepiece.bpe.model", "chat_template.jinja",
    "chat_template.json",
)

#: What a training command and transformers' Trainer write into an output folder (glob patterns): checkpoints and
#: their logs, the final save (weights, config, tokenizer), bizoo's records and figures. --overwrite removes these,
#: and only these: a file of another name in the folder is the user's.
RUN_OUTPUTS = (
    "checkpoint-*", "runs",
    "model.safetensors", "model-*-of-*.safetensors", "model.safetensors.index.json", "pytorch_model*.bin",
    "config.json", "generation_config.json",
    *TOKENIZER_FILES,
    "training_args.bin", "trainer_state.json", "all_results.json", "train_results.json", "eval_results.json",
    "training_log.json", "bizoo_results.json", "loss_curve.png", "README.md",
    "predict_results*.txt", "predict_results.json", "predictions.txt",  # --do_predict's
)


def input_paths(args) -> list[Path]:
    """The local paths a command reads: every existing path among its arguments' values (a str, or a list of them),
    --output-dir's excepted."""
    found = []
    for name, value in vars(args).items():
        if name == "output_dir":
            continue
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(item, (str, os.PathLike)) and str(item) and os.path.exists(item):
                found.append(Path(item))
    return found


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _check_overwrite(folder: Path, inputs: Iterable[str | os.PathLike], whole: bool) -> list[Path]:
    """What --overwrite will remove from the existing ``folder`` (everything when ``whole``, else ``RUN_OUTPUTS``'
    entries), checked first: ``CommandError`` if the folder is the working folder or holds it, or if an input of
    this run (``inputs``) lies among what would be removed (or is the folder itself): the run would delete what it
    reads, or the files of the folder a command was started in."""
    folder = folder.resolve()
    if _inside(Path.cwd().resolve(), folder):
        raise CommandError(f"--overwrite would clear {str(folder)!r}, which is (or holds) the working folder; give "
                           "the output a folder of its own")
    entries = [folder] if whole else sorted({entry for pattern in RUN_OUTPUTS for entry in folder.glob(pattern)})
    for source in inputs:
        path = Path(source).resolve()
        if path == folder or any(_inside(path, entry) for entry in entries):
            raise CommandError(
                f"--overwrite would delete {str(source)!r}, an input of this run, with the output folder's "
                f"{'content' if whole else 'previous run'} ({str(folder)!r}); choose another output folder (or copy "
                "the input elsewhere first)"
            )
    return entries


def clear_previous_run(folder: str | os.PathLike, inputs: Iterable[str | os.PathLike] = ()) -> None:
    """--overwrite for a command that trains in place: remove what a previous run left in ``folder``
    (``RUN_OUTPUTS``: its checkpoints, results and weights never mix with this run's), checked as
    ``check_output_dir`` checks; every other file stays, and is named."""
    folder = Path(folder)
    if not folder.is_dir():
        return
    entries = _check_overwrite(folder, inputs, whole=False)
    for entry in entries:
        with contextlib.suppress(FileNotFoundError):  # another process of a distributed run removed it first
            _remove(entry)
    kept = sorted(item.name for item in folder.iterdir())
    if entries:
        _note(f"--overwrite: removed the previous run's {len(entries)} entries from {str(folder)!r}"
              + (f"; kept {', '.join(kept[:5])}{' ...' if len(kept) > 5 else ''} (not a run's)" if kept else ""))


def check_output_dir(output_dir: str | os.PathLike, overwrite: bool = False, resume: bool | None = None,
                     inputs: Iterable[str | os.PathLike] = (), whole: bool = True) -> Path:
    """Refuse an output path that is a file or cannot be made, or a non-empty folder unless ``overwrite`` or
    ``resume`` (None: the command has no --resume, which the refusal then does not offer). With ``overwrite``,
    refuse before any work a folder whose replacement would take the working folder or an input of the run
    (``inputs``) with it: the whole folder (``whole``, a command that writes its output folder whole:
    ``staged_output_dir``) or a previous run's files (``clear_previous_run``, a command that trains in place).

    A write into this path that a killed process left unfinished is undone first (``recover_interrupted``)."""
    path = Path(output_dir)
    if path.exists() and not path.is_dir():
        raise CommandError(f"output folder {str(path)!r} is an existing file, not a folder")
    _check_creatable(path)
    recover_interrupted(path)
    if path.is_dir() and any(path.iterdir()):
        if overwrite:
            _check_overwrite(path, inputs, whole)
        elif not resume:
            offers = ("pass --overwrite to replace it" if resume is None else
                      "pass --overwrite to replace it, or --resume to continue the run in it")
            raise CommandError(f"output folder {str(path)!r} already exists and is not empty; choose another, {offers}")
    return path


def _check_creatable(path: Path) -> None:
    """``CommandError`` unless ``path`` is a folder or can be made one: its nearest existing ancestor is a folder this
    process may write into."""
    ancestor = path.absolute()
    while not ancestor.exists():
        ancestor = ancestor.parent
    if ancestor != path.absolute() and not ancestor.is_dir():
        raise CommandError(f"output folder {str(path)!r} cannot be made: {str(ancestor)!r} is a file, not a folder")
    try:  # a probe, not os.access: root passes every access check, and some file systems refuse anyway (/proc)
        os.rmdir(tempfile.mkdtemp(prefix=".bizoo-probe-", dir=ancestor))
    except OSError as err:
        raise CommandError(f"output folder {str(path)!r} cannot be written: {str(ancestor)!r} refuses new "
                           f"folders ({err.strerror or err})") from None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _host_id() -> str:
    """Eight hex digits naming this machine: a staging folder on a shared file system belongs to one host's process."""
    return hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]


def _owner_pid(sibling: Path) -> int | None:
    """The process id in a staging sibling's name ``.<name>.<kind>-<pid>.<host>-<random>`` when that process ran on
    this machine, else None (another machine's process id says nothing here)."""
    try:
        pid, host = sibling.name.rsplit("-", 2)[-2].split(".")
        return int(pid) if host == _host_id() else None
    except (IndexError, ValueError):
        return None


def _note(message: str) -> None:
    logger.warning(message)


def recover_interrupted(path: str | os.PathLike) -> None:
    """Undo what a killed ``staged_output_dir`` or ``move_into`` left at ``path``; nothing if nothing was left.

    * The old folder moved aside (``.<name>.old-<pid>.<host>-*/old``) but the new one not yet renamed in: the old one is
      renamed back. Once the new one is in place, a leftover ``.old-`` sibling is only deleted.
    * Staging siblings (``.<name>.tmp-<pid>.<host>-*``, ``.<name>.final-…``) of processes of this machine that no
      longer run are deleted: their content never became the folder.
    * An in-place update stopped half way (``<path>/.bizoo-replaced``): the files it had moved in are removed and
      the ones they replaced moved back, so the folder is as it was before the update.
    """
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        return
    for retired in sorted(parent.glob(f".{glob.escape(path.name)}.old-*")):
        if not path.exists() and (retired / "old").is_dir():
            os.replace(retired / "old", path)
            _note(f"restored {str(path)!r}, which an interrupted write had moved aside")
        shutil.rmtree(retired, ignore_errors=True)
    for kind in ("tmp", "final"):
        for staging in parent.glob(f".{glob.escape(path.name)}.{kind}-*"):
            pid = _owner_pid(staging)
            if pid is not None and pid != os.getpid() and not _pid_alive(pid):
                shutil.rmtree(staging, ignore_errors=True)
    replaced = path / REPLACED_DIR
    if replaced.is_dir():
        incoming = replaced / INCOMING_FILE
        names = json.loads(incoming.read_text(encoding="utf-8")) if incoming.is_file() else []
        if (replaced / MOVING_IN_FILE).is_file():  # every replaced file was aside: incoming names are new files
            for name in names:
                _remove(path / name)
        old = replaced / "old"
        if old.is_dir():
            for item in old.iterdir():  # what it had replaced
                _remove(path / item.name)
                os.replace(item, path / item.name)
        shutil.rmtree(replaced, ignore_errors=True)
        _note(f"undid an interrupted update of {str(path)!r}: its files are as they were before it")


def _remove(item: Path) -> None:
    if item.is_dir() and not item.is_symlink():
        shutil.rmtree(item)
    elif item.exists() or item.is_symlink():
        item.unlink()


def staging_dir(path: Path, kind: str = "tmp") -> Path:
    """A new empty hidden sibling of ``path``, ``.<name>.<kind>-<pid>.<host>-<random>``, on the same file system (so
    that renaming it is atomic); ``recover_interrupted`` deletes it once its process is gone."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.{kind}-{os.getpid()}.{_host_id()}-", dir=path.parent))
    os.chmod(staging, 0o777 & ~_umask())  # mkdtemp's 0700 would become the renamed folder's mode
    return staging


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def staged_output_dir(output_dir: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside ``output_dir``; on success rename it to ``output_dir``.

    If the body raises, the temporary folder is removed and ``output_dir`` is untouched; if the process dies, the
    temporary folder is left as a hidden ``.<name>.tmp-<pid>.<host>-*`` sibling that the next write to ``output_dir``
    deletes. An existing non-empty ``output_dir`` is replaced only with ``overwrite``: it is moved aside first,
    the new folder renamed in, then the old one deleted (killed between the two renames, the next write, or any
    command given this output folder, renames the old one back: ``recover_interrupted``).
    """
    path = check_output_dir(output_dir, overwrite)
    staging = staging_dir(path)
    try:
        yield staging
        if path.exists():
            retired = staging_dir(path, "old")
            os.replace(path, retired / "old")
            os.replace(staging, path)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        recover_interrupted(path)  # stopped between the two renames: the old folder goes back
        raise


def move_into(staging: Path, destination: Path) -> None:
    """Move every file of a finished ``staging`` folder into an existing ``destination`` (replacing files), as one
    update that a killed process cannot leave half done.

    The files to be replaced are first moved into ``destination/.bizoo-replaced`` (config.json, which makes the
    folder loadable, first of all), with the list of incoming names written before anything moves; the new files
    are moved in (config.json last), then the replaced ones deleted. Killed on the way, the folder has no
    config.json (from_pretrained fails loudly rather than mixing old and new weights) until the next command
    given this folder restores the old files (``recover_interrupted``).
    """
    destination.mkdir(parents=True, exist_ok=True)
    recover_interrupted(destination)
    names = sorted((p.name for p in staging.iterdir()), key=lambda n: (n == "config.json", n))  # config.json last
    replaced = destination / REPLACED_DIR
    try:
        (replaced / "old").mkdir(parents=True)
        atomic_write_text(replaced / INCOMING_FILE, json.dumps(names))
        for name in sorted(names, key=lambda n: n != "config.json"):  # config.json first
            if (destination / name).exists() or (destination / name).is_symlink():
                os.replace(destination / name, replaced / "old" / name)
        atomic_write_text(replaced / MOVING_IN_FILE, "")
        for name in names:
            os.replace(staging / name, destination / name)
    except BaseException:
        recover_interrupted(destination)  # the folder as it was; the caller removes the staging folder
        raise
    shutil.rmtree(replaced)
    staging.rmdir()


@contextlib.contextmanager
def staged_update(destination: Path) -> Iterator[Path]:
    """Yield a new staging folder beside ``destination`` (``staging_dir``); on success move its files into
    ``destination`` (``move_into``), which keeps its other files (checkpoints). If the body raises, the staging
    folder is removed and ``destination`` is untouched."""
    staging = staging_dir(destination, "final")
    try:
        yield staging
        move_into(staging, destination)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file renamed over it: readers see the old or the new file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # the mode a plain write would give, not mkstemp's 0600
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
