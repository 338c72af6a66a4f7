"""`bizoo pretrain`'s learning curve: the held-out masked-token accuracy inside the Trainer's evaluation (dense logits
of BERT, the sparse masked-position logits of bizoo's heads) against a brute-force count, and logged beside the
tokens trained on; BERT, the baseline, built from transformers with SDPA attention."""

import json

import numpy as np
import pytest
import torch
from transformers import AutoModelForMaskedLM, EvalPrediction

from bizoo.scripts import pretrain
from bizoo.scripts.lib.command import CommandError
from bizoo.scripts.lib.models import model_spec
from bizoo.scripts.pretrain import HeldOutAccuracy

TINY = ["hidden_size=32", "num_hidden_layers=1", "num_attention_heads=4", "intermediate_size=64"]


def batches(seed: int):
    """Two batches of different lengths: labels with -100 holes, dense logits, and the same logits sparse."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for length in (7, 11):
        labels = torch.randint(0, 5, (3, length), generator=g)
        labels[torch.rand(3, length, generator=g) < 0.6] = -100
        logits = torch.randn(3, length, 5, generator=g)
        out.append((labels, logits, logits[labels != -100]))
    return out


def test_held_out_accuracy_counts_hits_at_masked_positions_dense_or_sparse():
    metric = HeldOutAccuracy()
    hits = total = 0
    dense_preds, sparse_preds, all_labels = [], [], []
    for labels, dense, sparse in batches(0):
        for b in range(labels.shape[0]):  # brute force, position by position
            for t in range(labels.shape[1]):
                if labels[b, t] != -100:
                    total += 1
                    hits += int(max(range(5), key=lambda v: dense[b, t, v]) == labels[b, t])
        dense_preds.append(metric.preprocess(dense, labels))
        sparse_preds.append(metric.preprocess((sparse,), labels))
        all_labels.append(labels)
    assert 0 < hits < total  # neither all right nor all wrong: a wrong alignment would show
    for b in range(len(all_labels)):
        assert torch.equal(dense_preds[b], sparse_preds[b])
        assert ((dense_preds[b] == -100) == (all_labels[b] == -100)).all()

    def padded(tensors):  # the Trainer's concatenation across batches: padded with -100 to the longest
        width = max(t.shape[1] for t in tensors)
        return np.concatenate([np.pad(t.numpy(), ((0, 0), (0, width - t.shape[1])), constant_values=-100)
                               for t in tensors])

    result = metric(EvalPrediction(predictions=padded(sparse_preds), label_ids=padded(all_labels)))
    assert result == {"accuracy": pytest.approx(hits / total)}


@pytest.fixture
def corpus(tmp_path, sentences):
    train, held_out = tmp_path / "train.txt", tmp_path / "held_out.txt"
    train.write_text("\n".join(sentences(200, seed=1)) + "\n")
    held_out.write_text("\n".join(sentences(30, seed=2)) + "\n")
    return train, held_out


@pytest.mark.parametrize("model", ["bert", "lion"])
def test_the_curve_is_logged_with_tokens_and_ends_at_the_final_accuracy(tmp_path, corpus, model):
    train, held_out = corpus
    out = tmp_path / model
    argv = ["--model", model, "--text", str(train), "--eval-text", str(held_out), "--vocab-size", "150",
            "--output-dir", str(out), "--max-length", "16", "--batch-size", "8", "--max-steps", "6",
            "--learning-rate", "1e-2", "--eval_steps", "3", "--eval_on_start", "--model-config", *TINY]
    assert pretrain.main(argv) == 0
    log = json.loads((out / "training_log.json").read_text())
    curve = [e for e in log if "eval_accuracy" in e]
    assert [e["step"] for e in curve] == [0, 3, 6]
    tokens = [e["num_input_tokens_seen"] for e in curve]
    assert tokens[0] == 0 and 0 < tokens[1] < tokens[2] <= 6 * 8 * 16  # the tokens trained on so far
    final = json.loads((out / "bizoo_results.json").read_text())[-1]["metrics"]["accuracy"]
    assert curve[-1]["eval_accuracy"] == pytest.approx(final, abs=1e-4)  # a second form: the post-training count
    assert len({e["eval_accuracy"] for e in curve}) > 1  # it moved: the curve is not a constant
    if model == "bert":
        loaded = AutoModelForMaskedLM.from_pretrained(out)
        assert type(loaded).__name__ == "BertForMaskedLM" and loaded.config.hidden_size == 32
        card = (out / "README.md").read_text()  # transformers' own model: no remote code, no bizoo to load it
        assert "custom_code" not in card and "loads with the `Auto*` classes, without bizoo" in card


def test_bert_is_built_with_sdpa_and_unknown_types_are_refused(monkeypatch, tmp_path, corpus):
    built = {}
    original = AutoModelForMaskedLM.from_config.__func__

    def spy(cls, config, **kwargs):
        model = original(cls, config, **kwargs)
        built["attention"] = model.config._attn_implementation
        raise SystemExit(0)  # built: the rest of the run is the other tests' business

    monkeypatch.setattr(AutoModelForMaskedLM, "from_config", classmethod(spy))
    train, held_out = corpus
    with pytest.raises(SystemExit):
        pretrain.main(["--model", "bert", "--text", str(train), "--eval-text", str(held_out), "--vocab-size", "150",
                       "--output-dir", str(tmp_path / "o"), "--max-steps", "1", "--model-config", *TINY])
    assert built == {"attention": "sdpa"}
    assert model_spec("bert").config_class.model_type == "bert"
    with pytest.raises(CommandError, match=r"unknown model type 'gpt2'; bizoo has .*baselines from transformers"):
        model_spec("gpt2")
