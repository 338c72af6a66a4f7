"""Shared fixtures: the registered model types, a tiny tokenizer trained offline, paths to the shared data."""

import os
import random
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import bizoo  # noqa: E402  (registers every model with the Auto classes)

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"

WORDS = (
    "the king queen lord lady good night sweet prince love war peace crown sword fair foul time day sun moon "
    "star sea land city river house heart mind blood fire water earth air gold silver iron stone tree bird"
).split()


def generated_sentences(n: int = 400, seed: int = 0) -> list[str]:
    """Sentences over a small fixed vocabulary: enough for a tokenizer and a few training steps."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 14))) + " ." for _ in range(n)]


@pytest.fixture(scope="session")
def tokenizer():
    from bizoo.scripts.train_tokenizer import train_wordpiece_tokenizer

    return train_wordpiece_tokenizer(generated_sentences(), vocab_size=120, min_frequency=1, model_max_length=64)


def pytest_collect_directory(path, parent):
    """Collect the repository root as a plain folder, not a Python package.

    The root holds ``__init__.py`` because it IS the package ``bizoo``; pytest would otherwise import it a second
    time under the folder's name (e.g. ``main``) and register every model again with different classes.
    """
    if path == REPO_ROOT:
        return pytest.Dir.from_parent(parent, path=path)
    return None


def pytest_generate_tests(metafunc):
    """A test that takes ``model_case`` runs for every registered model type and each of its named variants:
    a model joins the conformance suite by being registered."""
    if "model_case" in metafunc.fixturenames:
        cases = []
        for model_type, spec in sorted(bizoo.MODEL_SPECS.items()):
            for variant in spec.variants or {"default": {}}:
                cases.append(pytest.param((model_type, variant), id=f"{model_type}-{variant}"))
        metafunc.parametrize("model_case", cases)


def tiny_config(model_case, vocab_size: int = 120, **overrides):
    """The registered tiny configuration of ``model_case`` = (model_type, variant)."""
    model_type, variant = model_case
    spec = bizoo.get_spec(model_type)
    kwargs = {**spec.tiny_config, **spec.variants.get(variant, {}), "vocab_size": vocab_size, **overrides}
    return spec.config_class(**kwargs)


@pytest.fixture
def make_config():
    return tiny_config


@pytest.fixture
def sentences():
    return generated_sentences


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    random.seed(0)
