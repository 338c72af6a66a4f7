"""The Hub and cache options of the training commands as transformers' run_mlm.py, run_glue.py and run_ner.py take
them (``lib.sources``, ``lib.training.add_hub_arguments``), each shown to have its effect:

* a Hub checkpoint id found in the Hub's cache fine-tunes offline (it was refused as "the hub is offline" once its
  configuration had loaded from that cache);
* --cache_dir: the checkpoint is read from that folder, laid out as the Hub's cache (and nowhere else), and datasets
  writes its Arrow files there;
* --model_revision: a cache with two revisions gives the model of the one named (owner/name@rev alike; both at
  different revisions is an error);
* --token: handed to every Hub download (model, tokenizer, dataset);
* --trust_remote_code: the checkpoint's own configuration and model classes (its auto_map) are loaded; without it
  the checkpoint is refused;
* --overwrite_cache: datasets prepares the data files again instead of reading its cached Arrow files;
* --ignore_mismatched_sizes: a checkpoint with a head for other labels is fine-tuned, its head new;
* --use_fast_tokenizer false, --preprocessing_num_workers other than 1 and --config_name are refused, saying why.

The suite runs with HF_HUB_OFFLINE=1: the Hub's cache is a local folder (the ``hub_cache`` fixture).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from transformers import AutoConfig, AutoModelForSequenceClassification

from bizoo.scripts import finetune_glue, finetune_ner, pretrain
from bizoo.scripts.lib.dataset_readers import load_splits
from bizoo.scripts.lib.sources import HubOptions
from tests.scripts.conftest import call

TINY = ["--model-config", "hidden_size=32", "num_hidden_layers=1", "num_attention_heads=4", "intermediate_size=64"]
FAST = ["--max-steps", "2", "--batch-size", "4", "--logging-steps", "1", "--save-steps", "100", "--max-length", "32",
        "--seed", "3"]
REPO = "someone/tiny-lion"
HUB_FLAGS = ["--cache_dir", "--model_revision", "--token", "--trust_remote_code", "--overwrite_cache",
             "--use_fast_tokenizer", "--low_cpu_mem_usage", "--preprocessing_num_workers", "--config_name"]


def glue_run(glue_dir, output: Path, model: str, *flags) -> int:
    return call(finetune_glue.main, ["--model-name-or-path", model, "--task", "sst2", "--data-dir", glue_dir,
                                     "--output-dir", output, *FAST, *flags])


def checkpoint_files(folder: Path) -> dict[str, Path]:
    return {path.name: path for path in folder.iterdir() if path.is_file()}


@pytest.fixture
def lion_checkpoint(tmp_path, tokenizer, make_config):
    """save(hidden_size) -> a folder with a tiny LION masked LM of that width and its tokenizer."""
    from bizoo import LionForMaskedLM

    def save(hidden_size: int = 32) -> Path:
        folder = tmp_path / f"ckpt-{hidden_size}"
        config = make_config(("lion", "d"), vocab_size=len(tokenizer), hidden_size=hidden_size)
        LionForMaskedLM(config).save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        return folder

    return save


@pytest.mark.parametrize("command", [pretrain, finetune_glue, finetune_ner])
def test_the_help_lists_the_hub_options(command, capsys) -> None:
    assert call(command.main, ["--help"]) == 0
    text = capsys.readouterr().out
    for flag in HUB_FLAGS:
        assert f"{flag} " in text or f"{flag}\n" in text, flag
    assert ("--ignore_mismatched_sizes" in text) == (command is not pretrain)  # run_mlm.py has none


def test_a_hub_checkpoint_in_the_cache_fine_tunes_offline(tmp_path, lion_checkpoint, hub_cache, glue_dir) -> None:
    hub_cache(REPO, checkpoint_files(lion_checkpoint()))
    output = tmp_path / "out"
    assert glue_run(glue_dir, output, REPO, "--low_cpu_mem_usage") == 0  # run_mlm.py's flag: taken, changes nothing
    assert AutoConfig.from_pretrained(output).hidden_size == 32
    record = json.loads((output / "eval_results.json").read_text(encoding="utf-8"))
    assert record["model_name_or_path"] == REPO  # the id given, not the cache's folder


def test_a_legacy_hub_id_without_an_owner_is_a_hub_checkpoint(tmp_path, lion_checkpoint, hub_cache, glue_dir,
                                                               capsys) -> None:
    """run_glue.py's command lines still name models as "bert-base-uncased", which the Hub redirects to the owner's
    repository: such a name was refused as "not a Hub repository id"."""
    hub_cache("tiny-lion", checkpoint_files(lion_checkpoint()))
    assert glue_run(glue_dir, tmp_path / "out", "tiny-lion") == 0
    assert AutoConfig.from_pretrained(tmp_path / "out").hidden_size == 32
    assert glue_run(glue_dir, tmp_path / "absent", "absent-model") == 2
    assert ("'absent-model' is not a local path, and the Hub model repository 'absent-model' is not in the cache"
            in capsys.readouterr().err)


def test_cache_dir_is_where_the_hub_checkpoint_is_read(tmp_path, lion_checkpoint, hub_cache, glue_dir,
                                                      capsys) -> None:
    snapshot = hub_cache(REPO, checkpoint_files(lion_checkpoint()))
    own_cache = tmp_path / "own-cache"
    shutil.move(snapshot.parents[2], own_cache)  # the Hub's default cache is now empty
    assert glue_run(glue_dir, tmp_path / "default", REPO) == 2
    assert f"{REPO!r} is not in the cache" in capsys.readouterr().err
    output = tmp_path / "own"
    assert glue_run(glue_dir, output, REPO, "--cache_dir", own_cache) == 0
    assert (own_cache / "models--someone--tiny-lion" / "snapshots").is_dir()
    assert AutoConfig.from_pretrained(output).hidden_size == 32
    # pretrain continues the same checkpoint from the same cache
    text = tmp_path / "text.txt"
    text.write_text("\n".join(f"the castle of the king number {i} stood on the hill" for i in range(40)) + "\n")
    assert call(pretrain.main, ["--model-name-or-path", REPO, "--text", text, "--output-dir", tmp_path / "mlm",
                                "--cache-dir", own_cache, *FAST]) == 0


def test_cache_dir_holds_the_arrow_files_datasets_writes(tmp_path, synthetic) -> None:
    rows = [{"sentence": f"{word} movie", "label": i % 2} for i, word in enumerate(synthetic.WORDS)]
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    cache = tmp_path / "datasets-cache"
    splits = load_splits(train_file=str(train), hub=HubOptions(cache_dir=str(cache)))
    assert splits["train"]["sentence"] == [row["sentence"] for row in rows]
    assert list(cache.rglob("*.arrow")) and all(Path(f["filename"]).is_relative_to(cache)
                                                for f in splits["train"].cache_files)


def arrow_files(cache: Path) -> dict[Path, int]:
    return {path: path.stat().st_mtime_ns for path in cache.rglob("*.arrow")}


def age_arrow_files(cache: Path) -> None:
    """Every Arrow file's modification time set to the epoch: a file written again afterwards has another, however
    coarse the file system's timestamps."""
    for path in cache.rglob("*.arrow"):
        os.utime(path, ns=(0, 0))


def test_overwrite_cache_prepares_the_data_files_again(tmp_path, synthetic) -> None:
    rows = [{"sentence": f"{word} film", "label": i % 3} for i, word in enumerate(synthetic.WORDS)]
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    cache = tmp_path / "cache"
    load_splits(train_file=str(train), hub=HubOptions(cache_dir=str(cache)))
    age_arrow_files(cache)
    first = arrow_files(cache)
    load_splits(train_file=str(train), hub=HubOptions(cache_dir=str(cache)))
    assert arrow_files(cache) == first  # read from the cache
    again = load_splits(train_file=str(train), hub=HubOptions(cache_dir=str(cache), overwrite_cache=True))
    rewritten = arrow_files(cache)
    assert set(rewritten) == set(first) and all(rewritten[path] != first[path] for path in first)
    assert again["train"]["sentence"] == [row["sentence"] for row in rows]


def test_model_revision_picks_the_revision_named(tmp_path, lion_checkpoint, hub_cache, glue_dir, capsys) -> None:
    hub_cache(REPO, checkpoint_files(lion_checkpoint(32)))
    hub_cache(REPO, checkpoint_files(lion_checkpoint(48)), ref="v2")
    widths = {}
    for name, flags in (("main", []), ("flag", ["--model_revision", "v2"]), ("at", [])):
        model = f"{REPO}@v2" if name == "at" else REPO
        assert glue_run(glue_dir, tmp_path / name, model, *flags) == 0
        widths[name] = AutoConfig.from_pretrained(tmp_path / name).hidden_size
    assert widths == {"main": 32, "flag": 48, "at": 48}
    assert glue_run(glue_dir, tmp_path / "both", f"{REPO}@v2", "--model-revision", "main") == 2
    assert "names the revision 'v2' and --model_revision 'main' another" in capsys.readouterr().err
    assert not (tmp_path / "both").exists()


def test_token_goes_to_every_hub_download(tmp_path, lion_checkpoint, hub_cache, synthetic, monkeypatch) -> None:
    import huggingface_hub

    hub_cache(REPO, checkpoint_files(lion_checkpoint()))
    hub_cache("someone/tokenizer", checkpoint_files(lion_checkpoint()))
    rows = [{"tokens": ["Anna", "went", "to", "Paris"], "ner_tags": ["B-PER", "O", "O", "B-LOC"]}] * 8
    data = tmp_path / "ner.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    hub_cache("someone/tiny-ner", {"train.jsonl": data, "validation.jsonl": data}, repo_type="dataset")
    tokens = []
    original = huggingface_hub.snapshot_download

    def snapshot_download(repo_id, **kwargs):
        tokens.append((repo_id, kwargs.get("token")))
        return original(repo_id, **kwargs)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    assert call(finetune_ner.main, ["--model-name-or-path", REPO, "--tokenizer", "someone/tokenizer",
                                    "--dataset_name", "someone/tiny-ner", "--output-dir", tmp_path / "out",
                                    "--token", "hf_secret", *FAST]) == 0
    assert {repo for repo, _ in tokens} == {REPO, "someone/tokenizer", "someone/tiny-ner"}
    assert {token for _, token in tokens} == {"hf_secret"}


REMOTE_CONFIG = '''from bizoo import LionConfig


class RemoteLionConfig(LionConfig):
    model_type = "remote_lion"
'''
REMOTE_MODEL = '''from bizoo import LionForSequenceClassification

from .configuration_remote import RemoteLionConfig


class RemoteLionForSequenceClassification(LionForSequenceClassification):
    config_class = RemoteLionConfig
'''


def test_trust_remote_code_loads_the_checkpoints_own_classes(tmp_path, lion_checkpoint, glue_dir, capsys) -> None:
    """A checkpoint of a model type neither bizoo nor transformers defines, its classes in its own files."""
    folder = lion_checkpoint()
    (folder / "configuration_remote.py").write_text(REMOTE_CONFIG)
    (folder / "modeling_remote.py").write_text(REMOTE_MODEL)
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type="remote_lion", auto_map={
        "AutoConfig": "configuration_remote.RemoteLionConfig",
        "AutoModelForSequenceClassification": "modeling_remote.RemoteLionForSequenceClassification",
    })
    (folder / "config.json").write_text(json.dumps(config))
    assert glue_run(glue_dir, tmp_path / "refused", folder) == 2
    assert "trust_remote_code" in capsys.readouterr().err
    assert not (tmp_path / "refused").exists()
    output = tmp_path / "out"
    assert glue_run(glue_dir, output, folder, "--trust_remote_code") == 0
    assert "RemoteLionForSequenceClassification" in capsys.readouterr().out
    assert json.loads((output / "config.json").read_text())["model_type"] == "remote_lion"


def test_ignore_mismatched_sizes_gives_a_checkpoint_a_new_head(tmp_path, lion_checkpoint, glue_dir, capsys) -> None:
    folder = tmp_path / "three-labels"
    AutoModelForSequenceClassification.from_pretrained(lion_checkpoint(), num_labels=3).save_pretrained(folder)
    shutil.copytree(lion_checkpoint(), folder, dirs_exist_ok=True, ignore=shutil.ignore_patterns("*.safetensors",
                                                                                                "config.json"))
    assert glue_run(glue_dir, tmp_path / "refused", folder) == 2
    assert "--ignore_mismatched_sizes" in capsys.readouterr().err
    output = tmp_path / "out"
    assert glue_run(glue_dir, output, folder, "--ignore_mismatched_sizes") == 0
    assert AutoModelForSequenceClassification.from_pretrained(output).config.num_labels == 2


@pytest.mark.parametrize("argv, message", [
    (["--use_fast_tokenizer", "false"], "--use_fast_tokenizer false: transformers 5 always loads the fast tokenizer"),
    (["--preprocessing_num_workers", "4"], "--preprocessing_num_workers 4: bizoo tokenizes in the command's process"),
    (["--config_name", "bert-base-uncased"], "--config_name 'bert-base-uncased': bizoo takes the configuration"),
])
@pytest.mark.parametrize("command", ["pretrain", "finetune-glue", "finetune-ner"])
def test_what_bizoo_does_not_take_is_refused_saying_why(command, argv, message, tmp_path, glue_dir, conll_dir,
                                                        capsys) -> None:
    output = tmp_path / "out"
    required = {"pretrain": [],
                "finetune-glue": ["--model-name-or-path", "lion", "--task", "sst2", "--data-dir", glue_dir],
                "finetune-ner": ["--model-name-or-path", "lion", "--data-dir", conll_dir]}[command]
    main = {"pretrain": pretrain, "finetune-glue": finetune_glue, "finetune-ner": finetune_ner}[command].main
    assert call(main, [*required, "--output-dir", output, *argv]) == 2
    assert message in capsys.readouterr().err
    assert not output.exists()


def fake_hub(monkeypatch, repositories: dict[str, Path], cache: Path) -> list[tuple[str, list[str] | None]]:
    """``snapshot_download`` as the Hub answers it: the files of ``repositories[repo_id]`` that match
    ``allow_patterns`` copied into ``cache``; returns the calls (repo id, patterns)."""
    import fnmatch

    import huggingface_hub

    calls = []

    def snapshot_download(repo_id, allow_patterns=None, **kwargs):
        calls.append((repo_id, allow_patterns))
        folder = cache / repo_id.replace("/", "--")
        folder.mkdir(parents=True, exist_ok=True)
        for path in repositories[repo_id].iterdir():
            if allow_patterns is None or any(fnmatch.fnmatch(path.name, pattern) for pattern in allow_patterns):
                shutil.copy(path, folder / path.name)
        return str(folder)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    return calls


def test_only_the_checkpoints_own_files_are_fetched(tmp_path, lion_checkpoint, glue_dir, monkeypatch) -> None:
    """A Hub model's other frameworks' weights are not downloaded; one without safetensors weights gets its
    pytorch_model.bin, as from_pretrained fetches it."""
    import torch

    with_safetensors = lion_checkpoint()
    (with_safetensors / "tf_model.h5").write_bytes(b"not needed")
    (with_safetensors / "flax_model.msgpack").write_bytes(b"not needed")
    pickled = tmp_path / "pickled"
    shutil.copytree(with_safetensors, pickled, ignore=shutil.ignore_patterns("*.safetensors"))
    from safetensors.torch import load_file

    torch.save(load_file(with_safetensors / "model.safetensors"), pickled / "pytorch_model.bin")  # the same tensors
    cache = tmp_path / "fetched"
    calls = fake_hub(monkeypatch, {REPO: with_safetensors, "someone/pickled": pickled}, cache)
    assert glue_run(glue_dir, tmp_path / "out", REPO) == 0
    fetched = {path.name for path in (cache / "someone--tiny-lion").iterdir()}
    assert "model.safetensors" in fetched and not fetched & {"tf_model.h5", "flax_model.msgpack"}
    output = tmp_path / "from-pickle"
    assert glue_run(glue_dir, output, "someone/pickled") == 0
    assert (cache / "someone--pickled" / "pytorch_model.bin").is_file()
    assert not {path.name for path in (cache / "someone--pickled").iterdir()} & {"tf_model.h5", "flax_model.msgpack"}
    # the same weights, the same seed: the same fine-tuned model from either file
    tuned = AutoModelForSequenceClassification.from_pretrained(output).state_dict()
    reference = AutoModelForSequenceClassification.from_pretrained(tmp_path / "out").state_dict()
    assert tuned.keys() == reference.keys()
    assert all(torch.allclose(tuned[name], reference[name], atol=1e-6) for name in tuned)
    assert {repo for repo, _ in calls} == {REPO, "someone/pickled"}


def test_from_hub_reads_glue_with_the_hub_options(tmp_path, glue_dir, monkeypatch) -> None:
    """--from-hub: datasets.load_dataset gets --cache_dir, --token and --overwrite_cache's download mode (and nothing
    without them), through the command and lib.data.load_glue_from_hub (the Hub stood in for by the local files)."""
    import datasets

    from bizoo.scripts.lib.data import load_glue_split
    from tests.scripts.test_data import FakeHubSplit

    asked = []

    def load_dataset(path, name, split, **kwargs):  # the Hub's SST-2 rows: sentence, label (0/1), idx
        asked.append(kwargs)
        ours = load_glue_split("sst2", glue_dir, "dev" if split == "validation" else split)
        rows = [{"sentence": row["sentence1"], "label": row["label"], "idx": i} for i, row in enumerate(ours)]
        return FakeHubSplit(rows, ["negative", "positive"])

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    base = ["--model-name-or-path", "lion", "--task", "sst2", "--from-hub", *TINY, *FAST]
    assert call(finetune_glue.main, [*base, "--output-dir", tmp_path / "plain"]) == 0
    assert asked == [{}, {}]
    asked.clear()
    assert call(finetune_glue.main, [*base, "--output-dir", tmp_path / "options", "--cache_dir", tmp_path / "cache",
                                     "--token", "hf_secret", "--overwrite_cache"]) == 0
    expected = {"cache_dir": str(tmp_path / "cache"), "token": "hf_secret", "download_mode": "reuse_cache_if_exists"}
    assert asked == [expected, expected]
