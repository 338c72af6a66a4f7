r"""Character encoders of word+character taggers, shared by the BiLSTM-CRF and ELMo's tagger.

A word's characters, ``char_ids`` (N, C), become one vector per word. A position is padding where its id is 0 or,
when the encoder is given ``pad_char_id``, that id: the "bilm" character scheme (``tokenization_wordchar.py``) pads
inside a word with 261 (bilm-tf's padding character 260, shifted by one), not 0, so its users pass
``pad_char_id=261``. The other positions are the word's real characters (with "bilm" these include the begin- and
end-of-word markers):

* ``CharCnnEncoder`` (Ma & Hovy 2016): c_w = max over positions t of conv(E_char[c_{t-k} .. c_{t+k}]), the
  convolution's outputs at the real characters only (no activation), with E_char taken as zero outside them (at
  padding as beyond the row's ends); a word without characters gives zeros.
* ``CharLstmEncoder`` (Lample et al. 2016): c_w = [→h at the last character ; ←h at the first] of a BiLSTM over the
  real characters.

Each takes its sizes as arguments (the models name them in their own configs); the modules' parameter names are
those the BiLSTM-CRF's checkpoints hold (``embed``, ``conv``, ``lstm``).
"""

from __future__ import annotations

import torch
from torch import nn

from .heads import pool
from .lstm_layers import BiLstmWeights


def real_characters(char_ids: torch.Tensor, pad_char_id: int | None) -> torch.Tensor:
    """(N, C) bool: the positions that are neither 0 nor ``pad_char_id`` (a word's padding in its scheme)."""
    real = char_ids > 0
    return real if pad_char_id is None else real & (char_ids != pad_char_id)


class CharCnnEncoder(nn.Module):
    r"""Ma & Hovy's character CNN. Shape: char_ids (N, C) -> (N, filters).

    ``pad_char_id``: a character id that is padding inside a word besides 0 (261 for the "bilm" scheme), or None.
    """

    def __init__(self, char_vocab_size: int, embedding_size: int, filters: int, width: int,
                 pad_char_id: int | None = None):
        super().__init__()
        self.pad_char_id = pad_char_id
        self.embed = nn.Embedding(char_vocab_size, embedding_size, padding_idx=0)
        self.conv = nn.Conv1d(embedding_size, filters, width, padding=width // 2)

    def forward(self, char_ids: torch.Tensor) -> torch.Tensor:
        real = real_characters(char_ids, self.pad_char_id)  # (N, C)
        embedded = self.embed(char_ids).masked_fill(~real[..., None], 0.0)  # (N, C, E) zeros at padding
        h = self.conv(embedded.transpose(1, 2)).transpose(1, 2)  # (N, C, F)
        h = h.masked_fill(~real[..., None], float("-inf")).amax(dim=1)  # (N, F)
        return torch.where(real.any(1, keepdim=True), h, torch.zeros_like(h))


class CharLstmEncoder(nn.Module):
    r"""Lample et al.'s character BiLSTM. Shape: char_ids (N, C) -> (N, 2 × lstm_size).

    ``config``: the model's configuration, read at run time for ``kernel_backend`` (the LSTM's schedule).
    ``pad_char_id``: as ``CharCnnEncoder``'s.
    """

    def __init__(self, config, char_vocab_size: int, embedding_size: int, lstm_size: int,
                 pad_char_id: int | None = None):
        super().__init__()
        self.config = config
        self.pad_char_id = pad_char_id
        self.embed = nn.Embedding(char_vocab_size, embedding_size, padding_idx=0)
        self.lstm = BiLstmWeights(embedding_size, lstm_size)

    def forward(self, char_ids: torch.Tensor) -> torch.Tensor:
        real = real_characters(char_ids, self.pad_char_id)  # (N, C)
        out = self.lstm(self.embed(char_ids), real, self.config.kernel_backend)  # (N, C, 2S)
        return pool(out, real, "final_states")  # forward state at the last character, backward at the first
