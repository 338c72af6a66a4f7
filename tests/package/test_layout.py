"""The repository root is the package ``bizoo`` (ARCHITECTURE.md §1): what that promises, checked from the outside."""

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
    "__init__.py", "pyproject.toml", ".gitignore", "LICENSE", "ARCHITECTURE.md",
}


def run_python(code: str, cwd, env_extra=None) -> subprocess.CompletedProcess:
    env = {key: val for key, val in os.environ.items() if key != "PYTHONPATH"}
    env.update({"HF_HUB_OFFLINE": "1", **(env_extra or {})})
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def run_python_args(code: str, args, cwd) -> subprocess.CompletedProcess:
    env = {key: val for key, val in os.environ.items() if key != "PYTHONPATH"}
    env["HF_HUB_OFFLINE"] = "1"
    cmd = [sys.executable, "-c", code, *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


GENERIC_NAMES = ("kernels", "modeling", "configuration", "scripts", "hub_cards")

# Run first in a child process: hides Hugging Face's own ``kernels`` distribution (a dependency of transformers since
# 5.25) from both the import system and importlib.metadata, so the "without it" case is checked even where it is
# installed. Where it is not installed this changes nothing.
HIDE_HF_KERNELS = '''
import importlib.machinery, os, sys
_HIDDEN = {p for p in sys.path if p and os.path.isfile(os.path.join(p, "kernels", "__init__.py"))
           and os.path.realpath(p) != os.path.realpath(os.getcwd())}
class _HideKernels(importlib.machinery.PathFinder):
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if path is None and name.split(".")[0] == "kernels":
            path = [p for p in sys.path if p not in _HIDDEN]
        return importlib.machinery.PathFinder.find_spec(name, path, target)
    @classmethod
    def find_distributions(cls, *args, **kwargs):
        return (d for d in importlib.machinery.PathFinder.find_distributions(*args, **kwargs)
                if (d.metadata["Name"] or "").lower() != "kernels")
sys.meta_path[sys.meta_path.index(importlib.machinery.PathFinder)] = _HideKernels
'''


def hf_kernels_installed() -> bool:
    """Whether Hugging Face's ``kernels`` distribution is installed here (transformers >= 5.25 depends on it)."""
    import importlib.metadata

    try:
        importlib.metadata.version("kernels")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def skip_unless_hf_kernels(case: str) -> None:
    """The "installed" case needs Hugging Face's ``kernels`` (transformers 5.18-5.24 do not depend on it)."""
    if case == "installed" and not hf_kernels_installed():
        pytest.skip("Hugging Face's `kernels` is not installed here (transformers < 5.25 does not need it)")


# What the child prints: for each generic name, where it resolves ("-" for nowhere) and whether that is inside
# this repository; then whether transformers sees a usable ``kernels`` package.
PROBE = '''
import importlib.util, os, sys
repo = os.path.realpath(sys.argv[1])
for name in {names!r}:
    spec = importlib.util.find_spec(name)
    places = [] if spec is None else list(spec.submodule_search_locations or []) + [spec.origin or ""]
    ours = os.path.join(repo, name)  # the repository's own folder of that name (a venv inside the repo is not it)
    inside = any(p and (os.path.realpath(p) + os.sep).startswith(ours + os.sep) for p in places)
    print(name, "-" if spec is None else "found", "inside" if inside else "outside")
'''


@pytest.mark.parametrize("hf_kernels", ["installed", "hidden"])
def test_import_from_a_neutral_folder_registers_models_and_hides_generic_names(tmp_path, hf_kernels):
    """From any folder but the repository, ``bizoo`` imports, registers its models with the Auto classes, and none of
    the generic folder names (kernels, modeling, ...) resolves to a folder of this repository: they exist only as
    ``bizoo.*``. Hugging Face's own ``kernels`` package (a transformers dependency) may resolve, outside the repo."""
    skip_unless_hf_kernels(hf_kernels)
    code = (HIDE_HF_KERNELS if hf_kernels == "hidden" else "") + (
        "import bizoo\n"
        "from transformers import AutoConfig\n"
        "assert type(AutoConfig.for_model('lion')).__module__.startswith('bizoo.')\n"
    ) + PROBE.format(names=GENERIC_NAMES)
    result = run_python_args(code, [str(REPO_ROOT)], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(" ", 1) for line in result.stdout.strip().splitlines())
    assert set(lines) == set(GENERIC_NAMES), result.stdout
    for name, where in lines.items():
        assert not where.endswith(" inside"), f"{name!r} resolves to a folder of this repository: {where}"
    if hf_kernels == "hidden":
        assert lines["kernels"] == "- outside", "hiding Hugging Face's `kernels` did not work"
    else:
        assert lines["kernels"] == "found outside", "Hugging Face's `kernels` should resolve (it is installed)"


@pytest.mark.parametrize("hf_kernels", ["installed", "hidden"])
def test_transformers_imports_from_the_repository_root(hf_kernels):
    """From the repository root our ``kernels`` folder sits first on sys.path; transformers probes for Hugging Face's
    ``kernels`` package and must neither take our folder for it nor fail, with or without the real one installed."""
    skip_unless_hf_kernels(hf_kernels)
    code = (HIDE_HF_KERNELS if hf_kernels == "hidden" else "") + (
        "import importlib.util, os, sys\n"
        "import transformers.activations\n"
        "from transformers.utils.import_utils import is_kernels_available\n"
        "spec = importlib.util.find_spec('kernels')\n"
        "ours = spec is not None and spec.origin is None\n"  # a namespace package: our folder
        "print(is_kernels_available(), 'ours' if ours else 'theirs' if spec else 'none')\n"
    )
    result = run_python(code, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr
    available, which = result.stdout.split()
    if hf_kernels == "installed":
        # a regular package anywhere on sys.path wins over a namespace folder: theirs, not ours
        assert which == "theirs", result.stdout
    else:
        # only our folder is left; transformers must not take it for Hugging Face's package
        assert (available, which) == ("False", "ours"), result.stdout


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


def test_design_references_point_at_the_projects_own_architecture_document():
    """Code and docs refer to ARCHITECTURE.md (at the root) by its numbered sections, and to no design document
    outside the repository."""
    import re

    tracked = subprocess.run(["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True)
    if tracked.returncode != 0:
        pytest.skip("not a git checkout")
    sections = set(re.findall(r"^## (\d+)\.", (REPO_ROOT / "ARCHITECTURE.md").read_text(), re.M))
    offenders, missing = [], []
    for name in tracked.stdout.split():
        path = REPO_ROOT / name
        if path.suffix not in (".py", ".md", ".toml", ".cfg") or not path.is_file():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        if re.search(r"DESIGN(\.md)?\s*§|DESIGN\.md", text):
            offenders.append(name)
        missing += [f"{name}: §{n}" for n in re.findall(r"ARCHITECTURE\.md §(\d+)", text) if n not in sections]
    assert offenders == [], f"these point at a design document the project does not contain: {offenders}"
    assert missing == [], f"references to sections ARCHITECTURE.md does not have: {missing}"
