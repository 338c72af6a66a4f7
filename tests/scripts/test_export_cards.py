"""The model card says what its folder is: an export (``bizoo export``: bizoo's code ships, it loads with
``trust_remote_code=True``), a checkpoint a bizoo command saved (no code: it loads with bizoo installed) or a baseline
that transformers ships (it loads without bizoo); it names a tokenizer only when one is there; and the Python snippets
it shows run as written, where bizoo is not installed for an export and a baseline."""

from __future__ import annotations

import json
import re
from pathlib import Path

from transformers import BertConfig, BertForMaskedLM

from bizoo import LionForMaskedLM
from bizoo.scripts.export import export_model
from bizoo.scripts.lib.model_card import write_checkpoint_card
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
