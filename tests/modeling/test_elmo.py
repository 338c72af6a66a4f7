"""ELMo's own tests (the HF contract is in test_conformance.py): the LSTMP and character-encoder equations against
hand loops, pad invariance and the directions' reading orders, carried LSTM states, the scalar mix, the biLM loss
against a manual computation, the sampled softmax, the configuration, and that the model never needs h5py."""

from __future__ import annotations

import math
import os
import sys

import pytest
import torch
import torch.nn.functional as F

import bizoo
from bizoo import ElmoConfig, ElmoForBidirectionalLM, ElmoForTokenClassification, ElmoModel
from bizoo.kernels import lstm as lstm_op
from bizoo.modeling import modeling_elmo
from bizoo.modeling.modeling_elmo import (
    ElmoBiLstmLayer,
    ElmoCharacterEncoder,
    ElmoLstmCell,
    draw_log_uniform,
    log_uniform_expected_count,
    log_uniform_probabilities,
    sample_log_uniform,
    sampled_softmax_loss,
)
from tests.conftest import model_inputs, tiny_config
from tests.tiny_configs import TINY_CONFIGS

V = 30


def tiny(**overrides) -> ElmoConfig:
    return ElmoConfig(**{**TINY_CONFIGS["elmo"], "vocab_size": V, **overrides})


def chars_of(ids: torch.Tensor, width: int = 7) -> torch.Tensor:
    """Character rows that are a fixed function of the word ids (B, L) -> (B, L, width), ids in 1..261."""
    g = torch.Generator().manual_seed(1)
    table = torch.randint(1, 262, (64, width), generator=g)
    return table[ids]


def model_and_inputs(cls=ElmoModel, batch=3, length=8, **overrides):
    torch.manual_seed(0)
    model = cls(tiny(**overrides)).eval()
    ids = torch.randint(5, V, (batch, length), generator=torch.Generator().manual_seed(2))
    return model, ids, chars_of(ids)


# --------------------------------------------------------------------------------------------------------------
# The LSTMP layer and the character encoder, against loops written from bilm-tf's equations
# --------------------------------------------------------------------------------------------------------------


def tf_lstmp_loop(x, cell: ElmoLstmCell, config: ElmoConfig, h, c):
    """TensorFlow's LSTMCell(num_proj, cell_clip, proj_clip, forget_bias) over the steps of one row, in fp64: the gates
    are [x_t; h_{t-1}] @ W + b split as i, j, f, o with W = [W_ih; W_hh] as bilm-tf stores it (W_0).
    x (T, I), h (P,), c (H,) -> (outputs (T, P), cells (T, H))."""
    W = torch.cat([cell.weight_ih.T, cell.weight_hh.T], dim=0).double()  # (I + P, 4H)
    b = cell.bias.double()
    W_p = None if cell.weight_proj is None else cell.weight_proj.T.double()  # (H, P)
    H = W.shape[1] // 4
    h, c = h.double(), c.double()
    outputs, cells = [], []
    for t in range(x.shape[0]):
        z = torch.cat([x[t].double(), h]) @ W + b
        i, j, f, o = z[:H], z[H : 2 * H], z[2 * H : 3 * H], z[3 * H :]
        c = torch.sigmoid(f + cell.forget_bias) * c + torch.sigmoid(i) * torch.tanh(j)
        if config.cell_clip is not None:
            c = torch.clamp(c, -config.cell_clip, config.cell_clip)
        h = torch.sigmoid(o) * torch.tanh(c)
        if W_p is not None:
            h = h @ W_p
            if config.proj_clip is not None:
                h = torch.clamp(h, -config.proj_clip, config.proj_clip)
        outputs.append(h)
        cells.append(c)
    return torch.stack(outputs), torch.stack(cells)


@pytest.mark.parametrize(
    "lstm_size, clip", [(12, 3.0), (12, 0.4), (8, None)], ids=["projected", "clipping", "no-projection"]
)
def test_lstmp_layer_equals_tensorflow_step_equations(lstm_size, clip):
    """Both directions of a layer, from given states, over right-padded rows: the forward cell reads each row's words
    in order, the backward cell from its last real word to its first; the final states are after those steps."""
    config = tiny(lstm_size=lstm_size, cell_clip=clip, proj_clip=None if clip is None else clip / 2)
    P = config.projection_size
    torch.manual_seed(0)
    layer = ElmoBiLstmLayer(config, index=0)
    for parameter in layer.parameters():
        torch.nn.init.normal_(parameter, std=0.8)  # large weights: the gates saturate and the clips act
    x = torch.randn(2, 6, 2 * P)  # [forward | backward] inputs
    lengths = [6, 4]
    mask = (torch.arange(6)[None, :] < torch.tensor(lengths)[:, None]).long()  # (2, 6)
    h0, c0 = torch.randn(2, 2, P), torch.randn(2, 2, lstm_size)  # (directions, B, ·)
    out, (h_n, c_n) = layer(x, mask, (h0, c0), final_state=True)
    all_cells = []
    for row, n in enumerate(lengths):
        for d, cell in enumerate((layer.forward_cell, layer.backward_cell)):
            steps = torch.arange(n) if d == 0 else torch.arange(n - 1, -1, -1)  # this direction's reading order
            half = slice(d * P, (d + 1) * P)
            expected, cells = tf_lstmp_loop(x[row, steps, half], cell, config, h0[d, row], c0[d, row])
            torch.testing.assert_close(out[row, steps, half].double(), expected, rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(h_n[d, row].double(), expected[-1], rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(c_n[d, row].double(), cells[-1], rtol=1e-5, atol=1e-5)
            all_cells.append(cells)
    assert out[1, 4:].abs().max() == 0  # zeros at padding
    assert (layer.forward_cell.weight_proj is None) == (lstm_size == 8)
    if clip == 0.4:  # both clips were hit
        assert (torch.cat(all_cells).abs() == 0.4).any() and (out.abs() == 0.2).any()


def test_character_encoder_equals_a_hand_computation():
    config = tiny(char_activation="tanh", n_highway=2)
    torch.manual_seed(0)
    encoder = ElmoCharacterEncoder(config)
    for parameter in encoder.parameters():
        torch.nn.init.normal_(parameter, std=0.5)
    char_ids = torch.randint(0, 262, (4, 7))
    got = encoder(char_ids)
    for row in range(4):
        e = encoder.char_embeddings.weight[char_ids[row]].double()  # (C, E)
        features = []
        for conv, (width, count) in zip(encoder.convolutions, config.char_filters):
            W, b = conv.weight.double(), conv.bias.double()  # (n, E, w)
            windows = [(W * e[tau : tau + width].T[None]).sum((1, 2)) + b for tau in range(7 - width + 1)]
            features.append(torch.tanh(torch.stack(windows).max(0).values))
        h = torch.cat(features)
        for highway in encoder.highways:
            g = torch.sigmoid(highway.gate.weight.double() @ h + highway.gate.bias.double())
            h = g * torch.relu(highway.transform.weight.double() @ h + highway.transform.bias.double()) + (1 - g) * h
        h = encoder.projection.weight.double() @ h + encoder.projection.bias.double()
        torch.testing.assert_close(got[row].double(), h, rtol=1e-5, atol=1e-5)


def test_padded_word_has_the_zero_character_row_and_no_projection_when_sizes_match():
    model = ElmoModel(tiny())
    assert torch.equal(model.char_encoder.char_embeddings.weight[0], torch.zeros(4))
    assert model.char_encoder.highways[0].gate.bias.eq(-2.0).all()  # bilm-tf's carry bias: start by passing x
    same = ElmoModel(tiny(char_filters=[[1, 4], [2, 4]], n_highway=0))  # 8 filters = projection_size
    assert same.char_encoder.projection is None and len(same.char_encoder.highways) == 0


# --------------------------------------------------------------------------------------------------------------
# Reading orders, padding and states
# --------------------------------------------------------------------------------------------------------------


def test_each_direction_reads_only_its_side():
    """The forward half at t depends on words ≤ t only, the backward half on words ≥ t only."""
    model, ids, chars = model_and_inputs(batch=1, length=9)
    base = model(char_ids=chars, output_hidden_states=True).hidden_states
    changed = chars.clone()
    changed[0, 4] = chars[0, 4].flip(0)
    after = model(char_ids=changed, output_hidden_states=True).hidden_states
    for layer_before, layer_after in zip(base[1:], after[1:]):
        forward_b, backward_b = layer_before[0].chunk(2, -1)
        forward_a, backward_a = layer_after[0].chunk(2, -1)
        torch.testing.assert_close(forward_a[:4], forward_b[:4], rtol=0, atol=0)
        torch.testing.assert_close(backward_a[5:], backward_b[5:], rtol=0, atol=0)
        assert not torch.allclose(forward_a[4:], forward_b[4:]) and not torch.allclose(backward_a[:5], backward_b[:5])


def test_padding_anywhere_gives_the_outputs_and_states_of_the_sentence_alone():
    model, ids, chars = model_and_inputs(batch=1, length=5)
    alone = model(char_ids=chars, output_final_states=True, output_hidden_states=True)
    layouts = [[1, 1, 1, 1, 1, 0, 0], [0, 0, 1, 1, 1, 1, 1], [1, 0, 1, 1, 0, 1, 1]]  # right, left, holes
    batch_chars = torch.zeros(3, 7, 7, dtype=torch.long)
    mask = torch.tensor(layouts)
    for row in range(3):
        batch_chars[row, mask[row].bool()] = chars[0]
    # without attention_mask the real words are those with characters, as in bilm-tf
    for attention_mask in (mask, None):
        out = model(char_ids=batch_chars, attention_mask=attention_mask, output_final_states=True,
                    output_hidden_states=True)
        for row in range(3):
            real = mask[row].bool()
            for got, expected in zip(out.hidden_states, alone.hidden_states):
                torch.testing.assert_close(got[row, real], expected[0], rtol=1e-5, atol=1e-6)
                assert got[row, ~real].abs().max() == 0
            torch.testing.assert_close(
                out.last_hidden_state[row, real], alone.last_hidden_state[0], rtol=1e-5, atol=1e-6
            )
            for got, expected in zip(out.final_states, alone.final_states):
                torch.testing.assert_close(got[:, :, row], expected[:, :, 0], rtol=1e-5, atol=1e-6)


def test_final_states_continue_a_sentence():
    """A then B with A's final states: B's forward halves are those of A+B read at once. A with the backward final
    states of B: A's backward halves are those of A+B."""
    model, ids, chars = model_and_inputs(batch=1, length=9)
    P, layers = model.config.projection_size, model.config.num_hidden_layers
    whole = model(char_ids=chars, output_hidden_states=True).hidden_states
    first = model(char_ids=chars[:, :4], output_final_states=True)
    second = model(char_ids=chars[:, 4:], output_final_states=True, output_hidden_states=True,
                   initial_states=first.final_states)
    for j in range(1, layers + 1):
        torch.testing.assert_close(second.hidden_states[j][0, :, :P], whole[j][0, 4:, :P], rtol=1e-5, atol=1e-6)
    h, c = model(char_ids=chars[:, 4:], output_final_states=True).final_states  # (layers, 2, 1, P / H)
    backward_only = (torch.zeros_like(h), torch.zeros_like(c))
    backward_only[0][:, 1], backward_only[1][:, 1] = h[:, 1], c[:, 1]
    again = model(char_ids=chars[:, :4], initial_states=backward_only, output_hidden_states=True)
    for j in range(1, layers + 1):
        torch.testing.assert_close(again.hidden_states[j][0, :, P:], whole[j][0, :4, P:], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="initial_states must be"):
        model(char_ids=chars, initial_states=(h, c[:1]))


@pytest.mark.parametrize("backend", ["reference", "triton"])
@pytest.mark.parametrize("clip", [3.0, None], ids=["clipped", "unclipped"])
def test_kernel_backends_give_the_outputs_of_the_default(backend, clip, monkeypatch):
    """kernel_backend picks the schedule of the bilstm op, never the result: layers, final states and the tagger's
    BiLSTM (the default, "auto", is the reference on a CPU; "triton" runs under Triton's interpreter, once per layer
    and once for the tagger)."""
    if backend == "triton" and (lstm_op.bilstm_triton_steps is None or os.environ.get("TRITON_INTERPRET") != "1"):
        pytest.skip("the Triton LSTM needs triton and TRITON_INTERPRET=1 on a CPU")
    calls = []
    if lstm_op.bilstm_triton_steps is not None:  # count the Triton schedule's runs
        kernel = lstm_op.bilstm_triton_steps
        monkeypatch.setattr(lstm_op, "bilstm_triton_steps", lambda *args: calls.append(1) or kernel(*args))
    default, ids, chars = model_and_inputs(ElmoForTokenClassification, cell_clip=clip, proj_clip=clip)
    chosen = ElmoForTokenClassification(tiny(cell_clip=clip, proj_clip=clip, kernel_backend=backend)).eval()
    chosen.load_state_dict(default.state_dict())
    mask = torch.ones_like(ids)
    mask[0, 6:] = 0  # right padding
    mask[1, :2] = 0  # left padding
    mask[2, 3] = 0  # a hole
    states = (torch.randn(2, 2, 3, 8), torch.randn(2, 2, 3, 16))  # (layers, directions, B, P / H)
    inputs = dict(char_ids=chars * mask[..., None], attention_mask=mask)
    expected = default.elmo(**inputs, initial_states=states, output_final_states=True, output_hidden_states=True)
    assert calls == []
    got = chosen.elmo(**inputs, initial_states=states, output_final_states=True, output_hidden_states=True)
    layers = len(chosen.elmo.layers)
    assert len(calls) == (layers if backend == "triton" else 0)
    for a, b in zip((*got.hidden_states, *got.final_states), (*expected.hidden_states, *expected.final_states)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    expected_logits = default(**inputs).logits
    calls.clear()
    torch.testing.assert_close(chosen(**inputs).logits, expected_logits, rtol=1e-5, atol=1e-5)
    assert len(calls) == (layers + 1 if backend == "triton" else 0)


def test_char_ids_are_required_and_checked():
    model, ids, chars = model_and_inputs()
    with pytest.raises(ValueError, match="char_ids .* are required"):
        model(input_ids=ids)
    with pytest.raises(ValueError, match="fewer than the widest character filter"):
        model(char_ids=chars[..., :2])
    bad = chars.clone()
    bad[0, 0, 0] = 262
    with pytest.raises(ValueError, match="char_ids holds 262"):
        model(char_ids=bad)
    with pytest.raises(ValueError, match="input_ids must have the shape"):
        model(input_ids=ids[:, :3], char_ids=chars)


# --------------------------------------------------------------------------------------------------------------
# Scalar mix
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("layer_norm", [False, True])
def test_scalar_mix_math(layer_norm):
    model, ids, chars = model_and_inputs(num_output_representations=2, mix_layer_norm=layer_norm)
    mask = torch.ones(ids.shape, dtype=torch.long)
    mask[1, 6:] = 0
    chars = chars * mask[..., None]
    with torch.no_grad():
        model.scalar_mixes[1].scalar_weights.copy_(torch.tensor([0.3, -1.0, 2.0]))
        model.scalar_mixes[1].gamma.fill_(0.7)
    out = model(char_ids=chars, attention_mask=mask, output_hidden_states=True, output_elmo_representations=True)
    assert model(char_ids=chars, attention_mask=mask).elmo_representations is None  # only on request
    torch.testing.assert_close(out.last_hidden_state, out.elmo_representations[0], rtol=0, atol=0)
    layers = out.hidden_states
    for index, (s, gamma) in enumerate([(torch.zeros(3), 1.0), (torch.tensor([0.3, -1.0, 2.0]), 0.7)]):
        weights = torch.exp(s) / torch.exp(s).sum()
        expected = torch.zeros_like(layers[0])
        for w, h in zip(weights, layers):
            if layer_norm:
                h = (h - h.mean(-1, keepdim=True)) / torch.sqrt(h.var(-1, unbiased=False, keepdim=True) + 1e-12)
            expected = expected + w * h
        expected = gamma * expected * mask[..., None]
        torch.testing.assert_close(out.elmo_representations[index], expected, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(model.scalar_mix(layers, mask, index), expected, rtol=1e-5, atol=1e-6)
    if layer_norm:  # each real token's mixed layers had mean 0 and variance 1
        assert out.elmo_representations[0][0].mean(-1).abs().max() < 1e-5
    else:  # the untrained mix is the mean of the layers
        torch.testing.assert_close(out.elmo_representations[0], sum(layers) / 3)
    with pytest.raises(ValueError, match="index must be in"):
        model.scalar_mix(layers, mask, 2)


# --------------------------------------------------------------------------------------------------------------
# The biLM objective
# --------------------------------------------------------------------------------------------------------------


def manual_bilm_losses(model, chars, mask, labels):
    """Σ CE and counts of the forward (word i+1 from state i) and backward (word i-1 from state i) LMs, by loops."""
    top = model.elmo(char_ids=chars, attention_mask=mask).top_layer
    P = model.config.projection_size
    sums, counts = [0.0, 0.0], [0, 0]
    for row in range(chars.shape[0]):
        positions = mask[row].nonzero().flatten().tolist()
        for a, b in zip(positions[:-1], positions[1:]):
            for direction, (state_at, word_at) in enumerate([(a, b), (b, a)]):
                target = labels[row, word_at].item()
                if target == -100:
                    continue
                state = top[row, state_at, :P] if direction == 0 else top[row, state_at, P:]
                logits = state @ model.lm_head.weight.T + model.lm_head.bias
                sums[direction] += -torch.log_softmax(logits, -1)[target]
                counts[direction] += 1
    return sums, counts


@pytest.mark.parametrize("sparse", [True, False], ids=["sparse", "every-position"])
def test_bidirectional_lm_loss_equals_a_manual_computation(sparse):
    """With ``sparse_prediction`` the softmax runs at the predicted words only (their logits returned); without it at
    every position (the logits (B, L, V); no gather by the mask, so nothing is read back from a GPU)."""
    model, ids, chars = model_and_inputs(ElmoForBidirectionalLM, batch=3, length=8, sparse_prediction=sparse)
    mask = torch.ones_like(ids)
    mask[0, 6:] = 0  # right padding
    mask[1, :3] = 0  # left padding
    mask[2, 4] = 0  # a hole
    chars = chars * mask[..., None]
    labels = ids.masked_fill(mask == 0, -100)
    labels[2, 1] = -100  # a word nobody predicts
    out = model(input_ids=ids, char_ids=chars, attention_mask=mask, labels=labels)
    (fwd_sum, bwd_sum), (n_fwd, n_bwd) = manual_bilm_losses(model, chars, mask, labels)
    assert (n_fwd, n_bwd) == (5 + 4 + 5, 5 + 4 + 5)  # 6, 5 and 7 real words, one -100 word predicted by neither
    torch.testing.assert_close(out.forward_loss, fwd_sum / n_fwd, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out.backward_loss, bwd_sum / n_bwd, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out.loss, 0.5 * (fwd_sum / n_fwd + bwd_sum / n_bwd), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out.forward_perplexity, torch.exp(fwd_sum / n_fwd).detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.backward_perplexity, torch.exp(bwd_sum / n_bwd).detach(), rtol=1e-5, atol=1e-5)
    if sparse:
        assert out.forward_logits.shape == (n_fwd, V) and out.backward_logits.shape == (n_bwd, V)
    else:
        assert out.forward_logits.shape == out.backward_logits.shape == (3, 8, V)
    # num_items_in_batch (the Trainer's count of labelled words over the accumulated batch) normalises the sum; the
    # Trainer counts labels[..., 1:], which holds the first word of the left-padded row, predicted by neither LM from
    # the left: that count is refused (modeling_elmo.check_trainer_count)
    with pytest.raises(ValueError, match=r"labels\[\.\.\., 1:\] != -100.*15 in this batch.*predicts 14.*left padding"):
        model(input_ids=ids, char_ids=chars, attention_mask=mask, labels=labels, num_items_in_batch=torch.tensor(20))
    keep = [0, 2]  # right padding and a hole
    summed = model(input_ids=ids[keep], char_ids=chars[keep], attention_mask=mask[keep], labels=labels[keep],
                   num_items_in_batch=torch.tensor(20))
    (fwd_kept, bwd_kept), _ = manual_bilm_losses(model, chars[keep], mask[keep], labels[keep])
    torch.testing.assert_close(summed.loss, (fwd_kept + bwd_kept) / 40, rtol=1e-5, atol=1e-6)
    # without labels: every position's scores, the same as the loss's
    scores = model(char_ids=chars, attention_mask=mask)
    assert scores.loss is None and scores.forward_logits.shape == (3, 8, V)
    torch.testing.assert_close(scores.forward_logits[0, 0],
                               out.forward_logits[0] if sparse else out.forward_logits[0, 0])
    torch.testing.assert_close(scores.backward_logits[0, 1],
                               out.backward_logits[0] if sparse else out.backward_logits[0, 1])
    out.loss.backward()
    assert model.lm_head.weight.grad is not None and model.elmo.layers[0].forward_cell.weight_hh.grad.abs().sum() > 0


def test_the_trainers_loss_of_the_bidirectional_lm_is_the_models_own(tmp_path):
    """The Trainer normalises the loss by its own count of the batch's target words (num_items_in_batch, in training
    and in evaluation): for the biLM the words each direction predicts, n - 1 of a row of n (labels[..., 1:], as for
    a causal LM). Rows of different lengths, right padding: Trainer.evaluate's eval_loss equals the model's own loss
    (counting n per row gave a loss biased low, 12% here), and two accumulated half batches the one batch's loss."""
    from transformers import Trainer, TrainingArguments

    torch.manual_seed(0)
    model = ElmoForBidirectionalLM(tiny_config(("elmo", "default"))).eval()
    g = torch.Generator().manual_seed(0)
    rows = []
    for n in (5, 9, 7, 12):
        ids = torch.randint(5, 120, (1, n), generator=g)
        rows.append({**model_inputs(("elmo", "default"), ids, torch.ones_like(ids)), "labels": ids})

    def collate(features):  # right padding: ids, mask and characters 0, labels -100
        L = max(f["input_ids"].shape[1] for f in features)
        padded = lambda t, value: torch.cat([t, t.new_full((L - t.shape[0], *t.shape[1:]), value)])  # noqa: E731
        return {k: torch.stack([padded(f[k][0], -100 if k == "labels" else 0) for f in features])
                for k in ("input_ids", "attention_mask", "char_ids", "labels")}

    own = model(**collate(rows)).loss
    settings = TrainingArguments(str(tmp_path), report_to=[], use_cpu=True, per_device_eval_batch_size=4)
    trainer = Trainer(model=model, args=settings, eval_dataset=rows, data_collator=collate)
    assert trainer.evaluate()["eval_loss"] == pytest.approx(float(own), rel=1e-5)
    halves = [collate(rows[:2]), collate(rows[2:])]
    items = trainer._get_num_items_in_batch(halves, torch.device("cpu"))
    accumulated = sum(model(**half, num_items_in_batch=items).loss for half in halves)
    torch.testing.assert_close(accumulated, own, rtol=1e-5, atol=1e-6)
    # label smoothing: the Trainer pops the labels, passes their count and smooths outputs["logits"], which the biLM
    # does not have (a KeyError deep inside the Trainer): the model names the option instead
    smoothing = TrainingArguments(str(tmp_path), report_to=[], use_cpu=True, per_device_eval_batch_size=4,
                                  per_device_train_batch_size=4, max_steps=1, label_smoothing_factor=0.1)
    trainer = Trainer(model=model, args=smoothing, train_dataset=rows, eval_dataset=rows, data_collator=collate)
    for run in (trainer.evaluate, trainer.train):
        with pytest.raises(ValueError, match=r"without labels.*label_smoothing_factor.*forward_logits"):
            run()


def test_bidirectional_lm_ties_its_softmax_and_loads_with_auto_pretraining(tmp_path):
    from transformers import AutoModelForPreTraining

    model, ids, chars = model_and_inputs(ElmoForBidirectionalLM)
    assert model.lm_head.weight.data_ptr() == model.elmo.word_embeddings.weight.data_ptr()
    model.save_pretrained(tmp_path)
    loaded = AutoModelForPreTraining.from_pretrained(tmp_path).eval()
    assert type(loaded) is ElmoForBidirectionalLM
    torch.testing.assert_close(loaded(char_ids=chars).forward_logits, model(char_ids=chars).forward_logits)
    as_tuple = model(char_ids=chars, labels=ids, return_dict=False)
    assert isinstance(as_tuple, tuple) and as_tuple[0].dim() == 0


# --------------------------------------------------------------------------------------------------------------
# Sampled softmax
# --------------------------------------------------------------------------------------------------------------


def test_log_uniform_draws_follow_zipf():
    vocab = 20
    p = log_uniform_probabilities(torch.arange(vocab), vocab)
    torch.testing.assert_close(p.sum(), torch.tensor(1.0, dtype=torch.float64))
    draws = draw_log_uniform(200_000, vocab, generator=torch.Generator().manual_seed(0))
    frequency = torch.bincount(draws, minlength=vocab).double() / draws.numel()
    assert (frequency - p).abs().max() < 0.004  # ~4 standard deviations of the largest class


def test_unique_sampler_and_its_expected_counts():
    vocab, size, runs = 40, 8, 3000
    g = torch.Generator().manual_seed(0)
    included = torch.zeros(vocab, dtype=torch.float64)
    expected = torch.zeros(vocab, dtype=torch.float64)
    for _ in range(runs):
        candidates, tries = sample_log_uniform(size, vocab, generator=g)
        assert candidates.numel() == size and candidates.unique().numel() == size and tries >= size
        included[candidates] += 1
        expected += log_uniform_expected_count(torch.arange(vocab), tries, vocab)
    # Q(k) = 1 - (1 - p_k)^tries, TensorFlow's estimate of how often k is among the candidates
    assert (included / runs - expected / runs).abs().max() < 0.05
    assert included[0] > included[-1]  # frequent ids are sampled more
    with pytest.raises(ValueError, match="num_sampled"):
        sample_log_uniform(vocab + 1, vocab)


def test_sampled_softmax_formula_with_fixed_candidates(monkeypatch):
    torch.manual_seed(0)
    hidden, weight, bias = torch.randn(3, 5), torch.randn(10, 5), torch.randn(10)
    targets = torch.tensor([2, 7, 9])
    candidates, tries = torch.tensor([0, 1, 2, 3]), 6  # target 2 is an accidental hit for row 0
    monkeypatch.setattr(modeling_elmo, "sample_log_uniform", lambda *args, **kwargs: (candidates, tries))
    losses = sampled_softmax_loss(hidden, targets, weight, bias, num_sampled=4)
    q = lambda k: 1 - (1 - math.log((k + 2) / (k + 1)) / math.log(11)) ** tries  # noqa: E731
    for row in range(3):
        y = targets[row].item()
        true = hidden[row] @ weight[y] + bias[y] - math.log(q(y))
        others = [hidden[row] @ weight[s] + bias[s] - math.log(q(s)) for s in candidates.tolist() if s != y]
        expected = torch.logsumexp(torch.stack([true, *others]), 0) - true
        torch.testing.assert_close(losses[row], expected, rtol=1e-5, atol=1e-6)


def test_sampled_softmax_is_exact_when_the_sample_covers_the_vocabulary():
    torch.manual_seed(0)
    hidden, weight, bias = torch.randn(6, 5), torch.randn(10, 5), torch.randn(10)
    targets = torch.randint(0, 10, (6,))
    full = F.cross_entropy(hidden @ weight.T + bias, targets, reduction="none")
    torch.testing.assert_close(sampled_softmax_loss(hidden, targets, weight, bias, num_sampled=10), full)
    # the model: sampled training with S = V gives the evaluation loss (no dropout in the tiny config)
    model, ids, chars = model_and_inputs(ElmoForBidirectionalLM, sampled_softmax_size=V)
    evaluation = model(char_ids=chars, labels=ids).loss
    training = model.train()(char_ids=chars, labels=ids)
    torch.testing.assert_close(training.loss, evaluation)
    assert training.forward_logits is None


def test_sampled_softmax_training_step():
    model, ids, chars = model_and_inputs(ElmoForBidirectionalLM, sampled_softmax_size=6)
    out = model.train()(char_ids=chars, labels=ids)
    assert torch.isfinite(out.loss) and out.forward_perplexity > 1 and out.forward_logits is None
    out.loss.backward()
    assert model.lm_head.weight.grad.abs().sum() > 0
    evaluation = model.eval()(char_ids=chars, labels=ids)  # evaluation: the full softmax
    assert evaluation.forward_logits.shape[-1] == V


# --------------------------------------------------------------------------------------------------------------
# Configuration and h5py
# --------------------------------------------------------------------------------------------------------------

FIXTURE_OPTIONS = {
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


def test_config_from_bilm_options():
    config = ElmoConfig.from_bilm_options(FIXTURE_OPTIONS, vocab_size=100)
    assert (config.projection_size, config.lstm_size, config.num_hidden_layers) == (16, 64, 2)
    assert config.hidden_size == 16 and config.encoder_output_size == 32 and config.num_filters == 124
    assert config.char_filters == [[1, 4], [2, 8], [3, 16], [4, 32], [5, 64]] and config.char_vocab_size == 262
    assert (config.cell_clip, config.proj_clip, config.use_skip_connections, config.n_highway) == (3, 3, True, 2)
    training = {**FIXTURE_OPTIONS, "char_cnn": {**FIXTURE_OPTIONS["char_cnn"], "n_characters": 261},
                "n_tokens_vocab": 500, "dropout": 0.1, "n_negative_samples_batch": 64}
    config = ElmoConfig.from_bilm_options(training)
    assert (config.char_vocab_size, config.vocab_size, config.sampled_softmax_size) == (262, 500, 64)
    assert ElmoConfig.from_dict(config.to_dict()).to_dict() == config.to_dict()


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda o: o["lstm"].pop("dim"), "no lstm.dim"),
        (lambda o: o["char_cnn"].update(n_characters=300), "char_cnn.n_characters must be 262"),
        (lambda o: o["char_cnn"].update(activation="gelu"), "char_cnn.activation is invalid"),
        (lambda o: o["char_cnn"].update(filters=[[1, 4], [2]]), "char_cnn.filters is invalid"),
        (lambda o: o["lstm"].update(dim=8), "lstm.dim is invalid.*projection_size=16"),
        (lambda o: o["lstm"].update(cell_clip=-1), "lstm.cell_clip is invalid"),
        (lambda o: o.pop("char_cnn"), "no char_cnn"),
        (lambda o: o.update(lstm=[1, 2]), "lstm must be an object"),
    ],
)
def test_bad_bilm_options_name_the_option(change, message):
    import copy

    options = copy.deepcopy(FIXTURE_OPTIONS)
    change(options)
    with pytest.raises(ValueError, match=message):
        ElmoConfig.from_bilm_options(options)


@pytest.mark.parametrize(
    "field, value",
    [("char_filters", [[0, 4]]), ("char_filters", []), ("char_activation", "gelu"), ("n_highway", -1),
     ("lstm_size", 4), ("cell_clip", 0.0), ("proj_clip", -2.0), ("num_output_representations", 0),
     ("sampled_softmax_size", -1), ("mix_layer_norm", "yes"), ("use_skip_connections", 1)],
)
def test_config_rejects_invalid_elmo_fields(field, value):
    with pytest.raises(ValueError, match=field):
        tiny(**{field: value})


def test_the_model_never_needs_h5py(monkeypatch):
    from pathlib import Path

    monkeypatch.setitem(sys.modules, "h5py", None)  # `import h5py` now fails
    model, ids, chars = model_and_inputs(ElmoForBidirectionalLM)
    assert torch.isfinite(model(char_ids=chars, labels=ids).loss)
    root = Path(bizoo.__file__).parent
    for path in (root / "modeling" / "modeling_elmo.py", root / "configuration" / "configuration_elmo.py"):
        assert "h5py" not in path.read_text()
    from bizoo.scripts.lib.command import CommandError
    from bizoo.scripts.convert_elmo import import_h5py

    with pytest.raises(CommandError, match=r"pip install bizoo\[elmo\]"):
        import_h5py()
