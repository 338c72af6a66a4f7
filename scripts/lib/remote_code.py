"""bizoo's code for one model type as flat sibling files, the form transformers' remote-code loader
(``trust_remote_code=True``) copies and imports: what ``bizoo export`` ships beside the weights.

transformers copies a remote-code module and the sibling files it imports with ``from .name import ...``, so bizoo's
nested packages (modeling/, kernels/lion/, ...) become flat files (``flat_module_name``) whose relative imports are
rewritten to point at each other (``flatten_modules``, ``flat_sources``); ``auto_map`` and ``tokenizer_auto_map``
name the classes in those files for config.json and tokenizer_config.json; ``CODE_FILE_PATTERNS`` matches the names
of every such file.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import bizoo

PACKAGE = "bizoo"
#: The names of the flat code files (``fnmatch`` patterns): ``flat_module_name`` names a module after the folder of
#: bizoo it sits in (an export ships modules of ``configuration/``, ``modeling/`` and ``kernels/``), a tokenizer
#: module after itself. ``bizoo push`` deletes a repository's files of these names that a new export does not have.
CODE_FILE_PATTERNS = ("configuration_*.py", "modeling_*.py", "kernels_*.py", "tokenization_*.py")


@dataclass(frozen=True)
class _Module:
    """A module of the bizoo package and its file."""

    name: str  # dotted, e.g. "bizoo.kernels.lion"
    path: Path  # e.g. <root>/kernels/lion/__init__.py
    is_package: bool


def _package_root() -> Path:
    return Path(bizoo.__file__).resolve().parent


def _find_module(name: str, root: Path) -> _Module | None:
    """The file of bizoo module ``name`` (``bizoo.a.b`` -> a/b.py or a/b/__init__.py), or None if there is none
    (an attribute, a namespace folder such as ``bizoo.kernels``, or the package root itself)."""
    parts = name.split(".")
    if parts[0] != PACKAGE or len(parts) < 2:
        return None
    base = root.joinpath(*parts[1:])
    if (base / "__init__.py").is_file():
        return _Module(name, base / "__init__.py", True)
    if base.with_suffix(".py").is_file():
        return _Module(name, base.with_suffix(".py"), False)
    return None


def flat_module_name(module_name: str) -> str:
    """The flat file stem of a bizoo module: the path parts below ``bizoo`` joined with ``_``, ``__init__``
    dropped, and a part that already starts with the previous part's name replacing it rather than repeating it;
    a part that starts with ``tokenization_`` replaces all the parts before it (transformers' name for a tokenizer
    module).

    ``bizoo.configuration.configuration_lion`` -> ``configuration_lion``; ``bizoo.modeling.heads`` ->
    ``modeling_heads``; ``bizoo.kernels.lion`` -> ``kernels_lion``; ``bizoo.kernels.lion.reference`` ->
    ``kernels_lion_reference``; ``bizoo.kernels.dispatch`` -> ``kernels_dispatch``;
    ``bizoo.modeling.tokenization_wordchar`` -> ``tokenization_wordchar``.
    """
    parts = module_name.split(".")
    if parts[0] != PACKAGE or len(parts) < 2:
        raise ValueError(f"flat_module_name: {module_name!r} is not a module inside the {PACKAGE} package")
    flat: list[str] = []
    for part in parts[1:]:
        if part == "__init__":
            continue
        if part.startswith("tokenization_"):
            flat = [part]  # "modeling" + "tokenization_wordchar" -> "tokenization_wordchar"
        elif flat and part.startswith(flat[-1] + "_"):
            flat[-1] = part  # "configuration" + "configuration_lion" -> "configuration_lion"
        else:
            flat.append(part)
    return "_".join(flat)


def _char_offsets(source: str):
    """A function (lineno, byte col_offset) -> index into ``source``: ``ast`` counts columns in UTF-8 bytes."""
    lines = source.splitlines(keepends=True)
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))

    def offset(lineno: int, col: int) -> int:
        line = lines[lineno - 1] if lineno - 1 < len(lines) else ""
        return starts[lineno - 1] + len(line.encode("utf-8")[:col].decode("utf-8"))

    return offset


class _Flattener:
    """Collects the closure of bizoo modules imported relatively from some start modules, and rewrites each one's
    relative imports to same-folder imports of the flat files."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.modules: dict[str, _Module] = {}
        self.sources: dict[str, str] = {}  # flat file name -> rewritten source
        self.origins: dict[str, str] = {}  # flat file name -> module name

    def add(self, module_name: str) -> None:
        pending = [module_name]
        while pending:
            name = pending.pop()
            if name in self.modules:
                continue
            module = _find_module(name, self.root)
            if module is None:
                raise ValueError(f"bizoo export: no source file for module {name!r} under {self.root}")
            self.modules[name] = module
            source, dependencies, marked = self._rewrite(module)
            file_name = flat_module_name(name) + ".py"
            if file_name in self.origins:
                other = self.origins[file_name]
                raise ValueError(f"bizoo export: modules {other!r} and {name!r} both flatten to {file_name!r}")
            self.origins[file_name] = name
            relative_path = module.path.relative_to(self.root).as_posix()
            header = (
                f"# {PACKAGE}/{relative_path} (bizoo {bizoo.__version__}), flattened by `bizoo export`: its imports\n"
                "# of other bizoo modules point at the sibling files of this folder. Edit bizoo, not this copy.\n"
            )
            if marked:
                header += (
                    "# A line `from .x import __name__ as _x_module` only names the file x.py for transformers'\n"
                    "# remote-code loader, which copies the siblings that `from .x import` lines name.\n"
                )
            self.sources[file_name] = header + source
            pending.extend(sorted(dependencies - set(self.modules), reverse=True))

    # ------------------------------------------------------------------------------------------------------------
    def _resolve_base(self, module: _Module, node: ast.ImportFrom) -> str:
        """The absolute module a relative ``from <dots><name> import`` names (before its imported names)."""
        package = module.name if module.is_package else module.name.rpartition(".")[0]
        parts = package.split(".")
        climb = node.level - 1
        statement = "from " + "." * node.level + (node.module or "") + " import ..."
        if climb >= len(parts):
            raise ValueError(
                f"{module.name}: line {node.lineno}: `{statement}` climbs above the {PACKAGE} package; "
                f"exported code may import only modules inside {PACKAGE}"
            )
        base = ".".join(parts[: len(parts) - climb])
        return f"{base}.{node.module}" if node.module else base

    def _rewrite(self, module: _Module) -> tuple[str, set[str], bool]:
        """``module``'s source with every relative import rewritten, the bizoo modules it imports, and whether a
        marker line (see below) was added."""
        source = module.path.read_text(encoding="utf-8")
        tree = ast.parse(source, filename=str(module.path))
        offset = _char_offsets(source)
        dependencies: set[str] = set()
        plans = []  # (node, target module, [(alias, submodule or None)])

        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == PACKAGE:
                        raise ValueError(
                            f"{module.name}: line {node.lineno}: `import {alias.name}` is an absolute import of "
                            f"{PACKAGE}; exported code must import bizoo modules relatively (from ..kernels.lion "
                            "import ...) so that they can be flattened"
                        )
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                if (node.module or "").split(".")[0] == PACKAGE:
                    raise ValueError(
                        f"{module.name}: line {node.lineno}: `from {node.module} import ...` is an absolute import "
                        f"of {PACKAGE}; exported code must import bizoo modules relatively (from ..kernels.lion "
                        "import ...) so that they can be flattened"
                    )
            elif isinstance(node, ast.ImportFrom):
                target = self._resolve_base(module, node)
                target_module = _find_module(target, self.root)
                names = []
                for alias in node.names:
                    submodule = _find_module(f"{target}.{alias.name}", self.root) if alias.name != "*" else None
                    if submodule is None and target_module is None:
                        raise ValueError(
                            f"{module.name}: line {node.lineno}: imports {alias.name!r} from {target!r}, which is "
                            f"not a module file of {PACKAGE} (the package root and namespace folders such as "
                            f"{PACKAGE}.kernels cannot be exported); import from the module that defines it"
                        )
                    names.append((alias, submodule))
                    dependencies.add(submodule.name if submodule is not None else target)
                plans.append((node, target, names))

        # `from .x import ...` statements name their file for transformers' loader; a module imported as a name
        # (`from . import reference`) gets a marker line of that form unless another statement names its file.
        named_by_from = {flat_module_name(target) for _, target, names in plans if any(s is None for _, s in names)}
        marked = False
        edits = []
        for node, target, names in plans:
            start = offset(node.lineno, node.col_offset)
            end = offset(node.end_lineno, node.end_col_offset)
            segment = source[start:end]
            if node.module is not None and all(submodule is None for _, submodule in names):
                # Keep the imported names as written (multi-line, comments); replace only `from <dots><module>`.
                head = re.search(r"\bimport\b", segment)
                replacement = f"from .{flat_module_name(target)} " + segment[head.start():]
            else:
                statements = []
                attributes = [alias for alias, submodule in names if submodule is None]
                if attributes:
                    listed = ", ".join(a.name + (f" as {a.asname}" if a.asname else "") for a in attributes)
                    statements.append(f"from .{flat_module_name(target)} import {listed}")
                for alias, submodule in names:
                    if submodule is None:
                        continue
                    flat = flat_module_name(submodule.name)
                    bound = alias.asname or alias.name
                    statements.append(f"from . import {flat}" + (f" as {bound}" if bound != flat else ""))
                    if flat not in named_by_from:
                        statements.append(f"from .{flat} import __name__ as _{flat}_module")
                        named_by_from.add(flat)
                        marked = True
                line_start = source.rfind("\n", 0, start) + 1
                indent = source[line_start:start]
                separator = "\n" + indent if not indent.strip() else "; "
                replacement = separator.join(statements)
            edits.append((start, end, replacement))

        for start, end, replacement in sorted(edits, reverse=True):
            source = source[:start] + replacement + source[end:]
        return source, dependencies, marked


def _defining_module(cls: type) -> str:
    name = cls.__module__
    if name.split(".")[0] != PACKAGE:
        raise ValueError(
            f"bizoo export: {cls.__name__} is defined in {name!r}, outside {PACKAGE}; an export ships bizoo's own "
            "code only"
        )
    return name


def flatten_modules(module_names: list[str], root: str | Path | None = None) -> dict[str, str]:
    """The modules ``module_names`` of the bizoo package and every bizoo module they import relatively, as flat
    files: file name -> source text (see ``flat_sources``). ``root`` is the package folder (default: bizoo's own;
    tests pass a folder of made-up modules)."""
    flattener = _Flattener(Path(root) if root is not None else _package_root())
    for name in module_names:
        flattener.add(name)
    return dict(sorted(flattener.sources.items()))


def is_bizoo_tokenizer(tokenizer) -> bool:
    """Whether ``tokenizer`` is an instance of a class of the bizoo package (its code must ship with an export)."""
    return tokenizer is not None and type(tokenizer).__module__.split(".")[0] == PACKAGE


def flat_sources(spec: bizoo.ModelSpec, tokenizer=None) -> dict[str, str]:
    """The code of model type ``spec`` (and of ``tokenizer`` when its class is bizoo's) as flat files: file name ->
    source text.

    Starts from the modules defining ``spec.config_class``, ``spec.models``' classes and a bizoo tokenizer, follows
    their relative imports (parsed with ``ast``; lazy imports inside functions and ``try`` blocks included) through
    the bizoo package, and names each module of the closure with ``flat_module_name``. Every relative import statement
    is rewritten to a same-folder one, ``from ..kernels.lion import lion_attention`` to ``from .kernels_lion import
    lion_attention`` and ``from . import reference`` to ``from . import kernels_lion_reference as reference``, the
    forms transformers' remote-code loader follows (it copies the siblings a file names in ``from .x import``
    lines; a module imported by name alone gets such a line as well). Absolute imports of third-party packages
    (torch, transformers, a ``triton`` inside ``try``) are left as they are.

    Raises ``ValueError`` naming the module and line for an absolute ``import bizoo...``, a relative import that
    leaves the package or names something that is not a module file, or two modules with the same flat name.
    """
    modules = [_defining_module(cls) for cls in (spec.config_class, *spec.models.values())]
    if is_bizoo_tokenizer(tokenizer):
        modules.append(_defining_module(type(tokenizer)))
    return flatten_modules(modules)


def auto_map(spec: bizoo.ModelSpec) -> dict[str, str]:
    """config.json's ``auto_map``: ``AutoConfig`` and each Auto class of ``spec`` -> ``<flat module>.<Class>``."""
    entries = {"AutoConfig": f"{flat_module_name(_defining_module(spec.config_class))}.{spec.config_class.__name__}"}
    for auto_name, cls in spec.models.items():
        entries[auto_name] = f"{flat_module_name(_defining_module(cls))}.{cls.__name__}"
    return entries


def tokenizer_auto_map(tokenizer) -> dict[str, list] | None:
    """tokenizer_config.json's ``auto_map`` for a bizoo tokenizer: ``{"AutoTokenizer": [None, "<module>.<Class>"]}``,
    no slow class and the fast one in the flat code files. None for any other tokenizer."""
    if not is_bizoo_tokenizer(tokenizer):
        return None
    cls = type(tokenizer)
    return {"AutoTokenizer": [None, f"{flat_module_name(_defining_module(cls))}.{cls.__name__}"]}
