"""Pretrain a bizoo model with masked-LM, on your text or on the Shakespeare sample that ships with bizoo.

With no data argument it trains on the public-domain Shakespeare plays shipped inside the package, holding out
Macbeth for evaluation: it trains a WordPiece tokenizer, pretrains a small model for a few minutes on a CPU, then
saves model + tokenizer + model card, writes a loss-curve PNG, prints the held-out masked-token accuracy beside a
unigram baseline (always predicting the most frequent training token), and shows a few fill-mask predictions made
by `pipeline("fill-mask")` from the saved folder.

Sequences are packed to --max-length tokens inside each document (file) and never across documents.
Evaluation masks 15% of the held-out tokens (all replaced by [MASK], fixed by --seed) and counts the exact hits.

examples:
  bizoo pretrain --output-dir runs/lion                         # LION-LIT, shipped corpus, a few minutes
  bizoo pretrain --model lion --variant d --output-dir runs/lion-d --max-steps 2000
  bizoo pretrain --text corpus/*.txt --eval-text held_out.txt --model-config hidden_size=512 --output-dir runs/big
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

from .common import (
    CommandError,
    add_training_arguments,
    check_config_fields,
    check_output_dir,
    check_training_arguments,
    config_fields,
    last_checkpoint,
    move_into,
    parse_model_config,
    record_results,
    run_command,
    trainer_optimizers,
    training_arguments,
    variant_fields,
)
from .data import read_text_files, shipped_corpus_files
from .export import write_checkpoint_card

PROG = "bizoo pretrain"

# The small model of the default job: trains to a useful masked-LM in minutes on two CPU cores.
SMALL_MODEL = dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024)
FILL_MASK_EXAMPLES = (
    "To be, or not to [MASK], that is the question.",
    "O Romeo, Romeo! wherefore art thou [MASK]?",
    "Now is the winter of our [MASK].",
    "All the world's a [MASK].",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    model = parser.add_argument_group("model")
    model.add_argument("--model", default="lion", help="model type to pretrain (default: %(default)s)")
    model.add_argument(
        "--variant", default=None,
        help="named variant of the model, e.g. lit, d or s for LION (default: the model's default variant, s for LION)",
    )
    model.add_argument(
        "--model-config", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
        help="config fields to set (JSON values), e.g. hidden_size=512 num_hidden_layers=8; "
        f"unset fields default to a small model {SMALL_MODEL}",
    )
    model.add_argument("--tokenizer", default=None, metavar="PATH", help="use this tokenizer instead of training one")
    model.add_argument("--vocab-size", type=int, default=8000, help="vocabulary of the trained tokenizer (default: %(default)s)")
    data = parser.add_argument_group("data (default: the Shakespeare sample shipped with bizoo)")
    source = data.add_mutually_exclusive_group()
    source.add_argument("--text", nargs="+", default=None, metavar="FILE", help="plain-text training files, one document each")
    source.add_argument("--dataset", default=None, metavar="NAME", help="a `datasets` dataset name (needs the hub)")
    data.add_argument("--dataset-config", default=None, help="the dataset's configuration name")
    data.add_argument("--text-column", default="text", help="the dataset column holding text (default: %(default)s)")
    data.add_argument(
        "--eval-text", nargs="+", default=None, metavar="FILE",
        help="held-out text files (default: Macbeth for the shipped corpus, else the last --eval-fraction of the data)",
    )
    data.add_argument("--eval-fraction", type=float, default=0.05, help="share held out without --eval-text (default: %(default)s)")
    data.add_argument("--mlm-probability", type=float, default=0.15, help="share of tokens masked (default: %(default)s)")
    add_training_arguments(parser, max_steps=400, learning_rate=1e-3, batch_size=32, max_length=128)


# ----------------------------------------------------------------------------------------------------------------
# Preparation: everything is checked before the output folder is created
# ----------------------------------------------------------------------------------------------------------------


def model_config_kwargs(args: argparse.Namespace, spec) -> dict:
    """The config fields of this run: small-model defaults, then the variant's, then --model-config."""
    overrides = parse_model_config(args.model_config)
    check_config_fields(spec.config_class, overrides, f"model type {spec.model_type!r}")
    known = config_fields(spec.config_class)
    defaults = {k: v for k, v in {**SMALL_MODEL, "max_position_embeddings": args.max_length}.items() if k in known}
    return {**defaults, **variant_fields(spec, args.variant), **overrides}


def load_texts(args: argparse.Namespace) -> tuple[list[list[str]], list[list[str]], str]:
    """(training documents, held-out documents, corpus name); each document is a list of lines."""
    if args.dataset:
        from datasets import load_dataset

        split = load_dataset(args.dataset, args.dataset_config, split="train")
        if args.text_column not in split.column_names:
            raise CommandError(f"--text-column {args.text_column!r} is not in {args.dataset}: {split.column_names}")
        lines = [t for t in split[args.text_column] if t and t.strip()]
        documents, name = [lines], args.dataset
    elif args.text:
        documents, name = [read_text_files([path]) for path in args.text], "custom text"
    else:
        documents = [read_text_files([path]) for path in shipped_corpus_files("train")]
        held_out = [read_text_files([path]) for path in shipped_corpus_files("eval")]
        return documents, held_out, "Shakespeare sample (bizoo)"
    if args.eval_text:
        return documents, [read_text_files([path]) for path in args.eval_text], name
    if not 0 < args.eval_fraction < 1:
        raise CommandError(f"--eval-fraction must be in (0, 1), got {args.eval_fraction}")
    held_out = []
    for i, doc in enumerate(documents):  # the last lines of every document
        cut = max(1, int(len(doc) * (1 - args.eval_fraction)))
        documents[i], tail = doc[:cut], doc[cut:]
        if tail:
            held_out.append(tail)
    if not held_out:
        raise CommandError("the training text is too short to hold out an evaluation part; pass --eval-text")
    return documents, held_out, name


def pack(tokenizer, documents: list[list[str]], max_length: int, min_length: int = 8) -> list[list[int]]:
    """Token blocks of at most ``max_length`` ([CLS] ... [SEP]) filled from one document at a time."""
    body = max_length - 2
    blocks = []
    for lines in documents:
        stream = [tok for ids in tokenizer(lines, add_special_tokens=False)["input_ids"] for tok in ids]
        for start in range(0, len(stream), body):
            piece = stream[start : start + body]
            if len(piece) >= min_length:
                blocks.append([tokenizer.cls_token_id, *piece, tokenizer.sep_token_id])
    return blocks


def fixed_eval_masks(blocks: list[list[int]], tokenizer, probability: float, seed: int) -> list[dict]:
    """Mask ``probability`` of the non-special tokens of every block with [MASK], reproducibly."""
    generator = torch.Generator().manual_seed(seed)
    examples = []
    for ids in blocks:
        ids_t = torch.tensor(ids)
        special = torch.tensor(tokenizer.get_special_tokens_mask(ids, already_has_special_tokens=True), dtype=torch.bool)
        chosen = (torch.rand(len(ids), generator=generator) < probability) & ~special
        if not chosen.any():
            chosen[1] = True  # at least one target per block
        labels = torch.where(chosen, ids_t, torch.full_like(ids_t, -100))
        inputs = torch.where(chosen, torch.full_like(ids_t, tokenizer.mask_token_id), ids_t)
        examples.append({"input_ids": inputs.tolist(), "labels": labels.tolist()})
    return examples


def unigram_baseline(train_blocks: list[list[int]], eval_examples: list[dict], special_ids: set[int]) -> tuple[int, float]:
    """The most frequent non-special training token and its accuracy on the held-out masked positions."""
    counts = torch.bincount(torch.tensor([t for b in train_blocks for t in b if t not in special_ids]))
    best = int(counts.argmax())
    targets = torch.tensor([t for e in eval_examples for t in e["labels"] if t != -100])
    return best, float((targets == best).float().mean())


@torch.no_grad()
def masked_accuracy(model, eval_examples: list[dict], collator, batch_size: int = 64) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) of the model's top prediction at the masked positions."""
    model.eval()
    hits = total = 0
    loss_sum = 0.0
    for start in range(0, len(eval_examples), batch_size):
        batch = collator(eval_examples[start : start + batch_size])
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"])
        targets = batch["labels"][batch["labels"] != -100]  # (N,), the order of the sparse logits
        logits = out.logits if out.logits.dim() == 2 else out.logits[batch["labels"] != -100]
        hits += int((logits.argmax(-1) == targets).sum())
        total += targets.numel()
        loss_sum += float(out.loss) * targets.numel()
    return hits / max(total, 1), loss_sum / max(total, 1)


def plot_loss_curve(log_history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [(e["step"], e["loss"]) for e in log_history if "loss" in e]
    evals = [(e["step"], e["eval_loss"]) for e in log_history if "eval_loss" in e]
    fig, ax = plt.subplots(figsize=(6, 4))
    if train:
        ax.plot(*zip(*train), label="training loss (80% [MASK], 10% random, 10% kept)")
    if evals:
        ax.plot(*zip(*evals), "o-", label="held-out loss (all [MASK])")
    ax.set_xlabel("step")
    ax.set_ylabel("masked-LM cross-entropy")
    ax.set_title("bizoo pretrain")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ----------------------------------------------------------------------------------------------------------------
# The command
# ----------------------------------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    return run_command(PROG, lambda: _pretrain(args))


def _pretrain(args: argparse.Namespace) -> int:
    import bizoo
    from transformers import (
        AutoModelForMaskedLM,
        AutoTokenizer,
        DataCollatorForLanguageModeling,
        DataCollatorForTokenClassification,
        Trainer,
        pipeline,
    )

    from .train_tokenizer import train_wordpiece_tokenizer

    started = time.perf_counter()
    check_training_arguments(args)
    spec = bizoo.get_spec(args.model)
    if spec.tokenizer != "wordpiece":
        subword = sorted(name for name, s in bizoo.MODEL_SPECS.items() if s.tokenizer == "wordpiece")
        raise CommandError(
            f"bizoo pretrain reads subword ids only; {args.model!r} reads words and their characters, which this "
            f"command does not pack yet. Pretrain one of {subword}, or train {args.model!r} with the Trainer and "
            "bizoo.DataCollatorForWordCharLanguageModeling"
        )
    config_kwargs = model_config_kwargs(args, spec)
    spec.config_class(vocab_size=max(args.vocab_size, 8), **config_kwargs)  # validates every field now
    if not 0 < args.mlm_probability < 1:
        raise CommandError(f"--mlm-probability must be in (0, 1), got {args.mlm_probability}")
    output_dir = check_output_dir(args.output_dir, args.overwrite, args.resume)
    resume_from = last_checkpoint(output_dir) if args.resume else None
    if args.resume and resume_from is None:
        raise CommandError(f"--resume: no checkpoint-N folder in {output_dir}")
    documents, held_out, corpus_name = load_texts(args)

    if resume_from:
        tokenizer = AutoTokenizer.from_pretrained(resume_from)
    elif args.tokenizer:
        tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    else:
        tokenizer = train_wordpiece_tokenizer(
            [line for doc in documents for line in doc], vocab_size=args.vocab_size, model_max_length=args.max_length
        )
    if tokenizer.mask_token_id is None:
        raise CommandError("the tokenizer has no mask token; masked-LM needs one")
    config = spec.config_class(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, **config_kwargs)
    variant = args.variant or spec.default_variant
    print(f"{PROG}: {spec.model_type} {variant or ''} on {corpus_name}: tokenizer of {len(tokenizer)} tokens")

    train_blocks = pack(tokenizer, documents, args.max_length)
    eval_blocks = pack(tokenizer, held_out, args.max_length)
    if not train_blocks or not eval_blocks:
        raise CommandError(f"not enough text: {len(train_blocks)} training and {len(eval_blocks)} held-out blocks")
    eval_examples = fixed_eval_masks(eval_blocks, tokenizer, args.mlm_probability, args.seed)
    special_ids = set(tokenizer.all_special_ids)
    baseline_token, baseline_accuracy = unigram_baseline(train_blocks, eval_examples, special_ids)
    print(f"{PROG}: {len(train_blocks)} training and {len(eval_blocks)} held-out blocks of <= {args.max_length} tokens")

    torch.manual_seed(args.seed)
    model = AutoModelForMaskedLM.from_config(config)
    print(f"{PROG}: {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters, {config.num_hidden_layers} layers")
    eval_collator = DataCollatorForTokenClassification(tokenizer)  # pads labels with -100
    trainer = Trainer(
        model=model,
        args=training_arguments(
            args,
            output_dir,
            eval_strategy="steps",
            eval_steps=max(args.max_steps // 4, 1) if args.max_steps > 0 else 500,
            per_device_eval_batch_size=64,
            prediction_loss_only=True,
        ),
        train_dataset=[{"input_ids": ids} for ids in train_blocks],
        eval_dataset=eval_examples,
        data_collator=_TrainEvalCollator(
            DataCollatorForLanguageModeling(tokenizer, mlm_probability=args.mlm_probability), eval_collator
        ),
        processing_class=tokenizer,
        optimizers=trainer_optimizers(model, args),
    )
    train_start = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=resume_from)
    train_seconds = time.perf_counter() - train_start

    accuracy, eval_loss = masked_accuracy(model, eval_examples, eval_collator)
    metrics = {
        "masked_accuracy": round(accuracy, 4),
        "unigram_baseline_accuracy": round(baseline_accuracy, 4),
        "eval_loss": round(eval_loss, 4),
        "perplexity": round(math.exp(min(eval_loss, 50)), 2),
    }

    staging = output_dir / ".final-tmp"
    staging.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    plot_loss_curve(trainer.state.log_history, staging / "loss_curve.png")
    (staging / "training_log.json").write_text(json.dumps(trainer.state.log_history, indent=1) + "\n")
    move_into(staging, output_dir)
    record_results(
        output_dir,
        task={"type": "fill-mask", "name": "Masked language modeling"},
        dataset={"name": corpus_name, "type": "text", "split": "held-out"},
        metrics={"accuracy": metrics["masked_accuracy"], "perplexity": metrics["perplexity"]},
        unigram_baseline_accuracy=metrics["unigram_baseline_accuracy"],
        steps=result.global_step,
        train_seconds=round(train_seconds, 1),
    )
    write_checkpoint_card(output_dir, model, tokenizer)

    fill = pipeline("fill-mask", model=str(output_dir), device="cpu", top_k=3)
    print(f"\n{PROG}: done in {time.perf_counter() - started:.0f} s ({train_seconds:.0f} s training, {result.global_step} steps)")
    print(f"  held-out masked-token accuracy  {accuracy:.4f}")
    print(f"  unigram baseline (always {tokenizer.convert_ids_to_tokens(baseline_token)!r})  {baseline_accuracy:.4f}")
    print(f"  held-out loss {eval_loss:.3f}, perplexity {metrics['perplexity']}")
    print("  fill-mask from the saved folder:")
    for text in FILL_MASK_EXAMPLES:
        text = text.replace("[MASK]", tokenizer.mask_token)
        guesses = ", ".join(f"{p['token_str']} ({p['score']:.2f})" for p in fill(text))
        print(f"    {text}  ->  {guesses}")
    print(f"  saved to {output_dir} (model, tokenizer, README.md, loss_curve.png)")
    return 0


class _TrainEvalCollator:
    """Random masking for training batches; the fixed masks of the held-out set for evaluation batches."""

    def __init__(self, train_collator, eval_collator):
        self.train_collator, self.eval_collator = train_collator, eval_collator

    def __call__(self, examples):
        if "labels" in examples[0]:
            return self.eval_collator(examples)
        return self.train_collator(examples)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``bizoo pretrain`` and ``python -m bizoo.scripts.pretrain``."""
    from .common import command_main

    return command_main(__name__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
