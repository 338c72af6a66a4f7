"""The promise of ``bizoo export``: the folder loads with ``trust_remote_code=True`` on a machine where bizoo is
not installed and Triton is missing, and computes exactly what bizoo computes.

A tiny LION-D model of each Auto class (bare, masked LM, sequence and token classification) is saved with the
tokenizer and exported. A child interpreter then loads every export from a fresh virtual environment that sees
the packages of this one (torch, transformers, ...) but cannot import ``bizoo`` or ``triton``:

* the venv is made with ``python -m venv --without-pip``; a ``.pth`` file in its site-packages lists this
  interpreter's site-packages folders. A path line only adds the folder to ``sys.path``: the ``.pth`` files inside
  it are not processed, so bizoo's editable install (a ``.pth`` finder) is invisible;
* the same ``.pth`` file imports ``_block_bizoo``, a ``sys.meta_path`` finder that refuses ``bizoo`` and
  ``triton`` (so a regular install of either in those folders stays hidden too).

The child asserts that both imports fail, runs transformers' ``check_imports`` on every code file (what loading
from the Hub does, file by file), loads each export with ``AutoConfig`` and its Auto class (and the masked-LM one
with ``AutoModel`` too), runs a padded batch and the pipelines (fill-mask, feature-extraction, text- and
token-classification), offline, from an empty working folder, with HF_HOME and HF_MODULES_CACHE inside
``tmp_path``, and compares everything, to 1e-5, with what this process computed with bizoo for the same inputs
(a JSON file the child reads).

A bizoo tokenizer ships as remote code too: LION exports saved with a ``WordCharTokenizerFast`` (one per character
scheme) load with ``AutoTokenizer.from_pretrained(folder, trust_remote_code=True)`` in the same kind of child, which
compares its ``input_ids`` / ``char_ids`` / masks (batch, pre-split words, ``tokenizer.pad``) with bizoo's. Only the
tokenizer runs there: LION's forward takes no ``char_ids``.
"""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import torch
from transformers import pipeline

import bizoo
from bizoo import LionModel
from bizoo.modeling.tokenization_wordchar import WordCharTokenizerFast
from bizoo.scripts.export import export_model
from tests.tiny_configs import TINY_CONFIGS

TOLERANCE = 1e-5
TEXTS = ["the king love war .", "sweet prince good night the moon"]
NUM_LABELS = {"LionForSequenceClassification": 3, "LionForTokenClassification": 5}

BLOCKER = '''\
"""Makes `bizoo` and `triton` unimportable in this interpreter, as on a machine where neither is installed."""
import sys

BLOCKED = ("bizoo", "triton")


class BlockBizoo:
    """A meta path finder that refuses the blocked top-level packages before any other finder sees them."""

    @staticmethod
    def find_spec(name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (hidden by the bizoo remote-code test)", name=name)
        return None


sys.meta_path.insert(0, BlockBizoo())
'''

ISOLATION_CHECK = r'''
import sys

for blocked in ("bizoo", "triton"):
    try:
        __import__(blocked)
    except ModuleNotFoundError:
        pass
    else:
        sys.exit(f"`import {blocked}` works in the child: the isolation failed")
'''

CHILD = r'''
"""Load bizoo exports without bizoo and compare with what bizoo computed (argv[1]: the JSON case file)."""
import json
import math
import sys
from pathlib import Path

import torch
import transformers
from transformers import AutoConfig, pipeline
from transformers.dynamic_module_utils import check_imports

case = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
TOLERANCE = case["tolerance"]
failures = []


def plain(value):
    """JSON types only (pipelines return numpy scalars), as the parent wrote its expectations."""
    return json.loads(json.dumps(value, default=lambda v: v.item() if hasattr(v, "item") else v.tolist()))


def ranked_by_name(task, output):
    """Order ranked outputs by name, so that a near-tie in the ranking cannot reorder them."""
    key = {"fill-mask": "token", "text-classification": "label"}.get(task)
    return [sorted(row, key=lambda p: p[key]) for row in output] if key else output


def compare(where, actual, expected):
    if isinstance(expected, dict):
        if not isinstance(actual, dict) or sorted(actual) != sorted(expected):
            failures.append(f"{where}: {actual!r} does not have the keys {sorted(expected)}")
        else:
            for key in expected:
                compare(f"{where}.{key}", actual[key], expected[key])
    elif isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            failures.append(f"{where}: {actual!r} is not a list of {len(expected)} items")
        else:
            for i, (a, e) in enumerate(zip(actual, expected)):
                compare(f"{where}[{i}]", a, e)
    elif isinstance(expected, float):
        number = isinstance(actual, (int, float))
        if not number or not math.isclose(actual, expected, rel_tol=TOLERANCE, abs_tol=TOLERANCE):
            failures.append(f"{where}: {actual!r} != {expected!r} (tolerance {TOLERANCE})")
    elif actual != expected:
        failures.append(f"{where}: {actual!r} != {expected!r}")


def is_remote(cls, name):
    return cls.__name__ == name and cls.__module__.startswith("transformers_modules.")


inputs = {key: torch.tensor(value) for key, value in case["inputs"].items()}
for export in case["exports"]:
    folder, name = export["folder"], export["name"]
    for code_file in sorted(Path(folder).glob("*.py")):
        check_imports(code_file)

    config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
    if not is_remote(type(config), "LionConfig"):
        failures.append(f"{name}: AutoConfig gave {type(config).__module__}.{type(config).__name__}")
    for auto_name, expected in export["forward"].items():
        model = getattr(transformers, auto_name).from_pretrained(folder, trust_remote_code=True).eval()
        if not is_remote(type(model), expected["class"]):
            failures.append(f"{name}: {auto_name} gave {type(model).__module__}.{type(model).__name__}")
        with torch.no_grad():
            output = model(**inputs)[0]
        compare(f"{name}.{auto_name}(batch)", output.tolist(), expected["output"])

    for task in export["pipelines"]:
        pipe = pipeline(task["task"], model=folder, trust_remote_code=True, device="cpu")
        actual = plain(pipe(task["inputs"], **task["kwargs"]))
        where = f"{name}.pipeline({task['task']!r})"
        compare(where, ranked_by_name(task["task"], actual), ranked_by_name(task["task"], task["expected"]))
    print(f"checked {name}: {sorted(export['forward'])} and {[t['task'] for t in export['pipelines']]}", flush=True)

if failures:
    print(f"{len(failures)} mismatches:", *failures[:40], sep="\n", file=sys.stderr)
    sys.exit(1)
print("all exports match bizoo")
'''


TOKENIZER_CHILD = r'''
"""Load bizoo tokenizers without bizoo and compare their encodings with bizoo's (argv[1]: the JSON case file)."""
import json
import sys
from pathlib import Path

from transformers import AutoTokenizer
from transformers.dynamic_module_utils import check_imports

case = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
failures = []


def plain(encoding):
    return {key: value.tolist() if hasattr(value, "tolist") else value for key, value in encoding.items()}


for export in case["exports"]:
    folder, name = export["folder"], export["name"]
    for code_file in sorted(Path(folder).glob("*.py")):
        check_imports(code_file)
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
    cls = type(tokenizer)
    if cls.__name__ != "WordCharTokenizerFast" or not cls.__module__.startswith("transformers_modules."):
        failures.append(f"{name}: AutoTokenizer gave {cls.__module__}.{cls.__name__}")
    for call in export["calls"]:
        if call["pad"]:
            actual = plain(tokenizer.pad([tokenizer(text) for text in call["args"][0]], **call["kwargs"]))
        else:
            actual = plain(tokenizer(*call["args"], **call["kwargs"]))
        if actual != call["expected"]:
            failures.append(f"{name}: {call['name']}: {actual} != {call['expected']}")
    print(f"checked {name}", flush=True)

if failures:
    print(f"{len(failures)} mismatches:", *failures, sep="\n", file=sys.stderr)
    sys.exit(1)
print("all tokenizers match bizoo")
'''


def _plain(value):
    return json.loads(json.dumps(value, default=lambda v: v.item() if hasattr(v, "item") else v.tolist()))


def make_isolated_python(root: Path) -> Path:
    """A venv whose interpreter sees this interpreter's packages except bizoo and triton; returns its python."""
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / ("Scripts" if os.name == "nt" else "bin") / "python"
    query = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    answer = subprocess.run([str(python), "-c", query], capture_output=True, text=True, check=True)
    venv_site = Path(answer.stdout.strip())
    folders = [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    if site.ENABLE_USER_SITE and site.getusersitepackages() in sys.path:  # packages installed with --user
        folders.append(site.getusersitepackages())
    lines = [*dict.fromkeys(folders), "import _block_bizoo"]
    (venv_site / "_block_bizoo.py").write_text(BLOCKER, encoding="utf-8")
    (venv_site / "bizoo_test_parent_site.pth").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return python


def expected_outputs(model, tokenizer, class_name: str, auto_name: str) -> tuple[dict, list[dict]]:
    """What bizoo computes: the batch through each Auto class the child loads, and the pipelines' outputs."""
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    mask = tokenizer.mask_token
    with torch.no_grad():
        forward = {auto_name: {"class": class_name, "output": model(**batch)[0].tolist()}}
        if class_name == "LionForMaskedLM":  # AutoModel from the masked-LM checkpoint: the bare encoder
            forward["AutoModel"] = {"class": "LionModel", "output": model.lion(**batch)[0].tolist()}
    if class_name == "LionForMaskedLM":
        fill = [f"the king {mask} war .", f"sweet {mask} good night"]
        tasks = [
            ("fill-mask", model, fill, {"top_k": len(tokenizer)}),
            ("feature-extraction", model.lion, TEXTS[0], {}),
        ]
    elif class_name == "LionModel":
        tasks = [("feature-extraction", model, TEXTS[1], {})]
    elif class_name == "LionForSequenceClassification":
        tasks = [("text-classification", model, TEXTS, {"top_k": None})]
    else:
        tasks = [("token-classification", model, TEXTS[1], {})]
    pipelines = []
    for task, task_model, task_inputs, kwargs in tasks:
        pipe = pipeline(task, model=task_model, tokenizer=tokenizer, device="cpu")
        expected = _plain(pipe(task_inputs, **kwargs))
        pipelines.append({"task": task, "inputs": task_inputs, "kwargs": kwargs, "expected": expected})
    return forward, pipelines


def test_exports_load_without_bizoo_and_match(tmp_path, tokenizer, make_config):
    spec = bizoo.get_spec("lion")
    exports = []
    for auto_name, cls in spec.models.items():
        name = cls.__name__
        config = make_config(("lion", "d"), vocab_size=len(tokenizer), initializer_range=0.2,
                             num_labels=NUM_LABELS.get(name, 2))  # a wider init: outputs far from uniform
        model = cls(config).eval()
        checkpoint = tmp_path / "checkpoints" / name
        model.save_pretrained(checkpoint)
        tokenizer.save_pretrained(checkpoint)
        folder = export_model(checkpoint, tmp_path / "exports" / name)
        forward, pipelines = expected_outputs(model, tokenizer, name, auto_name)
        exports.append({"name": name, "folder": str(folder), "forward": forward, "pipelines": pipelines})

    inputs = {key: value.tolist() for key, value in tokenizer(TEXTS, padding=True, return_tensors="pt").items()}
    result = run_isolated(tmp_path, CHILD, {"tolerance": TOLERANCE, "inputs": inputs, "exports": exports})
    report = f"child exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert result.returncode == 0, report
    assert "all exports match bizoo" in result.stdout, report
    for cls in spec.models.values():
        assert f"checked {cls.__name__}" in result.stdout, report
    assert (tmp_path / "hf_modules" / "transformers_modules").is_dir(), "the code did not load from HF_MODULES_CACHE"


def run_isolated(tmp_path: Path, child: str, case: dict) -> subprocess.CompletedProcess:
    """Run the ``child`` script on the JSON ``case`` in the isolated venv, offline, from an empty folder."""
    case_file = tmp_path / "case.json"
    case_file.write_text(json.dumps(case), encoding="utf-8")
    script = tmp_path / "child.py"
    script.write_text(ISOLATION_CHECK + child, encoding="utf-8")  # every child first proves the isolation
    python = make_isolated_python(tmp_path)
    workdir = tmp_path / "work"  # neutral: not the repository, nothing importable
    workdir.mkdir()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path / "home"),
        "HF_HOME": str(tmp_path / "hf_home"),
        "HF_MODULES_CACHE": str(tmp_path / "hf_modules"),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONNOUSERSITE": "1",
    }
    # -I: neither the working folder nor PYTHONPATH lands on sys.path
    return subprocess.run([str(python), "-I", str(script), str(case_file)], cwd=workdir, env=env,
                          capture_output=True, text=True, timeout=300)


def test_wordchar_tokenizer_export_loads_without_bizoo(tmp_path, make_config, sentences):
    texts = ["The KING gave Zürich 1996 crowns .", "sweet [MASK] prince"]
    words = [["U.S.", "don't", "Blackburn", "café"], ["the"]]
    tokenizers = {
        "vocab": WordCharTokenizerFast.from_words(sentences(60), lowercase=True, digits_to_zero=True,
                                                  max_word_length=8),
        "bilm": WordCharTokenizerFast.from_words(sentences(60), char_scheme="bilm", add_sentence_boundaries=True,
                                                 max_word_length=10),
    }
    exports = []
    for name, tokenizer in tokenizers.items():
        checkpoint = tmp_path / "checkpoints" / name
        LionModel(make_config(("lion", "d"), vocab_size=len(tokenizer))).save_pretrained(checkpoint)
        tokenizer.save_pretrained(checkpoint)
        folder = export_model(checkpoint, tmp_path / "exports" / name)
        calls = [
            ("batch", False, [texts], dict(padding=True, return_special_tokens_mask=True, return_tensors="pt")),
            ("split", False, [words], dict(is_split_into_words=True, padding=True)),
            ("pad-left", True, [texts], dict(padding_side="left", return_tensors="pt")),
        ]
        expected = []
        for call, pad, args, kwargs in calls:
            if pad:
                output = tokenizer.pad([tokenizer(text) for text in args[0]], **kwargs)
            else:
                output = tokenizer(*args, **kwargs)
            plain = {key: value.tolist() if hasattr(value, "tolist") else value for key, value in output.items()}
            assert len(plain["char_ids"][0][0]) == tokenizer.max_word_length
            expected.append({"name": call, "pad": pad, "args": args, "kwargs": kwargs, "expected": plain})
        exports.append({"name": name, "folder": str(folder), "calls": expected})

    result = run_isolated(tmp_path, TOKENIZER_CHILD, {"exports": exports})
    report = f"child exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert result.returncode == 0, report
    assert "all tokenizers match bizoo" in result.stdout, report
    assert all(f"checked {name}" in result.stdout for name in tokenizers), report


CRF_CHILD = r'''
"""Load a BiLSTM-CRF export without bizoo; run the token-classification pipeline with entity aggregation."""
import json
import sys
from pathlib import Path

import torch
from transformers import AutoModelForTokenClassification, AutoTokenizer, pipeline

case = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
folder = case["folder"]
tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
model = AutoModelForTokenClassification.from_pretrained(folder, trust_remote_code=True).eval()
pipe = pipeline("token-classification", model=model, tokenizer=tokenizer, aggregation_strategy="simple", device="cpu")
spans = [[{k: (v.item() if hasattr(v, "item") else v) for k, v in span.items()} for span in pipe(text)]
         for text in case["texts"]]
batch = tokenizer(case["texts"], padding=True, return_tensors="pt")
with torch.no_grad():
    out = model(**batch)
print(json.dumps({"spans": spans, "predictions": out.predictions.tolist(), "class": type(model).__name__}))
'''


def test_bilstm_crf_export_tags_entities_with_the_crf_without_bizoo(tmp_path, sentences):
    """The exported BiLSTM-CRF runs in the stock token-classification pipeline (aggregation "simple") without
    bizoo, and its entity spans are those of the CRF's Viterbi path, exactly as bizoo decodes them."""
    from bizoo.kernels.crf import crf_viterbi

    tokenizer = WordCharTokenizerFast.from_words(sentences(100))
    labels = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    spec = bizoo.get_spec("bilstm_crf")
    config = spec.config_class(
        **TINY_CONFIGS["bilstm_crf"], vocab_size=len(tokenizer), char_vocab_size=tokenizer.char_vocab_size,
        id2label=dict(enumerate(labels)), label2id={label: i for i, label in enumerate(labels)},
    )
    torch.manual_seed(0)
    model = bizoo.BiLstmCrfForTokenClassification(config).eval()
    with torch.no_grad():  # entities for the pipeline to group: I-PER favoured, legal only after B-PER / I-PER
        model.classifier.classifier.bias.copy_(torch.tensor([0.0, 0.3, 1.0, 0.2, 0.0]))
    checkpoint = tmp_path / "checkpoint"
    model.save_pretrained(checkpoint)
    tokenizer.save_pretrained(checkpoint)
    folder = export_model(checkpoint, tmp_path / "export")
    texts = ["the king love war .", "sweet prince good night the moon and the sun"]

    pipe = pipeline("token-classification", model=model, tokenizer=tokenizer, aggregation_strategy="simple",
                    device="cpu")
    expected_spans = [[{k: (v.item() if hasattr(v, "item") else v) for k, v in span.items()} for span in pipe(t)]
                      for t in texts]
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    captured = {}
    hook = model.classifier.classifier.register_forward_hook(lambda m, i, o: captured.__setitem__("e", o))
    with torch.no_grad():
        predictions = model(**batch).predictions
    hook.remove()
    transitions, start, end = model.classifier.crf_parameters("cpu")
    path, _ = crf_viterbi(captured["e"], batch["attention_mask"].bool(), transitions, start, end,
                          backend="reference")
    assert torch.equal(predictions, path)
    assert any(expected_spans), "the model predicts no entity: the test would check nothing"
    for spans, row in zip(expected_spans, path):  # each span's label is its CRF path's entity type
        tags = [labels[t] for t in row.tolist() if t >= 0]
        assert [span["entity_group"] for span in spans] == [t[2:] for t in tags if t.startswith("B-")]

    result = run_isolated(tmp_path, CRF_CHILD, {"folder": str(folder), "texts": texts})
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    child = json.loads(result.stdout.strip().splitlines()[-1])
    assert child["class"] == "BiLstmCrfForTokenClassification"
    assert child["predictions"] == predictions.tolist()
    assert len(child["spans"]) == len(expected_spans)
    for got, want in zip(child["spans"], expected_spans):
        assert [(s["entity_group"], s["word"], s["start"], s["end"]) for s in got] == [
            (s["entity_group"], s["word"], s["start"], s["end"]) for s in want
        ]
        for s, w in zip(got, want):
            assert abs(s["score"] - w["score"]) < 1e-5


MLM_CHILD = r'''
"""Load a bizoo masked-LM export without bizoo and print its logits for the case's inputs."""
import json
import sys
from pathlib import Path

import torch
from transformers import AutoModelForMaskedLM

case = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
model = AutoModelForMaskedLM.from_pretrained(case["folder"], trust_remote_code=True).eval()
inputs = {key: torch.tensor(value) for key, value in case["inputs"].items()}
with torch.no_grad():
    print(json.dumps({"class": type(model).__name__, "logits": model(**inputs).logits.tolist()}))
'''


def saved_and_exported(model, tokenizer, tmp_path: Path) -> Path:
    """``model`` and ``tokenizer`` saved as a checkpoint (tmp_path/checkpoint), then exported (tmp_path/export)."""
    checkpoint = tmp_path / "checkpoint"
    model.save_pretrained(checkpoint)
    tokenizer.save_pretrained(checkpoint)
    return export_model(checkpoint, tmp_path / "export")


def test_bigs_export_loads_without_bizoo_and_matches(tmp_path, tokenizer):
    """BiGS (its SSM op and kernels flattened into the folder) loads and computes the same logits without bizoo."""
    spec = bizoo.get_spec("bigs")
    config = spec.config_class(**TINY_CONFIGS["bigs"], vocab_size=len(tokenizer), initializer_range=0.2)
    model = bizoo.BiGSForMaskedLM(config).eval()
    folder = saved_and_exported(model, tokenizer, tmp_path)
    assert any(path.name.startswith("kernels_ssm") for path in folder.iterdir())
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = model(**batch).logits
    inputs = {key: value.tolist() for key, value in batch.items()}
    result = run_isolated(tmp_path, MLM_CHILD, {"folder": str(folder), "inputs": inputs})
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    child = json.loads(result.stdout.strip().splitlines()[-1])
    assert child["class"] == "BiGSForMaskedLM"
    torch.testing.assert_close(torch.tensor(child["logits"]), expected, rtol=1e-5, atol=1e-5)


BILM_CHILD = r'''
"""Load an ELMo biLM export (and its word+character tokenizer) without bizoo; print both directions' logits."""
import json
import sys
from pathlib import Path

import torch
from transformers import AutoModelForPreTraining, AutoTokenizer

case = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
tokenizer = AutoTokenizer.from_pretrained(case["folder"], trust_remote_code=True)
model = AutoModelForPreTraining.from_pretrained(case["folder"], trust_remote_code=True).eval()
batch = tokenizer(case["texts"], padding=True, return_tensors="pt")
with torch.no_grad():
    out = model(**batch)
print(json.dumps({"class": type(model).__name__, "forward": out.forward_logits.tolist(),
                  "backward": out.backward_logits.tolist()}))
'''


def test_elmo_bilm_export_loads_without_bizoo_and_matches(tmp_path, sentences):
    """What ``bizoo pretrain --model elmo`` saves (the biLM) exports with ``AutoModelForPreTraining`` in its
    ``auto_map`` and computes both directions' next-word logits without bizoo, as bizoo does."""
    tokenizer = bizoo.WordCharTokenizerFast.from_words(sentences(60), char_scheme="bilm", add_sentence_boundaries=True,
                                                       max_word_length=10)
    config = bizoo.ElmoConfig(**TINY_CONFIGS["elmo"], vocab_size=len(tokenizer), initializer_range=0.2)
    model = bizoo.ElmoForBidirectionalLM(config).eval()
    folder = saved_and_exported(model, tokenizer, tmp_path)
    auto_map = json.loads((folder / "config.json").read_text(encoding="utf-8"))["auto_map"]
    assert auto_map["AutoModelForPreTraining"].endswith(".ElmoForBidirectionalLM")
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = model(**batch)
    result = run_isolated(tmp_path, BILM_CHILD, {"folder": str(folder), "texts": TEXTS})
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    child = json.loads(result.stdout.strip().splitlines()[-1])
    assert child["class"] == "ElmoForBidirectionalLM"
    torch.testing.assert_close(torch.tensor(child["forward"]), expected.forward_logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(torch.tensor(child["backward"]), expected.backward_logits, rtol=1e-5, atol=1e-5)
