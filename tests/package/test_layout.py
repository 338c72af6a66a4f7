"""The repository root is the package ``bizoo`` (ARCHITECTURE.md §1): what that promises, checked from the outside."""

import ast
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
ALLOWED_TOP_LEVEL = {
    "modeling", "configuration", "kernels", "scripts", "tests", "hub_cards", "setup.py", "README.md", ".ci",
    "__init__.py", "pyproject.toml", ".gitignore", "LICENSE", "ARCHITECTURE.md", "RESULTS.md", "docs",
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
        for _, target, _ in imports(path):
            if target.split(".")[0] == "bizoo":
                assert target.startswith("bizoo.kernels"), f"{path.relative_to(REPO_ROOT)} imports {target}"


# ----------------------------------------------------------------------------------------------------------------
# scripts/: three rooms (ARCHITECTURE.md §1). Commands at scripts/<command>.py, developer tools (bench, gpu_check)
# beside them, each a module or a package (scripts/bench/), and scripts/lib/, the code they share. Commands import lib,
# never each other; lib imports no command.
# ----------------------------------------------------------------------------------------------------------------

SOURCE_FOLDERS = ("configuration", "modeling", "kernels", "scripts")  # with the root __init__.py: the package's code
#: Developer tools: scripts/<tool>.py or the package scripts/<tool>/ (every module in it is part of the tool).
DEV_TOOLS = {"bench", "gpu_check"}
#: Developer tools a developer tool may import besides its own modules (gpu_check, the module at scripts/, runs
#: bench's gpu_check and may read bench's public names).
DEV_TOOL_IMPORTS = {"gpu_check": {"bench"}, "bench": set()}
DISPATCHER = "cli"  # `bizoo <command>`: the one module that imports every command and developer tool
#: Private names the package may import from another module: none.
KNOWN_PRIVATE_IMPORTS: set[tuple[str, str]] = set()


def package_files(root: Path = REPO_ROOT) -> list[Path]:
    files = [root / "__init__.py"]
    for folder in SOURCE_FOLDERS:
        files += sorted(p for p in (root / folder).rglob("*.py") if "__pycache__" not in p.parts)
    return files


def module_name(path: Path, root: Path = REPO_ROOT) -> str:
    """``scripts/lib/data.py`` -> ``bizoo.scripts.lib.data``; a package's ``__init__.py`` -> the package."""
    parts = ["bizoo", *path.relative_to(root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, root: Path = REPO_ROOT) -> list[tuple[int, str, list[str]]]:
    """Every import statement of ``path`` (module level or inside a function) as (line, the absolute module it names,
    the names it imports from it: [] for ``import x``). ``from . import a`` names the package and imports ``a``."""
    package = ["bizoo", *path.relative_to(root).parent.parts]  # the package a relative import starts from
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append((node.lineno, target, [alias.name for alias in node.names]))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, []) for alias in node.names]
    return found


def imported_modules(path: Path, root: Path = REPO_ROOT) -> list[tuple[int, str]]:
    """(line, module) for each module of ours ``path`` imports: ``from .lib.data import x`` gives
    ``bizoo.scripts.lib.data``; ``from . import pretrain`` gives ``bizoo.scripts.pretrain``."""
    found = []
    for line, target, names in imports(path, root):
        if target.split(".")[0] != "bizoo":
            continue
        found.append((line, target))
        for name in names:  # a name that is a module file of ours is that module
            candidate = root.joinpath(*target.split(".")[1:], name)
            if candidate.with_suffix(".py").is_file() or (candidate / "__init__.py").is_file():
                found.append((line, f"{target}.{name}"))
    return found


def scripts_room(module: str) -> str | None:
    """"lib", "developer tool", "command" (cli included) or "package" (``bizoo.scripts`` itself) for a module under
    ``bizoo.scripts``; None for any other module. A module of a developer tool's package (``bizoo.scripts.bench.lion``)
    is a developer tool: ``module.split(".")[2]`` names its tool."""
    parts = module.split(".")
    if parts[:2] != ["bizoo", "scripts"]:
        return None
    if len(parts) == 2:
        return "package"
    if parts[2] == "lib":
        return "lib"
    return "developer tool" if parts[2] in DEV_TOOLS else "command"


def scripts_import_violations(root: Path = REPO_ROOT) -> list[str]:
    """What breaks the import rules of scripts/ (each as "file:line: what"), for the package at ``root``."""
    problems = []
    for path in package_files(root):
        where = path.relative_to(root).as_posix()
        importer = module_name(path, root)
        room = scripts_room(importer)
        name = importer.split(".")[-1]
        tool = importer.split(".")[2] if room == "developer tool" else None
        for line, target in imported_modules(path, root):
            target_room = scripts_room(target)
            if target_room in (None, "package", "lib") or target == importer:
                if room is None and target_room is not None:
                    problems.append(f"{where}:{line}: imports {target}: only scripts import scripts")
                continue
            target_name = target.split(".")[2]
            if room == "lib":
                problems.append(f"{where}:{line}: lib imports the {target_room} {target}; move what it needs into lib")
            elif room is None:
                problems.append(f"{where}:{line}: imports {target}: only scripts import scripts")
            elif importer == f"bizoo.scripts.{DISPATCHER}":
                continue  # `bizoo <command>` dispatches to every command and developer tool
            elif room == "developer tool":
                if target_room == "command" or (target_name != tool
                                                and target_name not in DEV_TOOL_IMPORTS.get(tool, set())):
                    problems.append(f"{where}:{line}: the developer tool {tool} imports {target}")
            elif room == "command":
                problems.append(
                    f"{where}:{line}: the command {name} imports the {target_room} {target}; commands share code "
                    "through scripts/lib"
                )
    return problems


def private_import_violations(root: Path = REPO_ROOT) -> list[str]:
    """``from x import _y`` anywhere in the package (dunder names such as ``__version__`` are public)."""
    problems = []
    for path in package_files(root):
        where = path.relative_to(root).as_posix()
        for line, target, names in imports(path, root):
            for name in names:
                if name.startswith("_") and not name.startswith("__") and (where, name) not in KNOWN_PRIVATE_IMPORTS:
                    problems.append(f"{where}:{line}: imports the private name {name} from {target}")
    return problems


def test_scripts_commands_import_lib_never_each_other():
    """A module of scripts/lib imports no command or developer tool; a command imports no other command or developer
    tool (only cli, the dispatcher, imports them all); a developer tool imports its own modules, and gpu_check may
    import bench; nothing outside scripts imports scripts."""
    assert scripts_import_violations() == []


def test_no_module_imports_a_private_name_of_another():
    """A name another module needs is public: ``from x import _y`` is refused in the whole package."""
    assert private_import_violations() == []


def scripts_root_modules(root: Path = REPO_ROOT) -> dict[str, Path]:
    """What sits at scripts/ besides its __init__ and lib: name -> the file that holds its protocol (scripts/<name>.py,
    or the __init__.py of the package scripts/<name>/)."""
    scripts = root / "scripts"
    found = {p.stem: p for p in scripts.glob("*.py") if p.stem != "__init__"}
    found.update({p.parent.name: p for p in scripts.glob("*/__init__.py") if p.parent.name != "lib"})
    return found


def test_scripts_root_holds_commands_and_developer_tools_only():
    """Every module at scripts/ is a command (``bizoo <command>``: in cli.COMMANDS) or a developer tool, and has the
    command protocol (PROG, add_arguments, run, main: defined there or imported); a developer tool may be a package
    (its protocol in its __init__.py, and a __main__.py for ``python -m``); shared code lives in scripts/lib."""
    cli_tree = ast.parse((REPO_ROOT / "scripts" / "cli.py").read_text(encoding="utf-8"))
    (commands,) = [ast.literal_eval(node.value) for node in cli_tree.body
                   if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "COMMANDS"]
    listed = {module for module, _ in commands.values()}
    found = scripts_root_modules()
    root = set(found)
    assert root == listed | DEV_TOOLS | {DISPATCHER}, sorted(root ^ (listed | DEV_TOOLS | {DISPATCHER}))
    for name in sorted(root - {DISPATCHER}):
        path = found[name]
        tree = ast.parse(path.read_text(encoding="utf-8"))
        defined = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
        defined |= {t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets
                    if isinstance(t, ast.Name)}
        defined |= {alias.asname or alias.name for node in tree.body if isinstance(node, ast.ImportFrom)
                    for alias in node.names}
        where = path.relative_to(REPO_ROOT).as_posix()
        assert {"PROG", "add_arguments", "run", "main"} <= defined, f"{where} is not a command"
        if path.name == "__init__.py":
            assert name in DEV_TOOLS, f"{where}: a command is one module, scripts/{name}.py"
            assert (path.parent / "__main__.py").is_file(), f"scripts/{name}/ needs a __main__.py for python -m"
    assert (REPO_ROOT / "scripts" / "lib" / "__init__.py").is_file()


def developer_tool_modules(root: Path = REPO_ROOT) -> list[str]:
    """Every module of the developer tools (a package's modules too, but its __main__, which runs the command)."""
    modules = []
    for name, path in sorted(scripts_root_modules(root).items()):
        if name not in DEV_TOOLS:
            continue
        modules.append(f"bizoo.scripts.{name}")
        if path.name == "__init__.py":
            modules += [f"bizoo.scripts.{name}.{p.stem}" for p in sorted(path.parent.glob("*.py"))
                        if p.stem not in ("__init__", "__main__")]
    return modules


def test_developer_tools_import_without_the_package_init():
    """bench and gpu_check run parts of themselves in child processes that import them without bizoo's __init__ (a
    stub ``bizoo`` package: seconds saved per child, no transformers). So what every module of theirs imports at
    module level, from scripts/lib and from each other, must need nothing of the package either: their imports of
    kernels and models stay inside functions."""
    modules = developer_tool_modules()
    assert {"bizoo.scripts.bench", "bizoo.scripts.bench.harness", "bizoo.scripts.bench.gpu_check",
            "bizoo.scripts.gpu_check"} <= set(modules), modules
    code = (
        "import importlib, sys, types\n"
        "package = types.ModuleType('bizoo')\n"
        "package.__path__ = [sys.argv[1]]\n"
        "sys.modules['bizoo'] = package\n"
        "for name in sys.argv[2:]:\n"
        "    importlib.import_module(name)\n"
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))\n"
    )
    result = run_python_args(code, [str(REPO_ROOT), *modules], cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "[]", result.stdout


def test_setup_lists_every_package():
    """setup.py lists its packages by hand (``bizoo.kernels`` has no __init__.py): every folder of code is there."""
    tree = ast.parse((REPO_ROOT / "setup.py").read_text(encoding="utf-8"))
    (listed,) = [ast.literal_eval(node.value) for node in tree.body
                 if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "PACKAGES"]
    folders = {module_name(path.parent / "__init__.py") for path in package_files()}
    assert folders == set(listed), sorted(folders ^ set(listed))


# A package with one planted violation of each rule: the checks above must see every one.
PLANTED = {
    "__init__.py": "",
    "modeling/__init__.py": "",
    "modeling/heads.py": "def _helper():\n    pass\n",
    "modeling/modeling_toy.py": "from .heads import _helper\nfrom ..scripts.lib import data\n",
    "scripts/__init__.py": "",
    "scripts/cli.py": "from . import pretrain, bench, gpu_check\n",
    "scripts/pretrain.py": "from .lib.data import read\nfrom . import export\n\n\ndef run():\n    from ..scripts.bench import x\n",
    "scripts/export.py": "from .lib import data\nfrom .lib.data import _private\n",
    "scripts/bench/__init__.py": "from ..lib.command import run_command\nfrom . import harness, lion\n",
    "scripts/bench/harness.py": "from ..lib.machine import machine_name\nfrom ..export import card\n",
    "scripts/bench/lion.py": "from .harness import time_runs\nfrom .harness import _reset\nfrom .. import gpu_check\n",
    "scripts/bench/cli.py": "from .report import table\nfrom ..pretrain import run\n",
    "scripts/bench/report.py": "",
    "scripts/gpu_check.py": "from .bench import _cpu_name\nfrom .bench.gpu_check import main\n",
    "scripts/lib/__init__.py": "",
    "scripts/lib/data.py": "import bizoo.scripts.export\n",
    "scripts/lib/machine.py": "from .data import read\nfrom ..pretrain import pack\n",
    "scripts/lib/timing.py": "from ..bench.harness import time_runs\n",
}


def test_the_rules_catch_planted_violations(tmp_path):
    for name, text in PLANTED.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    (tmp_path / "configuration").mkdir()
    (tmp_path / "kernels").mkdir()
    found = scripts_import_violations(tmp_path)
    assert sorted({problem.split(": ", 1)[0] for problem in found}) == [
        "modeling/modeling_toy.py:2",  # outside scripts, imports scripts
        "scripts/bench/cli.py:2",  # a module of a developer tool named like the dispatcher imports a command
        "scripts/bench/harness.py:2",  # a developer tool imports a command
        "scripts/bench/lion.py:3",  # a developer tool imports another that it may not (bench -> gpu_check)
        "scripts/lib/data.py:1",  # lib imports a command (absolute import)
        "scripts/lib/machine.py:2",  # lib imports a command (relative import)
        "scripts/lib/timing.py:1",  # lib imports a module of a developer tool
        "scripts/pretrain.py:2",  # a command imports a command (`from . import export`)
        "scripts/pretrain.py:6",  # a command imports a developer tool, inside a function
    ], found
    private = private_import_violations(tmp_path)
    assert sorted(problem.split(": ", 1)[0] for problem in private) == [
        "modeling/modeling_toy.py:1", "scripts/bench/lion.py:2", "scripts/export.py:2", "scripts/gpu_check.py:1",
    ], private


# ----------------------------------------------------------------------------------------------------------------
# modeling/ and configuration/: one file per model (ARCHITECTURE.md §1, §7). A model's files import their own model's
# files and the shared modules (common, heads, lstm_layers, ...), never another model's; what two models share moves
# to a shared module, which imports no model's file (else it would carry one model into the other).
# ----------------------------------------------------------------------------------------------------------------

MODEL_FOLDERS = ("modeling", "configuration")
MODEL_FILE = re.compile(r"^(?:modeling|configuration)_(?P<model>\w+)$")  # modeling_elmo, configuration_elmo


def model_of(module: str) -> str | None:
    """The model a module of modeling/ or configuration/ belongs to (``bizoo.modeling.modeling_elmo`` -> ``elmo``),
    or None for a shared module (``bizoo.modeling.heads``) and any module elsewhere."""
    parts = module.split(".")
    if len(parts) != 3 or parts[:2] not in (["bizoo", folder] for folder in MODEL_FOLDERS):
        return None
    match = MODEL_FILE.match(parts[2])
    return match["model"] if match else None


def model_import_violations(root: Path = REPO_ROOT) -> list[str]:
    """Each import (module level or inside a function, relative or absolute) by a module of modeling/ or
    configuration/ of another model's file, as "file:line: what"; a shared module may import no model's file."""
    problems = []
    for folder in MODEL_FOLDERS:
        for path in sorted((root / folder).glob("*.py")):
            where = path.relative_to(root).as_posix()
            own = model_of(module_name(path, root))
            for line, target in imported_modules(path, root):
                other = model_of(target)
                if other is None or other == own:
                    continue
                importer = f"the model {own}'s file" if own else "the shared module"
                problems.append(f"{where}:{line}: {importer} imports {target}, a file of the model {other}")
    return problems


def test_no_model_imports_another_models_files():
    """modeling_<x>.py and configuration_<x>.py import no modeling_<y>.py or configuration_<y>.py; the shared modules
    of modeling/ and configuration/ import no model's file at all."""
    assert model_import_violations() == []


# A package whose models break that rule in each way it can be broken (and keep it where they may).
PLANTED_MODELS = {
    "__init__.py": "from .modeling.modeling_toy import ToyModel\n",  # the package root registers every model
    "configuration/__init__.py": "",
    "configuration/common.py": "",
    "configuration/configuration_toy.py": "from .common import BizooConfig\n",
    "configuration/configuration_other.py": "from .common import BizooConfig\nfrom .configuration_toy import ToyConfig\n",
    "modeling/__init__.py": "",
    "modeling/common.py": "",
    "modeling/lstm_layers.py": "from .common import check\nfrom .modeling_toy import ToyLayer\n",
    "modeling/modeling_toy.py": (
        "from ..configuration.configuration_toy import ToyConfig\nfrom .lstm_layers import Lstm\n"
        "from .modeling_other import OtherLayer\n"
    ),
    "modeling/modeling_other.py": (
        "from .common import check\n\n\ndef build():\n    from . import modeling_toy\n"
        "    import bizoo.modeling.modeling_third\n    return modeling_toy\n"
    ),
    "modeling/modeling_third.py": (
        "from ..configuration.configuration_other import OtherConfig\nfrom bizoo.modeling import modeling_third\n"
    ),
}


def test_the_model_rule_catches_planted_violations(tmp_path):
    for name, text in PLANTED_MODELS.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    found = model_import_violations(tmp_path)
    assert sorted(problem.split(": ", 1)[0] for problem in found) == [
        "configuration/configuration_other.py:2",  # a configuration imports another model's configuration
        "modeling/lstm_layers.py:2",  # a shared module imports a model's file
        "modeling/modeling_other.py:5",  # `from . import modeling_toy`, inside a function
        "modeling/modeling_other.py:6",  # an absolute `import bizoo.modeling.modeling_third`
        "modeling/modeling_third.py:1",  # a model imports another model's configuration
        "modeling/modeling_toy.py:3",  # a model imports another model's modeling file
    ], found
    assert model_of("bizoo.modeling.modeling_bilstm_crf") == "bilstm_crf"
    assert model_of("bizoo.configuration.configuration_elmo") == "elmo"
    assert model_of("bizoo.modeling.lstm_layers") is None and model_of("bizoo.scripts.lib.models") is None


@pytest.mark.slow
def test_wheel_builds_installs_and_runs(tmp_path):
    """``pip wheel .`` gives a wheel with the package data and exactly the package's modules; installed alone it
    imports and runs the command line."""
    # Built from a copy of the source: setuptools reuses ./build, where a module since moved or deleted stays and would
    # go into the wheel (scripts/common.py did, after its move to scripts/lib).
    source = tmp_path / "source"
    for name in sorted(ALLOWED_TOP_LEVEL - {"tests"}):
        if (REPO_ROOT / name).is_dir():
            shutil.copytree(REPO_ROOT / name, source / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
        elif (REPO_ROOT / name).is_file():
            shutil.copy2(REPO_ROOT / name, source / name)
    wheel_dir = tmp_path / "wheels"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheel_dir), str(source)],
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
        "bizoo/scripts/lib/__init__.py",
        "bizoo/scripts/lib/data.py",
        "bizoo/scripts/corpus/shakespeare/macbeth.txt",
    ):
        assert required in names, required
    assert not any(n.startswith(("bizoo/tests/", "tests/")) for n in names)
    modules = {n for n in names if n.startswith("bizoo/") and n.endswith(".py")}
    # setup.py sits in the package's folder (package_dir {"bizoo": "."}), so setuptools ships it too.
    expected = {f"bizoo/{p.relative_to(REPO_ROOT).as_posix()}" for p in package_files()} | {"bizoo/setup.py"}
    assert modules == expected, sorted(modules ^ expected)
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
        "from bizoo.scripts.lib.data import shipped_corpus_files\n"
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


def test_traced_only_forms_read_the_dispatch_switches_only():
    """``torch.compiler.is_compiling``/``is_exporting`` are called in ``kernels/dispatch.py`` only: elsewhere the code
    asks ``dispatch.tracing()``/``dispatch.exporting()``, which tests may patch. Patching torch's own functions in a
    test (as the tests once did) broke every later torch.compile in the same process: dynamo recognises them by
    identity in a table it builds once."""
    offenders = []
    for path in sorted(REPO_ROOT.rglob("*.py")):
        rel = path.relative_to(REPO_ROOT)
        if rel.parts[0].startswith(".") or rel.parts[0] == "build" or rel == Path("kernels/dispatch.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Attribute) and node.attr in ("is_compiling", "is_exporting")
                    and ast.unparse(node.value) == "torch.compiler"):
                offenders.append(f"{rel}:{node.lineno}")
    assert not offenders, offenders
    patched = re.compile(r"setattr\(torch\.compiler,")
    assert not [p for p in (REPO_ROOT / "tests").rglob("*.py") if patched.search(p.read_text())]


# ----------------------------------------------------------------------------------------------------------------
# The model registry describes models only (ARCHITECTURE.md §1, §7): a ModelSpec holds what the model is; what the
# command line chooses for a model it trains from scratch is scripts/lib/model_defaults.py, the tests' tiny
# configurations are tests/tiny_configs.py, and no module outside scripts/ reads scripts/.
# ----------------------------------------------------------------------------------------------------------------

#: ``ModelSpec``'s fields, in order: the model type, its config class, its model classes, its named variants (the
#: papers' configurations) and the kind of tokenizer it reads. No test or command-line field.
MODEL_SPEC_FIELDS = ("model_type", "config_class", "models", "variants", "tokenizer")
#: A string naming scripts as a module or a path: "bizoo.scripts.lib", "..scripts", "scripts/lib/x.py", "scripts".
SCRIPTS_NAME = re.compile(r"(?:^|[./\\])scripts(?:[./\\]|$)")


def test_model_spec_describes_the_model_only():
    """``ModelSpec`` has exactly the model-describing fields: tiny test configurations, training presets, pretrain's
    config, tokenizer options and the default variant live beside their readers (tests/, scripts/lib/)."""
    import dataclasses

    from bizoo.modeling.registry import ModelSpec

    assert tuple(field.name for field in dataclasses.fields(ModelSpec)) == MODEL_SPEC_FIELDS


def test_every_registered_model_has_a_tiny_test_configuration():
    """tests/tiny_configs.py has an entry for each registered model type and no other; each names only fields of
    the model's config class and leaves the vocabulary size to the test."""
    import bizoo
    from bizoo.scripts.lib.models import config_fields

    from tests.tiny_configs import TINY_CONFIGS

    assert sorted(TINY_CONFIGS) == sorted(bizoo.MODEL_SPECS)
    for model_type, fields in TINY_CONFIGS.items():
        config_class = bizoo.get_spec(model_type).config_class
        assert set(fields) <= config_fields(config_class) - {"vocab_size"}, (model_type, sorted(fields))
        config_class(**fields, vocab_size=50)  # the config's own checks accept them


def _docstrings(tree: ast.AST) -> set[int]:
    """The ids of the docstring nodes of a module's syntax tree (module, classes, functions)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            value = node.body[0].value if isinstance(node.body[0], ast.Expr) else None
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                found.add(id(value))
    return found


def scripts_read_outside_scripts(root: Path = REPO_ROOT) -> list[str]:
    """Each place a module outside scripts/ (the root ``__init__.py``, configuration/, modeling/, kernels/) reads
    scripts/, as "file:line: what": an import of a ``bizoo.scripts`` module (module level or inside a function,
    relative or absolute), the attribute ``bizoo.scripts``, or a string that names scripts as a module or a path
    (``importlib.import_module("bizoo.scripts...")``, ``Path(...) / "scripts"``). Docstrings and messages (strings
    with a space) may mention scripts."""
    problems = []
    for path in package_files(root):
        where = path.relative_to(root).as_posix()
        if scripts_room(module_name(path, root)) is not None:
            continue
        read = {}  # line -> the scripts module its import names first (``from ..scripts.lib import x``: one read)
        for line, target in imported_modules(path, root):
            if scripts_room(target) is not None:
                read.setdefault(line, target)
        problems += [f"{where}:{line}: imports {target}" for line, target in read.items()]
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        docstrings = _docstrings(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr == "scripts" and ast.unparse(node.value) == "bizoo":
                problems.append(f"{where}:{node.lineno}: reads bizoo.scripts")
            elif (isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
                  and not any(c.isspace() for c in node.value) and SCRIPTS_NAME.search(node.value)):
                problems.append(f"{where}:{node.lineno}: names {node.value!r}")
    return problems


def test_nothing_outside_scripts_reads_scripts():
    """modeling/ (the registry included), configuration/, kernels/ and the package root never read scripts/: the
    command line's defaults reach a model only through the commands."""
    assert scripts_read_outside_scripts() == []


# A package whose modules outside scripts/ read scripts/ in each way the check knows (and mention it where they may).
PLANTED_SCRIPTS_READERS = {
    "__init__.py": "from .modeling.registry import ModelSpec\n",
    "configuration/__init__.py": "",
    "configuration/configuration_toy.py": "import bizoo.scripts.lib.model_defaults\n",
    "kernels/op/__init__.py": '"""scripts/bench/op.py"""\n',  # a docstring, even one without a space
    "modeling/__init__.py": "",
    "modeling/registry.py": (
        '"""The command-line defaults are scripts/lib/model_defaults.py."""\n'
        "import importlib\nfrom pathlib import Path\n\nimport bizoo\n\n\n"
        "def defaults():\n"
        "    from ..scripts.lib import model_defaults\n"  # line 9
        "    return model_defaults\n\n\n"
        "def by_name():\n"
        '    return importlib.import_module("bizoo.scripts.lib.model_defaults")\n'  # line 14
        "\n\n"
        "def by_path():\n"
        '    return (Path(__file__).parents[1] / "scripts" / "lib" / "model_defaults.py").read_text()\n'  # line 18
        "\n\n"
        "def by_attribute():\n"
        "    return bizoo.scripts.lib.model_defaults.MODEL_DEFAULTS\n"  # line 22
        "\n\n"
        "def refuse():\n"
        '    raise ValueError("measure it with python -m bizoo.scripts.gpu_check")\n'  # a message (it has spaces)
    ),
    "scripts/__init__.py": "",
    "scripts/lib/__init__.py": "",
    "scripts/lib/models.py": 'from .model_defaults import model_defaults\nHERE = "scripts/lib"\n',
    "scripts/lib/model_defaults.py": "",
}


def test_the_scripts_reading_rule_catches_planted_violations(tmp_path):
    for name, text in PLANTED_SCRIPTS_READERS.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    found = scripts_read_outside_scripts(tmp_path)
    assert sorted(problem.split(": ", 1)[0] for problem in found) == [
        "configuration/configuration_toy.py:1",  # an absolute import of a scripts module
        "modeling/registry.py:14",  # a module name for importlib
        "modeling/registry.py:18",  # a path into scripts/
        "modeling/registry.py:22",  # the attribute bizoo.scripts
        "modeling/registry.py:9",  # a relative import inside a function
    ], found
