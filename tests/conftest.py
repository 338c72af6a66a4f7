"""Shared fixtures: the registered model types, a tiny tokenizer trained offline, the real data's path
(``external_path``)."""

import os
import random
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
if not torch.cuda.is_available():  # the Triton kernels run on the CPU in Triton's interpreter, as in CI (README)
    os.environ.setdefault("TRITON_INTERPRET", "1")

import bizoo  # noqa: E402  (registers every model with the Auto classes)
from tests.tiny_configs import TINY_CONFIGS  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]


def checkpointing_field() -> str:
    """The TrainingArguments field of --gradient_checkpointing: "activation_checkpointing" in the transformers
    releases that renamed it, "gradient_checkpointing" before (the suite runs on both)."""
    from transformers import TrainingArguments

    fields = TrainingArguments.__dataclass_fields__
    return "activation_checkpointing" if "activation_checkpointing" in fields else "gradient_checkpointing"


def model_checkpointing(model) -> bool:
    """Whether ``model`` runs with activation (gradient) checkpointing, under either release's name."""
    flag = getattr(model, "is_activation_checkpointing", None)
    return model.is_gradient_checkpointing if flag is None else flag


def external_path(*parts: str) -> Path:
    """A file or folder of the real data some slow tests read, which is not part of the repository: the folder named by
    the environment variable ``BIZOO_TEST_DATA`` holds ``data/`` (GLUE task folders, CoNLL-2003 files, ...) and
    ``fixtures/elmo/`` (a bilm-tf ELMo checkpoint with its reference outputs). Skips the calling test when the
    variable is unset or the path is not there."""
    root = os.environ.get("BIZOO_TEST_DATA")
    if not root:
        pytest.skip(f"needs real data that is not part of the repository: set BIZOO_TEST_DATA (for {'/'.join(parts)})")
    path = Path(root).expanduser().joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is not there (BIZOO_TEST_DATA={root})")
    return path

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


def pytest_report_header(config):
    """One line at the top of every run: the versions the suite ran against (setup.py states the supported range)."""
    import transformers

    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = "absent"
    return (
        f"bizoo {bizoo.__version__}: transformers {transformers.__version__}, torch {torch.__version__}, "
        f"triton {triton_version}"
    )


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


def trainer_args(tmp_path, **overrides):
    """``TrainingArguments`` of a quiet, reproducible CPU run into ``tmp_path`` (nothing reported, saved or logged;
    seeds 0), with ``overrides``: what the tests that drive a ``Trainer`` directly start from."""
    from transformers import TrainingArguments

    defaults = dict(output_dir=str(tmp_path), report_to=[], use_cpu=True, save_strategy="no", disable_tqdm=True,
                    logging_strategy="no", dataloader_num_workers=0, seed=0, data_seed=0)
    return TrainingArguments(**{**defaults, **overrides})


def tiny_config(model_case, vocab_size: int = 120, **overrides):
    """The tiny configuration of ``model_case`` = (model_type, variant): ``tests/tiny_configs.py``, then the variant."""
    model_type, variant = model_case
    spec = bizoo.get_spec(model_type)
    kwargs = {**TINY_CONFIGS[model_type], **spec.variants.get(variant, {}), "vocab_size": vocab_size, **overrides}
    return spec.config_class(**kwargs)


@pytest.fixture
def make_config():
    return tiny_config


_CHAR_TABLE = torch.randint(5, 40, (512, 6), generator=torch.Generator().manual_seed(0))  # word id -> characters
_CHAR_TABLE[0] = 0  # the padding word has no characters


def model_inputs(model_case, input_ids=None, attention_mask=None, **extra) -> dict:
    """Keyword inputs of ``model_case`` for these ids: ``input_ids`` (and ``attention_mask``), plus, for a model that
    reads characters, ``char_ids`` (B, L, 6) that are a fixed function of each word id (zero rows at padding)."""
    inputs = dict(extra)
    if input_ids is not None:
        inputs["input_ids"] = input_ids
    if attention_mask is not None:
        inputs["attention_mask"] = attention_mask
    if bizoo.get_spec(model_case[0]).tokenizer == "wordchar":
        ids = input_ids if input_ids is not None else extra["word_ids"]
        inputs.pop("word_ids", None)
        chars = _CHAR_TABLE[ids]  # (B, L, 6)
        if attention_mask is not None:
            chars = chars * attention_mask.bool()[..., None]
        inputs["char_ids"] = chars
    else:
        inputs.pop("word_ids", None)
    return inputs


@pytest.fixture
def make_inputs():
    return model_inputs


_WORDCHAR_TOKENIZER = {}


def tokenizer_for(model_case, wordpiece):
    """The tokenizer ``model_case`` reads: ``wordpiece`` (the tiny WordPiece tokenizer), or a word+character tokenizer
    built from the same sentences (built once per process). For tests that pick their cases themselves."""
    if bizoo.get_spec(model_case[0]).tokenizer != "wordchar":
        return wordpiece
    if "vocab" not in _WORDCHAR_TOKENIZER:
        words = generated_sentences()
        _WORDCHAR_TOKENIZER["vocab"] = bizoo.WordCharTokenizerFast.from_words(words, model_max_length=64)
    return _WORDCHAR_TOKENIZER["vocab"]


@pytest.fixture
def model_tokenizer(model_case, tokenizer):
    """The tokenizer ``model_case`` reads (``tokenizer_for``)."""
    return tokenizer_for(model_case, tokenizer)


@pytest.fixture
def sentences():
    return generated_sentences


@pytest.fixture
def as_on_a_gpu(monkeypatch):
    """Tensors taken for GPU tensors (``dispatch.values_on_host``, the one switch every value-reading branch asks):
    the models' value checks are read later (``modeling/value_checks.py``), and their numbers land only when
    waited for (``wait_for_input_checks``); the kernels' value checks and gathers by a mask are left out."""
    from bizoo.kernels import dispatch
    from bizoo.modeling import value_checks

    monkeypatch.setattr(dispatch, "values_on_host", lambda tensor: False)
    monkeypatch.setattr(value_checks, "_landed", lambda pending: False)
    value_checks.discard_input_checks()
    yield
    value_checks.discard_input_checks()


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    random.seed(0)


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """A local cache laid out as the Hub's, and huggingface_hub pointed at it for one test: ``add(repo_id, files,
    ref="main")`` stores ``files`` ({name: bytes or Path}) as ``models--owner--name/blobs/<sha256>``, links them from
    ``snapshots/<commit>/<name>`` and writes ``refs/<ref>`` (``datasets--owner--name`` with repo_type="dataset"); it
    returns the snapshot folder. (huggingface_hub reads
    ``constants.HF_HUB_CACHE`` when it is called; the suite runs with HF_HUB_OFFLINE=1, so only this cache is read.)"""
    import hashlib

    from huggingface_hub import constants

    root = tmp_path / "hub-cache"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(root))

    def add(repo_id: str, files: dict, ref: str = "main", repo_type: str = "model") -> Path:
        repo = root / (f"{repo_type}s--" + repo_id.replace("/", "--"))
        commit = hashlib.sha1(f"{repo_id}@{ref}:{sorted(files)}".encode()).hexdigest()
        snapshot = repo / "snapshots" / commit
        (repo / "blobs").mkdir(parents=True, exist_ok=True)
        for name, content in files.items():
            data = content.read_bytes() if isinstance(content, Path) else content
            blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
            blob.write_bytes(data)
            link = snapshot / name
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(os.path.relpath(blob, link.parent))
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / ref).write_text(commit)
        return snapshot

    return add
