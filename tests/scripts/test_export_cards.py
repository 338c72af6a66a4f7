"""The model card says what its folder is: an export (``bizoo export``: bizoo's code ships, it loads with
``trust_remote_code=True``), a checkpoint a bizoo command saved (no code: it loads with bizoo installed) or a baseline
that transformers ships (it loads without bizoo); it names a tokenizer only when one is there; the Python snippets
it shows run as written, where bizoo is not installed for an export and a baseline, whatever the folder is called;
its results table agrees with its model-index; it declares the license ``--license`` names. And the
tokenizer_config.json an export publishes holds no state of how the export loaded it."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import yaml
from huggingface_hub import ModelCard
from transformers import AutoTokenizer, BertConfig, BertForMaskedLM

from bizoo import LionForMaskedLM
from bizoo.modeling.tokenization_wordchar import WordCharTokenizerFast
from bizoo.scripts.export import export_model, main
from bizoo.scripts.lib.model_card import write_checkpoint_card
from bizoo.scripts.lib.results import record_results
from tests.scripts.test_remote_code import run_isolated


def about(card: str) -> str:
    return card.split("## About", 1)[1]


def snippets(card: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", card, flags=re.S)


def test_the_about_section_describes_the_folder_it_is_in(tmp_path: Path, tokenizer, make_config):
    checkpoint = tmp_path / "lion-ckpt"
    model = LionForMaskedLM(make_config(("lion", "d"), vocab_size=len(tokenizer)))
    model.save_pretrained(checkpoint)
    tokenizer.save_pretrained(checkpoint)
    write_checkpoint_card(checkpoint, model, tokenizer)
    saved = about((checkpoint / "README.md").read_text(encoding="utf-8"))
    assert "`bizoo export` wrote this folder" not in saved and "flat copy" not in saved  # it has no code files
    assert not any(checkpoint.glob("*.py"))
    assert "holds no code, so it loads where bizoo is installed" in saved and "the tokenizer" in saved

    exported = about((export_model(checkpoint, tmp_path / "lion-export") / "README.md").read_text(encoding="utf-8"))
    assert "`bizoo export` wrote this folder" in exported and "flat copy of bizoo's code" in exported
    assert "the tokenizer" in exported

    bare = tmp_path / "bare"
    model.save_pretrained(bare)  # no tokenizer: the card must not claim one
    card = (export_model(bare, tmp_path / "bare-export") / "README.md").read_text(encoding="utf-8")
    assert "tokenizer" not in about(card) and "| Tokenizer | not included" in card


CARD_CHILD = r'''
"""Run every Python snippet of each card (argv[1]: the JSON case file) from the folder that holds the models, as
a reader of the card would, with `model_id` the folder's name."""
import builtins
import json
import os
import sys
from pathlib import Path

case = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
os.chdir(case["parent"])
failures = []


def no_questions(prompt=""):
    """transformers asks on stdin before it runs remote code it was not told to trust: a card's snippet must not."""
    failures.append(f"a snippet stopped to ask: {' '.join(str(prompt).split())[:200]}")
    raise EOFError


builtins.input = no_questions
for name, blocks in case["cards"].items():
    for number, source in enumerate(blocks):
        try:
            exec(compile(source, f"{name}/README.md snippet {number}", "exec"), {})
        except Exception as error:  # noqa: BLE001 - every failing snippet is reported
            failures.append(f"{name} snippet {number}: {type(error).__name__}: {error}")
    print(f"ran {name}: {len(blocks)} snippets", flush=True)
if failures:
    print(*failures, sep="\n", file=sys.stderr)
    sys.exit(1)
print("every snippet ran")
'''


def test_baseline_and_export_card_snippets_run_without_bizoo(tmp_path: Path, tokenizer, make_config):
    """A baseline's card says it loads without bizoo: its snippets must not `import bizoo` (they did, and failed
    where bizoo is not installed). An export's snippets run there too, and never stop to ask whether to trust the
    remote code (its AutoTokenizer line lacked trust_remote_code=True: AutoTokenizer reads config.json's auto_map)."""
    parent = tmp_path / "models"
    bert = parent / "bert-baseline"
    model = BertForMaskedLM(BertConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1,
                                       num_attention_heads=2, intermediate_size=32, max_position_embeddings=64))
    model.save_pretrained(bert)
    tokenizer.save_pretrained(bert)
    write_checkpoint_card(bert, model, tokenizer)
    checkpoint = tmp_path / "lion-ckpt"
    LionForMaskedLM(make_config(("lion", "d"), vocab_size=len(tokenizer))).save_pretrained(checkpoint)
    tokenizer.save_pretrained(checkpoint)
    export = export_model(checkpoint, parent / "lion-export")

    cards = {folder.name: snippets((folder / "README.md").read_text(encoding="utf-8")) for folder in (bert, export)}
    assert all(len(blocks) == 2 for blocks in cards.values()), cards
    result = run_isolated(tmp_path, CARD_CHILD, {"parent": str(parent), "cards": cards})
    report = f"child exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert result.returncode == 0, report
    assert "every snippet ran" in result.stdout and "ran bert-baseline: 2 snippets" in result.stdout, report
    assert not any("import bizoo" in block for block in cards["bert-baseline"])
    assert json.loads((export / "config.json").read_text(encoding="utf-8"))["auto_map"]


# A folder name with both quotes, a backslash and spaces: legal on Linux, and each breaks a literal formed by pasting.
ODD_NAME = "Lion \"d\" v2\\it's"


def test_snippets_compile_and_load_a_folder_named_with_quotes_and_backslashes(tmp_path: Path, tokenizer,
                                                                             make_config):
    """The card's snippets name the folder in string literals: a name pasted between double quotes broke them
    (``model_id = "Lion "d" v2\\it's"`` is a SyntaxError). They compile, name this very folder, and load it."""
    checkpoint = tmp_path / "lion-ckpt"
    LionForMaskedLM(make_config(("lion", "d"), vocab_size=len(tokenizer))).save_pretrained(checkpoint)
    tokenizer.save_pretrained(checkpoint)
    parent = tmp_path / "models"
    export = export_model(checkpoint, parent / ODD_NAME)
    assert export.name == ODD_NAME
    card = (export / "README.md").read_text(encoding="utf-8")
    blocks = snippets(card)
    assert len(blocks) == 2
    for number, block in enumerate(blocks):
        tree = ast.parse(block, f"snippet {number}")  # a SyntaxError fails here, with the line
        strings = {node.value for node in ast.walk(tree) if isinstance(node, ast.Constant)}
        assert ODD_NAME in strings, (number, block)  # the literal is the folder's name, not a mangled one

    result = run_isolated(tmp_path, CARD_CHILD, {"parent": str(parent), "cards": {ODD_NAME: blocks}})
    report = f"child exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert result.returncode == 0 and "every snippet ran" in result.stdout, report


def front_matter(card: str) -> dict:
    assert card.startswith("---\n"), card[:80]
    return yaml.safe_load(card[4:].split("\n---\n", 1)[0])


def results_rows(card: str) -> list[list[str]]:
    """The rows of the card's Results table, as cells."""
    section = card.split("## Results", 1)[1].split("## Configuration", 1)[0]
    lines = [line for line in section.strip().splitlines() if line.startswith("|")]
    assert lines[0] == "| Task | Dataset | Split | Metric | Value |" and lines[1] == "|---|---|---|---|---|", lines
    return [[cell.strip() for cell in line.strip("|").split(" | ")] for line in lines[2:]]


def test_results_table_shows_what_the_model_index_holds(checkpoint: Path, tmp_path: Path):
    """The table showed each metric under its raw id (``spearman``, ``f1``) and a NaN as ``nan``, while the
    model-index named them (``Spearman correlation``, the record's own ``macro F1``) and left the NaN out. Row for
    row they agree now; the NaN reads ``n/a`` in the table only, with a line saying why it is not in the metadata."""
    record_results(checkpoint, task={"type": "text-classification", "name": "Semantic textual similarity"},
                   dataset={"name": "GLUE STS-B", "type": "nyu-mll/glue", "config": "stsb", "split": "validation"},
                   metrics={"spearman": float("nan"), "pearson": 0.5})
    record_results(checkpoint, task={"type": "text-classification"},
                   dataset={"name": "reviews", "type": "csv", "split": "test"},
                   metrics={"f1": 0.75, "accuracy": 0.8}, metric_names={"f1": "macro F1"})
    card = (export_model(checkpoint, tmp_path / "out") / "README.md").read_text(encoding="utf-8")
    index = front_matter(card)["model-index"][0]["results"]
    from_index = [[entry["task"]["name"], entry["dataset"]["name"], entry["dataset"]["split"], metric["name"],
                   str(metric["value"])] for entry in index for metric in entry["metrics"]]
    rows = results_rows(card)
    assert [row for row in rows if row[-1] != "n/a"] == from_index, (rows, from_index)
    assert ["Semantic textual similarity", "GLUE STS-B", "validation", "Spearman correlation", "n/a"] in rows
    assert ["text-classification", "reviews", "test", "macro F1", "0.75"] in rows
    assert len(rows) == 4 and not any(cell.lower() in ("nan", "spearman", "f1") for row in rows for cell in row)
    assert "n/a: the metric is not a finite number" in card and "model-index leaves it out" in card


def test_license_option_names_the_cards_license(checkpoint: Path, tmp_path: Path, capsys):
    """Every card declared apache-2.0, bizoo's own license, whatever the weights came under (converted from someone
    else's, or a user's own model): ``--license`` names it; the default stays apache-2.0."""
    assert main([str(checkpoint), str(tmp_path / "mit"), "--license", "mit"]) == 0
    card = (tmp_path / "mit" / "README.md").read_text(encoding="utf-8")
    assert front_matter(card)["license"] == "mit" and ModelCard(card).data.license == "mit"
    assert main([str(checkpoint), str(tmp_path / "default")]) == 0
    assert front_matter((tmp_path / "default" / "README.md").read_text(encoding="utf-8"))["license"] == "apache-2.0"
    capsys.readouterr()
    assert main([str(checkpoint), str(tmp_path / "bad"), "--license", "MIT License"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bizoo export: error: --license must be a Hub license id") and "'MIT License'" in err, err
    assert not (tmp_path / "bad").exists()


def test_exported_tokenizer_config_leaves_out_how_it_was_loaded(checkpoint: Path, tmp_path: Path, sentences):
    """transformers' save_pretrained writes ``is_local`` and ``local_files_only`` (how the export loaded the
    checkpoint: from a local folder, offline) into tokenizer_config.json: state of this machine's load, not the
    tokenizer's, which a Hub repository should not publish. The export leaves them out, for a transformers
    tokenizer and for bizoo's own (whose auto_map stays), and the tokenizer still loads and encodes the same."""
    wordchar = tmp_path / "wordchar-ckpt"
    words = WordCharTokenizerFast.from_words(sentences(40))
    model = LionForMaskedLM.from_pretrained(checkpoint)
    model.resize_token_embeddings(len(words))
    model.save_pretrained(wordchar)
    words.save_pretrained(wordchar)
    for source, name in ((checkpoint, "wordpiece"), (wordchar, "wordchar")):
        folder = export_model(source, tmp_path / name)
        config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
        assert not {"is_local", "local_files_only"} & set(config), (name, sorted(config))
        assert ("auto_map" in config) == (name == "wordchar"), (name, sorted(config))
        loaded_class = WordCharTokenizerFast if name == "wordchar" else AutoTokenizer
        loaded = loaded_class.from_pretrained(str(folder))
        original = loaded_class.from_pretrained(str(source))
        text = "the king gave his crown to the queen ."
        assert loaded(text)["input_ids"] == original(text)["input_ids"], name
