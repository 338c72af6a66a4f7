"""bizoo models under the options of transformers' own ``Trainer`` and its data collators, as a user's own training
script sets them (not only through bizoo's commands): each result is checked against a hand computation or an
equivalent run, not only for running.

* ``label_smoothing_factor``: the Trainer then takes the labels away from the model and smooths a softmax over
  ``outputs.logits``. Right for a softmax token head, a sequence classifier and a masked LM (whose logits are
  (B, L, V) when it gets no labels); a CRF head's logits are max-marginals, so it refuses (``ValueError``) instead
  of a bare autograd error in training and a wrong ``eval_loss`` in evaluation.
* ``gradient_accumulation_steps`` (``num_items_in_batch``) and ``gradient_checkpointing``: the same update as one
  plain big batch, for the token (CRF) and sequence heads (the masked LM's is in test_conformance.py).
* ``pipeline(..., batch_size=4)`` of a CRF head equals one text at a time.
* The word+character masked-LM collator hides the characters of every word it replaced, whatever it returns
  (torch tensors or NumPy arrays) and with whole-word masking.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import (
    AutoModelForMaskedLM,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    DataCollatorForTokenClassification,
    DataCollatorWithPadding,
    Trainer,
    pipeline,
)

import bizoo
from tests.conftest import checkpointing_field, model_checkpointing, tokenizer_for, trainer_args

BIO = {0: "O", 1: "B-X", 2: "I-X"}
SMOOTHING = 0.1
ONE_VARIANT_PER_TYPE = [("lion", "d"), ("bigs", "conv"), ("bilstm_crf", "cnn"), ("elmo", "default")]


def tagging_examples(tokenizer, sentences, n=8):
    """Tokenised sentences with legal BIO tags (O, B-X, I-X, O, ...), one example with -100 at a real token."""
    examples = []
    for i, text in enumerate(sentences(n)):
        encoded = dict(tokenizer(text))
        tags = [(j + i) % 3 for j in range(len(encoded["input_ids"]))]  # O, B-X, I-X, O, ... from a shifted start
        if tags[0] == 2:
            tags[0] = 0  # no I-X first
        if i == 0:
            tags[1] = -100
        examples.append({**encoded, "labels": tags})
    return examples


def token_model(model_case, make_config, tokenizer, use_crf, **overrides):
    config = make_config(model_case, vocab_size=len(tokenizer), num_labels=3, use_crf=use_crf, id2label=BIO,
                         label2id={v: k for k, v in BIO.items()}, **overrides)
    return AutoModelForTokenClassification.from_config(config)


# --------------------------------------------------------------------------------------------------------------
# label_smoothing_factor
# --------------------------------------------------------------------------------------------------------------


def test_label_smoothing_with_a_crf_head_is_refused(model_case, make_config, model_tokenizer, sentences, tmp_path):
    """With ``label_smoothing_factor`` the Trainer pops the labels and smooths a softmax over ``outputs.logits``; a
    CRF head's logits are max-marginals (no gradient), so that loss is not the CRF's: training failed at backward
    with a bare "does not require grad", evaluation reported the wrong ``eval_loss``. The model, called with
    ``num_items_in_batch`` and no labels, names the option instead, in training and in evaluation (transformers >= 5
    passes the count to both)."""
    data = tagging_examples(model_tokenizer, sentences)
    model = token_model(model_case, make_config, model_tokenizer, use_crf=True)
    args = trainer_args(tmp_path, label_smoothing_factor=SMOOTHING, per_device_train_batch_size=4,
                        per_device_eval_batch_size=4, max_steps=1)
    trainer = Trainer(model=model, args=args, train_dataset=data, eval_dataset=data,
                      data_collator=DataCollatorForTokenClassification(model_tokenizer))
    with pytest.raises(ValueError, match=r"label_smoothing_factor.*CRF.*'max_marginals'"):
        trainer.evaluate()  # before: a smoothed softmax over the max-marginals as eval_loss
    with pytest.raises(ValueError, match=r"label_smoothing_factor.*CRF.*'max_marginals'"):
        trainer.train()  # before: "element 0 of tensors does not require grad" at backward
    # what the Trainer passes without label smoothing (labels and their count) trains the CRF's own loss, and a call
    # without either (a pipeline's) decodes
    batch = DataCollatorForTokenClassification(model_tokenizer)(data[:2])
    count = (batch["labels"] != -100).sum()
    assert torch.isfinite(model.train()(**batch, num_items_in_batch=count).loss)
    batch.pop("labels")
    with torch.no_grad():
        assert model.eval()(**batch).loss is None


def smoothed_cross_entropy(logits, labels, epsilon=SMOOTHING):
    """The label-smoothed cross-entropy by hand: (1 - ε) NLL + ε mean_k(-log p_k), each averaged over the labels
    that are not -100. logits (..., K), labels (...)."""
    keep = labels != -100
    log_probs = F.log_softmax(logits[keep].double(), dim=-1)  # (N, K)
    nll = -log_probs.gather(1, labels[keep][:, None]).mean()
    uniform = -log_probs.mean()
    return (1 - epsilon) * nll + epsilon * uniform


@pytest.mark.parametrize("task", ["token", "sequence", "masked_lm"])
def test_label_smoothing_of_a_softmax_head_is_the_smoothed_cross_entropy(model_case, make_config, model_tokenizer,
                                                                          sentences, tmp_path, task):
    """The Trainer's smoothed loss equals the hand computation over the model's own logits: (B, L, K) per token,
    (B, K) per sequence, and (B, L, V) for a masked LM (the labels are popped, so ``sparse_prediction`` does not
    apply and the logits line up with the labels by position). The count the Trainer passes (``num_items_in_batch``,
    the labels that are not -100) is the hand computation's denominator."""
    tokenizer = model_tokenizer
    if task == "token":
        data = tagging_examples(tokenizer, sentences)
        model = token_model(model_case, make_config, tokenizer, use_crf=False)
        collator = DataCollatorForTokenClassification(tokenizer)
    elif task == "sequence":
        data = [{**tokenizer(text), "labels": i % 3} for i, text in enumerate(sentences(8))]
        model = AutoModelForSequenceClassification.from_config(
            make_config(model_case, vocab_size=len(tokenizer), num_labels=3))
        collator = DataCollatorWithPadding(tokenizer)
    else:
        data = [{k: v for k, v in tokenizer(text).items() if k in ("input_ids", "char_ids")} for text in sentences(8)]
        for i, example in enumerate(data):
            example["labels"] = [w if (j + i) % 3 == 0 else -100 for j, w in enumerate(example["input_ids"])]
        model = AutoModelForMaskedLM.from_config(make_config(model_case, vocab_size=len(tokenizer)))
        collator = DataCollatorForTokenClassification(tokenizer)  # fixed labels, -100 at padding
    args = trainer_args(tmp_path, label_smoothing_factor=SMOOTHING)
    trainer = Trainer(model=model, args=args, data_collator=collator)
    batch = collator(data)
    labels = batch["labels"]
    count = (labels != -100).sum()
    model.train()
    torch.manual_seed(0)
    loss = trainer.compute_loss(model, dict(batch), num_items_in_batch=count)
    with torch.no_grad():
        torch.manual_seed(0)
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
    assert logits.shape[:-1] == labels.shape
    torch.testing.assert_close(loss.double(), smoothed_cross_entropy(logits, labels), rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------------------------------------------
# gradient_accumulation_steps and gradient_checkpointing
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ONE_VARIANT_PER_TYPE, ids="-".join)
@pytest.mark.parametrize("task", ["crf", "sequence"])
def test_accumulation_and_checkpointing_give_the_big_batchs_update(case, make_config, tokenizer, sentences, tmp_path,
                                                                    task):
    """One SGD step of lr 1 on 8 examples: 2 micro-batches of 4 (the loss a sum over ``num_items_in_batch``) and the
    Trainer's ``gradient_checkpointing=True`` give the same weights as one plain batch of 8."""
    model_case, tokenizer = case, tokenizer_for(case, tokenizer)
    if task == "crf":
        data, collator = tagging_examples(tokenizer, sentences), DataCollatorForTokenClassification(tokenizer)
    else:
        data = [{**tokenizer(text), "labels": (i * 5) % 3} for i, text in enumerate(sentences(8))]
        collator = DataCollatorWithPadding(tokenizer)

    def one_step(batch_size, accumulation, checkpointing):
        """(initial weights, weights after one step)."""
        torch.manual_seed(0)
        if task == "crf":
            model = token_model(model_case, make_config, tokenizer, use_crf=True)
        else:
            model = AutoModelForSequenceClassification.from_config(
                make_config(model_case, vocab_size=len(tokenizer), num_labels=3))
        initial = {k: v.detach().clone() for k, v in model.state_dict().items()}
        args = trainer_args(tmp_path / f"{batch_size}-{checkpointing}", per_device_train_batch_size=batch_size,
                            gradient_accumulation_steps=accumulation, **{checkpointing_field(): checkpointing},
                            max_steps=1, learning_rate=1.0, optim="sgd", lr_scheduler_type="constant",
                            weight_decay=0.0, max_grad_norm=0.0)
        Trainer(model=model, args=args, train_dataset=data, data_collator=collator).train()
        assert model_checkpointing(model) == checkpointing
        return initial, {k: v.detach().clone() for k, v in model.state_dict().items()}

    initial, plain = one_step(8, 1, False)
    _, accumulated = one_step(4, 2, False)
    _, checkpointed = one_step(8, 1, True)
    assert any(not torch.equal(initial[k], plain[k]) for k in plain)  # the step moved: equality says something
    for key in plain:
        torch.testing.assert_close(accumulated[key], plain[key], rtol=1e-5, atol=1e-6, msg=f"accumulation: {key}")
        torch.testing.assert_close(checkpointed[key], plain[key], rtol=1e-5, atol=1e-6, msg=f"checkpointing: {key}")


# --------------------------------------------------------------------------------------------------------------
# Pipelines
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ONE_VARIANT_PER_TYPE, ids="-".join)
@pytest.mark.parametrize("crf_logits", ["max_marginals", "log_marginals"])
def test_token_classification_pipeline_of_a_crf_head_batched_equals_alone(case, make_config, tokenizer, sentences,
                                                                         crf_logits):
    """``pipeline("token-classification", batch_size=4)`` pads the texts of a batch; a CRF head's logits at the real
    tokens do not depend on it, so the entities and scores equal those of one text at a time."""
    tokenizer = tokenizer_for(case, tokenizer)
    model = token_model(case, make_config, tokenizer, use_crf=True, crf_logits=crf_logits,
                        initializer_range=0.5).eval()  # wide: tags other than O
    pipe = pipeline("token-classification", model=model, tokenizer=tokenizer, device="cpu",
                    aggregation_strategy="simple")
    texts = ["the king .", "sweet prince and the queen of the sea land city river house heart .", "good night",
             "love war peace crown sword fair foul time day", "the"]
    batched, alone = pipe(texts, batch_size=4), pipe(texts, batch_size=1)
    assert any(batched)  # some entity found
    assert [[(e["entity_group"], e["start"], e["end"]) for e in row] for row in batched] == [
        [(e["entity_group"], e["start"], e["end"]) for e in row] for row in alone]
    for row_b, row_a in zip(batched, alone):
        for b, a in zip(row_b, row_a):
            assert float(b["score"]) == pytest.approx(float(a["score"]), rel=1e-5, abs=1e-6)


# --------------------------------------------------------------------------------------------------------------
# Collators
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("options", [dict(return_tensors="pt"), dict(return_tensors="np"),
                                     dict(whole_word_mask=True)], ids=["torch", "numpy", "whole-word"])
def test_wordchar_masked_lm_collator_hides_the_characters_of_every_replaced_word(sentences, options):
    """``DataCollatorForWordCharLanguageModeling``: a word replaced by [MASK] or a random word has the characters of
    its new id; every other word keeps its own (padding: zero rows). Its NumPy output left the replaced words'
    characters in place before (the model read the masked word off its characters)."""
    tokenizer = bizoo.WordCharTokenizerFast.from_words(sentences(), model_max_length=64)
    texts = [*sentences(6), "the lord of starlight ."]  # "starlight" is [UNK] with its own characters
    encoded = tokenizer(texts, return_offsets_mapping=options.get("whole_word_mask", False), padding=True)
    examples = [{k: encoded[k][i] for k in encoded} for i in range(len(texts))]
    original = tokenizer(texts, padding=True, return_tensors="np")
    collator = bizoo.DataCollatorForWordCharLanguageModeling(tokenizer, mlm_probability=0.5, seed=0, **options)
    output = collator(examples)
    assert isinstance(output["char_ids"], np.ndarray if options.get("return_tensors") == "np" else torch.Tensor)
    batch = {k: np.asarray(v) for k, v in output.items()}
    ids, labels, chars = batch["input_ids"], batch["labels"], batch["char_ids"]  # (B, L), (B, L), (B, L, W)
    assert chars.shape == original["char_ids"].shape
    changed = (labels != -100) & (ids != labels)
    assert changed.sum() > 3
    width = chars.shape[-1]
    for row, column in zip(*np.nonzero(changed)):
        expected = tokenizer.ids_to_char_ids([int(ids[row, column])])[0][:width]
        assert chars[row, column].tolist() == expected, (row, column)
    np.testing.assert_array_equal(chars[~changed], original["char_ids"][~changed])
