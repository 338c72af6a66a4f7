"""The repository root is the package ``bizoo`` (DESIGN.md §1): what that promises, checked from the outside."""

import ast
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
ALLOWED_TOP_LEVEL = {
    "modeling", "configuration", "kernels", "scripts", "tests", "hub_cards", "setup.py", "README.md", ".ci",
    "__init__.py", "pyproject.toml", ".gitignore", "LICENSE",
}


def run_python(code: str, cwd, env_extra=None) -> subprocess.CompletedProcess:
    env = {key: val for key, val in os.environ.items() if key != "PYTHONPATH"}
    env.update({"HF_HUB_OFFLINE": "1", **(env_extra or {})})
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_import_from_a_neutral_folder_registers_models_and_hides_generic_names(tmp_path):
    code = (
        "import importlib.util, bizoo\n"
        "from transformers import AutoConfig\n"
        "assert type(AutoConfig.for_model('lion')).__module__.startswith('bizoo.')\n"
        "for name in ('kernels', 'modeling', 'configuration', 'scripts'):\n"
        "    assert importlib.util.find_spec(name) is None, name\n"
        "print('ok')\n"
    )
    result = run_python(code, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_transformers_imports_from_the_repository_root():
    """transformers probes for a package called ``kernels``; our folder must not be mistaken for it."""
    result = run_python("import transformers.activations; print('ok')", cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr


def test_no_init_in_kernels_and_tests():
    assert not (REPO_ROOT / "kernels" / "__init__.py").exists()
    assert not (REPO_ROOT / "tests" / "__init__.py").exists()
    for op in (REPO_ROOT / "kernels").iterdir():
        if op.is_dir() and op.name != "__pycache__":
            assert (op / "__init__.py").exists(), f"kernels/{op.name} needs an __init__.py (one package per op)"
            assert (op / "reference.py").exists(), f"kernels/{op.name} needs reference.py (the oracle)"


def test_top_level_is_exactly_the_promised_layout():
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True)
    if tracked.returncode != 0:
        pytest.skip("not a git checkout")
    top = {path.split("/")[0] for path in tracked.stdout.split()}
    assert top <= ALLOWED_TOP_LEVEL, sorted(top - ALLOWED_TOP_LEVEL)


def test_layering_kernels_import_nothing_of_ours():
    """kernels import torch (and triton) and each other, never configuration, modeling or scripts."""
    for path in (REPO_ROOT / "kernels").rglob("*.py"):
        package = ["bizoo", *path.relative_to(REPO_ROOT).parent.parts]  # e.g. bizoo.kernels.lion
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package[: len(package) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
            elif isinstance(node, ast.Import):
                target = node.names[0].name
            else:
                continue
            if target.split(".")[0] == "bizoo":
                assert target.startswith("bizoo.kernels"), f"{path.relative_to(REPO_ROOT)} imports {target}"


@pytest.mark.slow
def test_wheel_builds_installs_and_runs(tmp_path):
    """``pip wheel .`` gives a wheel with the package data; installed alone it imports and runs the command line."""
    wheel_dir = tmp_path / "wheels"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheel_dir), str(REPO_ROOT)],
        capture_output=True, text=True, timeout=600,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = wheel_dir.glob("bizoo-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in (
        "bizoo/__init__.py",
        "bizoo/kernels/lion/reference.py",
        "bizoo/kernels/dispatch.py",
        "bizoo/modeling/modeling_lion.py",
        "bizoo/scripts/cli.py",
        "bizoo/scripts/corpus/shakespeare/macbeth.txt",
    ):
        assert required in names, required
    assert not any(n.startswith(("bizoo/tests/", "tests/")) for n in names)
    assert "bizoo/kernels/__init__.py" not in names
    corpus = sum(zipfile.ZipFile(wheel).getinfo(n).file_size for n in names if "/corpus/" in n)
    assert corpus <= 2 * 1024 * 1024, corpus

    target = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(target), str(wheel)],
        capture_output=True, text=True, timeout=600,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    code = (
        "import bizoo, pathlib\n"
        "assert pathlib.Path(bizoo.__file__).is_relative_to(pathlib.Path(r'%s')), bizoo.__file__\n"
        "from bizoo.scripts.cli import main\n"
        "from bizoo.scripts.data import shipped_corpus_files\n"
        "assert len(shipped_corpus_files('train')) > 5\n"
        "print('ok')\n" % target
    )
    result = run_python(code, cwd=tmp_path, env_extra={"PYTHONPATH": str(target)})
    assert result.returncode == 0, result.stderr[-3000:]
