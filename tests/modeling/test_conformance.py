"""The Hugging Face contract (ARCHITECTURE.md §3), checked on every registered model type and variant.

A model joins this suite by being registered (``bizoo.MODEL_SPECS``): every test taking ``model_case`` runs once
per (model_type, variant), on the registered tiny configuration, on the CPU.
"""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForMaskedLM,
    AutoModelForTokenClassification,
    DataCollatorForTokenClassification,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
    pipeline,
)

import bizoo

AUTO = bizoo.modeling.registry.AUTO_CLASSES  # the Auto classes a spec may fill
V = 120  # vocabulary of the tiny tokenizer (conftest)


def random_ids(batch, length, vocab=V, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(5, vocab, (batch, length), generator=g)  # 0..4 are the special tokens


def build(model_case, make_config, auto="AutoModel", **overrides):
    config = make_config(model_case, vocab_size=V, **overrides)
    model = AUTO[auto].from_config(config)
    return model.eval()


# --------------------------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------------------------


def test_config_round_trip(model_case, make_config, tmp_path):
    config = make_config(model_case, num_labels=3)
    config.save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert type(loaded) is type(config)

    def fields(c):
        return {k: v for k, v in c.to_dict().items() if k != "_name_or_path"}

    assert fields(loaded) == fields(config)
    again = type(config).from_dict(json.loads(config.to_json_string()))
    assert fields(again) == fields(config)


@pytest.mark.parametrize(
    "field, value",
    [
        ("vocab_size", 0),
        ("hidden_size", -8),
        ("classifier_pooling", "max"),
        ("classifier_dropout", 1.5),
        ("kernel_backend", "cuda"),
        ("initializer_range", 0.0),
        ("sparse_prediction", "yes"),
    ],
)
def test_config_rejects_invalid_values(model_case, make_config, field, value):
    with pytest.raises(ValueError, match=field):
        make_config(model_case, **{field: value})


def test_config_checked_again_when_the_model_is_built(model_case, make_config):
    config = make_config(model_case)
    config.kernel_backend = "gpu"
    with pytest.raises(ValueError, match="kernel_backend"):
        AutoModel.from_config(config)


# --------------------------------------------------------------------------------------------------------------
# Auto classes, save and load
# --------------------------------------------------------------------------------------------------------------


def test_auto_classes_resolve_from_config_and_folder(model_case, make_config, tmp_path):
    spec = bizoo.get_spec(model_case[0])
    assert AutoConfig.for_model(spec.model_type).__class__ is spec.config_class
    for auto_name, cls in spec.models.items():
        model = AUTO[auto_name].from_config(make_config(model_case))
        assert type(model) is cls
        folder = tmp_path / auto_name
        model.save_pretrained(folder)
        assert (folder / "model.safetensors").exists()
        assert type(AUTO[auto_name].from_pretrained(folder)) is cls


@pytest.mark.parametrize("shard", [False, True])
def test_save_load_gives_the_same_outputs(model_case, make_config, make_inputs, tmp_path, shard):
    model = build(model_case, make_config, "AutoModelForMaskedLM")
    inputs = make_inputs(model_case, random_ids(2, 12))
    expected = model(**inputs).logits
    model.save_pretrained(tmp_path, max_shard_size="20KB" if shard else "5GB")
    if shard:
        assert len(list(tmp_path.glob("model-*.safetensors"))) > 1
    loaded = AutoModelForMaskedLM.from_pretrained(tmp_path).eval()
    torch.testing.assert_close(loaded(**inputs).logits, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("auto", ["AutoModelForMaskedLM", "AutoModelForSequenceClassification", "AutoModelForTokenClassification"])
def test_partial_checkpoint_initialises_everything(model_case, make_config, tmp_path, auto):
    """A bare encoder loaded into a task model (and a checkpoint with a missing tensor) leaves no parameter or
    buffer uninitialised: every missing tensor gets the model's own initialisation."""
    build(model_case, make_config).save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    dropped = sorted(weights)[0]  # also drop one encoder tensor
    del weights[dropped]
    save_file(weights, tmp_path / "model.safetensors", metadata={"format": "pt"})
    model = AUTO[auto].from_pretrained(tmp_path, num_labels=3)
    for name, tensor in list(model.named_parameters()) + list(model.named_buffers()):
        assert tensor.device.type != "meta", name
        if tensor.is_floating_point():
            assert torch.isfinite(tensor).all(), name
            assert tensor.abs().max() < 50, f"{name} looks uninitialised"
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.LayerNorm):
            assert torch.equal(module.weight, torch.ones_like(module.weight)) or name.count(".") > 0


def test_tied_decoder_survives_reload_and_resize(model_case, make_config, make_inputs, tmp_path):
    model = build(model_case, make_config, "AutoModelForMaskedLM")
    emb, dec = model.get_input_embeddings(), model.get_output_embeddings()
    assert dec.weight.data_ptr() == emb.weight.data_ptr()
    model.save_pretrained(tmp_path)
    loaded = AutoModelForMaskedLM.from_pretrained(tmp_path)
    assert loaded.get_output_embeddings().weight.data_ptr() == loaded.get_input_embeddings().weight.data_ptr()
    loaded.resize_token_embeddings(V + 9)
    assert loaded.config.vocab_size == V + 9
    emb, dec = loaded.get_input_embeddings(), loaded.get_output_embeddings()
    assert emb.weight.shape[0] == V + 9 and dec.weight.data_ptr() == emb.weight.data_ptr()
    assert dec.bias.shape == (V + 9,)
    out = loaded.eval()(**make_inputs(model_case, random_ids(1, 6, vocab=V + 9)))
    assert out.logits.shape == (1, 6, V + 9)


# --------------------------------------------------------------------------------------------------------------
# Outputs
# --------------------------------------------------------------------------------------------------------------


def test_return_dict_false_and_hidden_states(model_case, make_config, make_inputs):
    model = build(model_case, make_config)
    inputs = make_inputs(model_case, random_ids(2, 9))
    out = model(**inputs, output_hidden_states=True)
    as_tuple = model(**inputs, output_hidden_states=True, return_dict=False)
    assert isinstance(as_tuple, tuple)
    torch.testing.assert_close(as_tuple[0], out.last_hidden_state)
    d = model.config.encoder_output_size  # hidden_size, or 2 x hidden_size for a BiLSTM's concatenated directions
    assert len(out.hidden_states) == model.config.num_hidden_layers + 1
    assert all(h.shape[:2] == (2, 9) for h in out.hidden_states)
    assert all(h.shape[-1] == d for h in out.hidden_states[1:])
    assert out.last_hidden_state.shape == (2, 9, d)
    # the top layer: last_hidden_state, or `top_layer` where last_hidden_state is a mix of the layers (ELMo)
    top = out.top_layer if getattr(out, "top_layer", None) is not None else out.last_hidden_state
    torch.testing.assert_close(out.hidden_states[-1], top)
    assert model(**inputs).hidden_states is None


def test_inputs_embeds_equal_input_ids(model_case, make_config, make_inputs):
    model = build(model_case, make_config)
    ids = random_ids(2, 9)
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    embeds = model.get_input_embeddings()(ids)
    torch.testing.assert_close(
        model(**make_inputs(model_case, None, mask, inputs_embeds=embeds, word_ids=ids)).last_hidden_state,
        model(**make_inputs(model_case, ids, mask)).last_hidden_state,
    )


def test_bidirectional(model_case, make_config, make_inputs):
    model = build(model_case, make_config, initializer_range=0.2)  # a wider init: mixing far above rounding
    ids = random_ids(1, 10)
    changed = ids.clone()
    changed[0, -1] = (ids[0, -1] - 5 + 1) % (V - 5) + 5
    first = model(**make_inputs(model_case, ids)).last_hidden_state[0, 0]
    assert not torch.allclose(model(**make_inputs(model_case, changed)).last_hidden_state[0, 0], first, atol=1e-6)


@pytest.mark.parametrize("side", ["right", "left"])
def test_pad_invariance(model_case, make_config, make_inputs, side):
    model = build(model_case, make_config)
    pad = model.config.pad_token_id
    short, long_ = random_ids(1, 7, seed=1), random_ids(1, 11, seed=2)
    alone = model(**make_inputs(model_case, short)).last_hidden_state[0]  # (7, d)
    padding = torch.full((1, 4), pad)
    ids = torch.cat([short, padding], 1) if side == "right" else torch.cat([padding, short], 1)
    mask = (torch.arange(11) < 7) if side == "right" else (torch.arange(11) >= 4)
    batch_ids = torch.cat([ids, long_])
    batch_mask = torch.stack([mask.long(), torch.ones(11, dtype=torch.long)])
    out = model(**make_inputs(model_case, batch_ids, batch_mask)).last_hidden_state
    torch.testing.assert_close(out[0, mask], alone, rtol=1e-5, atol=1e-5)
    expected = model(**make_inputs(model_case, long_)).last_hidden_state[0]
    torch.testing.assert_close(out[1], expected, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------------------------------------------
# Losses
# --------------------------------------------------------------------------------------------------------------


def test_losses_only_with_labels_and_ignore_minus_100(model_case, make_config, make_inputs):
    ids = random_ids(2, 8)
    inputs = make_inputs(model_case, ids)
    mlm = build(model_case, make_config, "AutoModelForMaskedLM")
    assert mlm(**inputs).loss is None
    labels = torch.full_like(ids, -100)
    labels[0, 2], labels[1, 5] = 7, 9
    out = mlm(**inputs, labels=labels)
    full = mlm(**inputs).logits  # (B, L, V)
    expected = torch.nn.functional.cross_entropy(full[[0, 1], [2, 5]], torch.tensor([7, 9]))
    torch.testing.assert_close(out.loss, expected, rtol=1e-5, atol=1e-6)

    tok = build(model_case, make_config, "AutoModelForTokenClassification", num_labels=4, use_crf=False)
    assert tok(**inputs).loss is None
    tags = torch.randint(0, 4, ids.shape)
    tags[:, :3] = -100
    out = tok(**inputs, labels=tags)
    expected = torch.nn.functional.cross_entropy(out.logits[:, 3:].reshape(-1, 4), tags[:, 3:].reshape(-1))
    torch.testing.assert_close(out.loss, expected, rtol=1e-5, atol=1e-6)

    seq = build(model_case, make_config, "AutoModelForSequenceClassification", num_labels=3)
    assert seq(**inputs).loss is None
    out = seq(**inputs, labels=torch.tensor([2, -100]))
    torch.testing.assert_close(out.loss, torch.nn.functional.cross_entropy(out.logits[:1], torch.tensor([2])))


def test_crf_head_decodes_with_viterbi_and_scores_the_likelihood(model_case, make_config, make_inputs):
    """``use_crf=True`` on any model: argmax(logits) = predictions = the constrained Viterbi path, and the loss is
    -Σ log p(tags) over the labelled tokens (a -100 label at a real token is marginalised)."""
    from bizoo.kernels.crf import crf_log_likelihood, crf_viterbi

    labels = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    id2label = dict(enumerate(labels))
    model = build(
        model_case, make_config, "AutoModelForTokenClassification", use_crf=True, num_labels=5, id2label=id2label,
        label2id={v: k for k, v in id2label.items()},
    )
    ids = random_ids(2, 8)
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    inputs = make_inputs(model_case, ids, mask)
    tags = torch.tensor([0, 1, 3])[torch.randint(0, 3, ids.shape)]  # O, B-PER, B-LOC: legal after anything
    tags[0, 1] = tags[1, 6:] = -100
    tags[0, 2] = 2  # I-PER after an unknown tag: legal only through B-PER or I-PER there
    head = model.classifier if hasattr(model, "classifier") else model.head
    with torch.no_grad():  # widened: a lost constraint changes the best path
        g = torch.Generator().manual_seed(0)
        for p in (head.crf.transitions, head.crf.start, head.crf.end):
            p.copy_(torch.randn(p.shape, generator=g))
    captured = {}
    hook = head.classifier.register_forward_hook(lambda m, i, o: captured.__setitem__("emissions", o.float()))
    out = model(**inputs, labels=tags)
    hook.remove()
    # the oracle's parameters: the raw ones plus BIO written out here (I-X only after B-X or I-X, never first)
    transitions, start, end = (p.detach().float().clone() for p in (head.crf.transitions, head.crf.start, head.crf.end))
    for inside, after in ((2, (1, 2)), (4, (3, 4))):
        start[inside] = float("-inf")
        for prev in set(range(5)) - set(after):
            transitions[prev, inside] = float("-inf")
    path, _ = crf_viterbi(captured["emissions"], mask.bool(), transitions, start, end, backend="reference")
    assert torch.equal(out.predictions, path)
    assert torch.equal(out.logits.argmax(-1).masked_fill(mask == 0, -100), path)
    ll = crf_log_likelihood(captured["emissions"], mask.bool(), transitions, start, end, tags, backend="reference")
    labelled = ((tags != -100) & mask.bool()).sum()
    assert torch.isfinite(out.loss)
    torch.testing.assert_close(out.loss, -ll.sum() / labelled, rtol=1e-5, atol=1e-6)
    tags[1, 2:4] = torch.tensor([0, 2])  # O then I-PER: impossible in BIO
    with pytest.raises(ValueError, match="break the tag scheme"):
        model(**inputs, labels=tags)


@pytest.mark.parametrize("problem_type", ["regression", "multi_label_classification"])
def test_sequence_classification_problem_types(model_case, make_config, make_inputs, problem_type):
    num_labels = 1 if problem_type == "regression" else 3
    model = build(model_case, make_config, "AutoModelForSequenceClassification", num_labels=num_labels)
    labels = torch.tensor([0.5, 2.0]) if problem_type == "regression" else torch.tensor([[1.0, 0, 1], [0, 0, 1]])
    out = model(**make_inputs(model_case, random_ids(2, 6)), labels=labels)
    assert model.config.problem_type == problem_type and torch.isfinite(out.loss)


def trainer_args(tmp_path, **overrides):
    defaults = dict(
        output_dir=str(tmp_path),
        report_to=[],
        use_cpu=True,
        save_strategy="no",
        disable_tqdm=True,
        dataloader_num_workers=0,
        seed=0,
        data_seed=0,
    )
    return TrainingArguments(**{**defaults, **overrides})


def mlm_examples(model_case, make_inputs, n=8):
    """Examples of different lengths with different numbers of predicted positions (fixed labels)."""
    examples = []
    for i in range(n):
        ids = random_ids(1, 5 + 2 * i, seed=10 + i)
        labels = torch.full_like(ids[0], -100)
        labels[: 1 + i] = ids[0, : 1 + i]
        example = {k: v[0].tolist() for k, v in make_inputs(model_case, ids).items()}
        examples.append({**example, "labels": labels.tolist()})
    return examples


def mlm_collator(model_case, tokenizer, probability):
    """Masked-LM collation for the model's inputs (a word+character model's masked words lose their characters)."""
    from transformers import DataCollatorForLanguageModeling

    if bizoo.get_spec(model_case[0]).tokenizer == "wordchar":
        return bizoo.DataCollatorForWordCharLanguageModeling(tokenizer, mlm_probability=probability)
    return DataCollatorForLanguageModeling(tokenizer, mlm_probability=probability)


def test_gradient_accumulation_equals_one_big_batch(model_case, make_config, make_inputs, tmp_path, model_tokenizer):
    """2 micro-batches of 4 with accumulation give the same update as 1 batch of 8 (the loss is normalised by
    ``num_items_in_batch``, not per micro-batch)."""
    data = mlm_examples(model_case, make_inputs)
    collator = DataCollatorForTokenClassification(model_tokenizer)  # pads input_ids with [PAD], labels with -100
    results = []
    for batch_size, accumulation in ((8, 1), (4, 2)):
        torch.manual_seed(0)
        model = AutoModelForMaskedLM.from_config(make_config(model_case, vocab_size=V))
        args = trainer_args(
            tmp_path / f"{batch_size}",
            per_device_train_batch_size=batch_size,
            gradient_accumulation_steps=accumulation,
            max_steps=1,
            learning_rate=1.0,
            optim="sgd",
            lr_scheduler_type="constant",
            weight_decay=0.0,
            max_grad_norm=0.0,
        )
        Trainer(model=model, args=args, train_dataset=data, data_collator=collator).train()
        results.append({k: v.detach().clone() for k, v in model.state_dict().items()})
    moved = 0
    for key in results[0]:
        torch.testing.assert_close(results[1][key], results[0][key], rtol=1e-5, atol=1e-6)
        moved += 1
    assert moved


def test_evaluation_with_run_mlm_metrics(model_case, make_config, make_inputs, tmp_path, model_tokenizer):
    """run_mlm.py's evaluation: the Trainer gathers each batch's argmax of the logits
    (``preprocess_logits_for_metrics``) and the metric lines them up with the labels by position (flatten both, keep labels != -100). The masked LM's
    evaluation logits are therefore (B, L, V) (``sparse_prediction`` projects only the labelled positions in
    training); the accuracy equals one counted from a forward pass per example."""
    data = mlm_examples(model_case, make_inputs)
    collator = DataCollatorForTokenClassification(model_tokenizer)  # pads input_ids with [PAD], labels with -100
    torch.manual_seed(0)
    model = AutoModelForMaskedLM.from_config(make_config(model_case, vocab_size=V))

    def accuracy(prediction):  # run_mlm.py's metric, in its own steps
        labels = torch.as_tensor(prediction.label_ids).reshape(-1)
        predictions = torch.as_tensor(prediction.predictions).reshape(-1)
        keep = labels != -100
        return {"accuracy": (predictions[keep] == labels[keep]).double().mean().item()}

    trainer = Trainer(model=model, args=trainer_args(tmp_path, per_device_eval_batch_size=3), data_collator=collator,
                      eval_dataset=data, compute_metrics=accuracy,
                      preprocess_logits_for_metrics=lambda logits, labels: logits.argmax(-1))
    metrics = trainer.evaluate()
    model.eval()
    hits = total = 0
    with torch.no_grad():
        for example in data:
            batch = {k: torch.tensor([v]) for k, v in example.items()}
            out = model(**batch)
            assert out.logits.shape == (*batch["labels"].shape, V)
            keep = batch["labels"] != -100
            hits += int((out.logits.argmax(-1)[keep] == batch["labels"][keep]).sum())
            total += int(keep.sum())
    assert metrics["eval_accuracy"] == pytest.approx(hits / total)


def test_gradient_checkpointing_gives_the_same_gradients(model_case, make_config, make_inputs):
    def grads(checkpointing):
        torch.manual_seed(0)
        model = AutoModelForMaskedLM.from_config(make_config(model_case, vocab_size=V)).train()
        if checkpointing:
            enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
            enable()
            assert all(layer.gradient_checkpointing for layer in model.base_model.layers)
        ids = random_ids(2, 9)
        model(**make_inputs(model_case, ids), labels=ids).loss.backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    plain, checkpointed = grads(False), grads(True)
    assert plain.keys() == checkpointed.keys() and plain
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------------------------------------------
# Trainer and pipelines
# --------------------------------------------------------------------------------------------------------------


def test_trainer_two_steps_on_each_task(model_case, make_config, tmp_path, model_tokenizer, sentences):
    tokenizer = model_tokenizer
    texts = sentences(16)
    encoded = [tokenizer(t) for t in texts]
    tasks = {
        "AutoModelForMaskedLM": (
            [{k: v for k, v in e.items() if k in ("input_ids", "char_ids")} for e in encoded],
            mlm_collator(model_case, tokenizer, 0.3),
        ),
        "AutoModelForSequenceClassification": (
            [{**e, "labels": i % 2} for i, e in enumerate(encoded)],
            DataCollatorWithPadding(tokenizer),
        ),
        "AutoModelForTokenClassification": (
            [{**e, "labels": [i % 3 for i in range(len(e["input_ids"]))]} for e in encoded],
            DataCollatorForTokenClassification(tokenizer),
        ),
    }
    for auto, (data, collator) in tasks.items():
        model = AUTO[auto].from_config(make_config(model_case, vocab_size=len(tokenizer), num_labels=3))
        before = [p.detach().clone() for p in model.parameters()]
        args = trainer_args(tmp_path / auto, per_device_train_batch_size=4, max_steps=2, learning_rate=1e-3)
        result = Trainer(model=model, args=args, train_dataset=data, data_collator=collator).train()
        assert result.global_step == 2 and torch.isfinite(torch.tensor(result.training_loss))
        assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters())), auto


@pytest.mark.parametrize("use_crf", [False, True])
def test_trainer_predictions_of_a_token_head_are_its_logits(model_case, make_config, tmp_path, model_tokenizer,
                                                           sentences, use_crf):
    """The token heads' extra fields (``predictions``, ``marginals``) stay out of the Trainer's predictions
    (``keys_to_ignore_at_inference``), so run_ner's ``np.argmax(predictions, axis=2)`` works: (N, L, K) logits,
    whose argmax is the model's own ``predictions`` (the Viterbi path with a CRF) at every labelled position."""
    tokenizer = model_tokenizer
    data = [{**e, "labels": [i % 3 for i in range(len(e["input_ids"]))]} for e in map(tokenizer, sentences(6))]
    config = make_config(model_case, vocab_size=len(tokenizer), num_labels=3, use_crf=use_crf, output_marginals=True,
                         initializer_range=0.5)  # wide: the argmax differs between positions
    model = AutoModelForTokenClassification.from_config(config).eval()
    args = trainer_args(tmp_path, per_device_eval_batch_size=4)
    output = Trainer(model=model, args=args, data_collator=DataCollatorForTokenClassification(tokenizer)).predict(data)
    assert isinstance(output.predictions, np.ndarray) and output.predictions.shape[-1] == 3
    argmax = np.argmax(output.predictions, axis=2)  # what run_ner's compute_metrics does
    for row, example in enumerate(data):
        n = len(example["input_ids"])
        with torch.no_grad():
            expected = model(**{k: torch.tensor([v]) for k, v in example.items() if k != "labels"}).predictions[0]
        assert argmax[row, :n].tolist() == expected.tolist()


def assert_nested_close(got, expected, path="result"):
    """Equal nested lists/dicts, floats to 1e-5."""
    assert type(got) is type(expected), f"{path}: {type(got).__name__} vs {type(expected).__name__}"
    if isinstance(got, dict):
        assert got.keys() == expected.keys(), path
        for key in got:
            assert_nested_close(got[key], expected[key], f"{path}[{key!r}]")
    elif isinstance(got, (list, tuple)):
        assert len(got) == len(expected), f"{path}: length {len(got)} vs {len(expected)}"
        for index, (g, e) in enumerate(zip(got, expected)):
            assert_nested_close(g, e, f"{path}[{index}]")
    elif isinstance(got, (float, np.floating)):
        assert abs(got - expected) <= 1e-5 * (1 + abs(expected)), f"{path}: {got} vs {expected}"
    else:
        assert got == expected, f"{path}: {got!r} vs {expected!r}"


def test_pipelines_from_a_saved_folder(model_case, make_config, tmp_path, model_tokenizer):
    tokenizer = model_tokenizer
    config = make_config(model_case, vocab_size=len(tokenizer), num_labels=2)
    for auto, task in [
        ("AutoModelForMaskedLM", "fill-mask"),
        ("AutoModelForSequenceClassification", "text-classification"),
        ("AutoModelForTokenClassification", "token-classification"),
        ("AutoModel", "feature-extraction"),
    ]:
        folder = tmp_path / task
        AUTO[auto].from_config(config).save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        pipe = pipeline(task, model=str(folder), device="cpu")
        text = f"the king {tokenizer.mask_token} the queen ." if task == "fill-mask" else "the king and the queen ."
        result = pipe(text)
        # batched as transformers' pipelines batch (every output field split by its first dimension, padded rows):
        # the same as one text at a time
        texts = [text, f"sweet prince . {text}", f"{text} good night"]
        batched, alone = pipe(texts, batch_size=3), pipe(texts, batch_size=1)
        if task == "feature-extraction":  # a batch's features keep its padded positions: the real ones compared
            batched = [[rows[0][: len(one[0])]] for rows, one in zip(batched, alone)]
        assert_nested_close(batched, alone)
        if task == "fill-mask":
            assert len(result) == 5 and all("token_str" in r for r in result)
        elif task == "text-classification":
            assert result[0]["label"] in config.id2label.values()
        elif task == "token-classification":
            assert isinstance(result, list)
        else:
            assert len(result[0][0]) == config.encoder_output_size
