"""The command line's per-model defaults (scripts/lib/model_defaults.py): every entry fits the model type it names,
and the commands take their defaults from that table (nothing is read from the model registry)."""

from __future__ import annotations

import argparse
import inspect

import pytest

import bizoo
from bizoo.scripts import finetune_glue, finetune_ner, pretrain
from bizoo.scripts.lib.model_defaults import MODEL_DEFAULTS, NO_DEFAULTS, ModelDefaults, model_defaults
from bizoo.scripts.lib.models import build_wordchar_tokenizer, config_fields, variant_fields
from bizoo.scripts.lib.training import MODEL_DEFAULT_OPTIONS, resolve_training_defaults

TRAINING_COMMANDS = {"finetune-glue": finetune_glue, "finetune-ner": finetune_ner}


def parsed(command, *argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=f"bizoo {command}")
    TRAINING_COMMANDS[command].add_arguments(parser)
    return parser.parse_args(list(argv))


def task_of(command: str) -> str:
    """The task whose presets a training command reads (``add_training_arguments(task=...)``)."""
    parser = argparse.ArgumentParser()
    TRAINING_COMMANDS[command].add_arguments(parser)
    return parser.get_default("_task")


@pytest.mark.parametrize("model_type", sorted(MODEL_DEFAULTS))
def test_each_entry_fits_its_registered_model_type(model_type):
    """The entry names a registered model type; its default variant is one of the spec's named variants; tokenizer
    options go to a word+character model's ``from_words``; presets name a training command's task and options of
    ``MODEL_DEFAULT_OPTIONS``; pretrain's config names fields of the config class, which accepts them."""
    assert model_type in bizoo.MODEL_SPECS, f"{model_type!r} is not a registered model type"
    spec, defaults = bizoo.get_spec(model_type), MODEL_DEFAULTS[model_type]
    assert defaults.default_variant is None or defaults.default_variant in spec.variants
    if defaults.tokenizer_options:
        assert spec.tokenizer == "wordchar"
        allowed = set(inspect.signature(bizoo.WordCharTokenizerFast.from_words).parameters)
        assert set(defaults.tokenizer_options) <= allowed - {"max_vocab_size", "model_max_length"}
    tasks = {task_of(command) for command in TRAINING_COMMANDS}
    tasks |= set(finetune_ner.TASKS)  # finetune-ner's --task picks the preset of the task it names
    for task, preset in defaults.training_defaults.items():
        assert task in tasks and set(preset) <= set(MODEL_DEFAULT_OPTIONS), (task, sorted(preset))
    if defaults.pretrain_config is not None:
        assert set(defaults.pretrain_config) <= config_fields(spec.config_class)
        spec.config_class(vocab_size=100, **defaults.pretrain_config)


def test_a_model_type_without_an_entry_gets_no_defaults(monkeypatch):
    """A registered model type missing from the table (one another package registers) builds with the commands' own
    defaults: no variant, pretrain's small model, the command's training options."""
    assert model_defaults("not_a_model_type") is NO_DEFAULTS == ModelDefaults()
    monkeypatch.delitem(MODEL_DEFAULTS, "lion")
    spec = bizoo.get_spec("lion")
    assert variant_fields(spec, None) == {}
    fields = pretrain.model_config_kwargs(argparse.Namespace(model_config=[], max_length=64, variant=None), spec)
    assert fields == {**pretrain.SMALL_MODEL, "max_position_embeddings": 64}


def test_the_commands_read_their_defaults_from_the_table(monkeypatch):
    """Changing an entry changes what pretrain builds, the variant a from-scratch run takes, the presets of a
    training command and the word+character tokenizer a command builds; a checkpoint gets no preset."""
    monkeypatch.setitem(MODEL_DEFAULTS, "lion", ModelDefaults(
        default_variant="d", pretrain_config=dict(hidden_size=48, num_attention_heads=2),
        training_defaults={"glue": dict(epochs=7.0, learning_rate=3e-3)},
    ))
    monkeypatch.setitem(MODEL_DEFAULTS, "elmo", ModelDefaults(tokenizer_options=dict(lowercase=True)))
    lion = bizoo.get_spec("lion")
    fields = pretrain.model_config_kwargs(argparse.Namespace(model_config=[], max_length=64, variant=None), lion)
    assert fields == dict(hidden_size=48, num_attention_heads=2, max_position_embeddings=64, lion_variant="d")

    args = parsed("finetune-glue", "--model-name-or-path", "lion", "--task", "sst2", "--data-dir", "x",
                  "--output-dir", "out")
    assert resolve_training_defaults(args) == dict(epochs=7.0, learning_rate=3e-3)
    assert (args.epochs, args.learning_rate, args.batch_size) == (7.0, 3e-3, 32)  # the command's own batch size
    args = parsed("finetune-ner", "--model-name-or-path", "lion", "--data-dir", "x", "--output-dir", "out")
    assert resolve_training_defaults(args) == {}  # no preset for this task
    args = parsed("finetune-glue", "--model-name-or-path", "some/checkpoint", "--task", "sst2", "--data-dir", "x",
                  "--output-dir", "out")
    assert resolve_training_defaults(args) == {}

    tokenizer = build_wordchar_tokenizer(bizoo.get_spec("elmo"), ["The King", "the queen"])
    assert tokenizer.tokenize("The KING") == ["the", "king"]  # lowercased; the table dropped bilm's <S> ... </S>
