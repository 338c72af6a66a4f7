"""Where a command's input checkpoint comes from: a local path, or a Hugging Face Hub repository.

``resolve_source(src, option)`` returns a local path for ``src``, as ``from_pretrained`` resolves its first argument:

* an existing file or folder is used as it is;
* otherwise ``src`` must read as a Hub repository id, ``owner/name`` or ``owner/name@revision`` (a branch, tag or
  commit), and the repository's files (only those matching ``allow_patterns``) are fetched with
  ``huggingface_hub.snapshot_download`` into the Hub's cache (``HF_HUB_CACHE``, or ``cache_dir``); the snapshot folder
  is returned. With ``HF_HUB_OFFLINE=1`` nothing is downloaded: a repository already in the cache is used, any other is
  an error.

Anything else is a ``CommandError`` that names the option and says both readings failed: a missing local path that is
not a repository id, or a repository that is not there (or not in the cache while offline), with the Hub's reason.
"""

from __future__ import annotations

import re
from pathlib import Path

from .command import CommandError

#: owner/name, each part as the Hub allows it (letters, digits, "-", "_", "."), with an optional @revision.
REPO_ID = re.compile(r"^(?P<repo>[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*)(?:@(?P<revision>[\w./-]+))?$")


def resolve_source(src: str, option: str, *, allow_patterns: list[str] | None = None,
                   cache_dir: str | None = None, repo_type: str = "model") -> Path:
    """A local path for ``src`` (module docstring); ``option`` names the argument in errors (e.g. "SRC");
    ``repo_type`` "model" or "dataset"."""
    path = Path(src).expanduser()
    if path.exists():
        return path
    match = REPO_ID.match(src)
    if match is None:
        raise CommandError(f"{option} {src!r} does not exist (and is not a Hub repository id, owner/name[@revision])")
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    repo, revision = match["repo"], match["revision"]
    try:
        folder = snapshot_download(
            repo, revision=revision, allow_patterns=allow_patterns, cache_dir=cache_dir, repo_type=repo_type
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
