"""LoRA through ``peft`` on every model (docs/peft.md, "LoRA and other adapters"): which modules each model exposes to
LoRA, that training moves only the adapter and the saved head, and that a saved adapter reloads onto the base.

``LORA`` holds, per model type, the ``target_modules`` and ``modules_to_save`` that docs/peft.md documents. LION and
BiGS expose plain ``nn.Linear`` layers. The LSTMs of BiLSTM-CRF (``BiLstmWeights``) and of ELMo (``ElmoLstmCell``)
are modules whose forward hands their weights to the ``bilstm`` op (so that peft's ``modules_to_save`` copies
serve them), but they are not ``nn.Linear`` layers and their weights never pass through one, so neither LoRA's
module wrappers nor its ``target_parameters`` reach them: BiLSTM-CRF trains full copies of them through
``modules_to_save`` (``".lstm"``: peft matches it as a plain suffix, and ``"lstm"`` would also take the whole
encoder, ``bilstm``), ELMo keeps its biLM frozen and trains its scalar mix, as ELMo is usually tuned.

A tagger's head is ``classifier`` holding a ``classifier`` (the emissions) and, with the CRF, ``crf``: a
``modules_to_save`` entry "classifier" (which ``task_type="TOKEN_CLS"`` adds) matches both levels, and peft then
nests one saved copy in the other and cannot reload it. Saving the head by its parts ("classifier.classifier",
"classifier.crf") without a task type works, and is what the second test checks.
"""

import torch
from peft import LoraConfig, PeftModel, get_peft_model  # in the dev extras; the package itself does not need peft
from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification

LORA = {
    "lion": dict(target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "up", "down"], modules_to_save=["classifier"]),
    "bigs": dict(
        target_modules=["dv", "du_forward", "du_backward", "duc_forward", "duc_backward", "dol", "do"],
        modules_to_save=["classifier"],
    ),
    "bilstm_crf": dict(target_modules=["word_embeddings", "conv"], modules_to_save=["classifier", ".lstm"]),
    "elmo": dict(target_modules=["gate", "transform", "projection"], modules_to_save=["classifier", "scalar_mixes.0"]),
}
# A tagger: its head saved by its parts, and ELMo's task BiLSTM (``tagger``, a parameter holder too) trained in full.
TAGGER_HEAD = ["classifier.classifier", "classifier.crf"]
TAGGER_EXTRA = {"elmo": ["tagger"]}


def _batch(model_case, make_inputs, labels, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 120, (4, 9), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0  # right padding
    mask[2, :2] = 0  # left padding
    if labels == "tags":  # O, B-PER, B-LOC: legal after anything in BIO
        labels = torch.tensor([0, 1, 3])[torch.randint(0, 3, ids.shape, generator=g)].masked_fill(mask == 0, -100)
    return make_inputs(model_case, ids, mask), labels


def _train_save_reload(auto, base, lora, inputs, labels, head, folder):
    """Wrap ``base`` (saved first), train 6 steps, check what moved, save the adapter, reload it onto the saved base:
    returns (trained outputs, reloaded outputs, base outputs), in eval mode."""
    base.save_pretrained(folder / "base")
    model = get_peft_model(base, lora)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(("lora_" in n) or (".modules_to_save." in n) for n in trainable), sorted(trainable)
    assert any("lora_" in n for n in trainable)  # a target matched
    assert any(f".{head}.modules_to_save." in n for n in trainable)  # the new head trains, and is saved

    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    losses = []
    for _ in range(6):
        loss = model(**inputs, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0], losses

    for name, p in model.named_parameters():
        if name in trainable:  # every adapter tensor and saved copy got a gradient (B from step 1, A from step 2)
            assert not torch.equal(p, before[name]), f"{name} did not train: its target is not on the forward path"
        else:
            assert torch.equal(p, before[name]), f"{name} changed but is frozen"

    model.eval()
    model.save_pretrained(folder / "adapter")
    reloaded = PeftModel.from_pretrained(auto.from_pretrained(folder / "base"), folder / "adapter").eval()
    with torch.no_grad():
        return model(**inputs), reloaded(**inputs), auto.from_pretrained(folder / "base").eval()(**inputs)


def test_lora_trains_only_the_adapter_and_the_head_and_reloads(model_case, make_config, make_inputs, tmp_path):
    torch.manual_seed(0)
    config = make_config(model_case, num_labels=2, initializer_range=0.2)  # wider: the adapters move the outputs
    base = AutoModelForSequenceClassification.from_config(config)
    lora = LoraConfig(task_type="SEQ_CLS", r=4, lora_alpha=8, lora_dropout=0.0, **LORA[model_case[0]])
    inputs, labels = _batch(model_case, make_inputs, torch.tensor([0, 1, 1, 0]))
    trained, reloaded, plain = _train_save_reload(
        AutoModelForSequenceClassification, base, lora, inputs, labels, "classifier", tmp_path
    )
    torch.testing.assert_close(reloaded.logits, trained.logits, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(plain.logits, trained.logits, atol=1e-3)  # the adapter does change the outputs


def test_lora_on_a_crf_tagger_saves_the_head_by_its_parts(model_case, make_config, make_inputs, tmp_path):
    torch.manual_seed(0)
    labels = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    id2label = dict(enumerate(labels))
    config = make_config(
        model_case, num_labels=5, id2label=id2label, label2id={v: k for k, v in id2label.items()}, use_crf=True,
        initializer_range=0.2,
    )
    base = AutoModelForTokenClassification.from_config(config)
    spec = LORA[model_case[0]]
    extra = [m for m in spec["modules_to_save"] if m != "classifier"] + TAGGER_EXTRA.get(model_case[0], [])
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=spec["target_modules"], modules_to_save=TAGGER_HEAD + extra)
    inputs, tags = _batch(model_case, make_inputs, "tags")
    trained, reloaded, plain = _train_save_reload(
        AutoModelForTokenClassification, base, lora, inputs, tags, "crf", tmp_path
    )
    torch.testing.assert_close(reloaded.logits, trained.logits, rtol=1e-5, atol=1e-6)
    assert torch.equal(reloaded.predictions, trained.predictions)
    assert not torch.allclose(plain.logits, trained.logits, atol=1e-3)
