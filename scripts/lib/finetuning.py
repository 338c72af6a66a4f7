"""What ``bizoo finetune-glue`` and ``bizoo finetune-ner`` share: where the model and tokenizer come from, the
``Trainer`` run, and the final save and report.

A fine-tuning command runs in two phases:

1. **prepare** (``prepare_model``): every input is checked before anything is written. The data is read by the
   command itself; then ``resolve_model_source`` checks ``--model-name-or-path`` (a checkpoint folder or hub
   name, or a registered model type such as ``lion`` to train from scratch), ``--variant`` and
   ``--model-config``; ``check_output_folder`` checks ``--output-dir``, ``--overwrite`` and ``--resume``;
   ``load_tokenizer`` loads or trains the tokenizer; ``load_model`` builds the model and checks the tokenizer
   against its vocabulary. Any bad input raises ``CommandError`` (exit code 2) and leaves no folder behind.
2. **train and report** (``train``, ``save_final``): the ``Trainer`` writes its checkpoints into the output
   folder (so ``--resume`` can continue) and, when --eval_strategy asks, evaluates with the command's metrics
   (the best checkpoint by --metric_for_best_model, loaded at the end with --load_best_model_at_end); then the
   final model, tokenizer and ``eval_results.json`` are written into a staging folder beside it and moved in
   (``staged_update``), and with --push_to_hub uploaded (``training.push_final_folder``).

``--resume`` takes the model and tokenizer from the newest ``checkpoint-N`` of the output folder
(``--resume_from_checkpoint DIR``: from that one); options that would build a different model (another
``--model-config`` value, another task) are refused.

Two remedies for a model that fits its training data better than it generalises, to be measured:

* ``--word-dropout P`` (a command adds it with ``add_word_dropout_argument``; finetune-ner does): Lample et al.
  (2016)'s singleton replacement, ``lib.word_dropout``. ``train`` wraps the training examples (never the evaluation
  ones) when P > 0; ``prepare_model`` refuses it, before anything is written, for a model that does not read words
  and their characters: with sub-words, or with characters only (ELMo's classifiers), there is no word row for
  [UNK] to stand in for while the characters stay.
* ``--best-checkpoint`` (``lib.training``): the checkpoint that scored best on the evaluation split, rather than the
  last one, is the model saved and evaluated at the end.

``--do_predict`` (run_glue.py's and run_ner.py's switch; a command takes it with ``add_predict_arguments``): after
the evaluation, the final model predicts the command's test split (cut to ``--max-predict-samples``) and the command
writes what the example script writes (``save_final``'s ``files``, in the same staged update as the model).

Under ``torchrun`` / ``accelerate launch`` (several processes, ``--batch-size`` per process): every process checks
the output folder before the first writes into it (``training.check_in_turn``: the tokenizer a run from scratch
trains is built by the first process and shared through that folder); every process takes part in each evaluation
and prediction, whose batches are sharded in the dataset's order and gathered back in it, the examples repeated to
fill the last batches dropped (``_ordered_evaluation_trainer``), so the scores and the predictions files are those
of one process; the first process alone reports and writes the final folder. Without dropout, 2 processes with
batch b train as 1 process with batch 2b (the same order, the loss normalised over both processes' tokens), and
``eval_results.json`` records the same ``train_loss`` and ``total_batch_size`` for both (``run_summary``).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bizoo

from .command import CommandError, listing, report, run_command
from .masking import EpochCallback
from .models import (
    MIN_VOCAB_SIZE,
    add_dtype_argument,
    build_wordchar_tokenizer,
    changed_weight_shapes,
    check_config_fields,
    check_mixed_precision,
    check_resume_dtype,
    load_model,
    parse_model_config,
    pretrained_tokenizer,
    variant_fields,
)
from .output_folders import check_output_dir, clear_previous_run, input_paths, staged_update
from .results import RESULTS_FILE
from .sources import HubOptions, hub_options, resolve_checkpoint
from .trainer_mixins import CommandTrainer
from .training import (
    TRAINING_GROUP_TITLE,
    add_hub_arguments,
    add_preset_option,
    bool_flag,
    build_on_first_process,
    check_in_turn,
    check_label_smoothing,
    check_neftune,
    input_checks_callback,
    push_final_folder,
    resume_checkpoint,
    trainer_optimizers,
    training_arguments,
    trains,
)
from .word_dropout import WordDropoutExamples
from .word_vectors import load_word_vectors
from .wordpiece import minimum_vocab_size, train_wordpiece_tokenizer

logger = logging.getLogger(__name__)

#: Vocabulary size of a WordPiece tokenizer trained on the task's training text (from scratch, no --tokenizer).
DEFAULT_VOCAB_SIZE = 8000

EVAL_RESULTS_FILE = "eval_results.json"
TRAINING_LOG_FILE = "training_log.json"
#: What the Trainer's ``save_metrics("predict", ...)`` names the test metrics (run_ner.py writes it).
PREDICT_RESULTS_FILE = "predict_results.json"


# ----------------------------------------------------------------------------------------------------------------
# Options
# ----------------------------------------------------------------------------------------------------------------


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that say which model and tokenizer to fine-tune: --model-name-or-path, --tokenizer, --variant,
    --model-config, --ignore-mismatched-sizes, --dtype, --word-vectors and --vocab-size; then the Hub and cache
    options (``lib.training.add_hub_arguments``)."""
    group = parser.add_argument_group("model")
    group.add_argument(
        "--model-name-or-path", "--model_name_or_path", required=True, metavar="CKPT",
        help="a checkpoint folder (e.g. from bizoo pretrain) or hub model to fine-tune, or a bizoo model type "
        "(e.g. 'lion') to train from scratch",
    )
    group.add_argument(
        "--tokenizer", "--tokenizer_name", "--tokenizer-name", metavar="PATH",
        help="tokenizer folder or hub name (default: the checkpoint's own tokenizer; from scratch, a WordPiece "
        "tokenizer trained on the training sentences)",
    )
    group.add_argument(
        "--variant", metavar="V",
        help="named variant of a model trained from scratch (e.g. lion: lit, d, s; default: the model's default "
        "variant, s for lion)",
    )
    group.add_argument(
        "--model-config", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
        help="override configuration fields, e.g. hidden_size=256 num_hidden_layers=4; values are read as JSON "
        "(numbers, true/false, null), anything else as a string",
    )
    group.add_argument(
        "--ignore-mismatched-sizes", "--ignore_mismatched_sizes", **bool_flag(
            help="run_*.py's option: weights of the checkpoint whose shape differs from the model's (a head "
            "fine-tuned for other labels) are initialised anew instead of refused (from_pretrained's "
            "ignore_mismatched_sizes)"),
    )
    add_dtype_argument(group)
    group.add_argument(
        "--word-vectors", metavar="FILE",
        help="pretrained word vectors (GloVe / word2vec text format, .gz allowed) for the word embeddings of a model "
        "trained from scratch; each word takes its exact, lowercased or digit-normalised vector (Lample et al. "
        "2016), the others keep their random initialisation",
    )
    group.add_argument(
        "--vocab-size", type=int, default=None, metavar="N",
        help="vocabulary size of the tokenizer built when starting from scratch without --tokenizer: a WordPiece "
        f"tokenizer (raised to the minimum the text needs; default: {DEFAULT_VOCAB_SIZE}), or the most frequent "
        "words for a word-level model (default: every training word)",
    )
    add_hub_arguments(parser)


def add_word_dropout_argument(parser: argparse.ArgumentParser) -> None:
    """--word-dropout P (``lib.word_dropout``), among the training options; call it after
    ``training.add_training_arguments``. Its default is the model's preset (``word_dropout``), else 0: off."""
    add_preset_option(
        parser, "word_dropout", 0.0, "--word-dropout", "--word_dropout", type=float, metavar="P",
        help="during training only, replace each occurrence of a word seen once in the training data by the unknown "
        "word with probability P, keeping its characters (Lample et al. 2016 use 0.5; 0 = off); the draws depend on "
        "--seed, the epoch and the example only. Needs a model that reads words and characters (bilstm_crf) "
        "(default: %(default)s)",
    )


def add_predict_arguments(parser: argparse.ArgumentParser, what: str) -> None:
    """--do_predict for a command that predicts a test split after training (``what``: which split, and what it
    writes, for --help), --do_eval / --do_predict without --do_train evaluating a checkpoint as it is, and
    run_glue.py / run_ner.py's --max-predict-samples N; call it after
    ``training.add_training_arguments`` (``check_training_arguments`` refuses --do_predict in any other command)."""
    group = next(group for group in parser._action_groups if group.title == TRAINING_GROUP_TITLE)
    group.add_argument(
        "--max-predict-samples", "--max_predict_samples", type=int, default=None, metavar="N",
        help="with --do_predict: predict the first N test examples only (as run_*.py's option)",
    )
    alone = "without --do_train, the checkpoint as it is (a checkpoint fine-tuned for the task; nothing trained)"
    helps = {  # TrainingArguments' fields, passed through: say what each does here (``training.trains``)
        "do_train": "train: with none of --do_train, --do_eval, --do_predict the command trains, then evaluates; "
                    "given any of them, it trains only with --do_train, as run_glue.py and run_ner.py do",
        "do_eval": f"evaluate on the evaluation split(s), which the command always does: {alone}",
        "do_predict": f"after the evaluation, {what}; {alone}",
    }
    for action in parser._actions:
        if action.dest in helps:
            action.help = helps[action.dest]
    parser.set_defaults(_predicts=True)


def check_predict_options(args: argparse.Namespace, test_file_option: str = "--test-file") -> bool:
    """Whether --do_predict asks for the test split; ``CommandError`` for --test-file or --max-predict-samples
    without it (nothing would read them)."""
    predict = bool(getattr(args, "do_predict", False))
    if not predict:
        given = [option for option, value in ((test_file_option, getattr(args, "test_file", None)),
                                              ("--max-predict-samples", getattr(args, "max_predict_samples", None)))
                 if value is not None]
        if given:
            raise CommandError(f"{', '.join(given)}: for the test split --do_predict predicts; add --do_predict "
                               "or drop it")
    return predict


def predict_results(trainer_metrics: dict[str, Any], scores: dict[str, Any], samples: int) -> dict[str, Any]:
    """What ``predict_results.json`` holds, as the Trainer's ``save_metrics("predict", ...)`` names it: the
    ``trainer.predict(..., metric_key_prefix="predict")`` metrics (``predict_loss``, ``predict_runtime``, ...), the
    command's ``scores`` of the test split with the ``predict_`` prefix, and ``predict_samples``."""
    return {**trainer_metrics, **{f"predict_{name}": value for name, value in scores.items()},
            "predict_samples": samples}


def inference_ignore_keys(model, keep: Sequence[str] = ()) -> list[str] | None:
    """The ``ignore_keys`` of ``Trainer.predict``/``evaluate`` that keep the output fields ``keep`` in the gathered
    predictions: the model config's ``keys_to_ignore_at_inference`` (a bizoo token head's ``predictions`` and
    ``marginals``, left out so that the predictions are the logits alone) without them; None (the Trainer's default)
    when ``keep`` is empty. A command that keeps ``predictions`` reads the model's own decoding: with a CRF head the
    Viterbi path, also where ``crf_logits="log_marginals"`` makes the argmax of the logits posterior decoding."""
    if not keep:
        return None
    return [key for key in getattr(model.config, "keys_to_ignore_at_inference", None) or [] if key not in keep]


def predict_test_split(trainer, dataset, keep: Sequence[str] = ()):
    """``trainer.predict(dataset, metric_key_prefix="predict")`` without the Trainer's ``compute_metrics`` (the
    evaluation split's scoring, which reads the evaluation examples): the command scores the test split itself.
    ``keep``: output fields to gather beside the logits (``inference_ignore_keys``). The metrics are the Trainer's
    own (``predict_loss`` with labels, ``predict_runtime`` ...)."""
    compute_metrics, trainer.compute_metrics = trainer.compute_metrics, None
    try:
        return trainer.predict(dataset, metric_key_prefix="predict",
                               ignore_keys=inference_ignore_keys(trainer.model, keep))
    finally:
        trainer.compute_metrics = compute_metrics


def check_word_dropout(args: argparse.Namespace, tokenizer=None, model=None) -> None:
    """``CommandError`` for a --word-dropout outside [0, 1] or one that cannot work: with ``tokenizer`` and ``model``,
    P > 0 needs the word+character tokenizer (which has an unknown word) and word embeddings. (Persistent data-loader
    workers are fine: the running epoch of ``WordDropoutExamples`` is shared with them, ``lib.masking.SharedEpoch``.)"""
    probability = getattr(args, "word_dropout", None)
    if probability is None:  # a command without the option
        return
    if not 0 <= probability <= 1:  # NaN included
        raise CommandError(f"--word-dropout must be a probability in [0, 1] (0 = off), got {probability}")
    if probability == 0:
        return
    if tokenizer is None:
        return
    if not isinstance(tokenizer, bizoo.WordCharTokenizerFast):
        raise CommandError(
            f"--word-dropout {probability}: it replaces words by the unknown word while their characters stay, so it "
            f"needs a model that reads words and their characters (bilstm_crf); this one reads sub-words "
            f"({type(tokenizer).__name__}). Pass --word-dropout 0"
        )
    if model is not None and model.get_input_embeddings() is None:
        raise CommandError(
            f"--word-dropout {probability}: {type(model).__name__} reads the characters only (no word embeddings), so "
            "replacing a word by the unknown word while its characters stay changes nothing. Pass --word-dropout 0"
        )


# ----------------------------------------------------------------------------------------------------------------
# Model source, output folder, tokenizer
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class ModelSource:
    """Where the model comes from, checked.

    Attributes:
        name_or_path: --model-name-or-path.
        spec: the registered ``ModelSpec`` when training from scratch, else None.
        overrides: configuration fields asked for (--variant's and --model-config's), without the task's.
        config: the configuration they give (its vocabulary size is not final when training from scratch).
        path: the checkpoint's local folder (a Hub model's snapshot in the cache: --cache_dir, --model_revision,
            --token); None when training from scratch.
        hub: the run's Hub options (``lib.sources.HubOptions``: --trust_remote_code for every ``from_pretrained``).
        checkpoint_labels: the checkpoint's own label names in its id order (its config's ``id2label``), None when it
            has none of its own: trained from scratch, or transformers' generic ``LABEL_0``, ``LABEL_1`` ... (a
            pretrained encoder without a task head).
    """

    name_or_path: str
    spec: Any
    overrides: dict[str, Any]
    config: Any
    path: str | None = None
    hub: HubOptions = HubOptions()
    checkpoint_labels: tuple[str, ...] | None = None

    @property
    def from_scratch(self) -> bool:
        return self.spec is not None

    def describe(self) -> str:
        if self.from_scratch:
            return f"{self.name_or_path} from scratch"
        return self.name_or_path


def resolve_model_source(args: argparse.Namespace, task_config: dict[str, Any]) -> ModelSource:
    """Check --model-name-or-path, --variant and --model-config and build the configuration they ask for.

    A checkpoint that is not a local folder is a Hub model id, ``[owner/]name[@revision]``: its snapshot is fetched
    into the cache (or found there, also offline) once, with the Hub options (``lib.sources``: --cache_dir,
    --model_revision, --token), and the configuration, tokenizer and model all load from that folder, as run_*.py
    loads the three with the same options (--trust_remote_code included).

    ``task_config`` holds the fields the task sets (``num_labels``, ``id2label``, ``problem_type`` ...): the
    configuration takes the task's labels in the task's order. The checkpoint's own labels are kept in
    ``ModelSource.checkpoint_labels``: where they are the task's in another order, ``prepare_model`` reorders the
    loaded head to the task's order (``checkpoint_label_order``), so that the model predicts what it predicted.
    Raises ``CommandError`` for an unknown model type, variant or field, and the config's own ``ValueError`` for a
    bad value (both exit code 2).
    """
    from transformers import AutoConfig

    name = args.model_name_or_path
    hub = hub_options(args)
    overrides = parse_model_config(args.model_config)
    if name in bizoo.MODEL_SPECS:
        spec = bizoo.get_spec(name)
        check_config_fields(spec.config_class, overrides, f"model type {name!r}")
        fields = {**variant_fields(spec, args.variant), **overrides}
        config = spec.config_class(**fields, **task_config)  # the config's checks name a bad value's field
        check_mixed_precision(args)
        return ModelSource(name, spec, fields, config, None, hub)

    if args.variant is not None:
        raise CommandError(
            f"--variant applies only when training from scratch (--model-name-or-path one of "
            f"{sorted(bizoo.MODEL_SPECS)}); the checkpoint {name!r} already fixes its configuration"
        )
    try:
        path = str(resolve_checkpoint(name, "--model-name-or-path", hub))
        config = AutoConfig.from_pretrained(path, trust_remote_code=hub.trust_remote_code)
    except (OSError, ValueError, KeyError) as err:  # CommandError included: neither a folder nor a Hub model
        raise CommandError(
            f"--model-name-or-path {name!r} is neither a bizoo model type ({', '.join(sorted(bizoo.MODEL_SPECS))}) "
            f"nor a checkpoint folder or hub model with a config.json ({err})"
        ) from None
    check_config_fields(type(config), overrides, f"checkpoint {name!r}")
    check_mixed_precision(args, config)
    labels = own_labels(config)
    config = AutoConfig.from_pretrained(path, trust_remote_code=hub.trust_remote_code, **overrides, **task_config)
    reinitialise = bool(getattr(args, "ignore_mismatched_sizes", False))
    changed = changed_weight_shapes(path, config, hub.trust_remote_code) if overrides and not reinitialise else []
    if changed:
        anew = ", or give --ignore_mismatched_sizes to initialise them anew" \
            if hasattr(args, "ignore_mismatched_sizes") else ""
        raise CommandError(
            f"--model-config {' '.join(args.model_config)} changes the shapes of the weights of the checkpoint "
            f"{name!r} ({listing(changed, 3)}): a checkpoint's weights keep their shapes; drop those fields (fields "
            f"such as dropout change no weight), or train a new model from a model type{anew}"
        )
    return ModelSource(name, None, overrides, config, path, hub, labels)


def own_labels(config) -> tuple[str, ...] | None:
    """The label names of ``config`` in id order (``id2label``), or None where they are transformers' generic
    ``LABEL_0``, ``LABEL_1`` ... (what a config without labels of its own holds: a pretrained encoder)."""
    id2label = getattr(config, "id2label", None) or {}
    names = tuple(str(id2label[i]) for i in sorted(id2label, key=int))
    if not names or names == tuple(f"LABEL_{i}" for i in range(len(names))):
        return None
    return names


def task_labels(task_config: dict[str, Any]) -> tuple[str, ...] | None:
    """The task's label names in its id order (``task_config``'s ``id2label``); None for a task without (a
    regression)."""
    id2label = task_config.get("id2label")
    if not id2label:
        return None
    return tuple(str(id2label[i]) for i in sorted(id2label, key=int))


def checkpoint_label_order(source: ModelSource, task_config: dict[str, Any],
                           ignore_mismatched_sizes: bool = False) -> list[int] | None:
    """How the checkpoint's labels map onto the task's: for each of the task's label ids, the row of the
    checkpoint's head that scores that label; None where nothing is to be reordered.

    The run always uses the task's labels in the task's order (``task_config``: GLUE's label order, for which its
    metrics are defined, e.g. MRPC's F1 of class 1; NER's "O" first, then by type): the data's label ids, the metrics,
    the predictions files and the saved config. A checkpoint fine-tuned elsewhere may hold the same labels in
    another order (an MNLI model in the Hub's entailment, neutral, contradiction; a CoNLL tagger in the dataset's
    ClassLabel order). As transformers' run_glue.py and run_ner.py keep such a model's labels, its head is kept, its
    rows reordered to the task's order (``reorder_label_rows``): the model predicts the same labels as before, which
    the task's configuration alone, put over the checkpoint's rows, would have renamed (an SST-2 model's every
    prediction flipped). Returned: the order to apply, or None where the checkpoint's order is the task's already.

    A checkpoint whose labels are another set (another task's) is warned about, naming both sets, as run_glue.py
    warns, and None is returned: the task's labels and order are used, the checkpoint's ignored. Its head is
    initialised anew where its size differs, with --ignore_mismatched_sizes (without it, ``prepare_model`` refuses
    the checkpoint); of the same size, its weights are the start of a head for the task's labels. A checkpoint
    without labels of its own (``LABEL_0``, ``LABEL_1`` ...: a pretrained encoder) and a task without labels (a
    regression) give None, and no warning.
    """
    ours, theirs = task_labels(task_config), source.checkpoint_labels
    if ours is None or theirs is None or ours == theirs:
        return None
    if sorted(ours) == sorted(theirs) and len(set(theirs)) == len(theirs):
        return [theirs.index(label) for label in ours]
    if len(ours) != len(theirs):
        head = (f"its head, for {len(theirs)} labels, is initialised anew for the task's {len(ours)} "
                "(--ignore_mismatched_sizes)" if ignore_mismatched_sizes else
                f"its head, for {len(theirs)} labels, does not fit the task's {len(ours)}: a head weight of another "
                "size is refused, or initialised anew with --ignore_mismatched_sizes")
    else:
        head = ("its head has the same size, so it starts from the checkpoint's weights, whose rows were trained for "
                "the checkpoint's labels")
    logger.warning(
        f"the checkpoint {source.name_or_path!r} was fine-tuned with the labels {', '.join(sorted(theirs))}, which "
        f"are not this task's labels ({', '.join(sorted(ours))}): the checkpoint's labels are ignored and the task's "
        f"are used, in the task's order ({', '.join(ours)}); {head}"
    )
    return None


def reorder_label_rows(model, order: Sequence[int]) -> list[str]:
    """Reorder, in place, every weight of ``model`` that is indexed by the label: the entries at the label positions
    of each such tensor become ``order``'s (label i of the task takes the checkpoint's row ``order[i]``): a softmax
    head's output rows and biases, a CRF's emission rows, transitions (both axes), start and end scores.

    Which tensors and axes hold labels is read from the model class itself: the same model built (on the meta device,
    no memory) with one label more has those axes one longer. Returns the names of the tensors reordered;
    ``CommandError`` where none is found (the head could not be reordered, and would predict renamed labels)."""
    import copy

    import torch

    num_labels = len(order)
    grown = copy.deepcopy(model.config)
    grown.id2label = {i: f"LABEL_{i}" for i in range(num_labels + 1)}
    grown.label2id = {label: i for i, label in grown.id2label.items()}
    if hasattr(grown, "tag_scheme"):  # a CRF's constraints, read from the labels, are not the question here
        grown.tag_scheme = "none"
    with torch.device("meta"):  # every model builds there (tests/modeling/test_compile_export.py)
        shapes = {key: tuple(t.shape) for key, t in type(model)(grown).state_dict().items()}
    index = torch.tensor(list(order), dtype=torch.long)
    reordered, seen = [], set()
    with torch.no_grad():
        for key, tensor in model.state_dict().items():
            other = shapes.get(key)
            if other is None or len(other) != tensor.dim() or tensor.data_ptr() in seen:
                continue
            axes = [axis for axis, (size, grown_size) in enumerate(zip(tensor.shape, other))
                    if size == num_labels and grown_size == num_labels + 1]
            if not axes:
                continue
            seen.add(tensor.data_ptr())  # a tied tensor is reordered once
            permuted = tensor
            for axis in axes:
                permuted = permuted.index_select(axis, index.to(tensor.device))
            tensor.copy_(permuted)
            reordered.append(key)
    if not reordered:
        raise CommandError(
            f"the checkpoint's labels are the task's in another order, but no weight of {type(model).__name__} is "
            "indexed by the label, so its head cannot be reordered to the task's order"
        )
    return reordered


def check_output_folder(args: argparse.Namespace) -> tuple[Path, str | None]:
    """The output folder and, with --resume (or --resume_from_checkpoint), the checkpoint to continue from;
    ``CommandError`` if the folder is a file, is non-empty without --overwrite/--resume, or --resume finds no
    checkpoint (``check_training_arguments`` has refused --resume with --overwrite)."""
    output_dir = check_output_dir(args.output_dir, args.overwrite, args.resume, input_paths(args), whole=False)
    return output_dir, resume_checkpoint(args, output_dir)


def _new_tokenizer(args: argparse.Namespace, source: ModelSource, training_texts, training_sentences,
                   sentence_pairs: bool = False):
    """A tokenizer for a model trained from scratch: a ``WordCharTokenizerFast`` from the training words (or texts),
    or a WordPiece tokenizer trained on the training texts."""
    max_positions = getattr(source.config, "max_position_embeddings", None) or 512
    if source.spec.tokenizer == "wordchar":
        return build_wordchar_tokenizer(
            source.spec, training_sentences or training_texts, args.vocab_size, model_max_length=max_positions,
            sentence_pairs=sentence_pairs,
        )
    texts = [text for text in training_texts() if text and text.strip()]
    if not texts:
        raise CommandError("the training data holds no text to train a tokenizer on")
    vocab_size = args.vocab_size if args.vocab_size is not None else DEFAULT_VOCAB_SIZE  # checked in prepare_model
    logger.info(f"training a WordPiece tokenizer (vocabulary up to {vocab_size:,}) on {len(texts):,} training texts")
    try:
        return train_wordpiece_tokenizer(texts, vocab_size=vocab_size, model_max_length=max_positions)
    except ValueError:  # too small for the characters of this text: take the smallest size that holds them
        vocab_size = minimum_vocab_size(texts)
        logger.warning(f"the text has many distinct characters: the vocabulary grows to {vocab_size:,}")
        return train_wordpiece_tokenizer(texts, vocab_size=vocab_size, model_max_length=max_positions)


def load_tokenizer(
    args: argparse.Namespace,
    source: ModelSource,
    training_texts: Callable[[], list[str]],
    checkpoint: str | None = None,
    need_fast: bool = False,
    training_sentences: Callable[[], list] | None = None,
    sentence_pairs: bool = False,
):
    """The tokenizer: the resumed checkpoint's, else --tokenizer, else the checkpoint's own, else (from scratch)
    a WordPiece tokenizer trained on ``training_texts()``, or, for a model that reads words and characters, a
    ``WordCharTokenizerFast`` built from ``training_sentences()`` (lists of words) or the texts, which marks where
    each text of a pair begins and ends (<S> ... </S>) when the task reads ``sentence_pairs``; a ready word+character
    tokenizer that does not is warned about."""
    if checkpoint is not None:
        tokenizer = pretrained_tokenizer(checkpoint, "the checkpoint to resume", source.hub)
    elif args.tokenizer:
        tokenizer = pretrained_tokenizer(args.tokenizer, "--tokenizer", source.hub)
    elif source.from_scratch:  # built here; in a distributed run by the first process, for all of them
        from transformers import AutoTokenizer

        tokenizer = build_on_first_process(
            lambda: _new_tokenizer(args, source, training_texts, training_sentences, sentence_pairs),
            Path(args.output_dir) / ".tokenizer-shared", lambda t, path: t.save_pretrained(path),
            AutoTokenizer.from_pretrained,
        )
    else:
        tokenizer = pretrained_tokenizer(source.path, "the checkpoint (pass --tokenizer if it has none)", source.hub)
    if sentence_pairs and getattr(tokenizer, "add_sentence_boundaries", True) is False:
        logger.warning(
            f"the task reads pairs of texts, and this word+character tokenizer ({type(tokenizer).__name__}) puts "
            "nothing between them (add_sentence_boundaries=False): the model reads each pair as one run of words, "
            "without token types to tell where the first text ends (a model trained from scratch here gets a "
            "tokenizer with <S> ... </S> around each text)"
        )
    if tokenizer.pad_token is None:
        raise CommandError("the tokenizer has no padding token; batches cannot be padded (set one and save it again)")
    if need_fast and not tokenizer.is_fast:
        raise CommandError(
            f"the tokenizer ({type(tokenizer).__name__}) is not a fast tokenizer; mapping sub-tokens back to words "
            "needs one (a tokenizer.json)"
        )
    return tokenizer


@dataclass
class PreparedModel:
    """Everything checked and loaded before training starts."""

    source: ModelSource
    model: Any
    tokenizer: Any
    output_dir: Path
    checkpoint: str | None  # the checkpoint --resume continues from


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return {str(k): v for k, v in a.items()} == {str(k): v for k, v in b.items()}
    return a == b


def prepare_model(
    args: argparse.Namespace,
    auto_class,
    task_config: dict[str, Any],
    training_texts: Callable[[], list[str]],
    need_fast_tokenizer: bool = False,
    training_sentences: Callable[[], list[list[str]]] | None = None,
    sentence_pairs: bool = False,
) -> PreparedModel:
    """Check the model options and the output folder, then load or train the tokenizer and build the model.

    The model takes ``task_config``'s labels in the task's order: a checkpoint fine-tuned on the same labels in another
    order has its head reordered to it, one fine-tuned on other labels is warned about (``checkpoint_label_order``).
    --label_smoothing_factor is checked against the task (a regression's refused) before the tokenizer is built.
    Call it after the data has been read and checked; it raises ``CommandError``/``ValueError`` for bad input
    and writes nothing.
    """
    from transformers import AutoConfig, set_seed

    source = resolve_model_source(args, task_config)
    evaluating = not trains(args)  # --do_eval / --do_predict without --do_train: the checkpoint as it is
    if evaluating:
        _check_evaluated_as_is(args, source, task_config)
    check_label_smoothing(args, config=source.config)  # a regression's: before the tokenizer is trained
    if getattr(args, "vocab_size", None) is not None:
        if not source.from_scratch:
            raise CommandError(
                f"--vocab-size sizes the tokenizer built for a model trained from scratch; the checkpoint "
                f"{source.name_or_path!r} comes with its own (or pass --tokenizer)"
            )
        if args.tokenizer:
            raise CommandError("--vocab-size sizes a tokenizer built from the training text, --tokenizer names a "
                               "ready one: pass only one")
        if args.vocab_size < MIN_VOCAB_SIZE:
            raise CommandError(f"--vocab-size must be at least {MIN_VOCAB_SIZE}, got {args.vocab_size}")
    if getattr(args, "word_vectors", None):
        if not source.from_scratch:
            raise CommandError("--word-vectors initialises a model trained from scratch; the checkpoint has its own")
        if not Path(args.word_vectors).is_file():
            raise CommandError(f"--word-vectors {args.word_vectors!r} does not exist or is not a file")
    check_word_dropout(args)
    check_word_vocabulary(args, source)
    # every process checks the folder before the first one writes into it (a distributed run's shared tokenizer)
    output_dir, checkpoint = check_in_turn(lambda: check_output_folder(args))
    if checkpoint is not None:  # the run's own model: check it is the one these options would build
        saved = AutoConfig.from_pretrained(checkpoint, trust_remote_code=source.hub.trust_remote_code)
        for key, value in {**source.overrides, **task_config}.items():
            if not _same(getattr(saved, key, None), value):
                raise CommandError(
                    f"--resume: {checkpoint} was trained with {key}={getattr(saved, key, None)!r}, but these options "
                    f"ask for {key}={value!r}; resume with the options of the first run"
                )
    _check_max_length(args, source.config)
    tokenizer = load_tokenizer(args, source, training_texts, checkpoint, need_fast_tokenizer, training_sentences,
                               sentence_pairs)
    set_seed(args.seed)  # the same initial weights for the same --seed
    dtype = getattr(args, "dtype", "float32")
    if checkpoint is not None:
        model = load_model(auto_class, checkpoint, tokenizer, hub=source.hub, dtype=dtype)
        check_resume_dtype(model, checkpoint)
    elif source.from_scratch:
        model = load_model(auto_class, source.name_or_path, tokenizer, dtype=dtype, **source.overrides,
                           **task_config)
    else:
        mismatched = bool(getattr(args, "ignore_mismatched_sizes", False))
        order = checkpoint_label_order(source, task_config, mismatched)
        try:
            model, loading = load_model(auto_class, source.path, tokenizer, hub=source.hub,
                                        ignore_mismatched_sizes=mismatched, dtype=dtype, loading_info=True,
                                        **source.overrides, **task_config)
        except (OSError, RuntimeError) as err:
            raise CommandError(
                f"cannot load the checkpoint {source.name_or_path!r} for this task: {err} (a checkpoint fine-tuned "
                "for another task may have a head of another size: start from its pretrained checkpoint instead, "
                "or give --ignore_mismatched_sizes to initialise the weights of another shape anew)"
            ) from None
        new_weights = [*loading.get("missing_keys", ()), *(key for key, *_ in loading.get("mismatched_keys", ()))]
        if evaluating and new_weights:
            raise CommandError(
                f"--do_eval / --do_predict without --do_train evaluate the checkpoint as it is, but "
                f"{source.name_or_path!r} has no {type(model).__name__} weights {listing(sorted(new_weights), 3)} "
                "(a checkpoint not fine-tuned for this task: they would be random); give --do_train to fine-tune it"
            )
        if order is not None:  # the task's labels in another order: the head's rows follow the task's order
            reordered = reorder_label_rows(model, order)
            logger.info(
                f"the checkpoint {source.name_or_path!r} was fine-tuned on this task's labels in another order "
                f"({', '.join(source.checkpoint_labels)}); its head ({', '.join(reordered)}) is reordered to the "
                f"task's order ({', '.join(task_labels(task_config))}), predicting what it predicted"
            )
    if getattr(args, "word_vocabulary", "checkpoint") == "train" and checkpoint is None:
        tokenizer, model = with_task_vocabulary(tokenizer, model, training_sentences, args.max_length)
    check_word_dropout(args, tokenizer, model)
    check_label_smoothing(args, model)
    check_neftune(args, model.config.model_type, model)
    if getattr(args, "word_vectors", None) and checkpoint is None:
        load_pretrained_word_vectors(model, tokenizer, args.word_vectors, args.seed)
    return PreparedModel(source, model, tokenizer, output_dir, checkpoint)


def _check_evaluated_as_is(args: argparse.Namespace, source: ModelSource, task_config: dict[str, Any]) -> None:
    """--do_eval / --do_predict without --do_train (``training.trains``) evaluate a checkpoint fine-tuned for the
    task as it is: ``CommandError`` for a model type (a new model, untrained), for a checkpoint fine-tuned on another
    set of labels, and for the options that change a model before training (--word-vocabulary train)."""
    if source.from_scratch:
        raise CommandError(
            f"--do_eval / --do_predict without --do_train evaluate a checkpoint as it is, and "
            f"{source.name_or_path!r} is a model type: a new, untrained model; give --do_train to train it, or a "
            "fine-tuned checkpoint to --model-name-or-path"
        )
    ours, theirs = task_labels(task_config), source.checkpoint_labels
    if ours is not None and theirs is not None and sorted(ours) != sorted(theirs):
        raise CommandError(
            f"--do_eval / --do_predict without --do_train evaluate the checkpoint as it is, but "
            f"{source.name_or_path!r} was fine-tuned with the labels {', '.join(sorted(theirs))}, not this task's "
            f"({', '.join(sorted(ours))}); give --do_train to fine-tune it on this task"
        )
    if getattr(args, "word_vocabulary", "checkpoint") == "train":
        raise CommandError("--word-vocabulary train gives the checkpoint new word rows to train: it needs "
                           "--do_train (without it the checkpoint is evaluated as it is)")


def check_word_vocabulary(args: argparse.Namespace, source: ModelSource) -> None:
    """--word-vocabulary train applies to a checkpoint (a model from scratch already reads the training words)."""
    if getattr(args, "word_vocabulary", "checkpoint") == "train" and source.from_scratch:
        raise CommandError(
            "--word-vocabulary train replaces a checkpoint's word table by one over the training words; a model "
            f"trained from scratch ({source.name_or_path!r}) already has that one"
        )


def with_task_vocabulary(tokenizer, model, training_sentences, max_length: int):
    """(tokenizer, model) whose word vocabulary is the training words (--word-vocabulary train): a word+character
    tokenizer built from ``training_sentences()`` with the checkpoint tokenizer's options, and ``model`` with its word
    table resized to it, the rows of words the checkpoint knew copied from its table (the other rows new). The
    character ids must not depend on the vocabulary (``char_scheme="bilm"``, ELMo's bytes), so that the character
    encoders read the same ids; ``CommandError`` otherwise."""
    if not isinstance(tokenizer, bizoo.WordCharTokenizerFast):
        raise CommandError(
            f"--word-vocabulary train builds a word+character tokenizer from the training words; the checkpoint's "
            f"is a {type(tokenizer).__name__} (sub-words cover any word already)"
        )
    if tokenizer.char_scheme != "bilm":
        raise CommandError(
            f"--word-vocabulary train: the checkpoint's character ids come from its own character vocabulary "
            f"(char_scheme {tokenizer.char_scheme!r}), which a new tokenizer would not keep; it needs bilm-tf's byte "
            "ids (char_scheme 'bilm', ELMo's)"
        )
    table = model.get_input_embeddings()
    if table is None:
        raise CommandError(
            f"--word-vocabulary train: {type(model).__name__} reads no word vectors (ELMo's tagger: "
            "--model-config tagger_word_features=true)"
        )
    import torch

    old_vocab, old_rows = tokenizer.get_vocab(), table.weight.detach().clone()  # (V_old, E)
    new = bizoo.WordCharTokenizerFast.from_words(
        training_sentences(), lowercase=tokenizer.lowercase, digits_to_zero=tokenizer.digits_to_zero,
        char_scheme=tokenizer.char_scheme, max_word_length=tokenizer.max_word_length,
        add_sentence_boundaries=tokenizer.add_sentence_boundaries, model_max_length=max_length,
    )
    # transformers' own resizing: a table of len(new) rows, config.vocab_size with it; every row then drawn as the
    # model draws a new word table, and the rows of the words the checkpoint knew copied from its table
    embedding = model.resize_token_embeddings(len(new), mean_resizing=False)
    known = [(i, old_vocab[word]) for word, i in new.get_vocab().items() if word in old_vocab]
    rows = torch.tensor(known, dtype=torch.long).reshape(-1, 2)  # (K, 2): new id, checkpoint id
    with torch.no_grad():
        embedding.weight.normal_(0.0, model.config.initializer_range)  # (V_new, E)
        if embedding.padding_idx is not None:
            embedding.weight[embedding.padding_idx] = 0.0
        embedding.weight[rows[:, 0]] = old_rows[rows[:, 1]].to(embedding.weight.dtype)
    logger.info(
        f"word vocabulary: {len(new):,} training words; {len(known):,} of them keep the checkpoint's word vectors, "
        f"the other {len(new) - len(known):,} start new"
    )
    return new, model


def load_pretrained_word_vectors(model, tokenizer, path: str, seed: int) -> None:
    """Copy pretrained vectors into the model's input embeddings (``--word-vectors``); ``CommandError`` for a file
    that cannot be read or whose dimension is not the embeddings'."""
    table = model.get_input_embeddings()
    if table is None:  # ELMo's classifiers: the words enter through their characters only
        raise CommandError(f"--word-vectors: {type(model).__name__} reads characters and has no word embeddings")
    embeddings = table.weight  # (V, E)
    try:
        vectors, report = load_word_vectors(
            path, tokenizer.get_vocab(), dim=embeddings.shape[1], seed=seed, padding_idx=tokenizer.pad_token_id
        )
    except (OSError, ValueError) as err:
        raise CommandError(f"--word-vectors {path!r}: {err}") from None
    if vectors.shape[0] > embeddings.shape[0]:
        raise CommandError(f"--word-vectors: {vectors.shape[0]} words but the model embeds {embeddings.shape[0]}")
    import torch

    with torch.no_grad():
        embeddings[: vectors.shape[0]].copy_(vectors.to(embeddings.dtype))
    logger.info(f"word vectors from {path}: {report}")


def _check_max_length(args: argparse.Namespace, config) -> None:
    positions = getattr(config, "max_position_embeddings", None)
    learned = getattr(config, "position_embedding_type", "absolute") == "absolute"
    if learned and positions is not None and args.max_length > positions:
        raise CommandError(
            f"--max-length {args.max_length} is longer than the model's learned positions "
            f"(max_position_embeddings={positions}); use --max-length {positions} or less"
        )


def describe_model(prepared: PreparedModel) -> str:
    model = prepared.model
    count = sum(p.numel() for p in model.parameters())
    start = f"resuming {prepared.checkpoint}" if prepared.checkpoint else prepared.source.describe()
    tokens = len(prepared.tokenizer)
    return f"model: {type(model).__name__}, {count / 1e6:.2f}M parameters ({start}); tokenizer: {tokens:,} tokens"


def run_in_two_phases(prog: str, args: argparse.Namespace, prepare: Callable[[argparse.Namespace], tuple],
                      train_and_report: Callable[..., int]) -> int:
    """Run a fine-tuning command: ``prepare(args)`` checks everything and writes nothing (bad input: ``prog: error:
    ...`` and 2), then ``train_and_report(args, *prepared, started)``, whose errors are real failures and propagate.
    ``started`` is the ``time.perf_counter()`` at the start, for the total wall time."""
    started = time.perf_counter()
    prepared: list[tuple] = []

    def check() -> int:
        prepared.append(prepare(args))
        return 0

    code = run_command(prog, check)
    if code:
        return code
    return train_and_report(args, *prepared[0], started)


# ----------------------------------------------------------------------------------------------------------------
# Training and the final save
# ----------------------------------------------------------------------------------------------------------------


def _ordered_evaluation_trainer():
    """A ``Trainer`` whose evaluation and prediction keep the dataset's order, on one process or several.

    With ``train_sampling_strategy="group_by_length"`` transformers also groups the EVALUATION batches by length
    (one process or several alike), so ``trainer.predict(dataset)`` returns the predictions in another order than
    the examples: matched by position (word predictions, GLUE labels) they would be scored against the wrong
    examples, or fail where a shorter sequence's predictions are read at a longer one's word positions. So the
    evaluation sampler is always the plain order: ``SequentialSampler`` on one process; in a distributed run none,
    as transformers does without grouping, so that accelerate shards the batches in order and
    ``gather_for_metrics`` returns them in the dataset's order, the examples repeated to fill the last batch of
    every process dropped.

    Its ``train_loss`` (``TrainOutput.training_loss``, eval_results.json's) is the mean loss of every process, as
    each logged ``loss`` is: transformers adds the loss of the steps after the last logging step as the process's own
    (with the loss normalised over the tokens of all processes, a share of it, not a mean), so on several processes
    it was the first process's part alone (one process with twice the batch, the same training, said another loss).
    """
    from torch.utils.data import SequentialSampler
    from transformers import Trainer
    from transformers.trainer_pt_utils import nested_gather

    class OrderedEvaluationTrainer(CommandTrainer, Trainer):
        def _get_eval_sampler(self, eval_dataset):
            if eval_dataset is None or not hasattr(eval_dataset, "__len__"):
                return super()._get_eval_sampler(eval_dataset)
            return SequentialSampler(eval_dataset) if self.args.world_size <= 1 else None

        def _finalize_training(self, *args, **kwargs):
            if self.args.world_size > 1 and getattr(self, "_tr_loss", None) is not None:
                # (): the loss summed since the last logging step, each process its own; their mean, as logging takes
                self._tr_loss = nested_gather(self._tr_loss, self.args.parallel_mode).mean()
            return super()._finalize_training(*args, **kwargs)

    return OrderedEvaluationTrainer


def train(args: argparse.Namespace, prepared: PreparedModel, train_dataset, data_collator, eval_dataset=None,
          compute_metrics: Callable[[Any], dict[str, float]] | None = None,
          ignore_keys_for_eval: list[str] | None = None):
    """Train with ``transformers.Trainer`` (checkpoints in the output folder; --resume continues the last one).

    ``eval_dataset`` and ``compute_metrics`` (``EvalPrediction`` -> the task's metrics, by the names
    ``check_best_model_metric`` allows) are the evaluation during training that --eval_strategy asks for, and what
    --load_best_model_at_end / --metric_for_best_model (or --best-checkpoint) select the best checkpoint by; that
    checkpoint's weights are then in ``prepared.model``. ``ignore_keys_for_eval``: the output fields that evaluation
    leaves out of the gathered predictions (the Trainer's argument; ``inference_ignore_keys``). With --word-dropout
    P > 0 the training examples are wrapped in ``WordDropoutExamples`` (``eval_dataset`` never is). With --overwrite
    what a previous run left in the output folder (its checkpoints, weights and results) is removed first, nothing
    else (``clear_previous_run``). ``input_checks_callback`` reads the input checks still in flight at the end of
    training, of each evaluation and of each prediction. Without training (``training.trains``: --do_eval /
    --do_predict without --do_train) the Trainer serves the evaluation and prediction alone: 0 steps, no loss.
    Returns ``(trainer, TrainOutput, seconds)``.
    """
    output_dir = prepared.output_dir
    if args.overwrite:
        clear_previous_run(output_dir, input_paths(args))
    training_args = training_arguments(args, output_dir, prepared.model)
    callbacks = [input_checks_callback()]  # a bad input's error raised by the end of training, evaluation, predict
    if getattr(args, "word_dropout", None):
        tokenizer = prepared.tokenizer
        train_dataset = WordDropoutExamples(train_dataset, tokenizer.unk_token_id, tokenizer.all_special_ids,
                                            args.word_dropout, args.seed)
        callbacks.append(EpochCallback(train_dataset))
        logger.info(f"word dropout: {len(train_dataset.singletons):,} words seen once in training become "
                    f"{tokenizer.unk_token} with probability {args.word_dropout} (characters kept)")
    trainer = _ordered_evaluation_trainer()(
        model=prepared.model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        data_collator=data_collator,
        processing_class=prepared.tokenizer,
        compute_metrics=compute_metrics,
        optimizers=trainer_optimizers(prepared.model, args, training_args),
        callbacks=callbacks,
    )
    if not trains(args):  # --do_eval / --do_predict without --do_train: the checkpoint as it is
        from transformers.trainer_utils import TrainOutput

        logger.info(f"{prepared.source.describe()} is evaluated as it is, without training (--do_eval / "
                    "--do_predict without --do_train, as in run_glue.py)")
        return trainer, TrainOutput(global_step=0, training_loss=None, metrics={}), 0.0
    start = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=prepared.checkpoint, ignore_keys_for_eval=ignore_keys_for_eval)
    seconds = time.perf_counter() - start
    best = trainer.state.best_model_checkpoint
    if training_args.load_best_model_at_end and best is not None:
        logger.info(f"the best checkpoint on the evaluation split is {best} "
                    f"({training_args.metric_for_best_model} {trainer.state.best_metric:.4f}): its weights are kept")
    return trainer, result, seconds


def save_final(prepared: PreparedModel, results: dict[str, Any], log_history: list[dict] | None = None,
               files: dict[str, str] | None = None) -> Path:
    """Save the model, tokenizer, ``eval_results.json``, the Trainer's log (``training_log.json``) and ``files``
    (file name -> text: --do_predict's predictions) into a staging folder beside the output folder, then move them in
    (checkpoints stay). Returns the output folder."""
    output_dir = prepared.output_dir
    with staged_update(output_dir) as staging:
        prepared.model.save_pretrained(str(staging))
        prepared.tokenizer.save_pretrained(str(staging))
        (staging / EVAL_RESULTS_FILE).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        if log_history is not None:
            (staging / TRAINING_LOG_FILE).write_text(json.dumps(log_history, indent=1) + "\n", encoding="utf-8")
        for name, text in (files or {}).items():
            (staging / name).write_text(text, encoding="utf-8")
    return output_dir


def announce_and_push(trainer, prepared: PreparedModel, output_dir: Path, files: Sequence[str] = ()) -> None:
    """The end of a fine-tuning command, after ``save_final`` and ``record_results``: say what was saved where (with
    ``files``, the names of ``save_final``'s other files), and push the folder to the Hub when ``--push_to_hub``
    asked for it (``training.push_final_folder``)."""
    report(f"saved the model, tokenizer, {', '.join([EVAL_RESULTS_FILE, *files])} and {RESULTS_FILE} to "
           f"{output_dir}")
    repo = push_final_folder(trainer, output_dir, prepared.model, prepared.tokenizer)
    if repo is not None:
        report(f"pushed {output_dir} to the Hub repository {repo}")


def run_summary(args: argparse.Namespace, prepared: PreparedModel, train_output, train_seconds: float,
                total_seconds: float, training_args=None) -> dict[str, Any]:
    """The fields every ``eval_results.json`` has besides the task's metrics.

    ``batch_size`` is per process and per step (--batch-size, --per_device_train_batch_size); with the run's
    ``TrainingArguments`` (``trainer.args``) the record also says how many examples one optimizer step reads, as
    transformers' model cards do (``total_train_batch_size``): ``total_batch_size`` = batch_size x
    ``gradient_accumulation_steps`` x ``processes`` (the distributed run's world size), so that a run of 2 processes
    with batch 4 and one of 1 process with batch 8, the same training, record the same total."""
    batches = {}
    if training_args is not None:
        processes = int(training_args.world_size)
        accumulation = int(training_args.gradient_accumulation_steps)
        batches = {"gradient_accumulation_steps": accumulation, "processes": processes,
                   "total_batch_size": int(training_args.per_device_train_batch_size) * accumulation * processes}
    return {
        "model_name_or_path": prepared.source.name_or_path,
        "from_scratch": prepared.source.from_scratch,
        "model_type": getattr(prepared.model.config, "model_type", None),
        "steps": int(train_output.global_step),
        "train_loss": None if train_output.training_loss is None else float(train_output.training_loss),
        "train_seconds": round(train_seconds, 3),
        "total_seconds": round(total_seconds, 3),
        "max_length": args.max_length,
        "batch_size": args.batch_size,
        **batches,
        "learning_rate": args.learning_rate,
        "seed": args.seed,
        **{name: getattr(args, name) for name in ("word_dropout", "best_checkpoint") if hasattr(args, name)},
    }


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table: the first column left-aligned, the others right-aligned; floats with 4 decimals."""

    def cell(value: Any) -> str:
        return f"{value:.4f}" if isinstance(value, float) else str(value)

    cells = [list(map(str, headers))] + [[cell(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        parts = [row[0].ljust(widths[0])] + [text.rjust(width) for text, width in zip(row[1:], widths[1:])]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def format_wall_times(train_seconds: float, total_seconds: float, steps: int) -> str:
    return f"wall time: training {train_seconds:.1f} s, total {total_seconds:.1f} s ({steps} steps)"
