"""Tests for ``bizoo convert-elmo``: the converted bilm-tf fixture (real weights; reference outputs of the original
TensorFlow code; not part of the repository: BIZOO_TEST_DATA/fixtures/elmo) gives the original's top layer for all 30
sentences, in the original's batches and in others; the token layer matches the original's dumped token
embeddings; the clips are active; every malformed input is an error (exit code 2) that names the problem and
writes nothing.

bilm-tf's inference graph is stateful: each batch starts from the LSTM states the previous batch ended with, row by
row, and the reference outputs were computed that way (10 batches of 3, one after the other). The tests replay that
chain once with ``initial_states`` / ``output_final_states``, then check every sentence alone and in other batches
from the state its row had."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModel, AutoTokenizer

import bizoo
from bizoo.scripts.cli import main as cli_main
from tests.conftest import external_path

ATOL = 1e-5
P, H, LAYERS = 16, 64, 2  # the fixture's projection_dim, dim, n_layers

OPTIONS = {
    "lstm": {
        "cell_clip": 3, "use_skip_connections": True, "n_layers": 2, "proj_clip": 3, "projection_dim": 16, "dim": 64,
    },
    "char_cnn": {
        "embedding": {"dim": 4},
        "filters": [[1, 4], [2, 8], [3, 16], [4, 32], [5, 64]],
        "n_highway": 2,
        "n_characters": 262,
        "max_characters_per_token": 50,
        "activation": "relu",
    },
}


@pytest.fixture(scope="module")
def h5py():
    return pytest.importorskip("h5py", reason="convert-elmo reads HDF5 with h5py (pip install bizoo[elmo])")


@pytest.fixture(scope="module")
def fixture_dir(h5py):
    return external_path("fixtures", "elmo", "lm_weights.hdf5").parent


def convert_cli(tmp_path, *extra, options=None, weights=None, name="out"):
    options = options if options is not None else external_path("fixtures", "elmo") / "options.json"
    weights = weights if weights is not None else external_path("fixtures", "elmo") / "lm_weights.hdf5"
    out = tmp_path / name
    code = cli_main(
        ["convert-elmo", "--options", str(options), "--weights", str(weights), "--output-dir", str(out), *extra]
    )
    return code, out


@pytest.fixture(scope="module")
def converted(fixture_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("elmo")
    code, out = convert_cli(folder)
    assert code == 0
    return AutoModel.from_pretrained(out).eval(), AutoTokenizer.from_pretrained(out), out


@pytest.fixture(scope="module")
def reference(fixture_dir, h5py):
    """(sentences[k][i] as word lists, expected[k][i] (n, 2P) = [forward | backward] of the top layer)."""
    sentences = json.loads((fixture_dir / "sentences.json").read_text())
    expected = []
    for k in range(3):
        with h5py.File(fixture_dir / f"lm_embeddings_{k}.hdf5", "r") as handle:
            expected.append([np.concatenate([handle[str(i)][0], handle[str(i)][1]], axis=-1) for i in range(10)])
    return [[s.split() for s in sentences[k]] for k in range(3)], expected


def run(model, tokenizer, sentences, states=None):
    """Top layer without <S> and </S> per sentence, and the final states."""
    batch = tokenizer(sentences, is_split_into_words=True, padding=True, return_tensors="pt")
    with torch.no_grad():
        out = model(**batch, initial_states=states, output_final_states=True)
    top = [out.top_layer[row, 1 : len(words) + 1].numpy() for row, words in enumerate(sentences)]
    return top, out.final_states


@pytest.fixture(scope="module")
def original_batches(converted, reference):
    """Replay the original run: batch i = (sentence i of list 0, of list 1, of list 2), each row continuing from its
    state after batch i-1. Returns (outputs[k][i], the state (h, c) row k started batch i from)."""
    model, tokenizer, _ = converted
    sentences, _ = reference
    outputs, starts, states = [[None] * 10 for _ in range(3)], [[None] * 10 for _ in range(3)], None
    for i in range(10):
        zero = (torch.zeros(LAYERS, 2, 3, P), torch.zeros(LAYERS, 2, 3, H))
        initial = states if states is not None else zero
        top, states = run(model, tokenizer, [sentences[k][i] for k in range(3)], initial)
        for k in range(3):
            outputs[k][i] = top[k]
            starts[k][i] = (initial[0][:, :, k], initial[1][:, :, k])
    return outputs, starts


def max_difference(got, expected) -> float:
    assert got.shape == expected.shape
    return float(np.abs(got - expected).max())


# --------------------------------------------------------------------------------------------------------------
# Parity with the original
# --------------------------------------------------------------------------------------------------------------


def test_top_layer_matches_the_original_in_its_batches_of_three(original_batches, reference):
    outputs, _ = original_batches
    _, expected = reference
    worst = max(max_difference(outputs[k][i], expected[k][i]) for k in range(3) for i in range(10))
    assert worst < ATOL, worst


def test_each_sentence_alone_from_its_rows_state(converted, reference, original_batches):
    model, tokenizer, _ = converted
    sentences, expected = reference
    _, starts = original_batches
    worst = 0.0
    for k in range(3):
        for i in range(10):
            h, c = starts[k][i]
            top, _ = run(model, tokenizer, [sentences[k][i]], (h[:, :, None], c[:, :, None]))
            worst = max(worst, max_difference(top[0], expected[k][i]))
    assert worst < ATOL, worst


@pytest.mark.parametrize("k", [0, 1, 2])
def test_each_list_as_one_batch_of_ten(converted, reference, original_batches, k):
    """Another batch size, other padding, other batch-mates: the same outputs."""
    model, tokenizer, _ = converted
    sentences, expected = reference
    _, starts = original_batches
    h = torch.stack([starts[k][i][0] for i in range(10)], dim=2)  # (layers, 2, 10, P)
    c = torch.stack([starts[k][i][1] for i in range(10)], dim=2)
    top, _ = run(model, tokenizer, sentences[k], (h, c))
    worst = max(max_difference(top[i], expected[k][i]) for i in range(10))
    assert worst < ATOL, worst


def test_without_carried_states_only_the_first_batch_matches(converted, reference):
    """The original's states carry over between batches: from a zero state, batch 0 matches, later ones do not."""
    model, tokenizer, _ = converted
    sentences, expected = reference
    first, _ = run(model, tokenizer, [sentences[k][0] for k in range(3)])
    assert max(max_difference(first[k], expected[k][0]) for k in range(3)) < ATOL
    second, _ = run(model, tokenizer, [sentences[k][1] for k in range(3)])
    assert min(max_difference(second[k], expected[k][1]) for k in range(3)) > 0.1


def test_token_layer_matches_the_original_token_embeddings(converted, fixture_dir, h5py):
    """elmo_token_embeddings.hdf5: the original's character-CNN vector of every word of vocab_test.txt (<S>, </S>
    and <UNK> included)."""
    model, tokenizer, _ = converted
    words = (fixture_dir / "vocab_test.txt").read_text().splitlines()
    with h5py.File(fixture_dir / "elmo_token_embeddings.hdf5", "r") as handle:
        expected = handle["embedding"][()]
    batch = tokenizer([[word] for word in words], is_split_into_words=True, padding=True, return_tensors="pt")
    with torch.no_grad():
        token_layer = model(**batch, output_hidden_states=True).hidden_states[0][:, 1, :P]  # the word between <S> </S>
    assert max_difference(token_layer.numpy(), expected) < ATOL


def test_the_clips_act_on_the_fixture(converted, reference):
    """Layer 1's projections reach ±3 on the fixture's sentences (its outputs, without a skip connection, are the
    clipped projections) and layer 2's memory cells are clipped (without cell_clip layer 1 is unchanged and layer 2
    is not); the outputs need the clipping to match the original."""
    model, tokenizer, folder = converted
    sentences, expected = reference
    batch = tokenizer([sentences[k][0] for k in range(3)], is_split_into_words=True, padding=True, return_tensors="pt")
    real = batch["attention_mask"].bool()  # (B, L)
    with torch.no_grad():
        layers = model(**batch, output_hidden_states=True).hidden_states
        cells_unclipped = AutoModel.from_pretrained(folder, cell_clip=None).eval()
        without_cell_clip = cells_unclipped(**batch, output_hidden_states=True).hidden_states
    assert (layers[1][real].abs() == 3.0).sum() > 0  # projection clip in layer 1
    assert torch.equal(without_cell_clip[1], layers[1])  # no memory cell of layer 1 reaches ±3 ...
    assert (without_cell_clip[2][real] - layers[2][real]).abs().max() > 1e-4  # ... some of layer 2 do
    unclipped = AutoModel.from_pretrained(folder, cell_clip=None, proj_clip=None).eval()
    top, _ = run(unclipped, tokenizer, [sentences[k][0] for k in range(3)])
    assert max(max_difference(top[k], expected[k][0]) for k in range(3)) > 1e-2


# --------------------------------------------------------------------------------------------------------------
# The folder: model, tokenizer, vocabulary
# --------------------------------------------------------------------------------------------------------------


def test_folder_loads_with_the_auto_classes(converted):
    model, tokenizer, folder = converted
    assert type(model) is bizoo.ElmoModel and isinstance(tokenizer, bizoo.WordCharTokenizerFast)
    assert (folder / "model.safetensors").is_file() and (folder / "tokenizer.json").is_file()
    assert tokenizer.char_scheme == "bilm" and tokenizer.add_sentence_boundaries and tokenizer.max_word_length == 50
    config = model.config
    assert (config.projection_size, config.lstm_size, config.num_hidden_layers, config.num_filters) == (16, 64, 2, 124)
    assert config.vocab_size == len(tokenizer) == 5  # no --vocab: the special tokens only


def test_character_ids_of_a_sentence_with_boundaries(converted):
    """bilm-tf's ids, +1: <S> = [259, 257, 260, 261 ...], a word = [259, its UTF-8 bytes + 1, 260, 261 ...],
    </S> = [259, 258, 260, 261 ...]; "é" is the two bytes C3 A9."""
    _, tokenizer, _ = converted
    encoding = tokenizer([["Héllo", "wörld"]], is_split_into_words=True, return_tensors="pt")
    rows = encoding["char_ids"][0]
    pad = [261] * 50

    def row(*ids):
        return list(ids) + pad[len(ids) :]

    assert rows.shape == (4, 50)
    assert rows[0].tolist() == row(259, 257, 260)
    assert rows[1].tolist() == row(259, 73, 196, 170, 109, 109, 112, 260)  # H é(C3 A9) l l o
    assert rows[2].tolist() == row(259, 120, 196, 183, 115, 109, 101, 260)  # w ö(C3 B6) r l d
    assert rows[3].tolist() == row(259, 258, 260)
    assert encoding["input_ids"][0].tolist() == [3, 1, 1, 4]  # <S> [UNK] [UNK] </S>: no words but the specials
    mask = tokenizer([["Héllo", "wörld"]], is_split_into_words=True, return_special_tokens_mask=True)
    assert mask["special_tokens_mask"] == [[1, 0, 0, 1]]


def test_vocabulary_from_a_bilm_vocab_file(fixture_dir, tmp_path, capsys):
    code, out = convert_cli(tmp_path, "--vocab", str(fixture_dir / "vocab_test.txt"))
    assert code == 0
    tokenizer = AutoTokenizer.from_pretrained(out)
    words = (fixture_dir / "vocab_test.txt").read_text().splitlines()
    plain = [w for w in words if w not in ("<S>", "</S>", "<UNK>")]
    assert len(tokenizer) == 5 + len(plain) == AutoModel.from_pretrained(out).config.vocab_size
    assert tokenizer.convert_ids_to_tokens(list(range(7))) == ["[PAD]", "[UNK]", "[MASK]", "<S>", "</S>", *plain[:2]]
    encoding = tokenizer([["Why", "Zanzibar"]], is_split_into_words=True)
    assert encoding["input_ids"][0] == [3, tokenizer.convert_tokens_to_ids("Why"), 1, 4]
    assert encoding["char_ids"][0][2][:3] == [259, ord("Z") + 1, ord("a") + 1]  # an unknown word keeps its characters
    assert "460 words" in capsys.readouterr().out


def test_overwrite_and_an_output_folder_holding_the_inputs(fixture_dir, tmp_path, capsys):
    code, out = convert_cli(tmp_path)
    assert code == 0
    code, _ = convert_cli(tmp_path)
    assert code == 2 and "already exists and is not empty" in capsys.readouterr().err
    code, _ = convert_cli(tmp_path, "--overwrite")
    assert code == 0 and (out / "model.safetensors").is_file()
    inside = tmp_path / "inputs"
    inside.mkdir()
    (inside / "options.json").write_text((fixture_dir / "options.json").read_text())
    code, _ = convert_cli(tmp_path, "--overwrite", options=inside / "options.json", name="inputs")
    assert code == 2 and "holds the --options file" in capsys.readouterr().err
    assert (inside / "options.json").is_file()


# --------------------------------------------------------------------------------------------------------------
# Malformed inputs: exit code 2, a message that names the problem, nothing written
# --------------------------------------------------------------------------------------------------------------


def write_weights(h5py, path: Path, drop=(), replace=None) -> Path:
    """A copy of the fixture's weights without the datasets ``drop`` and with ``replace`` {name: array} set."""
    replace = replace or {}
    source_path = external_path("fixtures", "elmo") / "lm_weights.hdf5"
    with h5py.File(source_path, "r") as source, h5py.File(path, "w") as target:
        names = []
        source.visititems(lambda name, item: names.append(name) if isinstance(item, h5py.Dataset) else None)
        for name in names:
            if name not in drop and name not in replace:
                target[name] = source[name][()]
        for name, value in replace.items():
            target[name] = value
    return path


def assert_refused(code, tmp_path, capsys, message):
    err = capsys.readouterr().err
    assert code == 2, err
    assert "bizoo convert-elmo: error:" in err and message in err, err
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]  # no staging folder left behind


def options_file(tmp_path, change=None) -> Path:
    options = copy.deepcopy(OPTIONS)
    if change is not None:
        change(options)
    path = tmp_path / "options.json"
    path.write_text(json.dumps(options))
    return path


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda o: o["lstm"].pop("dim"), "options.json has no lstm.dim"),
        (lambda o: o["char_cnn"].update(activation="swish"), "char_cnn.activation is invalid"),
        (lambda o: o["char_cnn"].update(n_characters=100), "char_cnn.n_characters must be 262"),
        (lambda o: o["lstm"].update(projection_dim=0), "lstm.projection_dim is invalid"),
    ],
)
def test_invalid_options_are_refused(tmp_path, capsys, change, message):
    """Checked before the weights are opened: no h5py or fixture needed."""
    weights = tmp_path / "weights.hdf5"
    weights.write_bytes(b"unused")
    code, _ = convert_cli(tmp_path, options=options_file(tmp_path, change), weights=weights)
    assert_refused(code, tmp_path, capsys, message)


def test_options_that_are_not_json(tmp_path, capsys):
    path = tmp_path / "options.json"
    path.write_text('{"lstm": {"dim": 64,')
    code, _ = convert_cli(tmp_path, options=path, weights=tmp_path / "weights.hdf5")
    assert_refused(code, tmp_path, capsys, "is not valid JSON")


def test_missing_h5py_names_the_extra(tmp_path, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "h5py", None)
    weights = tmp_path / "weights.hdf5"
    weights.write_bytes(b"unused")
    code, _ = convert_cli(tmp_path, options=options_file(tmp_path), weights=weights)
    assert_refused(code, tmp_path, capsys, "pip install bizoo[elmo]")


BAD_WEIGHTS = {
    "missing-dataset": (dict(drop=("CNN_high_1/b_carry",)), None, "missing dataset(s) CNN_high_1/b_carry"),
    "extra-dataset": (
        dict(replace={"softmax/W": np.zeros((3, 16), "float32")}), None, "unexpected dataset(s) softmax/W",
    ),
    "wrong-shape": (
        dict(replace={"char_embed": np.zeros((262, 4), "float32")}), None,
        "dataset char_embed has shape (262, 4), but options.json implies (261, 4)",
    ),
    "nan": (
        dict(replace={"RNN_1/RNN/MultiRNNCell/Cell0/LSTMCell/B": np.full(256, np.nan, "float32")}), None,
        "RNN_1/RNN/MultiRNNCell/Cell0/LSTMCell/B holds NaN",
    ),
    "integers": (dict(replace={"CNN_proj/b_proj": np.zeros(16, "int32")}), None, "CNN_proj/b_proj holds int32"),
    "more-layers-in-options": (
        {}, lambda o: o["lstm"].update(n_layers=3), "missing dataset(s) RNN_0/RNN/MultiRNNCell/Cell2/LSTMCell/W_0",
    ),
    "fewer-filters-in-options": (
        {}, lambda o: o["char_cnn"]["filters"].pop(), "unexpected dataset(s) CNN/W_cnn_4, CNN/b_cnn_4",
    ),
    "other-filter-count": (
        {}, lambda o: o["char_cnn"]["filters"][0].__setitem__(1, 5),
        "dataset CNN/W_cnn_0 has shape (1, 1, 4, 4), but options.json implies (1, 1, 4, 5)",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_WEIGHTS))
def test_bad_weights_are_refused(fixture_dir, h5py, tmp_path, capsys, case):
    edits, change, message = BAD_WEIGHTS[case]
    weights = write_weights(h5py, tmp_path / "weights.hdf5", **edits)
    code, _ = convert_cli(tmp_path, options=options_file(tmp_path, change), weights=weights)
    assert_refused(code, tmp_path, capsys, message)


def test_a_file_that_is_not_hdf5(h5py, tmp_path, capsys):
    weights = tmp_path / "weights.hdf5"
    weights.write_text("not an HDF5 file")
    code, _ = convert_cli(tmp_path, options=options_file(tmp_path), weights=weights)
    assert_refused(code, tmp_path, capsys, "is not a readable HDF5 file")
    code, _ = convert_cli(tmp_path, options=options_file(tmp_path), weights=tmp_path / "absent.hdf5")
    assert_refused(code, tmp_path, capsys, "does not exist")


@pytest.mark.parametrize(
    "lines, message",
    [
        (["<S>", "</S>", "the"], "lacks bilm-tf's special tokens ['<UNK>']"),
        (["<S>", "</S>", "<UNK>", "the", "the"], "line 5 repeats 'the' (first on line 4)"),
        (["<S>", "</S>", "<UNK>", "[MASK]"], "bizoo's own special tokens"),
    ],
)
def test_bad_vocabulary_is_refused(fixture_dir, tmp_path, capsys, lines, message):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(lines) + "\n")
    code, _ = convert_cli(tmp_path, "--vocab", str(vocab))
    assert_refused(code, tmp_path, capsys, message)


# ----------------------------------------------------------------------------------------------------------------
# --source: a folder or a Hub repository (read from a local cache laid out as the Hub's)
# ----------------------------------------------------------------------------------------------------------------


def test_source_names_files_inside_a_folder_or_a_hub_repository(tmp_path, hub_cache):
    from bizoo.scripts.convert_elmo import source_files
    from bizoo.scripts.lib.command import CommandError

    files = {"options.json": b"{}", "elmo_weights.hdf5": b"w", "vocab.txt": b"<S>\n", "other.hdf5": b"o"}
    snapshot = hub_cache("allenai/elmo-tiny", {k: v for k, v in files.items() if k != "other.hdf5"})
    assert source_files("allenai/elmo-tiny", None, None, None) == tuple(
        str(snapshot / name) for name in ("options.json", "elmo_weights.hdf5", "vocab.txt")
    )
    assert source_files(str(snapshot), "options.json", "elmo_weights.hdf5", None)[2] == str(snapshot / "vocab.txt")
    two = hub_cache("allenai/elmo-tiny", files, ref="two-weights")
    with pytest.raises(CommandError, match=r"holds 2 \*\.hdf5 files \(elmo_weights.hdf5, other.hdf5\)"):
        source_files("allenai/elmo-tiny@two-weights", None, None, None)
    assert source_files("allenai/elmo-tiny@two-weights", None, "other.hdf5", None)[1] == str(two / "other.hdf5")
    with pytest.raises(CommandError, match="--options: 'opts.json' is not a file in --source"):
        source_files("allenai/elmo-tiny", "opts.json", None, None)
    with pytest.raises(CommandError, match="'allenai/absent' is not in the cache"):
        source_files("allenai/absent", None, None, None)
    with pytest.raises(CommandError, match="give --options and --weights"):
        source_files(None, None, None, "vocab.txt")
    assert source_files(None, "o.json", "w.hdf5", None) == ("o.json", "w.hdf5", None)


def test_converts_from_a_hub_repository_as_from_its_files(fixture_dir, tmp_path, hub_cache, converted):
    hub_cache("allenai/bilm-fixture", {name: fixture_dir / name for name in ("options.json", "lm_weights.hdf5")})
    out = tmp_path / "from-hub"
    assert cli_main(["convert-elmo", "--source", "allenai/bilm-fixture", "--output-dir", str(out)]) == 0
    model, _, _ = converted
    want = model.state_dict()
    got = AutoModel.from_pretrained(out).state_dict()
    assert want.keys() == got.keys()
    fresh = [k for k in want if k.startswith("word_embeddings")]  # the LM softmax: not in bilm-tf files, initialised
    assert fresh and all(torch.equal(want[k], got[k]) for k in want if k not in fresh)
