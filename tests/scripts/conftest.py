"""Fixtures shared by the command-line tests: synthetic GLUE and CoNLL folders in the layout of the real ones, a tiny
checkpoint, and the benchmarks' helpers."""

import json
import os
import random
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

WORDS = "good great fine bad awful dull movie film plot actor story scene the a is was very not quite".split()
NAMES = "Anna Bert Carla Dieter Emil".split()
PLACES = "Berlin Paris Rome Oslo".split()
FILLER = "went to see in the city with and met yesterday".split()


def sentence(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 9)))


def write_tsv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join("\t".join(r) + "\n" for r in [header, *rows]), encoding="utf-8")


def conll_sentence(rng: random.Random) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    for _ in range(rng.randint(2, 5)):
        choice = rng.random()
        if choice < 0.3:
            tokens.append((rng.choice(NAMES), "B-PER"))
            if rng.random() < 0.5:
                tokens.append((rng.choice(NAMES) + "son", "I-PER"))
        elif choice < 0.5:
            tokens.append((rng.choice(PLACES), "B-LOC"))
        else:
            tokens.append((rng.choice(FILLER), "O"))
    return tokens


def write_conll(path: Path, sentences: list[list[tuple[str, str]]]) -> None:
    lines = ["-DOCSTART- -X- -X- O", ""]
    for tokens in sentences:
        lines += [f"{word} NNP B-NP {tag}" for word, tag in tokens] + [""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines), encoding="utf-8")


def write_pretraining_corpus(folder: Path, sentences, tokenizer, train_sentences: int) -> tuple[Path, Path, Path]:
    """(training file of ``train_sentences`` generated sentences, held-out file of 8, the saved ``tokenizer``) in
    ``folder``: what the pretraining tests train on (the same tokenizer every run, trained once)."""
    train, held_out = folder / "train.txt", folder / "held_out.txt"
    train.write_text("\n".join(sentences(train_sentences, seed=1)) + "\n")
    held_out.write_text("\n".join(sentences(8, seed=2)) + "\n")
    tokenizer.save_pretrained(folder / "tokenizer")
    return train, held_out, folder / "tokenizer"


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    """``rows`` as JSON lines at ``path``."""
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def child_env() -> dict[str, str]:
    """The environment of a command run in a child process (torchrun included): offline, one thread, and none of a
    distributed launcher's variables that the test itself may run under."""
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    return env


def run_child(argv, timeout: int = 240) -> subprocess.CompletedProcess:
    """``argv`` in a child process; a run that hangs fails the test (``subprocess.TimeoutExpired``)."""
    return subprocess.run([str(a) for a in argv], env=child_env(), capture_output=True, text=True, timeout=timeout)


def max_weight_difference(a: Path, b: Path) -> float:
    """The largest difference between the weights saved in two folders (``model.safetensors``), which must hold the
    same tensors."""
    from safetensors.torch import load_file

    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert wa.keys() == wb.keys()
    return max((wa[k].float() - wb[k].float()).abs().max().item() for k in wa)


def call(main, argv) -> int:
    """The exit code of a command's ``main(argv)`` (each item of ``argv`` as a string), whether it returns it or
    argparse raises SystemExit."""
    try:
        return main([str(a) for a in argv])
    except SystemExit as exit:
        return exit.code


@pytest.fixture(scope="session")
def synthetic():
    """The synthetic vocabulary and writers above, for tests that build their own files."""
    return SimpleNamespace(WORDS=WORDS, NAMES=NAMES, PLACES=PLACES, FILLER=FILLER, write_tsv=write_tsv,
                           write_conll=write_conll, sentence=sentence, conll_sentence=conll_sentence)


@pytest.fixture(scope="module")
def glue_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SST-2 (single sentence), RTE (pairs, string labels), STS-B (regression), MNLI (matched + mismatched)."""
    root = tmp_path_factory.mktemp("glue")
    rng = random.Random(0)
    for split, n in (("train", 40), ("dev", 12)):
        rows = []
        for _ in range(n):
            text = sentence(rng)
            rows.append([text + " ", str(int("good" in text or "great" in text))])
        write_tsv(root / "SST-2" / f"{split}.tsv", ["sentence", "label"], rows)
        rte = [[str(i), sentence(rng), sentence(rng), rng.choice(["entailment", "not_entailment"])] for i in range(n)]
        write_tsv(root / "RTE" / f"{split}.tsv", ["index", "sentence1", "sentence2", "label"], rte)
        sts = [[str(i), sentence(rng), sentence(rng), f"{rng.uniform(0, 5):.3f}"] for i in range(n)]
        write_tsv(root / "STS-B" / f"{split}.tsv", ["index", "sentence1", "sentence2", "score"], sts)
    mnli_labels = ["contradiction", "entailment", "neutral"]
    for split, n in (("train", 30), ("dev_matched", 8), ("dev_mismatched", 9)):
        rows = [[str(i), sentence(rng), sentence(rng), rng.choice(mnli_labels)] for i in range(n)]
        write_tsv(root / "MNLI" / f"{split}.tsv", ["index", "sentence1", "sentence2", "gold_label"], rows)
    return root


@pytest.fixture(scope="module")
def conll_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("conll")
    rng = random.Random(1)
    write_conll(root / "train.txt", [conll_sentence(rng) for _ in range(40)])
    write_conll(root / "valid.txt", [conll_sentence(rng) for _ in range(12)])
    return root


@pytest.fixture
def keep_threads():
    """Benchmarks' --threads sets torch's thread count in this process: give the other tests theirs back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def in_process(monkeypatch):
    """Run a benchmark's CPU cases in this process instead of one child each (faster; the child path has its own
    test)."""
    from bizoo.scripts.bench import harness

    def run(case):
        results = {}
        harness.measure_case(case, results.__setitem__)
        return results

    monkeypatch.setattr(harness, "run_case_in_child", run)
    monkeypatch.setattr(harness, "_reset_peak_rss", lambda: False)  # its gc.collect is slow in a test process


@pytest.fixture
def checkpoint(tmp_path: Path, tokenizer, make_config) -> Path:
    """A tiny LION-D masked LM saved with its tokenizer (a test file may define its own ``checkpoint``)."""
    from bizoo import LionForMaskedLM

    folder = tmp_path / "ckpt"
    LionForMaskedLM(make_config(("lion", "d"), vocab_size=len(tokenizer))).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
