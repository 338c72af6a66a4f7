"""Edge cases of ``bizoo export`` as a transformers user meets them: an output folder that already holds an export
(the refusal names this command's options only), a model card whose configuration table stays a table when a
value holds a ``|`` (a label such as ``B-A|B``), a card that lists no local file format as a Hub dataset, and a
config.json whose ``architectures`` is one name rather than a list of names (or something else)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from safetensors import safe_open

from bizoo import LionForTokenClassification
from bizoo.scripts.export import main
from bizoo.scripts.lib.results import record_results


def test_second_export_into_the_same_folder_names_only_export_options(checkpoint: Path, tmp_path: Path, capsys):
    output = tmp_path / "out"
    assert main([str(checkpoint), str(output)]) == 0
    files = {p.name: p.read_bytes() for p in output.iterdir()}
    capsys.readouterr()
    assert main([str(checkpoint), str(output)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("bizoo export: error: output folder") and "already exists and is not empty" in err, err
    assert "--overwrite" in err
    assert "--resume" not in err, err  # bizoo export has no --resume
    assert {p.name: p.read_bytes() for p in output.iterdir()} == files  # nothing lost
    assert main([str(checkpoint), str(output), "--overwrite"]) == 0


def test_config_table_escapes_a_pipe_in_a_label(tmp_path: Path, tokenizer, make_config):
    labels = ["O", "B-A|B", "I-A|B"]
    config = make_config(("lion", "d"), vocab_size=len(tokenizer), id2label=dict(enumerate(labels)),
                         label2id={label: i for i, label in enumerate(labels)})
    checkpoint = tmp_path / "ckpt"
    LionForTokenClassification(config).save_pretrained(checkpoint)
    tokenizer.save_pretrained(checkpoint)
    assert main([str(checkpoint), str(tmp_path / "out")]) == 0
    card = (tmp_path / "out" / "README.md").read_text(encoding="utf-8")
    table = card.split("## Configuration", 1)[1].split("## About", 1)[0].strip().splitlines()
    assert table[0] == "| Field | Value |"
    for row in table[2:]:  # a bare "|" inside a cell would split it into more cells
        cells = row.replace("\\|", "").strip("|").split("|")
        assert len(cells) == 2, row
    assert "| `id2label` | `{0: 'O', 1: 'B-A\\|B', 2: 'I-A\\|B'}` |" in table


@pytest.mark.parametrize("file_type", ["CSV", "Json", "PARQUET", "tsv"])
def test_a_local_file_format_is_not_listed_as_a_hub_dataset(checkpoint: Path, tmp_path: Path, file_type):
    """finetune-glue records a run on local files with the suffix as written (train.CSV -> "CSV"): the card's
    ``datasets`` (links to Hub datasets) must not list it, whatever its case; the model-index keeps the record."""
    record_results(checkpoint, task={"type": "text-classification", "name": "Text classification"},
                   dataset={"name": "train.csv", "type": file_type, "split": "validation"}, metrics={"accuracy": 0.5})
    assert main([str(checkpoint), str(tmp_path / "out")]) == 0
    text = (tmp_path / "out" / "README.md").read_text(encoding="utf-8")
    meta = yaml.safe_load(text[4:].split("\n---\n", 1)[0])
    assert "datasets" not in meta, meta.get("datasets")
    assert meta["model-index"][0]["results"][0]["dataset"]["type"] == file_type


def _set_architectures(checkpoint: Path, value) -> None:
    config = json.loads((checkpoint / "config.json").read_text(encoding="utf-8"))
    config["architectures"] = value
    (checkpoint / "config.json").write_text(json.dumps(config), encoding="utf-8")


def test_architectures_given_as_one_string_exports_that_class(checkpoint: Path, tmp_path: Path):
    """``"architectures": "LionForMaskedLM"`` (a name, not a list of names) was read as the class ``"L"``: the bare
    model was loaded and the export refused, naming the very class that was asked for. It means that class."""
    _set_architectures(checkpoint, "LionForMaskedLM")
    assert main([str(checkpoint), str(tmp_path / "out")]) == 0
    config = json.loads((tmp_path / "out" / "config.json").read_text(encoding="utf-8"))
    assert config["architectures"] == ["LionForMaskedLM"]
    with safe_open(str(tmp_path / "out" / "model.safetensors"), framework="pt") as weights:
        assert any(name.startswith("lm_head.") for name in weights.keys())


@pytest.mark.parametrize("value", [{"AutoModel": "LionModel"}, 3, ["LionForMaskedLM", 3]])
def test_architectures_of_another_shape_is_refused_by_name(checkpoint: Path, tmp_path: Path, capsys, value):
    _set_architectures(checkpoint, value)
    assert main([str(checkpoint), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("bizoo export: error: "), err
    assert 'config.json: "architectures" must be a list of class names such as ["Lion' in err, err
    assert err.endswith(f"got {value!r}"), err
    assert not (tmp_path / "out").exists()
