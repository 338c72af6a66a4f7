"""``bizoo push`` into a repository as the Hub keeps it: a second push replaces the first upload (no old weights,
tokenizer or code left beside the new ones), files added on the Hub stay, and the card uploaded names the
repository, so that its snippets run against the Hub id.

The Hub is a dictionary of repositories (``FakeHub``) behind huggingface_hub's own ``HfApi.upload_folder``: only the
calls that would reach the network are replaced (``create_repo``, ``create_branch``, ``list_repo_files``,
``create_commit``, the README's YAML check), and the upload takes huggingface_hub's single-commit path (no
hf_xet). What upload_folder decides (which files go up, which are deleted, that ``.gitattributes`` stays) is then
huggingface_hub's, as on the Hub. A repository is served back as the Hub's cache (``hub_cache``), offline, and loaded
by its id the way transformers loads one from the Hub.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, ModelCard, RepoUrl, hf_api
from safetensors.torch import load_file, save_file

import bizoo
from bizoo import LionForMaskedLM
from bizoo.modeling.tokenization_wordchar import WordCharTokenizerFast
from bizoo.scripts.export import export_model
from bizoo.scripts.lib.remote_code import CODE_FILE_PATTERNS, flat_sources
from bizoo.scripts.push import main, push_folder, stale_files
from tests.scripts.test_export_cards import CARD_CHILD, snippets
from tests.scripts.test_remote_code import run_isolated

REPO = "my-org/lion-d"
GITATTRIBUTES = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"
#: What a user added on the Hub between two pushes: a push must leave it there.
ADDED_ON_THE_HUB = {"LICENSE": b"Apache-2.0\n", "figures/loss.png": b"\x89PNG", "handler.py": b"# endpoint\n",
                    "models/model-old.safetensors": b"not ours"}


class FakeHub:
    """Repositories as ``{(repo_id, branch): {path: bytes}}``; ``commits`` counts the commits of each push."""

    def __init__(self) -> None:
        self.repos: dict[tuple[str, str], dict[str, bytes]] = {}
        self.commits: list[list] = []

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        hub = self

        def create_repo(api, repo_id, **kwargs):
            hub.repos.setdefault((repo_id, "main"), {".gitattributes": GITATTRIBUTES})  # as the Hub creates one
            return RepoUrl(f"https://huggingface.co/{repo_id}")

        def create_branch(api, repo_id, *, branch, **kwargs):
            hub.repos.setdefault((repo_id, branch), dict(hub.repos[(repo_id, "main")]))

        def list_repo_files(api, repo_id, *, revision=None, **kwargs):
            return sorted(hub.repos[(repo_id, revision or "main")])

        def create_commit(api, repo_id, operations, *, revision=None, **kwargs):
            files = hub.repos[(repo_id, revision or "main")]
            operations = list(operations)
            for operation in operations:
                if isinstance(operation, CommitOperationDelete):
                    del files[operation.path_in_repo]
                else:
                    assert isinstance(operation, CommitOperationAdd), operation
                    files[operation.path_in_repo] = Path(operation.path_or_fileobj).read_bytes()
            hub.commits.append(operations)

        def validate_yaml(api, content, **kwargs):
            ModelCard(content)  # the check the Hub makes of a README's metadata, made here

        monkeypatch.setattr(HfApi, "create_repo", create_repo)
        monkeypatch.setattr(HfApi, "create_branch", create_branch)
        monkeypatch.setattr(HfApi, "list_repo_files", list_repo_files)
        monkeypatch.setattr(HfApi, "create_commit", create_commit)
        monkeypatch.setattr(HfApi, "_validate_yaml", validate_yaml)
        monkeypatch.setattr(hf_api, "is_xet_available", lambda: False)  # one create_commit per upload

    def files(self, repo_id: str = REPO, branch: str = "main") -> dict[str, bytes]:
        return self.repos[(repo_id, branch)]


@pytest.fixture
def hub(monkeypatch) -> FakeHub:
    fake = FakeHub()
    fake.install(monkeypatch)
    return fake


def shard(folder: Path) -> None:
    """Trade the export's model.safetensors for two shards and their index, as save_pretrained writes a model larger
    than ``max_shard_size``."""
    state = load_file(folder / "model.safetensors")
    names = sorted(state)
    weight_map = {}
    for number, part in enumerate((names[: len(names) // 2], names[len(names) // 2:]), start=1):
        file_name = f"model-{number:05d}-of-00002.safetensors"
        save_file({name: state[name] for name in part}, str(folder / file_name), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(part, file_name))
    index = {"metadata": {"total_size": sum(t.numel() * t.element_size() for t in state.values())},
             "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2), encoding="utf-8")
    (folder / "model.safetensors").unlink()


def export(tmp_path: Path, name: str, model, tokenizer=None, sharded: bool = False) -> Path:
    checkpoint = tmp_path / "checkpoints" / name
    model.save_pretrained(checkpoint)
    if tokenizer is not None:
        tokenizer.save_pretrained(checkpoint)
    folder = export_model(checkpoint, tmp_path / "exports" / name)
    if sharded:
        shard(folder)
    return folder


def tree(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def lion(make_config, vocab_size: int, seed: int) -> LionForMaskedLM:
    torch.manual_seed(seed)
    return LionForMaskedLM(make_config(("lion", "d"), vocab_size=vocab_size, initializer_range=0.2)).eval()


# ----------------------------------------------------------------------------------------------------------------
# A second push replaces the first
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("first_sharded, second_sharded", [(False, True), (True, False)],
                         ids=["single-then-sharded", "sharded-then-single"])
def test_a_second_push_serves_the_second_weights(tmp_path, hub, hub_cache, tokenizer, make_config, first_sharded,
                                                 second_sharded):
    """transformers loads model.safetensors before a sharded index: an old single file left beside a new index
    was the model the Hub served (the old weights, silently); old shards beside a new single file were dead
    weight. The second push deletes them in its own commit; what the user added on the Hub stays."""
    first, second = lion(make_config, len(tokenizer), 1), lion(make_config, len(tokenizer), 2)
    folder_a = export(tmp_path, "a", first, tokenizer, sharded=first_sharded)
    folder_b = export(tmp_path, "b", second, tokenizer, sharded=second_sharded)
    push_folder(folder_a, REPO)
    hub.files().update(ADDED_ON_THE_HUB)
    push_folder(folder_b, REPO)

    hub_cache(REPO, hub.files())
    served = LionForMaskedLM.from_pretrained(REPO).state_dict()
    expected = second.state_dict()
    assert served.keys() == expected.keys()
    for name in expected:
        assert torch.equal(served[name], expected[name]), f"{name}: the Hub serves the first push's weights"
    assert len(hub.commits) == 2  # the deletions ride the upload's commit
    assert set(hub.files()) == tree(folder_b) | {".gitattributes", *ADDED_ON_THE_HUB}
    assert hub.files()[".gitattributes"] == GITATTRIBUTES


def test_a_second_push_removes_the_tokenizer_and_code_it_does_not_have(tmp_path, hub, make_config, sentences,
                                                                        capsys):
    """A BiGS export with a bizoo tokenizer, then a LION export without one: AutoTokenizer would have loaded the
    old tokenizer (another vocabulary) for the new model, and BiGS's code files would have stayed beside LION's."""
    tokenizer = WordCharTokenizerFast.from_words(sentences(40))
    spec = bizoo.get_spec("bigs")
    bigs = spec.models["AutoModelForMaskedLM"](make_config(("bigs", None), vocab_size=len(tokenizer)))
    folder_a = export(tmp_path, "bigs", bigs, tokenizer)
    folder_b = export(tmp_path, "lion", lion(make_config, 120, 0))
    assert main([str(folder_a), "--repo-id", REPO]) == 0
    old = set(hub.files())
    assert {"tokenizer.json", "tokenizer_config.json", "tokenization_wordchar.py", "modeling_bigs.py"} <= old
    capsys.readouterr()
    assert main([str(folder_b), "--repo-id", REPO]) == 0

    assert set(hub.files()) == tree(folder_b) | {".gitattributes"}
    deleted = sorted(old - set(hub.files()))
    assert "tokenizer.json" in deleted and "modeling_bigs.py" in deleted and "tokenization_wordchar.py" in deleted
    out = capsys.readouterr().out
    assert f"deleting {len(deleted)} files of the earlier upload that the export does not have: " in out, out
    assert ", ".join(deleted) in out


def test_a_push_to_a_branch_replaces_files_on_that_branch_only(tmp_path, hub, tokenizer, make_config):
    folder_a = export(tmp_path, "a", lion(make_config, len(tokenizer), 1), tokenizer)
    folder_b = export(tmp_path, "b", lion(make_config, len(tokenizer), 2), tokenizer, sharded=True)
    push_folder(folder_a, REPO)
    main_files = dict(hub.files())
    push_folder(folder_b, REPO, revision="v2")
    assert hub.files() == main_files
    assert set(hub.files(branch="v2")) == tree(folder_b) | {".gitattributes"}


def test_stale_files_are_the_exports_kinds_at_the_top_only():
    repository = [".gitattributes", "README.md", "LICENSE", "config.json", "model.safetensors",
                  "model-00001-of-00002.safetensors", "model.fp16.safetensors", "model.safetensors.index.json",
                  "pytorch_model.bin", "tokenizer.json", "vocab.txt", "spiece.model", "modeling_bigs.py",
                  "kernels_ssm.py", "tokenization_wordchar.py", "handler.py", "notes.md", "models/model.safetensors",
                  "modeling_extra/modeling_x.py", "onnx/tokenizer.json"]
    export_files = ["README.md", "config.json", "model.safetensors", "tokenizer.json", "modeling_lion.py"]
    assert stale_files(repository, export_files) == [
        "kernels_ssm.py", "model-00001-of-00002.safetensors", "model.fp16.safetensors",
        "model.safetensors.index.json", "modeling_bigs.py", "pytorch_model.bin", "spiece.model",
        "tokenization_wordchar.py", "vocab.txt",
    ]


def test_every_code_file_an_export_ships_is_one_a_push_replaces(sentences):
    """A module whose flat name fell outside ``CODE_FILE_PATTERNS`` would be left behind by a later push."""
    from fnmatch import fnmatchcase

    tokenizer = WordCharTokenizerFast.from_words(sentences(20))
    for model_type in bizoo.MODEL_SPECS:
        names = flat_sources(bizoo.get_spec(model_type), tokenizer)
        outside = [name for name in names if not any(fnmatchcase(name, p) for p in CODE_FILE_PATTERNS)]
        assert not outside, f"{model_type}: {outside}"


# ----------------------------------------------------------------------------------------------------------------
# The card names the repository
# ----------------------------------------------------------------------------------------------------------------


def test_the_uploaded_card_names_the_repository_and_its_snippets_run(tmp_path, hub, hub_cache, tokenizer,
                                                                     make_config):
    """The export's card loads ``model_id = "lion-export"``, the folder beside it; on the Hub that name is nobody's
    repository. The uploaded card names the repository id in both snippets, and they run, where bizoo is not
    installed, against the Hub's cache with nothing named lion-export in reach; its title is the repository's NAME."""
    folder = export(tmp_path, "lion-export", lion(make_config, len(tokenizer), 0), tokenizer)
    push_folder(folder, REPO)
    card = hub.files()["README.md"].decode("utf-8")
    exported = (folder / "README.md").read_text(encoding="utf-8")
    blocks = snippets(card)
    assert len(blocks) == 2 and all("lion-export" not in block for block in blocks), blocks
    old_lines, new_lines = exported.splitlines(), card.splitlines()
    assert len(old_lines) == len(new_lines)
    changed = [(old, new) for old, new in zip(old_lines, new_lines) if old != new]  # metadata, prose: kept
    assert [new for _, new in changed] == [
        "# lion-d", f'model_id = "{REPO}"', f'pipe = pipeline("fill-mask", model="{REPO}", trust_remote_code=True)'
    ], changed
    assert changed[0][0] == "# lion-export"
    assert changed[1][0].startswith('model_id = "lion-export"  # ') and 'model="lion-export"' in changed[2][0]

    hub_cache(REPO, hub.files())
    (tmp_path / "hf_home").mkdir()
    (tmp_path / "hf_home" / "hub").symlink_to(tmp_path / "hub-cache")  # the child's HF_HOME/hub
    (tmp_path / "reader").mkdir()  # where the snippets run: no folder of that name, nor lion-export
    result = run_isolated(tmp_path, CARD_CHILD, {"parent": str(tmp_path / "reader"), "cards": {REPO: blocks}})
    report = f"child exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert result.returncode == 0 and "every snippet ran" in result.stdout, report
