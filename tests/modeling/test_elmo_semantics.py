"""ELMo against an independent numpy transcription of bilm-tf's inference math, on variant checkpoints the real
fixture (BIZOO_TEST_DATA/fixtures/elmo) does not cover: tanh characters, no highway, no skip connections, no clips, one
LSTM layer, LSTMs without a projection (dim = projection_dim), a character CNN without a projection (its filters'
total = projection_dim), another max_characters_per_token; words longer than a row and multi-byte UTF-8 words (bilm-tf
encodes bytes and cuts them at max_characters_per_token - 2, even inside a character). Each variant is written as
bilm-tf files (options.json + HDF5 with bilm-tf's dataset names, random weights) and converted with
``bizoo convert-elmo``; the options.json bilm-tf's training writes (with n_negative_samples_batch and the other
training options) converts too.

bilm-tf, as transcribed here (bilm/data.py, bilm/model.py):
  char ids    [bow, bytes[:C-2] ..., eow, pad ...] + 1 (0 = a padded word); <S> / </S>: [bow, 256 / 257, eow, pad ...]
  token       max over the windows of conv(E[ids]) + b, then relu / tanh; highway y = g·relu(W_t x + b_t) + (1-g)·x,
              g = σ(W_carry x + b_carry); then x W_proj + b_proj when the filters' total differs from projection_dim
  LSTMCell    [i, j, f, o] = [x, h] W_0 + B; c = clip(σ(f + 1) c + σ(i) tanh(j)); m = σ(o) tanh(c);
              h = clip(m W_P_0) when projection_dim < dim, else h = m; layers after the first add their input
              (use_skip_connections); the backward stack reads the sentence reversed
  layers      [x | x], then [→h^j | ←h^j] per LSTM layer
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

h5py = pytest.importorskip("h5py", reason="the variant checkpoints are HDF5 files (pip install bizoo[elmo])")

from bizoo.scripts.cli import main as cli_main  # noqa: E402
from bizoo.scripts.convert_elmo import convert  # noqa: E402

BOS_CHAR, EOS_CHAR, BOW, EOW, PAD_CHAR = 256, 257, 258, 259, 260

BASE = {
    "lstm": {"cell_clip": 3, "use_skip_connections": True, "n_layers": 2, "proj_clip": 3, "projection_dim": 8,
             "dim": 16},
    "char_cnn": {"embedding": {"dim": 4}, "filters": [[1, 4], [2, 8], [3, 8]], "n_highway": 1, "n_characters": 262,
                 "max_characters_per_token": 50, "activation": "relu"},
}
#: longer than a row (ASCII and 2-byte characters, cut inside one), non-ASCII, 3-byte characters
WORDS = ["The", "naïve", "日本語", "x" * 70, "é" * 30, "Zürich", "!", "a" * 47 + "é"]


def variant(**changes):
    """BASE with ``section__key=value`` changes; None removes the key."""
    options = copy.deepcopy(BASE)
    for name, value in changes.items():
        section, key = name.split("__")
        if value is None:
            options[section].pop(key, None)
        else:
            options[section][key] = value
    return options


VARIANTS = {
    "original-like": variant(),
    "tanh": variant(char_cnn__activation="tanh"),
    "no-highway": variant(char_cnn__n_highway=0),
    "highway-absent": variant(char_cnn__n_highway=None),
    "no-skip": variant(lstm__use_skip_connections=False),
    "no-clips": variant(lstm__cell_clip=None, lstm__proj_clip=None),
    "one-layer": variant(lstm__n_layers=1),
    "lstm-without-projection": variant(lstm__dim=8),
    "cnn-without-projection": variant(lstm__projection_dim=20, lstm__dim=40),
    "20-characters": variant(char_cnn__max_characters_per_token=20),
}


# --------------------------------------------------------------------------------------------------------------
# bilm-tf in numpy (fp64)
# --------------------------------------------------------------------------------------------------------------


def word_char_ids(word: str, width: int) -> np.ndarray:
    row = np.full(width, PAD_CHAR, dtype=np.int64)
    data = word.encode("utf-8", "ignore")[: width - 2]
    row[0] = BOW
    row[1 : len(data) + 1] = list(data)
    row[len(data) + 1] = EOW
    return row + 1


def boundary_char_ids(char: int, width: int) -> np.ndarray:
    row = np.full(width, PAD_CHAR, dtype=np.int64)
    row[:3] = [BOW, char, EOW]
    return row + 1


def sentence_char_ids(words, width: int) -> np.ndarray:
    rows = [boundary_char_ids(BOS_CHAR, width)] + [word_char_ids(w, width) for w in words]
    return np.stack(rows + [boundary_char_ids(EOS_CHAR, width)])  # (n + 2, width)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def token_vectors(weights, options, ids):
    """(n, width) ids -> (n, projection_dim)."""
    cnn = options["char_cnn"]
    table = np.concatenate([np.zeros((1, weights["char_embed"].shape[1])), weights["char_embed"]])
    chars = table[ids]  # (n, C, E)
    act = np.tanh if cnn["activation"] == "tanh" else (lambda v: np.maximum(v, 0.0))
    features = []
    for k, (width, _) in enumerate(cnn["filters"]):
        kernel = weights[f"CNN/W_cnn_{k}"][0]  # (w, E, count)
        windows = [np.einsum("nwe,wec->nc", chars[:, t : t + width], kernel) for t in range(ids.shape[1] - width + 1)]
        features.append(act(np.max(windows, axis=0) + weights[f"CNN/b_cnn_{k}"]))
    x = np.concatenate(features, axis=-1)
    for k in range(cnn.get("n_highway") or 0):
        root = f"CNN_high_{k}/"
        carry = sigmoid(x @ weights[root + "W_carry"] + weights[root + "b_carry"])
        transform = np.maximum(x @ weights[root + "W_transform"] + weights[root + "b_transform"], 0.0)
        x = carry * transform + (1.0 - carry) * x
    if "CNN_proj/W_proj" in weights:
        x = x @ weights["CNN_proj/W_proj"] + weights["CNN_proj/b_proj"]
    return x


def lstm_cell_run(weights, options, direction: int, layer: int, inputs):
    lstm = options["lstm"]
    H, P = lstm["dim"], lstm["projection_dim"]
    root = f"RNN_{direction}/RNN/MultiRNNCell/Cell{layer}/LSTMCell/"
    h, c, outputs = np.zeros(P), np.zeros(H), []
    for x in inputs:
        i, j, f, o = np.split(np.concatenate([x, h]) @ weights[root + "W_0"] + weights[root + "B"], 4)
        c = sigmoid(f + 1.0) * c + sigmoid(i) * np.tanh(j)
        if lstm.get("cell_clip") is not None:
            c = np.clip(c, -lstm["cell_clip"], lstm["cell_clip"])
        h = sigmoid(o) * np.tanh(c)
        if P < H:
            h = h @ weights[root + "W_P_0"]
            if lstm.get("proj_clip") is not None:
                h = np.clip(h, -lstm["proj_clip"], lstm["proj_clip"])
        outputs.append(h)
    return np.stack(outputs)


def bilm_layers(weights, options, words):
    """(char ids (n + 2, C), [token layer, LSTM layers ...] each (n + 2, 2P)) of one sentence with <S> and </S>."""
    ids = sentence_char_ids(words, options["char_cnn"]["max_characters_per_token"])
    x = token_vectors(weights, options, ids)
    layers, forward, backward = [np.concatenate([x, x], axis=-1)], x, x[::-1]
    for j in range(options["lstm"].get("n_layers", 1)):
        new_forward = lstm_cell_run(weights, options, 0, j, forward)
        new_backward = lstm_cell_run(weights, options, 1, j, backward)
        if options["lstm"].get("use_skip_connections") and j > 0:
            new_forward, new_backward = new_forward + forward, new_backward + backward
        forward, backward = new_forward, new_backward
        layers.append(np.concatenate([forward, backward[::-1]], axis=-1))
    return ids, layers


def write_bilm_files(folder, options, seed: int = 0):
    """options.json and w.hdf5 (bilm-tf's dataset names, fp32) with random weights large enough to reach the clips;
    returns the weights as fp64 arrays."""
    rng = np.random.default_rng(seed)
    cnn, lstm = options["char_cnn"], options["lstm"]
    E, P, H = cnn["embedding"]["dim"], lstm["projection_dim"], lstm["dim"]
    F = sum(count for _, count in cnn["filters"])
    weights = {"char_embed": rng.normal(size=(261, E))}
    for k, (width, count) in enumerate(cnn["filters"]):
        weights[f"CNN/W_cnn_{k}"] = rng.normal(scale=0.5, size=(1, width, E, count))
        weights[f"CNN/b_cnn_{k}"] = rng.normal(scale=0.1, size=count)
    for k in range(cnn.get("n_highway") or 0):
        for name in ("W_carry", "W_transform"):
            weights[f"CNN_high_{k}/{name}"] = rng.normal(scale=F**-0.5, size=(F, F))
        for name in ("b_carry", "b_transform"):
            weights[f"CNN_high_{k}/{name}"] = rng.normal(scale=0.1, size=F)
    if F != P:
        weights["CNN_proj/W_proj"] = rng.normal(scale=F**-0.5, size=(F, P))
        weights["CNN_proj/b_proj"] = rng.normal(scale=0.1, size=P)
    for direction in (0, 1):
        for j in range(lstm.get("n_layers", 1)):
            root = f"RNN_{direction}/RNN/MultiRNNCell/Cell{j}/LSTMCell/"
            weights[root + "W_0"] = rng.normal(scale=2.0 * P**-0.5, size=(2 * P, 4 * H))
            weights[root + "B"] = rng.normal(scale=0.5, size=4 * H)
            if P < H:
                weights[root + "W_P_0"] = rng.normal(scale=8.0 * H**-0.5, size=(H, P))
    weights = {name: value.astype(np.float32) for name, value in weights.items()}
    with h5py.File(folder / "w.hdf5", "w") as handle:
        for name, value in weights.items():
            handle.create_dataset(name, data=value)
    (folder / "options.json").write_text(json.dumps(options))
    return {name: value.astype(np.float64) for name, value in weights.items()}


# --------------------------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(VARIANTS))
def test_converted_variant_equals_bilm_tf_math(name, tmp_path):
    options = VARIANTS[name]
    weights = write_bilm_files(tmp_path, options)
    conversion = convert(tmp_path / "options.json", tmp_path / "w.hdf5")
    expected_ids, expected_layers = bilm_layers(weights, options, WORDS)
    batch = conversion.tokenizer([WORDS], is_split_into_words=True, return_tensors="pt")
    np.testing.assert_array_equal(batch["char_ids"][0].numpy(), expected_ids)
    with torch.no_grad():  # fp64: the clips make the fp32 rounding of these large weights visible
        out = conversion.model.double()(**batch, output_hidden_states=True)
    assert len(out.hidden_states) == len(expected_layers)
    for got, expected in zip(out.hidden_states, expected_layers):
        np.testing.assert_allclose(got[0].double().numpy(), expected, rtol=0, atol=1e-6)
    if options["lstm"].get("proj_clip") is not None and options["lstm"]["projection_dim"] < options["lstm"]["dim"]:
        first = out.hidden_states[1][0]  # no skip connection into layer 1: its outputs are the clipped projections
        assert first.abs().max() == pytest.approx(options["lstm"]["proj_clip"])  # the clip is exercised


#: What bilm-tf's training (bin/train_elmo.py) writes into options.json beside the architecture; its README has one
#: set n_characters to 262 before using the model for inference, and keeps the rest.
TRAINING_OPTIONS = {
    "bidirectional": True, "dropout": 0.1, "all_clip_norm_val": 10.0, "n_epochs": 10, "n_train_tokens": 768648884,
    "batch_size": 128, "n_tokens_vocab": 793471, "unroll_steps": 20, "n_negative_samples_batch": 8192,
}


@pytest.mark.parametrize("with_vocab", [False, True], ids=["no-vocab", "small-vocab"])
def test_training_options_file_converts_with_a_vocabulary_smaller_than_the_sample(with_vocab, tmp_path, capsys):
    """n_negative_samples_batch (8192) is at least the converted vocabulary: the model gets the full softmax, which
    that sample equals, instead of a refused conversion."""
    options = {**VARIANTS["original-like"], **TRAINING_OPTIONS}
    write_bilm_files(tmp_path, options)
    extra = []
    if with_vocab:
        (tmp_path / "vocab.txt").write_text("</S>\n<S>\n<UNK>\nthe\n,\n.\n", encoding="utf-8")
        extra = ["--vocab", str(tmp_path / "vocab.txt")]
    out = tmp_path / "out"
    code = cli_main(["convert-elmo", "--options", str(tmp_path / "options.json"), "--weights",
                     str(tmp_path / "w.hdf5"), "--output-dir", str(out), *extra])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "n_negative_samples_batch=8192 covers the whole vocabulary" in captured.out
    config = json.loads((out / "config.json").read_text())
    assert config["sampled_softmax_size"] == 0 and config["hidden_dropout_prob"] == 0.1
    assert config["vocab_size"] == (8 if with_vocab else 5)


def test_training_options_keep_a_sample_smaller_than_the_vocabulary(tmp_path):
    options = {**VARIANTS["original-like"], **TRAINING_OPTIONS, "n_negative_samples_batch": 3}
    write_bilm_files(tmp_path, options)
    (tmp_path / "vocab.txt").write_text("<S>\n</S>\n<UNK>\nthe\n,\n.\n", encoding="utf-8")
    conversion = convert(tmp_path / "options.json", tmp_path / "w.hdf5", tmp_path / "vocab.txt")
    assert conversion.model.config.sampled_softmax_size == 3
    assert not any("n_negative_samples_batch" in note for note in conversion.notes)
