"""Tests for ``bizoo export``: the folder holds exactly the Hub files, ``auto_map`` names classes of the flat code
files, those files import only each other and third-party packages, the model card's metadata is valid YAML with
the recorded results as a model-index, a failure leaves nothing half-written, and bad input fails with exit code 2
before anything is written. (That the folder loads without bizoo is tests/scripts/test_remote_code.py.)"""

from __future__ import annotations

import ast
import importlib
import json
import sys
from pathlib import Path

import pytest
import torch
import yaml
from transformers import AutoTokenizer
from transformers.dynamic_module_utils import get_relative_imports

import bizoo
from bizoo import LionForMaskedLM, LionModel
from bizoo.scripts import export
from bizoo.scripts.lib.results import record_results
from bizoo.modeling.tokenization_wordchar import WordCharTokenizerFast
from bizoo.scripts.export import main
from bizoo.scripts.lib.model_card import pipeline_tag_for
from bizoo.scripts.lib.remote_code import flat_module_name, flat_sources, flatten_modules

TOKENIZER_FILES = {"tokenizer.json", "tokenizer_config.json"}
#: The code of LION today; a module that joins the import closure joins the export (checked by flat_sources).
LION_CODE = {
    "configuration_common.py",
    "configuration_lion.py",
    "kernels_checks.py",
    "kernels_dispatch.py",
    "kernels_lion.py",
    "kernels_lion_checks.py",
    "kernels_lion_reference.py",
    "modeling_common.py",
    "modeling_heads.py",
    "modeling_lion.py",
}
#: What exported code may import besides the standard library and its sibling files.
THIRD_PARTY = {"torch", "transformers", "tokenizers", "numpy"}  # tokenizers and numpy: transformers needs both
OPTIONAL_THIRD_PARTY = {"triton"}  # only inside try/except: transformers' check_imports skips those
OUR_FOLDERS = {"bizoo", "configuration", "modeling", "kernels", "scripts", "hub_cards"}


@pytest.fixture
def checkpoint(tmp_path: Path, tokenizer, make_config) -> Path:
    """A tiny LION-D masked LM saved with its tokenizer and one recorded evaluation."""
    folder = tmp_path / "ckpt"
    LionForMaskedLM(make_config(("lion", "d"), vocab_size=len(tokenizer))).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    record_results(
        folder,
        task={"type": "fill-mask", "name": "Masked language modeling"},
        dataset={"name": "Shakespeare sample", "type": "shakespeare", "split": "held-out"},
        metrics={"accuracy": 0.3125, "perplexity": 48.5},
        steps=10,
    )
    return folder


@pytest.fixture
def exported(checkpoint: Path, tmp_path: Path) -> Path:
    output = tmp_path / "lion-d-mlm"
    assert main([str(checkpoint), str(output)]) == 0
    return output


def front_matter(readme: Path) -> tuple[dict, str]:
    text = readme.read_text(encoding="utf-8")
    assert text.startswith("---\n"), text[:80]
    header, body = text[4:].split("\n---\n", 1)
    return yaml.safe_load(header), body


def staging_leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# ----------------------------------------------------------------------------------------------------------------
# The folder
# ----------------------------------------------------------------------------------------------------------------


def test_folder_holds_exactly_the_hub_files(exported: Path):
    names = {p.name for p in exported.iterdir()}
    code = set(flat_sources(bizoo.get_spec("lion")))
    assert names == {"config.json", "model.safetensors", "README.md"} | TOKENIZER_FILES | code
    assert LION_CODE <= code
    assert all(p.is_file() for p in exported.iterdir())
    assert all(name.startswith(("configuration_", "modeling_", "kernels_")) for name in code)


def test_bare_model_without_tokenizer_or_results(tmp_path: Path, make_config):
    checkpoint = tmp_path / "bare"
    LionModel(make_config(("lion", "s"))).save_pretrained(checkpoint)
    output = tmp_path / "out"
    assert main([str(checkpoint), str(output)]) == 0
    assert {p.name for p in output.iterdir()} == {"config.json", "model.safetensors", "README.md"} | set(
        flat_sources(bizoo.get_spec("lion"))
    )
    meta, body = front_matter(output / "README.md")
    assert meta["pipeline_tag"] == "feature-extraction"
    assert meta["tags"] == ["bizoo", "lion", "lion-s", "custom_code", "feature-extraction"]
    assert "model-index" not in meta and "datasets" not in meta
    assert "No evaluation results were recorded" in body
    assert "no tokenizer ships here" in body


def test_weights_and_tokenizer_round_trip(checkpoint: Path, exported: Path, tokenizer):
    original = LionForMaskedLM.from_pretrained(checkpoint).state_dict()
    reloaded = LionForMaskedLM.from_pretrained(exported).state_dict()
    assert original.keys() == reloaded.keys()
    for key in original:
        assert torch.equal(original[key], reloaded[key]), key
    text = "the king love war ."
    assert AutoTokenizer.from_pretrained(exported)(text)["input_ids"] == tokenizer(text)["input_ids"]


def test_auto_map_names_classes_in_the_flat_files(exported: Path):
    spec = bizoo.get_spec("lion")
    config = json.loads((exported / "config.json").read_text())
    assert config["model_type"] == "lion" and config["architectures"] == ["LionForMaskedLM"]
    auto_map = config["auto_map"]
    assert set(auto_map) == {"AutoConfig", *spec.models}
    assert auto_map["AutoConfig"] == "configuration_lion.LionConfig"
    assert auto_map["AutoModelForMaskedLM"] == "modeling_lion.LionForMaskedLM"
    for auto_name, reference in auto_map.items():
        module, class_name = reference.split(".")
        expected = spec.config_class if auto_name == "AutoConfig" else spec.models[auto_name]
        assert class_name == expected.__name__
        tree = ast.parse((exported / f"{module}.py").read_text(encoding="utf-8"))
        assert class_name in {node.name for node in tree.body if isinstance(node, ast.ClassDef)}, reference


def _imports(tree: ast.AST):
    """(import node, whether it sits inside a try block) for every import of a module."""
    found = []

    def visit(node, in_try):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append((node, in_try))
        for child in ast.iter_child_nodes(node):
            visit(child, in_try or isinstance(node, ast.Try))

    visit(tree, False)
    return found


def test_flat_files_import_only_siblings_and_third_party_packages(exported: Path):
    check_flat_imports(exported)


def check_flat_imports(exported: Path) -> None:
    code_files = sorted(exported.glob("*.py"))
    siblings = {p.stem for p in code_files}
    for path in code_files:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        compile(tree, str(path), "exec")
        imported_siblings = set()
        for node, in_try in _imports(tree):
            where = f"{path.name}: line {node.lineno}"
            if isinstance(node, ast.ImportFrom) and node.level:
                assert node.level == 1, f"{where}: relative import leaves the folder"
                names = [node.module] if node.module else [alias.name for alias in node.names]
                assert set(names) <= siblings, f"{where}: imports {names}, not files of the folder"
                imported_siblings.update(names)
                continue
            modules = [node.module] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
            for module in modules:
                top = module.split(".")[0]
                assert top not in OUR_FOLDERS, f"{where}: imports {module}"
                allowed = top in sys.stdlib_module_names or top in THIRD_PARTY or top == "__future__"
                assert allowed or (in_try and top in OPTIONAL_THIRD_PARTY), f"{where}: imports {module}"
        # transformers copies exactly the siblings its regex finds in `from .x import` lines
        assert imported_siblings <= set(get_relative_imports(path)), path.name


# ----------------------------------------------------------------------------------------------------------------
# A bizoo tokenizer ships its code too
# ----------------------------------------------------------------------------------------------------------------


def test_wordchar_tokenizer_ships_with_an_auto_map(tmp_path: Path, make_config, sentences):
    tokenizer = WordCharTokenizerFast.from_words(sentences(50), lowercase=True, char_scheme="bilm",
                                                 add_sentence_boundaries=True, max_word_length=12)
    checkpoint = tmp_path / "ckpt"
    LionForMaskedLM(make_config(("lion", "d"), vocab_size=len(tokenizer))).save_pretrained(checkpoint)
    tokenizer.save_pretrained(checkpoint)
    output = tmp_path / "out"
    assert main([str(checkpoint), str(output)]) == 0

    code = set(flat_sources(bizoo.get_spec("lion")))
    assert {p.name for p in output.iterdir()} == (
        {"config.json", "model.safetensors", "README.md", "tokenization_wordchar.py"} | TOKENIZER_FILES | code
    )
    tokenizer_config = json.loads((output / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert tokenizer_config["auto_map"] == {"AutoTokenizer": [None, "tokenization_wordchar.WordCharTokenizerFast"]}
    assert tokenizer_config["char_scheme"] == "bilm" and tokenizer_config["add_sentence_boundaries"] is True
    assert "AutoTokenizer" not in json.loads((output / "config.json").read_text())["auto_map"]
    check_flat_imports(output)
    tree = ast.parse((output / "tokenization_wordchar.py").read_text(encoding="utf-8"))
    assert "WordCharTokenizerFast" in {node.name for node in tree.body if isinstance(node, ast.ClassDef)}

    reloaded = WordCharTokenizerFast.from_pretrained(output)
    text = ["The KING gave Zürich his crown .", "sweet prince"]
    assert reloaded(text, padding=True)["char_ids"] == tokenizer(text, padding=True)["char_ids"]
    _, body = front_matter(output / "README.md")
    assert "AutoTokenizer.from_pretrained(model_id, trust_remote_code=True)" in body
    assert "`tokenization_wordchar.py`" in body


# ----------------------------------------------------------------------------------------------------------------
# The model card
# ----------------------------------------------------------------------------------------------------------------


def test_card_metadata_and_model_index(exported: Path):
    meta, body = front_matter(exported / "README.md")
    assert meta["library_name"] == "transformers"
    assert meta["license"] == "apache-2.0"
    assert meta["tags"] == ["bizoo", "lion", "lion-d", "custom_code", "fill-mask"]
    assert meta["pipeline_tag"] == "fill-mask"
    assert meta["datasets"] == ["shakespeare"]
    assert meta["model-index"] == [
        {
            "name": "lion-d-mlm",
            "results": [
                {
                    "task": {"type": "fill-mask", "name": "Masked language modeling"},
                    "dataset": {"name": "Shakespeare sample", "type": "shakespeare", "split": "held-out"},
                    "metrics": [
                        {"type": "accuracy", "value": 0.3125, "name": "Accuracy"},
                        {"type": "perplexity", "value": 48.5, "name": "Perplexity"},
                    ],
                }
            ],
        }
    ]


def test_card_body_explains_loading_results_and_config(exported: Path):
    _, body = front_matter(exported / "README.md")
    assert "$" not in body  # every placeholder filled
    assert "AutoModelForMaskedLM.from_pretrained(model_id, trust_remote_code=True)" in body
    assert 'pipeline("fill-mask", model="lion-d-mlm", trust_remote_code=True)' in body
    assert "[MASK]" in body
    assert "| Masked language modeling | Shakespeare sample | held-out | Accuracy | 0.3125 |" in body
    assert "| `lion_variant` | `'d'` |" in body and "| `hidden_size` | `32` |" in body
    assert "bidirectional linear attention" in body  # what the model is, from bizoo's own docstring
    assert "Made with bizoo" in body and "modeling_lion.py" in body


@pytest.mark.parametrize(
    "architecture, tag",
    [
        ("LionForMaskedLM", "fill-mask"),
        ("LionForSequenceClassification", "text-classification"),
        ("LionForTokenClassification", "token-classification"),
        ("LionModel", "feature-extraction"),
        ("ElmoForBidirectionalLM", None),
    ],
)
def test_pipeline_tag_from_architecture(architecture, tag):
    assert pipeline_tag_for(architecture) == tag


def test_nan_metric_left_out_of_the_model_index(checkpoint: Path, tmp_path: Path):
    record_results(checkpoint, task={"type": "text-classification", "name": "STS-B"},
                   dataset={"name": "GLUE STS-B", "type": "glue", "split": "validation"},
                   metrics={"spearman": float("nan"), "pearson": 0.5})
    assert main([str(checkpoint), str(tmp_path / "out")]) == 0
    meta, _ = front_matter(tmp_path / "out" / "README.md")
    assert meta["datasets"] == ["shakespeare", "glue"]
    assert meta["model-index"][0]["results"][1]["metrics"] == [{"type": "pearson", "value": 0.5, "name": "Pearson correlation"}]


# ----------------------------------------------------------------------------------------------------------------
# Atomic writing
# ----------------------------------------------------------------------------------------------------------------


def _fail_late(monkeypatch):
    def disk_full(folder, card):
        (folder / "README.md").write_text("half", encoding="utf-8")
        raise OSError("No space left on device")

    monkeypatch.setattr(export, "_write_card", disk_full)


def test_failure_leaves_no_folder(checkpoint: Path, tmp_path: Path, monkeypatch):
    _fail_late(monkeypatch)
    before = staging_leftovers(tmp_path)
    with pytest.raises(OSError, match="No space left"):
        export.export_model(checkpoint, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert staging_leftovers(tmp_path) == before


def test_failure_with_overwrite_keeps_the_old_folder(checkpoint: Path, tmp_path: Path, monkeypatch):
    old = tmp_path / "out"
    old.mkdir()
    (old / "README.md").write_text("old card", encoding="utf-8")
    _fail_late(monkeypatch)
    with pytest.raises(OSError):  # not bad input: the command fails loudly, with the traceback
        main([str(checkpoint), str(old), "--overwrite"])
    assert [p.name for p in old.iterdir()] == ["README.md"]
    assert (old / "README.md").read_text(encoding="utf-8") == "old card"
    assert staging_leftovers(tmp_path) == []


def test_overwrite_replaces_and_refuses_without_it(checkpoint: Path, tmp_path: Path, capsys):
    old = tmp_path / "out"
    old.mkdir()
    (old / "stale.txt").write_text("stale", encoding="utf-8")
    assert main([str(checkpoint), str(old)]) == 2
    assert "already exists and is not empty" in capsys.readouterr().err
    assert [p.name for p in old.iterdir()] == ["stale.txt"]
    assert main([str(checkpoint), str(old), "--overwrite"]) == 0
    assert not (old / "stale.txt").exists() and (old / "model.safetensors").is_file()
    assert staging_leftovers(tmp_path) == []


# ----------------------------------------------------------------------------------------------------------------
# Bad input: exit code 2, a message, nothing written
# ----------------------------------------------------------------------------------------------------------------


def _truncate(checkpoint: Path) -> None:
    weights = checkpoint / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])


def _garble(checkpoint: Path) -> None:
    weights = checkpoint / "model.safetensors"
    weights.write_bytes(b"\xff" * 16 + weights.read_bytes()[16:])


def _pickle_only(checkpoint: Path) -> None:
    (checkpoint / "model.safetensors").unlink()
    (checkpoint / "pytorch_model.bin").write_bytes(b"never unpickled")


def _no_weights(checkpoint: Path) -> None:
    (checkpoint / "model.safetensors").unlink()


def _unknown_type(checkpoint: Path) -> None:
    (checkpoint / "config.json").write_text(json.dumps({"model_type": "bert", "architectures": ["BertModel"]}))


def _invalid_config(checkpoint: Path) -> None:
    config = json.loads((checkpoint / "config.json").read_text())
    config["hidden_size"] = 30  # not a multiple of 4 heads
    (checkpoint / "config.json").write_text(json.dumps(config))


def _head_without_weights(checkpoint: Path) -> None:
    config = json.loads((checkpoint / "config.json").read_text())
    config["architectures"] = ["LionForSequenceClassification"]  # the weights have no classifier
    (checkpoint / "config.json").write_text(json.dumps(config))


def _architectures(names):
    def damage(checkpoint: Path) -> None:
        config = json.loads((checkpoint / "config.json").read_text())
        if names is None:
            del config["architectures"]
        else:
            config["architectures"] = names
        (checkpoint / "config.json").write_text(json.dumps(config))

    return damage


def _bad_results(checkpoint: Path) -> None:
    record_results(checkpoint, {"type": "fill-mask"}, {"name": "x", "type": "x"}, metrics={"accuracy": "high"})


def _broken_json(checkpoint: Path) -> None:
    (checkpoint / "config.json").write_text("{not json")


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda c: c.rename(c.with_name("elsewhere")), "does not exist"),
        (lambda c: (c / "config.json").unlink(), "has no config.json"),
        (_broken_json, "is not valid JSON"),
        (_unknown_type, "model_type 'bert', which is not a bizoo model"),
        (_pickle_only, "pickled PyTorch weights (pytorch_model.bin)"),
        (_no_weights, "has no model weights"),
        (_truncate, "not a readable safetensors file (truncated or corrupted?)"),
        (_garble, "not a readable safetensors file (truncated or corrupted?)"),
        (_invalid_config, "hidden_size (30) must be a multiple of num_attention_heads"),
        (_head_without_weights, "lacks weights of LionForSequenceClassification (or has them in another shape): "
                                "classifier.dense.bias"),
        (_bad_results, "metric values must be numbers"),
        # the masked LM's head would be dropped without a word: refused, naming its weights
        (_architectures(None), "holds weights that LionModel has no place for: lm_head.decoder.bias, "
                               "lm_head.dense.bias, lm_head.dense.weight, lm_head.layer_norm.bias, "
                               "lm_head.layer_norm.weight; exporting would drop them. config.json's "
                               "\"architectures\" (None) names none of"),
        (_architectures(["LionForQuestionAnswering"]), "config.json's \"architectures\" "
                                                       "(['LionForQuestionAnswering']) names none of"),
        (_architectures(["LionModel"]), "holds weights that LionModel has no place for: lm_head.decoder.bias"),
    ],
    ids=["missing", "no-config", "broken-config", "unknown-type", "pickle", "no-weights", "truncated",
         "garbled", "invalid-config", "head-without-weights", "bad-results", "no-architectures",
         "unknown-architecture", "head-weights-unused"],
)
def test_bad_checkpoint_exits_2_and_writes_nothing(checkpoint: Path, tmp_path: Path, capsys, damage, message):
    damage(checkpoint)
    output = tmp_path / "out"
    before = staging_leftovers(tmp_path)
    assert main([str(checkpoint), str(output)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after any progress bar of transformers
    assert err.startswith("bizoo export: error: "), err
    assert message in err
    assert not output.exists()
    assert staging_leftovers(tmp_path) == before


def test_output_folder_cannot_be_the_checkpoint(checkpoint: Path, capsys):
    files = sorted(p.name for p in checkpoint.iterdir())
    assert main([str(checkpoint), str(checkpoint), "--overwrite"]) == 2
    assert "is the checkpoint folder itself" in capsys.readouterr().err
    assert sorted(p.name for p in checkpoint.iterdir()) == files


def test_help_is_the_module_docstring(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: bizoo export [-h] [--overwrite] [--license ID] [--log-level LEVEL]")
    assert "trust_remote_code=True" in out and "--overwrite" in out


# ----------------------------------------------------------------------------------------------------------------
# Flattening, on a made-up package that has every import form
# ----------------------------------------------------------------------------------------------------------------

TOY_PACKAGE = {
    "configuration/common.py": "class Base:\n    pass\n",
    "configuration/configuration_toy.py": "from .common import Base\n\n\nclass ToyConfig(Base):\n    pass\n",
    "kernels/dispatch.py": "def pick(x):\n    return x\n",
    "kernels/toy/__init__.py": (
        '"""The toy op."""\n'
        "from . import reference\n"
        "from ..dispatch import pick\n\n\n"
        "def toy_op(x):\n"
        "    return pick(reference.double(x))\n"
    ),
    "kernels/toy/reference.py": "def double(x):\n    return 2 * x\n",
    "modeling/heads.py": "class Head:\n    pass\n",
    "modeling/modeling_toy.py": (
        '"""A toy model: every import form."""\n'
        "from __future__ import annotations\n\n"
        "import math\n\n"
        "from ..configuration.configuration_toy import (\n"
        "    ToyConfig,  # the config\n"
        ")\n"
        "from ..kernels.toy import toy_op\n"
        "from .heads import Head as TokenHead\n\n"
        "try:\n"
        "    import triton  # noqa: F401\n"
        "except ImportError:\n"
        "    triton = None\n\n\n"
        "class ToyModel:\n"
        "    config_class = ToyConfig\n"
        "    head_class = TokenHead\n\n"
        "    def forward(self, x):\n"
        "        from ..kernels.toy import reference as ref\n"
        "        return toy_op(x) + ref.double(math.floor(x))\n"
    ),
}


def make_toy_package(root: Path, extra: dict[str, str] | None = None) -> Path:
    for relative, text in {**TOY_PACKAGE, **(extra or {})}.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    for package in ("configuration", "modeling"):
        (root / package / "__init__.py").touch()  # kernels/ stays a namespace folder, as in bizoo
    return root


@pytest.mark.parametrize(
    "module, flat",
    [
        ("bizoo.configuration.configuration_lion", "configuration_lion"),
        ("bizoo.configuration.common", "configuration_common"),
        ("bizoo.modeling.modeling_lion", "modeling_lion"),
        ("bizoo.modeling.heads", "modeling_heads"),
        ("bizoo.modeling.common", "modeling_common"),
        ("bizoo.kernels.lion", "kernels_lion"),
        ("bizoo.kernels.lion.__init__", "kernels_lion"),
        ("bizoo.kernels.lion.reference", "kernels_lion_reference"),
        ("bizoo.kernels.dispatch", "kernels_dispatch"),
        ("bizoo.modeling.tokenization_wordchar", "tokenization_wordchar"),
        ("bizoo.tokenization_top", "tokenization_top"),
    ],
)
def test_flat_module_name(module, flat):
    assert flat_module_name(module) == flat


def test_flatten_rewrites_every_relative_import_form(tmp_path: Path):
    root = make_toy_package(tmp_path / "src")
    sources = flatten_modules(["bizoo.modeling.modeling_toy"], root=root)
    assert sorted(sources) == [
        "configuration_common.py", "configuration_toy.py", "kernels_dispatch.py", "kernels_toy.py",
        "kernels_toy_reference.py", "modeling_heads.py", "modeling_toy.py",
    ]
    model = sources["modeling_toy.py"]
    assert "from .configuration_toy import (\n    ToyConfig,  # the config\n)" in model  # layout kept
    assert "from .kernels_toy import toy_op\n" in model
    assert "from .modeling_heads import Head as TokenHead\n" in model
    assert "    from .kernels_toy_reference import __name__" in model  # lazy import: the loader must see it
    assert "    from . import kernels_toy_reference as ref\n" in model
    assert "try:\n    import triton  # noqa: F401\nexcept ImportError:" in model  # untouched
    kernel = sources["kernels_toy.py"]
    assert "from . import kernels_toy_reference as reference\n" in kernel
    assert "from .kernels_dispatch import pick\n" in kernel

    # The flat files import as one package, and transformers' loader sees every sibling each one needs.
    package = tmp_path / "flat" / "toy_export"
    package.mkdir(parents=True)
    (package / "__init__.py").touch()
    for name, text in sources.items():
        (package / name).write_text(text, encoding="utf-8")
        relative = [n for n in ast.walk(ast.parse(text)) if isinstance(n, ast.ImportFrom) and n.level]
        needed = {n.module or n.names[0].name for n in relative}
        assert needed <= set(get_relative_imports(package / name)), name
    sys.path.insert(0, str(package.parent))
    try:
        module = importlib.import_module("toy_export.modeling_toy")
        assert module.ToyModel().forward(3.5) == 2 * 3.5 + 2 * 3
        assert module.ToyModel.config_class is importlib.import_module("toy_export.configuration_toy").ToyConfig
    finally:
        sys.path.remove(str(package.parent))
        for name in [n for n in sys.modules if n == "toy_export" or n.startswith("toy_export.")]:
            del sys.modules[name]


@pytest.mark.parametrize(
    "statement, message",
    [
        ("import bizoo.kernels.dispatch", "`import bizoo.kernels.dispatch` is an absolute import of bizoo"),
        ("from bizoo.kernels import dispatch", "`from bizoo.kernels import ...` is an absolute import of bizoo"),
        ("from .... import outside", "climbs above the bizoo package"),
        ("from .. import LionConfig", "imports 'LionConfig' from 'bizoo', which is not a module file"),
        ("from ..kernels import missing", "imports 'missing' from 'bizoo.kernels', which is not a module file"),
    ],
)
def test_flatten_refuses_imports_it_cannot_flatten(tmp_path: Path, statement, message):
    bad = {"modeling/modeling_bad.py": f"import math\n\n\ndef f():\n    {statement}\n"}
    root = make_toy_package(tmp_path / "src", bad)
    with pytest.raises(ValueError) as error:
        flatten_modules(["bizoo.modeling.modeling_bad"], root=root)
    assert str(error.value).startswith("bizoo.modeling.modeling_bad: line 5: ")
    assert message in str(error.value)


def test_metric_names_say_what_was_computed_and_the_card_parses_as_the_hubs(checkpoint: Path, tmp_path: Path):
    from huggingface_hub import ModelCard

    from bizoo.scripts.lib.command import CommandError
    from bizoo.scripts.lib.model_card import model_index_results

    folder = checkpoint
    record_results(folder, task={"type": "token-classification", "name": "Named entity recognition"},
                   dataset={"name": "CoNLL-2003", "type": "conll2003", "split": "test"},
                   metrics={"f1": 0.9, "accuracy": 0.5}, metric_names={"f1": "strict span F1"})
    output = tmp_path / "out"
    assert export.main([str(folder), str(output)]) == 0
    card = ModelCard.load(output / "README.md")
    result = card.data.eval_results[-1]
    assert (result.dataset_split, result.metric_type, result.metric_name) == ("test", "accuracy", "Accuracy")
    ner = [r for r in card.data.eval_results if r.metric_type == "f1"][-1]
    assert ner.metric_name == "strict span F1" and ner.dataset_type == "conll2003"
    with pytest.raises(CommandError, match="'metric_names' must be an object"):
        model_index_results([{"task": {"type": "t"}, "dataset": {"name": "d", "type": "d"}, "metrics": {"f1": 1.0},
                              "metric_names": ["f1"]}])
