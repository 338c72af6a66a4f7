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
from bizoo.scripts.export import export_model

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

CHILD = r'''
"""Load bizoo exports without bizoo and compare with what bizoo computed (argv[1]: the JSON case file)."""
import json
import math
import sys
from pathlib import Path

for blocked in ("bizoo", "triton"):
    try:
        __import__(blocked)
    except ModuleNotFoundError:
        pass
    else:
        sys.exit(f"`import {blocked}` works in the child: the isolation failed")

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
    case_file = tmp_path / "case.json"
    case_file.write_text(json.dumps({"tolerance": TOLERANCE, "inputs": inputs, "exports": exports}), encoding="utf-8")
    script = tmp_path / "child.py"
    script.write_text(CHILD, encoding="utf-8")
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
    result = subprocess.run([str(python), "-I", str(script), str(case_file)], cwd=workdir, env=env,
                            capture_output=True, text=True, timeout=300)
    report = f"child exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert result.returncode == 0, report
    assert "all exports match bizoo" in result.stdout, report
    for cls in spec.models.values():
        assert f"checked {cls.__name__}" in result.stdout, report
    assert (tmp_path / "hf_modules" / "transformers_modules").is_dir(), "the code did not load from HF_MODULES_CACHE"
