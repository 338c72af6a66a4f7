"""Tests for ``bizoo push``, offline: ``HfApi.create_repo``, ``create_branch``, ``list_repo_files`` and
``upload_folder`` are replaced by recorders, so the tests see exactly what would reach the Hub (which repository,
which options, which files) and that bad input stops before any call. (A repository that holds an earlier upload:
tests/scripts/test_push_repository.py.)"""

from __future__ import annotations

import ast
import json
import socket
from pathlib import Path

import pytest
import yaml
from huggingface_hub import HfApi, ModelCard, RepoUrl
from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

import bizoo
from bizoo import LionForMaskedLM
from bizoo.modeling.tokenization_wordchar import WordCharTokenizerFast
from bizoo.scripts.export import export_model
from bizoo.scripts.lib.remote_code import flat_sources
from bizoo.scripts.lib.results import record_results
from bizoo.scripts.push import main, push_folder
from tests.scripts.test_export_cards import ODD_NAME, front_matter, snippets


class RecordingHub:
    """Stands in for the Hub: records every call and the files ``upload_folder`` would send."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []
        self.uploaded: dict[str, bytes] = {}
        self.fail_with: Exception | None = None

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        hub = self

        def create_repo(api, repo_id, **kwargs):
            hub.calls.append(("create_repo", {"repo_id": repo_id, **kwargs}))
            if hub.fail_with is not None:
                raise hub.fail_with
            return RepoUrl(f"https://huggingface.co/{repo_id}")

        def create_branch(api, repo_id, **kwargs):
            hub.calls.append(("create_branch", {"repo_id": repo_id, **kwargs}))

        def list_repo_files(api, repo_id, **kwargs):  # a new repository: what the Hub creates it with
            hub.calls.append(("list_repo_files", {"repo_id": repo_id, **kwargs}))
            return [".gitattributes"]

        def upload_folder(api, **kwargs):
            hub.calls.append(("upload_folder", kwargs))
            folder = Path(kwargs["folder_path"])  # no allow/ignore patterns: every file goes up
            hub.uploaded = {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}

        monkeypatch.setattr(HfApi, "create_repo", create_repo)
        monkeypatch.setattr(HfApi, "create_branch", create_branch)
        monkeypatch.setattr(HfApi, "list_repo_files", list_repo_files)
        monkeypatch.setattr(HfApi, "upload_folder", upload_folder)

    def call(self, name: str) -> dict:
        matches = [kwargs for called, kwargs in self.calls if called == name]
        assert len(matches) == 1, f"{name} called {len(matches)} times: {self.calls}"
        return matches[0]


@pytest.fixture
def hub(monkeypatch) -> RecordingHub:
    recorder = RecordingHub()
    recorder.install(monkeypatch)
    return recorder


@pytest.fixture
def exported(checkpoint: Path, tmp_path: Path) -> Path:
    return export_model(checkpoint, tmp_path / "lion-d")


def test_push_uploads_exactly_the_export(exported: Path, hub: RecordingHub, capsys):
    assert main([str(exported), "--repo-id", "my-org/lion-d"]) == 0
    create = hub.call("create_repo")
    assert create == {"repo_id": "my-org/lion-d", "private": False, "exist_ok": True, "repo_type": "model"}
    upload = hub.call("upload_folder")
    assert upload["repo_id"] == "my-org/lion-d" and upload["repo_type"] == "model"
    assert upload["revision"] is None and "bizoo" in upload["commit_message"]
    assert not any(key in upload for key in ("allow_patterns", "ignore_patterns", "path_in_repo"))
    assert upload["delete_patterns"] is None  # a new repository holds no earlier upload
    expected = {"config.json", "model.safetensors", "README.md", "tokenizer.json", "tokenizer_config.json"}
    assert set(hub.uploaded) == expected | set(flat_sources(bizoo.get_spec("lion")))
    for name, content in hub.uploaded.items():  # byte for byte but the card (its model id: the next test)
        assert name == "README.md" or content == (exported / name).read_bytes(), name
    assert hub.call("list_repo_files") == {"repo_id": "my-org/lion-d", "revision": None, "repo_type": "model"}
    assert [name for name, _ in hub.calls] == ["create_repo", "list_repo_files", "upload_folder"]
    assert "https://huggingface.co/my-org/lion-d" in capsys.readouterr().out


def test_the_readme_uploaded_is_the_model_card(exported: Path, hub: RecordingHub):
    """The uploaded README.md is the export's card, identical but for the model id of its Python snippets: the
    export's folder name (``lion-d``) becomes the repository id (tests/scripts/test_push_repository.py runs them)."""
    push_folder(exported, "my-org/lion-d")
    card = hub.uploaded["README.md"].decode("utf-8")
    exported_card = (exported / "README.md").read_text(encoding="utf-8")
    assert card != exported_card
    lines = [line.split("  #")[0] if line.startswith("model_id = ") else line for line in exported_card.splitlines()]
    assert "\n".join(lines).replace('"lion-d"', '"my-org/lion-d"') == "\n".join(card.splitlines())
    meta = yaml.safe_load(card.split("\n---\n", 1)[0].removeprefix("---\n"))
    assert meta["library_name"] == "transformers" and "bizoo" in meta["tags"] and meta["pipeline_tag"] == "fill-mask"


def test_private_commit_message_and_revision_pass_through(exported: Path, hub: RecordingHub, capsys):
    argv = ["--repo-id", "my-org/lion-d", "--private", "--commit-message", "first LION", "--revision", "v1"]
    assert main([str(exported), *argv]) == 0
    assert hub.call("create_repo")["private"] is True
    branch = hub.call("create_branch")
    assert branch == {"repo_id": "my-org/lion-d", "branch": "v1", "repo_type": "model", "exist_ok": True}
    upload = hub.call("upload_folder")
    assert upload["commit_message"] == "first LION" and upload["revision"] == "v1"
    assert "https://huggingface.co/my-org/lion-d/tree/v1" in capsys.readouterr().out


def test_push_folder_returns_the_url(exported: Path, hub: RecordingHub):
    assert push_folder(exported, "my-org/lion-d", private=True) == "https://huggingface.co/my-org/lion-d"
    assert hub.call("create_repo")["private"] is True


def test_hub_failure_exits_1_with_the_reason(exported: Path, hub: RecordingHub, capsys):
    hub.fail_with = OfflineModeIsEnabled("Cannot reach https://huggingface.co: offline mode is enabled.")
    assert main([str(exported), "--repo-id", "my-org/lion-d"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("bizoo push: error: the Hub refused or could not be reached") and "offline mode" in err
    assert [name for name, _ in hub.calls] == ["create_repo"]


@pytest.mark.parametrize(
    "repo_id",
    ["lion-d", "my-org/lion/d", "my-org/", "/lion-d", "my org/lion-d", "my-org/lion--d", "my-org/lion..d",
     "my-org/" + "x" * 100, "my-org/lion-d.git"],
)
def test_bad_repo_id_exits_2_before_any_call(exported: Path, hub: RecordingHub, capsys, repo_id):
    assert main([str(exported), "--repo-id", repo_id]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bizoo push: error: --repo-id") and repr(repo_id) in err and "ORG/NAME" in err
    assert hub.calls == []


def _remove(name):
    return lambda folder: (folder / name).unlink()


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda f: f.rename(f.with_name("gone")), "does not exist"),
        (lambda f: [p.unlink() for p in f.iterdir()], "has no config.json"),
        (_remove("model.safetensors"), "has no safetensors weights"),
        (_remove("README.md"), "has no README.md model card"),
        (lambda f: (f / "README.md").write_bytes("# Modèle\n".encode("latin-1")), "README.md is not UTF-8 text"),
        (_remove("modeling_lion.py"), "lacks the code files its auto_map names: ['modeling_lion.py']"),
        (lambda f: (f / "model.safetensors.index.json").write_text('{"weight_map": {}}'),
         "holds both model.safetensors and model.safetensors.index.json"),
    ],
    ids=["missing", "empty", "no-weights", "no-card", "card-not-utf8", "no-code", "single-and-index"],
)
def test_non_export_folder_exits_2_before_any_call(exported: Path, hub: RecordingHub, capsys, damage, message):
    damage(exported)
    assert main([str(exported), "--repo-id", "my-org/lion-d"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bizoo push: error: ") and message in err, err
    assert hub.calls == []


def _shards_missing(folder: Path) -> None:
    """The single weights file traded for an index whose second shard is not there."""
    (folder / "model.safetensors").rename(folder / "model-00001-of-00002.safetensors")
    index = {"metadata": {}, "weight_map": {"a": "model-00001-of-00002.safetensors",
                                            "b": "model-00002-of-00002.safetensors"}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index), encoding="utf-8")


@pytest.mark.parametrize(
    "damage, message",
    [
        (_remove("kernels_lion.py"), "lacks code files that its code files import: kernels_lion.py (imported by "),
        (_remove("kernels_dispatch.py"), "kernels_dispatch.py (imported by "),
        (_shards_missing, "lists weight files that are missing from"),
    ],
    ids=["sibling-of-modeling", "sibling-of-a-sibling", "missing-shard"],
)
def test_export_that_would_not_load_exits_2_before_any_call(exported: Path, hub: RecordingHub, capsys, damage,
                                                            message):
    """Code that the auto_map's files import, and the shards an index lists, must be there too: uploaded without
    them, the repository would not load with trust_remote_code=True."""
    damage(exported)
    assert main([str(exported), "--repo-id", "my-org/lion-d"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bizoo push: error: ") and message in err, err
    assert hub.calls == []


def test_bizoo_tokenizer_code_must_be_in_the_export(tmp_path: Path, hub: RecordingHub, capsys, make_config,
                                                    sentences):
    """A WordCharTokenizerFast ships as remote code named by tokenizer_config.json's auto_map: without its file the
    repository's tokenizer would not load."""
    tokenizer = WordCharTokenizerFast.from_words(sentences(40))
    checkpoint = tmp_path / "ckpt"
    LionForMaskedLM(make_config(("lion", "d"), vocab_size=len(tokenizer))).save_pretrained(checkpoint)
    tokenizer.save_pretrained(checkpoint)
    folder = export_model(checkpoint, tmp_path / "export")
    assert push_folder(folder, "my-org/lion-d").startswith("https://")
    assert "tokenization_wordchar.py" in hub.uploaded
    hub.calls.clear()
    (folder / "tokenization_wordchar.py").unlink()
    assert main([str(folder), "--repo-id", "my-org/lion-d"]) == 2
    err = capsys.readouterr().err
    assert "lacks the code files the auto_map of its tokenizer_config.json names: ['tokenization_wordchar.py']" in err
    assert hub.calls == []


def test_a_checkpoint_is_not_an_export(checkpoint: Path, hub: RecordingHub, capsys):
    """A save_pretrained folder has no auto_map: pushed as is, it would not load without bizoo."""
    assert main([str(checkpoint), "--repo-id", "my-org/lion-d"]) == 2
    assert "has no auto_map, so the model would not load with trust_remote_code=True" in capsys.readouterr().err
    assert hub.calls == []


def _refused_connection(monkeypatch: pytest.MonkeyPatch) -> Exception:
    """The exception huggingface_hub's own HTTP client raises for a connection nobody answers: a request to a local
    port that was just closed (offline mode lifted for this one request; nothing leaves this machine)."""
    from huggingface_hub import constants, get_session

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with monkeypatch.context() as patch:
        patch.setattr(constants, "HF_HUB_OFFLINE", False)
        try:
            get_session().get(f"http://127.0.0.1:{port}/api/repos/create", timeout=5)
        except Exception as err:  # noqa: BLE001 - whatever the client raises is what push must handle
            return err
    raise AssertionError(f"a request to the closed port {port} was answered")


def test_unreachable_hub_exits_1_with_the_reason(exported: Path, hub: RecordingHub, capsys, monkeypatch):
    """No answer at all (connection refused, no DNS, a timeout) is the Hub that "cannot be reached" as much as
    offline mode is: exit 1 and one line naming the endpoint, not a traceback of the HTTP client."""
    hub.fail_with = _refused_connection(monkeypatch)
    assert not isinstance(hub.fail_with, (OfflineModeIsEnabled, HfHubHTTPError)), repr(hub.fail_with)
    assert main([str(exported), "--repo-id", "my-org/lion-d"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("bizoo push: error: the Hub refused or could not be reached (") and "Connect" in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert [name for name, _ in hub.calls] == ["create_repo"]


def test_the_uploaded_card_is_named_after_the_repository(checkpoint: Path, tmp_path: Path, hub: RecordingHub):
    """The export is named after its folder (``lion-export``: the title, the model-index name); on the Hub it kept
    that name, under a repository called something else. The uploaded card takes the repository's NAME (as
    transformers' Trainer names the card it pushes; the Hub shows ORG/NAME above it), the rest of the metadata
    as exported; the export's own card stays as it was."""
    record_results(checkpoint, task={"type": "fill-mask", "name": "Masked language modeling"},
                   dataset={"name": "Shakespeare sample", "type": "text", "split": "held-out"},
                   metrics={"accuracy": 0.25})
    folder = export_model(checkpoint, tmp_path / "lion-export")
    exported_card = (folder / "README.md").read_text(encoding="utf-8")
    push_folder(folder, "my-org/lion-d")
    card = hub.uploaded["README.md"].decode("utf-8")
    meta, exported_meta = front_matter(card), front_matter(exported_card)
    assert meta["model-index"][0]["name"] == "lion-d" and exported_meta["model-index"][0]["name"] == "lion-export"
    exported_meta["model-index"][0]["name"] = "lion-d"
    assert meta == exported_meta  # nothing else of the metadata changes
    assert ModelCard(card).data.model_name == "lion-d"
    assert card.split("\n---\n", 1)[1].lstrip("\n").splitlines()[0] == "# lion-d"
    assert "lion-export" not in card
    assert exported_card.split("\n---\n", 1)[1].lstrip("\n").startswith("# lion-export\n")
    assert (folder / "README.md").read_text(encoding="utf-8") == exported_card


def test_the_uploaded_card_names_the_repository_whatever_the_folder_is_called(checkpoint: Path, tmp_path: Path,
                                                                              hub: RecordingHub):
    """An export whose folder name holds quotes and a backslash: its card's snippets were not valid Python, and
    ``card_for_repo`` did not find them, so the card went up naming the folder. Its snippets now name the
    repository, and compile."""
    name = ODD_NAME
    folder = export_model(checkpoint, tmp_path / name)
    push_folder(folder, "my-org/lion-d")
    card = hub.uploaded["README.md"].decode("utf-8")
    blocks = snippets(card)
    assert len(blocks) == 2
    for block in blocks:
        strings = {node.value for node in ast.walk(ast.parse(block)) if isinstance(node, ast.Constant)}
        assert "my-org/lion-d" in strings and name not in strings, block
    assert 'model_id = "my-org/lion-d"\n' in blocks[0] and 'model="my-org/lion-d"' in blocks[1]
    assert "\n# lion-d\n" in card and f"# {name}" not in card
