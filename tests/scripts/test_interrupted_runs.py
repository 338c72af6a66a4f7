"""Runs stopped after a checkpoint and resumed, and runs repeated: a resumed run ends as the uninterrupted one (the
same weights, every logged step, the same scores), whatever epoch the checkpoint was saved in.

* --group-by-length (the BiLSTM-CRF's and ELMo's preset for fine-tuning): the grouped order of each epoch is drawn
  from (seed, epoch) alone (``lib.trainer_mixins.SeededLengthGrouping``), not from torch's global generator, which a run
  resumed in a later epoch reaches in another state than the uninterrupted run did.
* --resume_from_checkpoint names a folder the Trainer can continue from (its trainer_state.json): a run's final
  folder, or ``True`` (``Trainer.train``'s argument for the newest checkpoint), is refused before anything is
  written, with what to pass instead.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from bizoo.scripts import finetune_glue, finetune_ner
from bizoo.scripts.lib.trainer_mixins import EpochLengthGroupedSampler
from tests.scripts.conftest import call, max_weight_difference
from tests.tiny_configs import TINY_CONFIGS

# the tiny BiLSTM-CRF with dropout on, so that a step that draws other masks shows
BILSTM = ["--model-config", *(f"{key}={json.dumps(value)}" for key, value in TINY_CONFIGS["bilstm_crf"].items()),
          "embedding_dropout=0.3", "hidden_dropout_prob=0.3"]


def ner_argv(conll_dir: Path, output: Path, *extra) -> list:
    """3 epochs of 5 steps, a checkpoint every 3 steps (all kept); the preset's --group-by-length and word dropout."""
    return ["--model-name-or-path", "bilstm_crf", "--data-dir", conll_dir, "--output-dir", output, *BILSTM,
            "--batch-size", "8", "--epochs", "3", "--max-length", "32", "--logging-steps", "1", "--save-steps", "3",
            "--save_total_limit", "10", "--seed", "3", *extra]


def steps_logged(output: Path) -> list[dict]:
    """The training log entries of the last checkpoint's ``trainer_state.json``."""
    last = max(output.glob("checkpoint-*"), key=lambda path: int(path.name.split("-")[1]))
    return [entry for entry in json.loads((last / "trainer_state.json").read_text())["log_history"] if "loss" in entry]


@pytest.mark.parametrize("step", [6, 12])  # in the second and third epochs (5 steps each)
def test_a_bilstm_crf_resumed_in_a_later_epoch_ends_as_the_uninterrupted_run(conll_dir, tmp_path, step):
    """The preset groups the training batches by length. transformers' LengthGroupedSampler drew each epoch's order
    from torch's global generator, which an uninterrupted run reaches after the dropout draws of the epochs before
    and a resumed run does not: from the resumed epoch on, other batches and other weights."""
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    assert call(finetune_ner.main, ner_argv(conll_dir, whole)) == 0
    resumed.mkdir()
    shutil.copytree(whole / f"checkpoint-{step}", resumed / f"checkpoint-{step}")
    assert call(finetune_ner.main, ner_argv(conll_dir, resumed, "--resume")) == 0
    assert steps_logged(resumed) == steps_logged(whole)  # every step's loss, gradient norm and learning rate
    assert max_weight_difference(whole, resumed) == 0
    scores = [json.loads((folder / "eval_results.json").read_text())["metrics"] for folder in (whole, resumed)]
    assert scores[0] == scores[1]
    assert (whole / "tokenizer.json").read_text() == (resumed / "tokenizer.json").read_text()


def test_the_grouped_order_of_an_epoch_depends_on_the_seed_and_the_epoch_alone():
    lengths = [3, 9, 4, 7, 1, 8, 2, 6, 5, 10, 11, 12]
    sampler = EpochLengthGroupedSampler(batch_size=2, lengths=lengths, seed=5)
    orders = {}
    for epoch in (0, 1, 0):
        torch.manual_seed(epoch + 100)  # the global generator in another state each time
        sampler.set_epoch(epoch)
        orders.setdefault(epoch, []).append(list(sampler))
    assert orders[0][0] == orders[0][1] and sorted(orders[0][0]) == list(range(len(lengths)))
    assert orders[1][0] != orders[0][0]  # a new order every epoch
    assert len(sampler) == len(lengths)


def glue_argv(glue_dir: Path, output: Path, *extra) -> list:
    return ["--model-name-or-path", "lion", "--task", "sst2", "--data-dir", glue_dir, "--output-dir", output,
            "--model-config", "hidden_size=32", "num_hidden_layers=1", "num_attention_heads=4",
            "intermediate_size=64", "--max-steps", "2", "--batch-size", "4", "--max-length", "32", *extra]


def test_resume_from_a_final_folder_is_refused_naming_its_newest_checkpoint(glue_dir, tmp_path, capsys):
    """A run's final folder has the weights and no trainer_state.json: the command loaded the model, made the output
    folder, and then failed with the Trainer's FileNotFoundError (exit code 1, a traceback)."""
    first, output = tmp_path / "first", tmp_path / "second"
    assert call(finetune_glue.main, glue_argv(glue_dir, first, "--save-steps", "1")) == 0
    capsys.readouterr()
    assert call(finetune_glue.main, glue_argv(glue_dir, output, "--resume_from_checkpoint", first)) == 2
    err = capsys.readouterr().err
    assert f"--resume_from_checkpoint {str(first)!r} is not a checkpoint folder: it holds no trainer_state.json" in err
    assert f"the newest checkpoint in it is {str(first / 'checkpoint-2')!r}" in err
    assert not output.exists()
    assert call(finetune_glue.main, glue_argv(glue_dir, output, "--resume_from_checkpoint", first / "checkpoint-1",
                                              "--save-steps", "1")) == 0
    assert steps_logged(output) == steps_logged(first)


def test_resume_from_checkpoint_true_points_to_resume(glue_dir, tmp_path, capsys):
    assert call(finetune_glue.main, glue_argv(glue_dir, tmp_path / "out", "--resume_from_checkpoint", "True")) == 2
    assert ("--resume_from_checkpoint 'True' is not a checkpoint folder (to continue from the newest checkpoint of "
            "--output-dir, pass --resume)") in capsys.readouterr().err


def test_a_finished_run_resumed_takes_no_step_past_max_steps(glue_dir, tmp_path, capsys):
    """Resuming a run that has trained its --max-steps trained one more step (the Trainer checks the budget after a
    step), wrote checkpoint-3 and, at a constant learning rate, changed the weights. Now it trains nothing, says so,
    and records no train_loss for the call (the Trainer's would be 0)."""
    from bizoo.scripts.lib.finetuning import _ordered_evaluation_trainer
    from bizoo.scripts.lib.token_count import TokenCountingTrainer
    from bizoo.scripts.lib.trainer_mixins import ResumedRun

    assert issubclass(TokenCountingTrainer, ResumedRun)  # pretrain's Trainer
    assert issubclass(_ordered_evaluation_trainer(), ResumedRun)  # the fine-tuning commands'
    output, finished = tmp_path / "run", tmp_path / "finished"
    argv = glue_argv(glue_dir, output, "--lr_scheduler_type", "constant", "--warmup-ratio", "0")
    assert call(finetune_glue.main, argv) == 0
    shutil.copytree(output, finished)
    capsys.readouterr()
    assert call(finetune_glue.main, [*argv, "--resume"]) == 0
    assert f"{output / 'checkpoint-2'} has trained 2 steps and --max-steps is 2: nothing is left to train" in (
        capsys.readouterr().err)
    assert [path.name for path in output.glob("checkpoint-*")] == ["checkpoint-2"]
    assert max_weight_difference(finished, output) == 0
    results = json.loads((output / "eval_results.json").read_text())
    assert results["steps"] == 2 and results["train_loss"] is None
    assert results["metrics"] == json.loads((finished / "eval_results.json").read_text())["metrics"]


def test_a_resumed_checkpoint_reports_missing_only_the_weights_it_really_lacks(tokenizer, make_config):
    """A masked-LM checkpoint saves the tied decoder once (as the word embeddings): the Trainer warned at every resume
    that 'lm_head.decoder.weight' was missing. Here the Trainer's report is stood in for; a weight of its own that
    a checkpoint lacks still warns."""
    from torch.nn.modules.module import _IncompatibleKeys

    from bizoo import LionForMaskedLM
    from bizoo.scripts.lib.trainer_mixins import ResumedRun

    reported = []

    class Report:  # the Trainer's _issue_warnings_after_load: what it is handed
        def _issue_warnings_after_load(self, load_result):
            reported.append(list(load_result.missing_keys))

    class Resumed(ResumedRun, Report):
        model = LionForMaskedLM(make_config(("lion", "s"), vocab_size=len(tokenizer)))

    state = {k: v for k, v in Resumed.model.state_dict().items() if k != "lm_head.decoder.weight"}  # as saved
    assert Resumed.model.lm_head.decoder.weight is Resumed.model.lion.embeddings.word_embeddings.weight
    Resumed()._issue_warnings_after_load(Resumed.model.load_state_dict(state, strict=False))
    del state["lm_head.dense.weight"]  # a weight the checkpoint really lacks
    Resumed()._issue_warnings_after_load(Resumed.model.load_state_dict(state, strict=False))
    Resumed()._issue_warnings_after_load(_IncompatibleKeys([], []))
    assert reported == [[], ["lm_head.dense.weight"], []]


def test_a_resumed_epoch_of_several_processes_reads_its_own_grouped_order():
    """A run of two processes resumed inside epoch 1: the Trainer hands the epoch to a loader wrapped by accelerate
    (shard) and, for the skip, wrapped again; its ``set_epoch`` calls stop one wrapper short of the sampler, which
    then read epoch 0's order (the batches of another epoch). ``SeededLengthGrouping`` sets the epoch where the
    epoch's pass starts. Here the Trainer's pass is stood in for: what ``_run_epoch`` reads, under the two wrappers."""
    from accelerate.data_loader import prepare_data_loader, skip_first_batches
    from torch.utils.data import DataLoader

    from bizoo.scripts.lib.trainer_mixins import SeededLengthGrouping

    lengths = [1 + (7 * i) % 13 for i in range(16)]

    def loader(sampler):  # process 0 of 2, as accelerate prepares it
        plain = DataLoader(list(range(16)), batch_size=2, sampler=sampler)
        return prepare_data_loader(plain, num_processes=2, process_index=0, put_on_device=False)

    class Pass:  # what the Trainer's _run_epoch does with the loader: its set_epoch calls, then iterate
        def _run_epoch(self, model=None, epoch=0, train_dataloader=None, **rest):
            train_dataloader.set_epoch(epoch)
            inner = getattr(train_dataloader.batch_sampler, "batch_sampler", None)
            if hasattr(inner, "set_epoch"):
                inner.set_epoch(epoch)
            return [batch.tolist() for batch in train_dataloader]

    class Grouped(SeededLengthGrouping, Pass):
        pass

    whole = Pass()._run_epoch(epoch=1, train_dataloader=loader(EpochLengthGroupedSampler(2, lengths, 5)))
    trainer = Grouped()
    trainer.grouped_sampler = EpochLengthGroupedSampler(2, lengths, 5)
    resumed = trainer._run_epoch(model=None, epoch=1,
                                 train_dataloader=skip_first_batches(loader(trainer.grouped_sampler), 1))
    assert resumed == whole[1:]


def test_a_checkpoint_path_with_a_tilde_is_the_home_folders(tmp_path, monkeypatch):
    """``--resume_from_checkpoint=~/...`` (after ``=`` the shell leaves the ``~``) names a folder under the home
    folder, for the check and for the Trainer."""
    import argparse

    from bizoo.scripts.lib.training import check_resume_from_checkpoint, resume_checkpoint

    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "run" / "checkpoint-3").mkdir(parents=True)
    (tmp_path / "run" / "checkpoint-3" / "trainer_state.json").write_text("{}")
    check_resume_from_checkpoint("~/run/checkpoint-3")
    args = argparse.Namespace(resume_from_checkpoint="~/run/checkpoint-3", resume=False)
    assert resume_checkpoint(args, tmp_path / "out") == str(tmp_path / "run" / "checkpoint-3")


def test_the_trainer_still_calls_the_private_methods_the_mixins_override():
    """``SeededLengthGrouping`` sets the epoch in ``Trainer._run_epoch`` (a private method): a transformers release
    that renamed it, or stopped passing ``epoch=``, would leave the override unused and resumed runs of several
    processes on epoch 0's order, silently; so would ``ResumedRun``'s overrides go unused."""
    import inspect

    from transformers import Trainer

    assert "epoch" in inspect.signature(Trainer._run_epoch).parameters
    loop = inspect.getsource(Trainer._inner_training_loop)
    assert "self._run_epoch(" in loop and "epoch=epoch" in loop
    # ResumedRun's: the budget read in _run_epoch (the checkpoint passed by name), the loss of this call's steps in
    # _finalize_training, the load report of a resumed checkpoint
    assert "resume_from_checkpoint=resume_from_checkpoint" in loop and "self._initial_global_step =" in loop
    assert "return self._finalize_training(" in loop
    assert "self._issue_warnings_after_load(load_result)" in inspect.getsource(Trainer._load_from_checkpoint)
