"""Upload a folder written by `bizoo export` to the Hugging Face Hub as a model repository.

First, before any network call, DIR must be an export: a config.json whose auto_map names code files that are
in DIR (as must a tokenizer_config.json's auto_map, and every sibling file those code files import), the weights
in safetensors (model.safetensors, or its index and every shard it lists) and a README.md model card; and
--repo-id must be a valid Hub id of the form ORG/NAME. Then the repository is created if it does not exist yet
(--private makes a new repository private; an existing one keeps its visibility), --revision is created as a
branch if needed, and every file of DIR is uploaded in one commit. The repository's URL is printed.

Pushing again into a repository that holds an earlier upload replaces that upload: the same commit deletes the
files at the top of the repository, of the kinds an export writes, that DIR does not have, so that nothing of the
old model is loaded beside the new one (transformers loads an old model.safetensors rather than a new sharded
index; AutoTokenizer would load an old tokenizer where the new export has none). Those kinds are the weights
(model*.safetensors and model*.safetensors.index*.json: single files, shards, variants; pytorch_model*.bin and
its index), the tokenizer files (tokenizer.json, tokenizer_config.json, special_tokens_map.json,
added_tokens.json, vocab.txt, vocab.json, merges.txt, tokenizer.model, spiece.model, sentencepiece.bpe.model,
chat_template.jinja, chat_template.json) and bizoo's code files (configuration_*.py, modeling_*.py, kernels_*.py,
tokenization_*.py). Everything else in the repository stays: .gitattributes, a LICENSE, figures and documents
added on the Hub, anything inside a folder. The files deleted are logged.

The uploaded README.md is DIR's model card with its Python snippets naming ORG/NAME instead of DIR's name (the
export's snippets load the folder beside them; on the Hub they load the repository), and its title and model-index
name NAME where they were DIR's name (the Hub shows ORG/NAME above the card). A README.md without bizoo's snippets is
uploaded as it is; DIR's own README.md is never changed.

Authentication is huggingface_hub's: `hf auth login`, or the HF_TOKEN environment variable.

example:
  bizoo export runs/lion hub/lion-d
  bizoo push hub/lion-d --repo-id my-org/lion-d --private
"""

from __future__ import annotations

import argparse
import fnmatch
import glob
import importlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

from huggingface_hub import HfApi, constants
from huggingface_hub.errors import HfHubHTTPError, HFValidationError, OfflineModeIsEnabled
from huggingface_hub.utils import validate_repo_id
from transformers.dynamic_module_utils import get_relative_imports

import bizoo

from .lib.command import CommandError, command_main, report, run_command, write_error
from .lib.model_card import card_for_repo
from .lib.output_folders import TOKENIZER_FILES
from .lib.remote_code import CODE_FILE_PATTERNS

PROG = "bizoo push"
WEIGHTS = ("model.safetensors", "model.safetensors.index.json")
#: The files of an earlier upload that a push replaces (``fnmatch`` patterns of a name at the top of the repository;
#: ``stale_files``): weights in the names transformers loads (shards and variants included), tokenizer files,
#: bizoo's code files.
REPLACED_FILES = (
    "model*.safetensors",
    "model*.safetensors.index*.json",
    "pytorch_model*.bin",
    "pytorch_model*.bin.index*.json",
    *TOKENIZER_FILES,
    *CODE_FILE_PATTERNS,
)

logger = logging.getLogger(__name__)


def _auto_map_code_files(auto_map: dict) -> set[str]:
    """The code files of this folder that an ``auto_map`` names: ``"modeling_lion.LionModel"`` -> modeling_lion.py;
    a tokenizer's ``[slow, fast]`` pair names one or two (a None is no class); ``"other/repo--module.Class"`` points
    at code in another repository and is left out."""
    references = []
    for value in auto_map.values():
        references.extend(value if isinstance(value, (list, tuple)) else [value])
    return {
        ref.rsplit(".", 1)[0] + ".py" for ref in references if isinstance(ref, str) and "." in ref and "--" not in ref
    }


def _tokenizer_auto_map(path: Path) -> dict:
    """The ``auto_map`` of ``path``'s tokenizer_config.json ({} if there is none or the file does not parse: the
    folder's own tokenizer check reports that)."""
    try:
        tokenizer_config = json.loads((path / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    auto_map = tokenizer_config.get("auto_map") if isinstance(tokenizer_config, dict) else None
    return auto_map if isinstance(auto_map, dict) else {}


def _missing_sibling_imports(path: Path, code_files: list[str]) -> list[tuple[str, str]]:
    """(missing file, the file that imports it) for every sibling that the code files import with
    ``from .x import`` (transformers' remote-code loader copies exactly those), followed from file to file."""
    missing, seen, pending = [], set(code_files), list(code_files)
    while pending:
        name = pending.pop()
        if not (path / name).is_file():
            continue
        for module in get_relative_imports(str(path / name)):
            sibling = module + ".py"
            if sibling in seen:
                continue
            seen.add(sibling)
            if (path / sibling).is_file():
                pending.append(sibling)
            else:
                missing.append((sibling, name))
    return sorted(missing)


def _check_shards(path: Path, hint: str) -> None:
    """Not both a single weights file and a safetensors index (transformers would load the single file and ignore the
    shards: which weights go up would be a guess); with an index, every shard it lists must be in ``path``."""
    index = path / WEIGHTS[1]
    if (path / WEIGHTS[0]).is_file() and index.is_file():
        raise CommandError(
            f"{str(path)!r} holds both {WEIGHTS[0]} and {WEIGHTS[1]}: transformers loads the single file and ignores "
            f"the shards, so which weights are the model's is unclear; keep one of them; {hint}"
        )
    if not index.is_file():
        return
    try:
        shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise CommandError(
            f"{index} is not a valid safetensors index (a JSON object with a weight_map): {err}"
        ) from None
    missing = [shard for shard in shards if not isinstance(shard, str) or not (path / shard).is_file()]
    if missing:
        raise CommandError(f"{index} lists weight files that are missing from {str(path)!r}: {missing}; {hint}")


def _unreachable_errors() -> tuple[type[Exception], ...]:
    """What huggingface_hub's HTTP client raises when the Hub cannot be reached at all (connection refused, no DNS,
    a timeout, a failing proxy): the ``TransportError`` of httpx2 (huggingface_hub 2) or httpx (huggingface_hub 1),
    whichever is installed. Neither is an ``HfHubHTTPError`` (that one has an HTTP answer) nor an ``OSError``."""
    errors = []
    for name in ("httpx2", "httpx"):
        try:
            errors.append(importlib.import_module(name).TransportError)
        except (ImportError, AttributeError):
            continue
    return tuple(errors)


def check_export(folder: str | Path) -> list[str]:
    """The files of ``folder`` (relative paths, sorted) if it is a bizoo export; ``CommandError`` saying what is
    missing otherwise."""
    path = Path(folder)
    if not path.is_dir():
        what = "is a file, not a folder" if path.exists() else "does not exist"
        raise CommandError(f"export folder {str(path)!r} {what}; write one with bizoo export CKPT DIR")
    hint = "write the folder with bizoo export CKPT DIR"
    config_path = path / "config.json"
    if not config_path.is_file():
        raise CommandError(f"{str(path)!r} is not a bizoo export: it has no config.json; {hint}")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CommandError(f"{config_path} is not valid JSON: {err}") from None
    auto_map = config.get("auto_map") if isinstance(config, dict) else None
    if not isinstance(auto_map, dict) or not auto_map:
        raise CommandError(
            f"{config_path} has no auto_map, so the model would not load with trust_remote_code=True; {hint}"
        )
    code_files = _auto_map_code_files(auto_map)
    missing_code = sorted(name for name in code_files if not (path / name).is_file())
    if missing_code:
        raise CommandError(f"{str(path)!r} lacks the code files its auto_map names: {missing_code}; {hint}")
    tokenizer_code = _auto_map_code_files(_tokenizer_auto_map(path)) - code_files
    missing_code = sorted(name for name in tokenizer_code if not (path / name).is_file())
    if missing_code:
        raise CommandError(
            f"{str(path)!r} lacks the code files the auto_map of its tokenizer_config.json names: {missing_code}, so "
            f"AutoTokenizer would not load it with trust_remote_code=True; {hint}"
        )
    missing_code = _missing_sibling_imports(path, sorted(code_files | tokenizer_code))
    if missing_code:
        shown = ", ".join(f"{name} (imported by {by})" for name, by in missing_code)
        raise CommandError(
            f"{str(path)!r} lacks code files that its code files import: {shown}; the model would not load with "
            f"trust_remote_code=True; {hint}"
        )
    if not any((path / name).is_file() for name in WEIGHTS):
        raise CommandError(f"{str(path)!r} has no safetensors weights ({' or '.join(WEIGHTS)}); {hint}")
    _check_shards(path, hint)
    if not (path / "README.md").is_file():
        raise CommandError(f"{str(path)!r} has no README.md model card; {hint}")
    try:
        (path / "README.md").read_text(encoding="utf-8")
    except UnicodeDecodeError as err:  # the Hub reads a card as UTF-8 (and push renders it for the repository)
        raise CommandError(f"{path / 'README.md'} is not UTF-8 text ({err}); save the model card as UTF-8") from None
    return sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file())


def check_repo_id(repo_id: str) -> str:
    """``repo_id`` if it is a valid Hub model id ``ORG/NAME``; ``CommandError`` naming the rule it breaks."""
    rules = "ORG/NAME, each made of letters, digits, '-', '_' and '.', at most 96 characters, without '--' or '..'"
    parts = repo_id.split("/")
    if len(parts) != 2 or not all(parts):
        raise CommandError(f"--repo-id must be {rules}; got {repo_id!r}")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        raise CommandError(f"--repo-id {repo_id!r} is not a valid Hub id ({err}); use {rules}") from None
    return repo_id


def stale_files(repository_files: list[str], files: list[str]) -> list[str]:
    """The files of ``repository_files`` (paths in the repository) that a push of an export holding ``files``
    deletes: those at the top of the repository whose name ``REPLACED_FILES`` matches and that ``files`` lacks."""
    new = set(files)
    return sorted(
        name for name in repository_files
        if "/" not in name and name not in new and any(fnmatch.fnmatchcase(name, p) for p in REPLACED_FILES)
    )


def _link_or_copy(source: Path, target: Path) -> None:
    """``target`` as a hard link to ``source``, else a symbolic link, else a copy (no file's bytes are copied where
    the file system links)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    for link in (os.link, os.symlink):
        try:
            link(source, target)
            return
        except OSError:
            continue
    shutil.copyfile(source, target)


def _stage_upload(folder: Path, files: list[str], repo_id: str, staging: Path) -> None:
    """Fill the empty folder ``staging`` with what goes up: ``files`` of ``folder`` (linked, not copied), README.md
    rewritten by ``card_for_repo`` for ``repo_id`` (written anew: the export's own card stays as it is)."""
    card = (folder / "README.md").read_text(encoding="utf-8")
    hub_card = card_for_repo(card, repo_id)
    if hub_card is None:
        logger.info("README.md has no snippet of bizoo's that names the model; it is uploaded as it is")
    for name in files:
        if name == "README.md" and hub_card is not None:
            (staging / name).write_text(hub_card, encoding="utf-8")
        else:
            _link_or_copy((folder / name).resolve(), staging / name)


def push_folder(
    folder: str | Path,
    repo_id: str,
    private: bool = False,
    commit_message: str | None = None,
    revision: str | None = None,
) -> str:
    """Upload the export ``folder`` to the Hub model repository ``repo_id``; returns the repository's URL.

    Checks the folder (``check_export``) and the id (``check_repo_id``) before any network call. Creates the
    repository with ``private`` if it does not exist (``exist_ok=True``), the branch ``revision`` if one is given,
    and uploads the whole folder in one commit, which also deletes the files of an earlier upload that
    ``stale_files`` finds in the repository (or branch). README.md goes up as ``card_for_repo`` renders it for
    ``repo_id`` (the rest byte for byte): the files are staged in a temporary folder, linked where the file system
    allows it.
    """
    files = check_export(folder)
    check_repo_id(repo_id)
    if revision is not None and not revision.strip():
        raise CommandError("--revision must name a branch, got an empty string")
    if commit_message is None:
        model_type = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8")).get("model_type", "model")
        commit_message = f"Upload {model_type} model exported with bizoo {bizoo.__version__} ({len(files)} files)"

    api = HfApi()
    url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    if revision is not None:
        api.create_branch(repo_id, branch=revision, repo_type="model", exist_ok=True)
    stale = stale_files(api.list_repo_files(repo_id, revision=revision, repo_type="model"), files)
    if stale:
        logger.info("deleting %d files of the earlier upload that the export does not have: %s", len(stale),
                    ", ".join(stale))
    with tempfile.TemporaryDirectory(prefix="bizoo-push-") as staging:
        _stage_upload(Path(folder), files, repo_id, Path(staging))
        api.upload_folder(
            folder_path=staging,
            repo_id=repo_id,
            repo_type="model",
            commit_message=commit_message,
            revision=revision,
            delete_patterns=[glob.escape(name) for name in stale] or None,  # each name matches itself only
        )
    url = str(url).rstrip("/")
    return f"{url}/tree/{revision}" if revision is not None else url


# ----------------------------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this command's arguments to ``parser``."""
    parser.add_argument("folder", metavar="DIR", help="a folder written by bizoo export")
    parser.add_argument("--repo-id", required=True, metavar="ORG/NAME", help="the Hub model repository to upload to")
    parser.add_argument("--private", action="store_true", help="create the repository as private (if it is new)")
    parser.add_argument(
        "--commit-message", metavar="MSG", help="the commit message (default: names the model and bizoo)"
    )
    parser.add_argument("--revision", metavar="BRANCH", help="upload to this branch, created if needed (default: main)")


def run(args: argparse.Namespace) -> int:
    """Push ``args.folder``; 0 on success, 2 on bad input, 1 when the Hub refuses or cannot be reached."""

    def body() -> int:
        try:
            url = push_folder(args.folder, args.repo_id, args.private, args.commit_message, args.revision)
        except (HfHubHTTPError, OfflineModeIsEnabled) as err:
            write_error(PROG, f"the Hub refused or could not be reached: {err}")
            return 1
        except _unreachable_errors() as err:  # no answer at all: name where it was looked for
            write_error(PROG, f"the Hub refused or could not be reached ({constants.ENDPOINT}): "
                              f"{type(err).__name__}: {err}")
            return 1
        report(f"uploaded {args.folder} to {url}")
        return 0

    return run_command(PROG, body)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``bizoo push`` and ``python -m bizoo.scripts.push``."""
    return command_main(__name__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
