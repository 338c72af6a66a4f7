"""The Markdown documents of the repository (README.md, RESULTS.md, docs/*.md): the README's setup commands are the
ones CI runs, and every relative link reaches a file of the repository and, with a ``#fragment``, a heading in it."""

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
