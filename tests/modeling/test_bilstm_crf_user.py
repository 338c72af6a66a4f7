"""BiLSTM-CRF character encoders against oracles written from their docstrings: the "bilm" character scheme, whose
padding inside a word is the id 261 (not 0), must leave the character features as the real characters alone give."""

import pytest
import torch
from torch import nn

import bizoo
from bizoo.modeling.char_encoders import CharCnnEncoder, CharLstmEncoder
from bizoo.modeling.modeling_bilstm_crf import BiLstmCrfModel

BILM_PAD = 261
WORDS = [["x", "héllo", "ab", "Zürich-7"]]


def bilm_char_ids(max_word_length):
    tokenizer = bizoo.WordCharTokenizerFast.from_words([["a"]], char_scheme="bilm", max_word_length=max_word_length)
    enc = tokenizer(WORDS, is_split_into_words=True, return_tensors="pt")
    assert (enc["char_ids"] == BILM_PAD).any()  # the scheme pads inside words with 261
    return enc["input_ids"], enc["char_ids"]


def real_rows(char_ids):
    """Each word's real characters (neither 0 nor 261), from the docstring."""
    return [[c for c in row if c not in (0, BILM_PAD)] for row in char_ids.reshape(-1, char_ids.shape[-1]).tolist()]


def widened(module):
    torch.manual_seed(0)
    with torch.no_grad():
        module.embed.weight.normal_(0.0, 3.0)
        module.embed.weight[0].zero_()
    return module


def test_char_cnn_bilm_padding_is_left_out_of_the_max():
    _, char_ids = bilm_char_ids(12)
    cnn = widened(CharCnnEncoder(262, 4, 6, 3, pad_char_id=BILM_PAD))
    ours = cnn(char_ids[0])  # (N, F)
    for i, real in enumerate(real_rows(char_ids)):
        # conv over the real characters only, zeros beyond them (the convolution's own zero padding)
        oracle = cnn.conv(cnn.embed(torch.tensor(real))[None].transpose(1, 2)).amax(-1)[0]
        torch.testing.assert_close(ours[i], oracle, rtol=1e-5, atol=1e-5)


def test_char_lstm_bilm_padding_is_left_out_of_the_final_states():
    _, char_ids = bilm_char_ids(12)
    config = bizoo.BiLstmCrfConfig(char_encoder="lstm", kernel_backend="reference")
    encoder = widened(CharLstmEncoder(config, 262, 4, 3, pad_char_id=BILM_PAD))
    lstm = nn.LSTM(4, 3, batch_first=True, bidirectional=True)
    lstm.load_state_dict(encoder.lstm.state_dict())
    ours = encoder(char_ids[0])  # (N, 6)
    for i, real in enumerate(real_rows(char_ids)):
        _, (h_n, _) = lstm(encoder.embed(torch.tensor(real))[None])  # (2, 1, 3): forward's last, backward's first
        torch.testing.assert_close(ours[i], h_n[:, 0].reshape(-1), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("char_encoder", ["cnn", "lstm"])
def test_bilm_scheme_features_do_not_depend_on_max_word_length(char_encoder):
    """More 261s after a word's end-of-word marker change nothing: the same words, rows of 12 and of 20."""
    config = bizoo.BiLstmCrfConfig(
        vocab_size=10, word_embedding_size=4, char_encoder=char_encoder, char_scheme="bilm", char_embedding_size=4,
        char_cnn_filters=5, char_lstm_size=3, hidden_size=3, kernel_backend="reference",
    )
    model = BiLstmCrfModel(config).eval()
    widened(model.embeddings.char_encoder)
    input_ids, short = bilm_char_ids(12)
    _, long = bilm_char_ids(20)
    assert torch.equal(long[..., :12][short != BILM_PAD], short[short != BILM_PAD])
    with torch.no_grad():
        a = model(input_ids=input_ids, char_ids=short, output_hidden_states=True).hidden_states[0]
        b = model(input_ids=input_ids, char_ids=long, output_hidden_states=True).hidden_states[0]
    assert a[..., 4:].abs().amax() > 0.1  # the character features are not vacuous
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_char_scheme_is_checked():
    with pytest.raises(ValueError, match="char_scheme"):
        bizoo.BiLstmCrfConfig(char_scheme="bytes")
    with pytest.raises(ValueError, match="char_vocab_size"):
        bizoo.BiLstmCrfConfig(char_scheme="bilm", char_vocab_size=100)
    assert bizoo.BiLstmCrfConfig().pad_char_id is None
    assert bizoo.BiLstmCrfConfig(char_scheme="bilm").pad_char_id == BILM_PAD
