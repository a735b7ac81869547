"""Characters: what a word's subwords do not show, read by a small convolutional network of each word.

With ``--model.chars true`` every word's characters (``data.encoding.word_chars``: case kept, the first and last
eight of a long word) are embedded, convolved and max-pooled into one vector, which a linear layer maps to the
encoder's hidden size and adds to the last hidden state of each of the word's subwords, before the heads (as
UDPipe 2 joins its character-level word embeddings to the contextual ones). The linear layer starts at zero, so
training starts from the encoder exactly. Added to the input embeddings instead, it held the encoder back
(docs/experiments.md, "A character-level encoder").
"""

from __future__ import annotations

import torch
from torch import nn

from nasty_lightning.formats.model_dir import CHAR_IDS


class CharEncoder(nn.Module):
    """(rows, width, characters) character ids, 0 where none, to (rows, width, hidden) vectors, 0 where a position
    has no characters (special tokens, padding)."""

    def __init__(self, hidden_size: int, dim: int = 48, filters: int = 192, width: int = 3) -> None:
        super().__init__()
        self.embedding = nn.Embedding(CHAR_IDS, dim, padding_idx=0)
        self.conv = nn.Conv1d(dim, filters, width, padding=width // 2)
        self.out = nn.Linear(filters, hidden_size)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, chars: torch.Tensor) -> torch.Tensor:
        rows, width, n = chars.shape
        flat = chars.reshape(-1, n)
        present = flat > 0
        features = torch.relu(self.conv(self.embedding(flat).transpose(1, 2)))  # (positions, filters, n)
        pooled = features.masked_fill(~present[:, None, :], 0).amax(-1)  # ReLU: 0 is below every feature
        return (self.out(pooled) * present.any(-1, keepdim=True)).view(rows, width, -1)
