"""Where a command's input checkpoint comes from: a local path, or a Hugging Face Hub repository.

``resolve_source(src, option)`` returns a local path for ``src``, as ``from_pretrained`` resolves its first argument:

* an existing file or folder is used as it is;
* otherwise ``src`` must read as a Hub repository id, ``owner/name`` or ``owner/name@revision`` (a branch, tag or
  commit; ``name`` alone is a legacy id such as ``bert-base-uncased``, which the Hub redirects), and the
  repository's files (only those matching ``allow_patterns``) are fetched with ``huggingface_hub.snapshot_download``
  into the Hub's cache (``HF_HUB_CACHE``, or ``cache_dir``); the snapshot folder is returned. With
  ``HF_HUB_OFFLINE=1`` nothing is downloaded: a repository already in the cache is used, any other is an error.

Anything else is a ``CommandError`` that names the option and says both readings failed: a missing local path that is
not a repository id, or a repository that is not there (or not in the cache while offline), with the Hub's reason.

The Hub and cache options of the training commands (``lib.training.add_hub_arguments``), as transformers'
run_mlm.py, run_glue.py and run_ner.py take them, and what each does in bizoo (``HubOptions``, read from a namespace
by ``hub_options``):

* ``--cache_dir DIR``: where the Hub snapshots of --model-name-or-path, --tokenizer and --dataset-name are cached
  (``snapshot_download(cache_dir=)``, the Hub's layout: ``DIR/models--owner--name/...``), and where ``datasets``
  writes the Arrow files of what it reads (``load_dataset(cache_dir=)``); default ``HF_HUB_CACHE`` and
  ``HF_DATASETS_CACHE``;
* ``--model_revision REV``: the branch, tag or commit of --model-name-or-path (and of --tokenizer) on the Hub; the
  same as ``owner/name@REV`` (both at different revisions is an error); a local folder has none;
* ``--token TOKEN``: the Hub token of every download (a private or gated repository); default the saved login;
* ``--trust_remote_code [BOOL]``: run the Python code a checkpoint's ``auto_map`` names (``from_pretrained(
  trust_remote_code=)``), for a model type neither bizoo nor transformers defines (``datasets`` 4 and later run no
  dataset scripts: it changes nothing for a dataset);
* ``--overwrite_cache [BOOL]``: ``datasets`` prepares the data files again instead of reading its cached Arrow
  files (``load_dataset(download_mode="reuse_cache_if_exists")``: nothing downloaded again). bizoo has no
  ``datasets.map`` cache: it tokenizes in memory at every run;
* ``--use_fast_tokenizer [BOOL]``: true is what transformers 5 always loads; false is refused;
* ``--low_cpu_mem_usage [BOOL]`` (run_mlm.py's): either value, changing nothing: transformers 5's ``from_pretrained``
  always loads the weights into an empty model and ignores the argument;
* ``--preprocessing_num_workers N``: 1 is what bizoo does (it tokenizes in the command's process, with the fast
  tokenizer's batch encoding, no ``datasets.map`` to spread over processes); more is refused;
* ``--config_name``: refused: the configuration is the checkpoint's (--model-name-or-path) or built from the model
  type, --variant and --model-config.

``lib.training.check_hub_options`` refuses those that bizoo does not take, ``CommandError`` naming the option, the
value and why.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from pathlib import Path

from .command import CommandError

#: [owner/]name, each part as the Hub allows it (letters, digits, "-", "_", "."), with an optional @revision. A name
#: without an owner is one of the Hub's legacy ids ("bert-base-uncased", "glue"), which it redirects to the owner's
#: repository ("google-bert/bert-base-uncased"), as transformers' example commands still write them.
REPO_ID = re.compile(r"^(?P<repo>(?:[A-Za-z0-9][\w.-]*/)?[A-Za-z0-9][\w.-]*)(?:@(?P<revision>[\w./-]+))?$")


#: The files of a checkpoint a command loads from the Hub (config, safetensors weights, tokenizer files, the Python
#: code of an ``auto_map``): not the other frameworks' weights a model repository may also hold.
CHECKPOINT_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "*.py", "*.tiktoken"]
#: The PyTorch pickles of a checkpoint that has no safetensors weights (older Hub models), fetched only then.
PICKLE_PATTERNS = ["pytorch_model*.bin"]


@dataclass(frozen=True)
class HubOptions:
    """The Hub and cache options of a run (module docstring); the defaults are those of a run without them."""

    cache_dir: str | None = None
    revision: str | None = None  # --model_revision
    token: str | None = None
    trust_remote_code: bool = False
    overwrite_cache: bool = False

    def dataset_kwargs(self) -> dict:
        """The keywords of ``datasets.load_dataset`` the options give (none without them): its cache folder, the
        token, and with --overwrite_cache the data files prepared again (the downloads reused)."""
        given = dict(cache_dir=self.cache_dir, token=self.token,
                     download_mode="reuse_cache_if_exists" if self.overwrite_cache else None)
        return {name: value for name, value in given.items() if value is not None}


def hub_options(args: argparse.Namespace | None) -> HubOptions:
    """The ``HubOptions`` of parsed options (defaults for those a namespace lacks)."""
    return HubOptions(
        cache_dir=getattr(args, "cache_dir", None),
        revision=getattr(args, "model_revision", None),
        token=getattr(args, "token", None),
        trust_remote_code=bool(getattr(args, "trust_remote_code", False)),
        overwrite_cache=bool(getattr(args, "overwrite_cache", False)),
    )


def resolve_checkpoint(src: str, option: str, hub: HubOptions | None = None) -> Path:
    """The local folder of a checkpoint or tokenizer, ``src`` a folder or a Hub model id (``resolve_source`` with
    ``CHECKPOINT_PATTERNS`` and ``hub``'s cache folder, revision and token); a Hub model without safetensors weights
    gets its ``pytorch_model*.bin`` too, as ``from_pretrained`` would fetch them."""
    hub = hub or HubOptions()
    options = dict(cache_dir=hub.cache_dir, revision=hub.revision, token=hub.token)
    folder = resolve_source(src, option, allow_patterns=CHECKPOINT_PATTERNS, **options)
    if Path(src).expanduser().exists() or any(folder.glob("*.safetensors")) or not (folder / "config.json").exists():
        return folder
    return resolve_source(src, option, allow_patterns=PICKLE_PATTERNS, **options)


def resolve_source(src: str, option: str, *, allow_patterns: list[str] | None = None,
                   cache_dir: str | None = None, repo_type: str = "model", revision: str | None = None,
                   token: str | None = None) -> Path:
    """A local path for ``src`` (module docstring); ``option`` names the argument in errors (e.g. "SRC");
    ``repo_type`` "model" or "dataset". ``revision`` (--model_revision) is the repository's revision where ``src``
    names none (``CommandError`` where it names another); a local path has none. ``token``: the Hub token."""
    path = Path(src).expanduser()
    if path.exists():
        return path
    match = REPO_ID.match(src)
    if match is None:
        raise CommandError(f"{option} {src!r} does not exist (and is not a Hub repository id, "
                           "[owner/]name[@revision])")
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    repo, named = match["repo"], match["revision"]
    if named is not None and revision is not None and named != revision:
        raise CommandError(f"{option} {src!r} names the revision {named!r} and --model_revision {revision!r} "
                           "another: give one of them")
    revision = named or revision
    try:
        folder = snapshot_download(
            repo, revision=revision, allow_patterns=allow_patterns, cache_dir=cache_dir, repo_type=repo_type,
            token=token,
        )
    except LocalEntryNotFoundError:
        offline = " (HF_HUB_OFFLINE is set: only the cache is read)" if constants.HF_HUB_OFFLINE else ""
        raise CommandError(
            f"{option} {src!r} is not a local path, and the Hub {repo_type} repository {repo!r}"
            f"{f' at {revision!r}' if revision else ''} is not in the cache{offline}"
        ) from None
    except (HfHubHTTPError, OSError, ValueError) as err:
        raise CommandError(f"{option} {src!r} is not a local path, and the Hub repository failed: {err}") from None
    return Path(folder)
