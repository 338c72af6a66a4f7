r"""Character encoders of word+character taggers, shared by the BiLSTM-CRF and ELMo's tagger.

A word's characters, ``char_ids`` (N, C) with 0 at padding, become one vector per word:

* ``CharCnnEncoder`` (Ma & Hovy 2016): c_w = max over positions t of conv(E_char[c_{t-k} .. c_{t+k}]), the
  convolution's outputs at the real characters only (no activation); a word without characters gives zeros.
* ``CharLstmEncoder`` (Lample et al. 2016): c_w = [→h at the last character ; ←h at the first] of a BiLSTM over the
  characters.

Each takes its sizes as arguments (the models name them in their own configs); the modules' parameter names are
those the BiLSTM-CRF's checkpoints hold (``embed``, ``conv``, ``lstm``).
"""

from __future__ import annotations

import torch
from torch import nn

from .heads import pool
from .lstm_layers import BiLstmWeights


class CharCnnEncoder(nn.Module):
    r"""Ma & Hovy's character CNN. Shape: char_ids (N, C) -> (N, filters)."""

    def __init__(self, char_vocab_size: int, embedding_size: int, filters: int, width: int):
        super().__init__()
        self.embed = nn.Embedding(char_vocab_size, embedding_size, padding_idx=0)
        self.conv = nn.Conv1d(embedding_size, filters, width, padding=width // 2)

    def forward(self, char_ids: torch.Tensor) -> torch.Tensor:
        real = char_ids > 0  # (N, C)
        h = self.conv(self.embed(char_ids).transpose(1, 2)).transpose(1, 2)  # (N, C, F)
        h = h.masked_fill(~real[..., None], float("-inf")).amax(dim=1)  # (N, F)
        return torch.where(real.any(1, keepdim=True), h, torch.zeros_like(h))


class CharLstmEncoder(nn.Module):
    r"""Lample et al.'s character BiLSTM. Shape: char_ids (N, C) -> (N, 2 × lstm_size).

    ``config``: the model's configuration, read at run time for ``kernel_backend`` (the LSTM's schedule).
    """

    def __init__(self, config, char_vocab_size: int, embedding_size: int, lstm_size: int):
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(char_vocab_size, embedding_size, padding_idx=0)
        self.lstm = BiLstmWeights(embedding_size, lstm_size)

    def forward(self, char_ids: torch.Tensor) -> torch.Tensor:
        real = char_ids > 0  # (N, C)
        out = self.lstm(self.embed(char_ids), real, self.config.kernel_backend)  # (N, C, 2S)
        return pool(out, real, "final_states")  # forward state at the last character, backward at the first
