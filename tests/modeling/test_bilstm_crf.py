"""BiLSTM-CRF specifics (the Hugging Face contract is in test_conformance.py): the pad-invariant BiLSTM and the
whole encoder against torch's packed-sequence LSTM, the kernel backends, the character encoders, word dropout, the
masked-LM collator that hides characters, and the command-line path that builds the word+character tokenizer."""

import os

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import bizoo
from bizoo.kernels import lstm as lstm_op
from bizoo.modeling.lstm_layers import run_bilstm
from tests.tiny_configs import TINY_CONFIGS


def as_nn_lstm(weights):
    """An ``nn.LSTM`` holding the parameters of a model's ``BiLstmWeights`` (torch's own LSTM as the oracle)."""
    lstm = nn.LSTM(weights.input_size, weights.hidden_size, batch_first=True, bidirectional=True)
    lstm.load_state_dict(weights.state_dict())
    return lstm


def packed_oracle(lstm, x, lengths):
    """torch's own answer for right-padded rows: a packed bidirectional LSTM, zeros at padding."""
    lstm = lstm if isinstance(lstm, nn.LSTM) else as_nn_lstm(lstm)
    packed = pack_padded_sequence(x, lengths.clamp(min=1), batch_first=True, enforce_sorted=False)
    out, _ = lstm(packed)
    out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
    return out * (torch.arange(x.shape[1])[None, :] < lengths[:, None])[..., None]


def test_run_bilstm_equals_the_packed_lstm_forward_and_backward():
    torch.manual_seed(0)
    lstm = nn.LSTM(5, 7, batch_first=True, bidirectional=True)
    lengths = torch.tensor([6, 3, 1, 5])
    mask = torch.arange(6)[None, :] < lengths[:, None]  # (4, 6) right padding
    x = torch.randn(4, 6, 5, requires_grad=True)
    ours = run_bilstm(lstm, x, mask)
    weights = torch.randn_like(ours)
    expected = packed_oracle(lstm, x, lengths)
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-6)
    g_ours = torch.autograd.grad((ours * weights).sum(), [x, *lstm.parameters()])
    g_expected = torch.autograd.grad((expected * weights).sum(), [x, *lstm.parameters()])
    for a, b in zip(g_ours, g_expected):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("layout", ["left", "holes", "empty"])
def test_run_bilstm_reads_only_the_real_positions(layout):
    """Left padding, holes and an empty row give each row's real tokens what they get alone (the backward
    direction starts at the last real token), with zeros elsewhere."""
    torch.manual_seed(1)
    lstm = nn.LSTM(4, 3, batch_first=True, bidirectional=True)
    x = torch.randn(2, 7, 4)
    mask = torch.ones(2, 7, dtype=torch.bool)
    if layout == "left":
        mask[0, :3] = False
    elif layout == "holes":
        mask[0, [0, 3, 6]] = False
    else:
        mask[0] = False
    out = run_bilstm(lstm, x, mask)
    real = x[0, mask[0]][None]  # (1, n, 4)
    if real.shape[1]:
        alone = run_bilstm(lstm, real, torch.ones(1, real.shape[1], dtype=torch.bool))[0]
        torch.testing.assert_close(out[0, mask[0]], alone, rtol=1e-5, atol=1e-6)
    assert torch.equal(out[0, ~mask[0]], torch.zeros_like(out[0, ~mask[0]]))
    torch.testing.assert_close(out[1], run_bilstm(lstm, x[1:], mask[1:])[0])


def tiny(**overrides):
    return bizoo.BiLstmCrfConfig(**{**TINY_CONFIGS["bilstm_crf"], "vocab_size": 30, "char_vocab_size": 20, **overrides})


def test_gradients_accumulate_over_backward_passes():
    """Two backward passes leave twice one pass's gradient in every parameter, b_ih and b_hh included (the op reads
    their sum)."""
    torch.manual_seed(0)
    lstm = nn.LSTM(3, 4, batch_first=True, bidirectional=True)
    x, mask = torch.randn(2, 5, 3), torch.ones(2, 5)
    run_bilstm(lstm, x, mask).sum().backward()
    once = [p.grad.clone() for p in lstm.parameters()]
    run_bilstm(lstm, x, mask).sum().backward()
    for parameter, gradient in zip(lstm.parameters(), once):
        torch.testing.assert_close(parameter.grad, 2 * gradient)


def test_encoder_equals_torch_packed_lstms_with_its_own_weights():
    """The whole encoder over a right-padded batch, character BiLSTM included, is torch.nn.LSTM(bidirectional=True)
    on packed sequences with the model's own modules: a word's character features are the packed LSTM's final
    states [→h_n ; ←h_n], each layer's output the packed LSTM's, zeros at padding."""
    torch.manual_seed(0)
    model = bizoo.BiLstmCrfModel(tiny(char_encoder="lstm")).eval()
    lengths = torch.tensor([6, 3, 5])
    mask = (torch.arange(6)[None, :] < lengths[:, None]).long()  # (3, 6) right padding
    ids = torch.randint(5, 30, (3, 6)) * mask
    char_lengths = torch.randint(1, 5, (3, 6))  # 1 to 4 characters per word
    chars = torch.randint(1, 20, (3, 6, 4)) * (torch.arange(4) < char_lengths[..., None]) * mask[..., None]
    got = model(input_ids=ids, attention_mask=mask, char_ids=chars).last_hidden_state

    real = mask.bool()
    encoder = model.embeddings.char_encoder
    with torch.no_grad():
        words = pack_padded_sequence(
            encoder.embed(chars[real]), char_lengths[real], batch_first=True, enforce_sorted=False
        )
        # (2, N, S): forward after the last character, backward after the first
        # h_n (2, N, S): forward after the last character, backward after the first
        _, (h_n, _) = as_nn_lstm(encoder.lstm)(words)
        char_features = torch.zeros(3, 6, 2 * h_n.shape[-1])
        char_features[real] = torch.cat([h_n[0], h_n[1]], dim=-1)
        hidden = torch.cat([model.embeddings.word_embeddings(ids), char_features], dim=-1)  # (3, 6, E + F)
        for layer in model.layers:
            hidden = packed_oracle(layer.lstm, hidden, lengths)  # (3, 6, 2H)
    torch.testing.assert_close(got, hidden, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("backend", ["reference", "triton"])
def test_kernel_backends_give_the_outputs_of_the_default(backend, monkeypatch):
    """kernel_backend picks the schedule of the bilstm op, never the result (the default, "auto", is the reference on
    a CPU; "triton" runs under Triton's interpreter, once per LSTM: the character encoder's and each layer's)."""
    if backend == "triton" and (lstm_op.bilstm_triton_steps is None or os.environ.get("TRITON_INTERPRET") != "1"):
        pytest.skip("the Triton LSTM needs triton and TRITON_INTERPRET=1 on a CPU")
    calls = []
    if lstm_op.bilstm_triton_steps is not None:  # count the Triton schedule's runs
        kernel = lstm_op.bilstm_triton_steps
        monkeypatch.setattr(lstm_op, "bilstm_triton_steps", lambda *args: calls.append(1) or kernel(*args))
    torch.manual_seed(0)
    default = bizoo.BiLstmCrfModel(tiny(char_encoder="lstm")).eval()
    chosen = bizoo.BiLstmCrfModel(tiny(char_encoder="lstm", kernel_backend=backend)).eval()
    chosen.load_state_dict(default.state_dict())
    mask = torch.tensor([[1, 1, 1, 1, 1, 0], [0, 1, 1, 0, 1, 1]])  # right padding, left padding and a hole
    ids = torch.randint(5, 30, (2, 6))
    chars = torch.randint(0, 20, (2, 6, 4))
    expected = default(input_ids=ids, attention_mask=mask, char_ids=chars, output_hidden_states=True)
    assert calls == []
    got = chosen(input_ids=ids, attention_mask=mask, char_ids=chars, output_hidden_states=True)
    assert len(calls) == (1 + len(chosen.layers) if backend == "triton" else 0)
    for a, b in zip(got.hidden_states, expected.hidden_states):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("char_encoder", ["cnn", "lstm", "none"])
def test_characters_change_the_output_only_with_a_char_encoder(char_encoder):
    model = bizoo.BiLstmCrfModel(tiny(char_encoder=char_encoder)).eval()
    ids = torch.randint(5, 30, (2, 6))
    chars = torch.randint(1, 20, (2, 6, 4))
    other = chars.clone()
    other[0, 2, 1] = (other[0, 2, 1] % 19) + 1
    a = model(input_ids=ids, char_ids=chars).last_hidden_state
    b = model(input_ids=ids, char_ids=other).last_hidden_state
    assert torch.equal(a, b) == (char_encoder == "none")
    expected_input = 16 + {"cnn": 6, "lstm": 8, "none": 0}[char_encoder]  # word + character features
    assert model.embeddings(ids, None, chars, torch.ones_like(ids)).shape[-1] == expected_input


def test_char_ids_are_required_and_checked():
    model = bizoo.BiLstmCrfModel(tiny()).eval()
    ids = torch.randint(5, 30, (1, 4))
    with pytest.raises(ValueError, match="char_ids"):
        model(input_ids=ids)
    with pytest.raises(ValueError, match="char_ids"):
        model(input_ids=ids, char_ids=torch.full((1, 4, 3), 25))  # outside char_vocab_size = 20


def test_word_dropout_only_in_training():
    model = bizoo.BiLstmCrfModel(tiny(word_dropout=0.5, unk_token_id=1))
    ids = torch.randint(5, 30, (2, 8))
    chars = torch.randint(1, 20, (2, 8, 3))
    model.eval()
    torch.testing.assert_close(
        model(input_ids=ids, char_ids=chars).last_hidden_state, model(input_ids=ids, char_ids=chars).last_hidden_state
    )
    model.train()
    torch.manual_seed(0)
    a = model(input_ids=ids, char_ids=chars).last_hidden_state
    torch.manual_seed(1)
    assert not torch.allclose(a, model(input_ids=ids, char_ids=chars).last_hidden_state)


def test_masked_lm_collator_hides_the_characters_of_replaced_words(sentences, tokenizer):
    wordpiece = tokenizer
    tokenizer = bizoo.WordCharTokenizerFast.from_words(sentences(200))
    collator = bizoo.DataCollatorForWordCharLanguageModeling(tokenizer, mlm_probability=0.5)
    examples = [tokenizer(text) for text in sentences(16)]
    torch.manual_seed(0)
    batch = collator([dict(e) for e in examples])
    labels, ids, chars = batch["labels"], batch["input_ids"], batch["char_ids"]
    masked = (labels != -100) & (ids == tokenizer.mask_token_id)
    replaced = (labels != -100) & (ids != labels) & ~masked
    kept = (labels != -100) & (ids == labels)
    assert masked.any() and replaced.any() and kept.any()
    mask_row = torch.tensor(tokenizer.ids_to_char_ids([tokenizer.mask_token_id])[0])[: chars.shape[-1]]
    assert (chars[masked] == mask_row).all()
    for b, t in replaced.nonzero().tolist():  # a random word: its own characters, not the original's
        assert chars[b, t].tolist() == tokenizer.ids_to_char_ids([int(ids[b, t])])[0][: chars.shape[-1]]
    original = tokenizer.pad([dict(e) for e in examples], return_tensors="pt")["char_ids"]
    assert torch.equal(chars[kept], original[kept])
    with pytest.raises(ValueError, match="WordCharTokenizerFast"):
        bizoo.DataCollatorForWordCharLanguageModeling(wordpiece)([{"input_ids": [5, 6]}])
