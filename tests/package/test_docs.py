"""The Markdown documents of the repository (README.md, RESULTS.md, ARCHITECTURE.md, docs/*.md) tell the truth where
a check is cheap: the README's setup commands are the ones CI runs; every relative link reaches a file of the
repository and, with a ``#fragment``, a heading in it; every option given to a command is one of its options; every
command line in a code block (and every command of RESULTS.md) is one the parser takes; every Python block parses;
every path of the repository named exists, and so does every module or name a code span gives dotted
(``lib.command.command_main``); every file and folder of ARCHITECTURE.md's layout tree exists; and the layering
ARCHITECTURE.md states for configuration/ and modeling/ holds. Each check is also run on a planted wrong claim that it
must find."""

import ast
import re
import unicodedata
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [REPO_ROOT / "README.md", REPO_ROOT / "RESULTS.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]


def without_code_blocks(text: str) -> str:
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


def heading_anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, only letters, marks, decimal digits, '-', '_' and spaces kept,
    spaces turned into '-' (so "LION on a GPU (Triton)" -> "lion-on-a-gpu-triton")."""
    kept = "".join(c for c in heading.strip().lower()
                   if c in "-_ " or unicodedata.category(c)[0] in "LM" or unicodedata.category(c) == "Nd")
    return kept.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    return {heading_anchor(h) for h in re.findall(r"^#+ (.*)$", without_code_blocks(path.read_text()), re.M)}


def test_heading_anchor_follows_github():
    assert heading_anchor("CRF on a CPU: against pytorch-crf") == "crf-on-a-cpu-against-pytorch-crf"
    assert heading_anchor("Every model on GLUE and CoNLL-2003 (`bizoo evaluate-all`)") == (
        "every-model-on-glue-and-conll-2003-bizoo-evaluate-all")
    assert heading_anchor("chunk form vs the O(L²) form") == "chunk-form-vs-the-ol-form"


def test_readme_setup_runs_what_ci_runs():
    """The README's second setup command is the command line of .ci/run, character for character."""
    ci = [line for line in (REPO_ROOT / ".ci" / "run").read_text().splitlines() if "pytest" in line]
    assert len(ci) == 1, ci
    readme = (REPO_ROOT / "README.md").read_text()
    setup = re.search(r"^## Setup: two commands\n(.*?)^## ", readme, re.S | re.M)
    assert setup, "README.md has no section 'Setup: two commands'"
    commands = [line for line in re.findall(r"^```bash\n(.*?)^```", setup.group(1), re.S | re.M)[0].splitlines()
                if line and not line.startswith("#")]
    assert commands[1] == ci[0], (commands[1], ci[0])
    assert commands[0].endswith("bizoo pretrain --output-dir runs/lion"), commands[0]


@pytest.mark.parametrize("document", DOCUMENTS, ids=[str(p.relative_to(REPO_ROOT)) for p in DOCUMENTS])
def test_relative_links_reach_the_repository(document):
    bad = []
    for target in re.findall(r"\]\(([^)\s]+)\)", without_code_blocks(document.read_text())):
        if re.match(r"[a-z]+:", target):  # a web address: not a file of the repository
            continue
        file, _, fragment = target.partition("#")
        destination = (document.parent / file).resolve() if file else document
        if not destination.is_relative_to(REPO_ROOT) or not destination.exists():
            bad.append(f"{target}: no such file in the repository")
        elif fragment and fragment not in anchors(destination):
            bad.append(f"{target}: no heading with that anchor in {destination.name}")
    assert bad == [], bad


# ----------------------------------------------------------------------------------------------------------------
# Claims a reader acts on: the options, command lines, code and files the documents name exist and work.
# ----------------------------------------------------------------------------------------------------------------

ALL_DOCUMENTS = [*DOCUMENTS, REPO_ROOT / "ARCHITECTURE.md"]
DOCUMENT_IDS = [str(p.relative_to(REPO_ROOT)) for p in ALL_DOCUMENTS]
FENCED = re.compile(r"^```.*?\n(.*?)^```", re.S | re.M)
#: "bizoo pretrain", "bizoo bench lion", "bizoo.scripts.finetune_glue": the command (and a bench target) named.
COMMAND_MENTION = re.compile(r"bizoo(?: |\.scripts\.)([a-z][a-z_-]*)(?: ([a-z][a-z-]*))?")
OPTION = re.compile(r"(?<![\w-])--[a-zA-Z][\w-]*")


@pytest.fixture(scope="module")
def command_options() -> dict[str, dict[str, set[str]]]:
    """command -> {"": its option strings, bench target -> that target's}, read from ``bizoo``'s own parser."""
    import argparse

    from bizoo.scripts.cli import build_parser

    def options(parser) -> dict[str, set[str]]:
        found = {"": {option for action in parser._actions for option in action.option_strings}}
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                found.update({name: options(sub)[""] for name, sub in action.choices.items()})
        return found

    root = build_parser()
    commands = next(a for a in root._actions if isinstance(a, argparse._SubParsersAction))
    return {name: options(parser) for name, parser in commands.choices.items()}


def command_pieces(text: str):
    """The pieces of a document that speak of one command line or more: each line of a fenced block (continuations
    joined), each table row (its description cells speak of the command its first cell names) and each inline code
    span."""
    for block in FENCED.findall(text):
        yield from block.replace("\\\n", " ").splitlines()
    prose = without_code_blocks(text)
    yield from (line for line in prose.splitlines() if line.startswith("|"))
    yield from (span.replace("\n", " ") for span in re.findall(r"`([^`]+)`", prose))


def unknown_options(text: str, command_options) -> list[str]:
    """Each ``--option`` that follows ``bizoo COMMAND`` in a piece of ``text`` (up to the next command named) and is
    not an option of that command (of the bench target, for ``bizoo bench TARGET``)."""
    bad = []
    for piece in command_pieces(text):
        mentions = list(COMMAND_MENTION.finditer(piece))
        for i, mention in enumerate(mentions):
            command = mention.group(1).replace("_", "-")
            if command not in command_options:
                continue
            known = command_options[command].get(mention.group(2) or "", command_options[command][""])
            end = mentions[i + 1].start() if i + 1 < len(mentions) else len(piece)
            bad += [f"bizoo {command} {option}: {piece[mention.start():mention.start() + 80]!r}"
                    for option in OPTION.findall(piece[mention.end():end]) if option not in known]
    return bad


@pytest.mark.parametrize("document", ALL_DOCUMENTS, ids=DOCUMENT_IDS)
def test_options_named_with_a_command_are_its_options(document, command_options):
    """Every ``--option`` a document gives a command (in a command line, a table row or a code span) is one its
    parser has, spelled exactly (argparse would also take an abbreviation)."""
    assert unknown_options(document.read_text(), command_options) == []


def unparsable_command_lines(text: str, spans: bool = False) -> list[str]:
    """Each command line of a fenced block (``bizoo COMMAND ...`` or ``-m bizoo.scripts.<module> ...``, no
    placeholder such as ``...``, ``<...>``, ``[...]`` or ``{a,b}``) that ``bizoo``'s parser refuses, with argparse's
    message; with ``spans``, also each inline code span that gives a command with options."""
    import contextlib
    import io
    import shlex

    from bizoo.scripts.cli import COMMANDS, build_parser

    lines = [line for block in FENCED.findall(text) for line in block.replace("\\\n", " ").splitlines()]
    if spans:
        lines += [span.replace("\n", " ") for span in re.findall(r"`(bizoo [^`]*--[^`]*)`", without_code_blocks(text))]
    parser, bad = build_parser(), []
    for line in lines:
        line = line.split(" #")[0].strip()
        found = re.search(r"(?:^|\s)(?:bizoo |-m bizoo\.scripts\.)([a-z][a-z_-]*)(\s.*)?$", line)
        if not found or line.startswith("#") or any(mark in line for mark in ("...", "<", "[", "{")):
            continue
        if found.group(1).replace("_", "-") not in COMMANDS:  # "bizoo is ...": prose in a block, not a command
            continue
        argv = [found.group(1).replace("_", "-"), *shlex.split(found.group(2) or "")]
        errors = io.StringIO()
        try:
            with contextlib.redirect_stderr(errors):
                parser.parse_args(argv)
        except SystemExit:
            bad.append(f"{line}: {errors.getvalue().strip().splitlines()[-1:]}")
    return bad


@pytest.mark.parametrize("document", ALL_DOCUMENTS, ids=DOCUMENT_IDS)
def test_command_lines_in_code_blocks_parse(document):
    """A command line shown in a code block is complete: ``bizoo``'s parser takes it (required options, choices,
    values), as a reader who copies it runs it. RESULTS.md gives the command that produced each figure: its code
    spans with options are complete command lines too."""
    assert unparsable_command_lines(document.read_text(), spans=document.name == "RESULTS.md") == []


def python_snippet_errors(text: str) -> list[str]:
    """The syntax error of each ```python block of ``text`` that is not valid Python."""
    bad = []
    for number, snippet in enumerate(re.findall(r"^```python\n(.*?)^```", text, re.S | re.M)):
        try:
            ast.parse(snippet)
        except SyntaxError as err:
            bad.append(f"python block {number + 1}, line {err.lineno}: {err.msg}")
    return bad


@pytest.mark.parametrize("document", ALL_DOCUMENTS, ids=DOCUMENT_IDS)
def test_python_snippets_parse(document):
    assert python_snippet_errors(document.read_text()) == []


#: Folders of the repository a document names files in.
TOP_FOLDERS = ("tests", "scripts", "kernels", "modeling", "configuration", "docs", "hub_cards", ".ci")


def missing_paths(text: str, root: Path = REPO_ROOT) -> list[str]:
    """Each path of the repository named in a code span (``tests/scripts/test_export.py``, ``tests/kernels/test_*.py``,
    ``scripts/lib/token_count.py``, or ``modeling/value_checks.check_mode``: a module and a name it defines) that
    does not exist; placeholders (``<op>``) are left alone."""
    bad = []
    for span in re.findall(r"`([^`\s]+)`", text):
        path = span.split(":")[0].rstrip(",.")
        if not path.startswith(tuple(f"{folder}/" for folder in TOP_FOLDERS)) or "<" in path:
            continue
        if any(root.glob(path)):
            continue
        module, _, name = path.rpartition(".")
        source = root / f"{module}.py"
        if name and source.is_file() and re.search(rf"^(?:def |class )?{re.escape(name)}\b", source.read_text(), re.M):
            continue
        bad.append(span)
    return bad


@pytest.mark.parametrize("document", ALL_DOCUMENTS, ids=DOCUMENT_IDS)
def test_paths_named_in_the_documents_exist(document):
    assert missing_paths(without_code_blocks(document.read_text())) == []


#: Short module names the documents use for a file of the repository: ``lib.command`` is scripts/lib/command.py,
#: ``dispatch.resolve_backend`` a name of kernels/dispatch.py.
MODULE_ALIASES = {"lib": "scripts/lib", "dispatch": "kernels/dispatch"}
DOTTED_NAME = re.compile(
    r"(?:bizoo\.)?(?:lib|dispatch|kernels|modeling|configuration|scripts)\.\w+(?:\.\w+)*|bizoo\.\w+")


def module_names(source: Path) -> set[str]:
    """The names a module defines or imports at its top level (inside ``if`` and ``try`` blocks too)."""
    names, body = set(), list(ast.parse(source.read_text(encoding="utf-8")).body)
    while body:
        node = body.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(n.id for target in targets for n in ast.walk(target) if isinstance(n, ast.Name))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, (ast.If, ast.Try)):
            body += node.body + node.orelse + getattr(node, "finalbody", []) + [
                n for handler in getattr(node, "handlers", []) for n in handler.body]
    return names


def resolves(dotted: str, root: Path) -> bool:
    """Whether ``bizoo.kernels.crf.crf_marginals``, ``lib.command.command_main``, ``kernels.crf`` or
    ``bizoo.wait_for_input_checks`` names a folder, a module or a name a module defines, in the repository at
    ``root`` (the package ``bizoo``)."""
    parts = dotted.removeprefix("bizoo.").split(".")
    parts = MODULE_ALIASES.get(parts[0], parts[0]).split("/") + parts[1:]
    folder = root
    for i, part in enumerate(parts):
        if (folder / part).is_dir():
            folder = folder / part
            continue
        if (folder / f"{part}.py").is_file():
            rest = parts[i + 1:]
            return not rest or rest[0] in module_names(folder / f"{part}.py")
        init = folder / "__init__.py"
        return init.is_file() and part in module_names(init)
    return True


def missing_module_names(text: str, root: Path = REPO_ROOT) -> list[str]:
    """Each code span that opens with a dotted name of the package (``bizoo.kernels.lstm.bilstm(x, ...)``,
    ``lib.training.input_checks_callback``, ``dispatch.values_on_host``) whose module or name does not exist;
    placeholders (``bizoo.kernels.<op>``) are left alone."""
    bad = []
    for span in re.findall(r"`([^`]+)`", text):
        found = DOTTED_NAME.match(span)
        if found and not span[found.end():].startswith((".<", "<")) and not resolves(found.group(), root):
            bad.append(found.group())
    return bad


@pytest.mark.parametrize("document", ALL_DOCUMENTS, ids=DOCUMENT_IDS)
def test_module_names_in_the_documents_exist(document):
    assert missing_module_names(without_code_blocks(document.read_text())) == []


def layout_block(text: str) -> str:
    """ARCHITECTURE.md §1's tree of the repository: the first fenced block of the section "Layout and layering"."""
    section = re.search(r"^## 1\. Layout and layering\n(.*?)^## ", text, re.S | re.M)
    assert section, "ARCHITECTURE.md has no section '## 1. Layout and layering'"
    blocks = FENCED.findall(section.group(1))
    assert blocks, "ARCHITECTURE.md §1 has no fenced layout tree"
    return blocks[0]


def missing_layout_entries(block: str, root: Path = REPO_ROOT) -> list[str]:
    """Each file or folder the layout tree names that the repository lacks. An entry of the first column (a folder
    ``kernels/``, a nested ``bench/``, a file ``gpu_check.py``) sets the folder that the ``*.py`` names and the
    "one module per command/target: a, b, c" lists of its description (continuation lines included) are read in; a
    path from a top-level folder (``tests/package/test_layout.py``) is read from the root; ``<op>`` and the like stand
    for any name; a name after "no" (``no __init__.py``) is a promised absence, left alone."""
    entries = []  # (nested, the first column's names, the description)
    for line in block.splitlines():
        indent = len(line) - len(line.lstrip())
        column, _, description = line.strip().partition("  ")
        if line.strip() and indent <= 4:
            entries.append((indent > 0, [e for e in re.split(r",\s*", column) if e], description))
        elif entries:
            entries[-1] = (*entries[-1][:2], f"{entries[-1][2]} {line.strip()}")
    bad, top = [], root
    for nested, names, description in entries:
        parent = top if nested else root
        here = parent / names[0] if names[0].endswith("/") else parent
        top = top if nested else here
        found = [(parent, name) for name in names if name.endswith("/") or "." in name]
        found += [(here, m.group(1)) for m in re.finditer(r"(?<![\w/<>*.-])((?:[\w<>*]+/)*[\w<>*]+\.py)\b", description)
                  if not description[:m.start()].endswith("no ")]
        rooted = rf"(?<![\w/.-])(?:{'|'.join(TOP_FOLDERS)})/[\w/]*\w\b(?![.<*])"  # tests/kernels, not a *.py
        found += [(root, m.group()) for m in re.finditer(rooted, description)]
        listed = re.search(r"one module per \w+\W+([\w, ]+)", description)
        found += [(here, f"{name}.py") for name in re.split(r"[,\s]+", listed.group(1)) if name] if listed else []
        for base, name in found:
            base = root if name.split("/")[0] in TOP_FOLDERS else base
            if not any(base.glob(re.sub(r"<[^>]*>", "*", name).rstrip("/"))):
                bad.append(f"{(base / name).relative_to(root).as_posix()}: {names[0]} {description.strip()[:50]!r}")
    return bad


def test_the_layout_tree_names_only_what_exists():
    """Every folder, module and listed command or benchmark target in ARCHITECTURE.md's layout tree exists."""
    assert missing_layout_entries(layout_block((REPO_ROOT / "ARCHITECTURE.md").read_text())) == []


def test_the_name_checks_catch_planted_wrong_claims():
    """The module-name and layout checks find a name that no longer exists, and leave the right ones alone."""
    right = ("`lib.command.command_main`, `dispatch.resolve_backend`, `kernels.crf`, `bizoo.wait_for_input_checks()`, "
             "`bizoo.kernels.lstm.bilstm(x, weight_ih, ...)`, `bizoo.kernels.<op>`, `modeling.common.Dropout`")
    assert missing_module_names(right) == []
    planted = right.replace("command_main", "command_run").replace("kernels.crf`", "kernels.hmm`").replace(
        "wait_for_input_checks", "wait_for_checks").replace("lstm.bilstm", "lstm.lstm")
    assert missing_module_names(planted) == [
        "lib.command.command_run", "kernels.hmm", "bizoo.wait_for_checks", "bizoo.kernels.lstm.lstm"]

    block = layout_block((REPO_ROOT / "ARCHITECTURE.md").read_text())
    assert missing_layout_entries(block) == []
    plants = {  # a module, a folder, a listed target and command, a root path, a path in a description, a file
        "value_checks.py: where": "value_check.py: where", "  bench/ ": "  benches/ ",
        "per target (lion, lion_forms,": "per target (lion, lion_form,",
        "convert_bigs, convert_elmo": "convert_bigs, convert_hmm",
        "tests/package/test_layout.py": "tests/package/test_layouts.py", "tests/reliability;": "tests/reliable;",
        "`bizoo bench`: registry.py": "`bizoo bench`: registri.py",
        "setup.py, pyproject.toml": "setup.py, pyproject.tml",
    }
    for old, new in plants.items():
        assert block.count(old) == 1, old
        assert len(missing_layout_entries(block.replace(old, new))) >= 1, new


def test_the_checks_catch_planted_wrong_claims(command_options):
    """Each check above finds a wrong claim planted in a document's text, and leaves the right one alone."""
    right = "`bizoo finetune-glue --model-name-or-path lion --task sst2 --output-dir out` (`bizoo bench crf --tags 9`)"
    assert unknown_options(right, command_options) == []
    planted = right.replace("--task sst2", "--task-file sst2").replace("--tags 9", "--lengths 9 --repeat 3")
    assert [line.split(":")[0] for line in unknown_options(planted, command_options)] == [
        "bizoo finetune-glue --task-file", "bizoo bench --repeat"]
    table_row = "| `bizoo pretrain --output-dir DIR` | masked LM; `--mlm-probability P`, `--word-dropout P` |"
    assert [line.split(":")[0] for line in unknown_options(table_row, command_options)] == [
        "bizoo pretrain --word-dropout"]

    block = ("```bash\nbizoo finetune-glue --model-name-or-path lion --task sst2 --data-dir glue \\\n"
             "  --output-dir o\n```\n")
    assert unparsable_command_lines(block) == []
    assert len(unparsable_command_lines(block.replace("  --output-dir o", "  --epochs 1"))) == 1  # no --output-dir
    assert len(unparsable_command_lines(block.replace("sst2", "sst2 --seed many"))) == 1
    torchrun = "```\ntorchrun --nproc_per_node 2 -m bizoo.scripts.pretrain --output-dir o --batch-size 4\n```\n"
    assert unparsable_command_lines(torchrun) == []
    assert len(unparsable_command_lines(torchrun.replace("--batch-size", "--batch-sise"))) == 1

    assert missing_paths("`tests/package/test_docs.py`, `tests/kernels/test_lion_*.py`, `kernels/<op>/reference.py`,"
                         " `modeling/value_checks.check_mode`, `scripts/lib/output_folders.py: move_into`") == []
    assert missing_paths("`tests/package/test_doc.py` and `modeling/value_checks.no_such_function`") == [
        "tests/package/test_doc.py", "modeling/value_checks.no_such_function"]
    snippet = "```python\nmodel = AutoModel.from_pretrained(\"elmo\")\n```\n"
    assert python_snippet_errors(snippet) == []
    assert len(python_snippet_errors(snippet.replace('\")', '\"'))) == 1


#: ARCHITECTURE.md §1's layering for the two folders tests/package/test_layout.py does not cover: what of ours each
#: may import (kernels/ and scripts/ are checked there).
LAYERS = {"configuration": {"configuration"}, "modeling": {"modeling", "configuration", "kernels"}}


def layering_violations(root: Path = REPO_ROOT) -> list[str]:
    """Each import (module level or inside a function) by a module of configuration/ or modeling/ of a part of
    bizoo its layer may not import, as "file:line: module"."""
    bad = []
    for folder, allowed in LAYERS.items():
        for path in sorted((root / folder).glob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ImportFrom) and node.level:
                    parts = [folder][: max(0, 2 - node.level)] + (node.module.split(".") if node.module else [])
                    names = [parts[0]] if parts else [alias.name for alias in node.names]
                elif isinstance(node, (ast.Import, ast.ImportFrom)):
                    modules = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module]
                    names = [m.split(".")[1] if "." in m else "" for m in modules if m.split(".")[0] == "bizoo"]
                else:
                    continue
                bad += [f"{path.relative_to(root).as_posix()}:{node.lineno}: {name or 'bizoo'}"
                        for name in names if name not in allowed]
    return bad


def test_configuration_and_modeling_import_what_their_layer_allows():
    """configuration imports transformers (nothing of ours but configuration); modeling imports configuration and
    kernels (never scripts, nor the package's __init__)."""
    assert layering_violations() == []


def test_the_layering_check_catches_planted_imports(tmp_path):
    for folder in LAYERS:
        (tmp_path / folder).mkdir()
    (tmp_path / "configuration" / "configuration_toy.py").write_text(
        "from transformers import PreTrainedConfig\nfrom .common import x\nfrom ..modeling import heads\n")
    (tmp_path / "modeling" / "modeling_toy.py").write_text(
        "from ..configuration import c\nfrom ..kernels.crf import crf_viterbi\n\n\ndef f():\n"
        "    from ..scripts.lib import data\n    import bizoo\n    from .. import LionConfig\n")
    assert layering_violations(tmp_path) == [
        "configuration/configuration_toy.py:3: modeling", "modeling/modeling_toy.py:6: scripts",
        "modeling/modeling_toy.py:7: bizoo", "modeling/modeling_toy.py:8: LionConfig"]
