"""The code the commands of ``bizoo.scripts`` share (ARCHITECTURE.md §1). A module here never imports a command
module (``scripts/<command>.py``) nor a developer tool (``bench``, ``gpu_check``); commands import this package, never
each other (``tests/package/test_layout.py``).

Running a command and writing its output:
  command.py         CommandError, run_command (bad input -> exit code 2), command_main, end_process_group;
                     report (a command's results, on stdout) and the log level of a run (--log_level,
                     TRANSFORMERS_VERBOSITY): status lines through each module's logging.getLogger(__name__)
  output_folders.py  output folders written whole or not at all: staged_output_dir, staged_update, move_into,
                     recover_interrupted, atomic_write_text
  results.py         the evaluation results a run stores beside its weights (bizoo_results.json)
  machine.py         cuda_available, cpu_name, machine_name
  (command.py and machine.py import the standard library only, torch inside functions: bench and gpu_check import
  them in child processes that run without the package's __init__)

Training:
  training.py        the options every training command has, TrainingArguments, distributed-run helpers
  models.py          load_model, pretrained_tokenizer, build_wordchar_tokenizer, --model-config and --variant
  model_defaults.py  per model type, what a command picks when training from scratch (variant, presets, ...)
  wordpiece.py       WordPiece tokenizers trained offline
  finetuning.py      what finetune-glue and finetune-ner share: prepare, train, save, report
  masking.py         seeded masking (the masks depend on seed, epoch and example, not on processes or restarts)
  streaming.py       token blocks packed from text files read lazily (pretrain --stream)
  word_vectors.py    pretrained word vectors (GloVe / word2vec text) for the word embeddings

Data and scores:
  data.py            GLUE, CoNLL and plain-text readers; the shipped Shakespeare corpus (scripts/corpus)
  dataset_readers.py any dataset through `datasets` (files, folders, Hub ids): text/token classification, streamed text
  metrics.py         GLUE metrics and span F1

Export:
  remote_code.py     bizoo's code for one model type as flat files for trust_remote_code
  model_card.py      the model card (README.md) of a checkpoint or an export
  msgpack_reader.py  msgpack read as plain data (convert-bigs reads Flax checkpoints with it)
  sources.py         a command's input as a local path or a Hub repository id (snapshot_download, the Hub's cache)
"""
