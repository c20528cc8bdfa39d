"""Word-level input features for taggers: character encoders and locked dropout (tensors in, tensors out)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from toolkit.nn.dropout import LockedDropout
from toolkit.nn.encoder import EncoderConfig, RecurrentEncoder

__all__ = ["CharBiLSTM", "CharCNN", "LockedDropout"]


class CharCNN(nn.Module):
    """Character embeddings → 1-D convolution → max over characters (Ma & Hovy 2016).

    Args:
        num_chars: character vocabulary size (0 = padding).
        char_dim: character embedding size.
        filters: output size (number of convolution filters).
        width: convolution width.
    """

    def __init__(self, num_chars: int, char_dim: int = 30, filters: int = 50, width: int = 3) -> None:
        super().__init__()
        self.embed = nn.Embedding(num_chars, char_dim, padding_idx=0)
        self.conv = nn.Conv1d(char_dim, filters, width, padding=width // 2)
        self.output_size = filters

    def forward(self, chars: Tensor) -> Tensor:
        """``chars [batch, time, max_chars]`` (0 = padding) → ``[batch, time, filters]``."""
        batch, time, length = chars.shape
        flat = chars.reshape(batch * time, length)
        hidden = self.conv(self.embed(flat).transpose(1, 2))  # [N, filters, chars]
        hidden = hidden.masked_fill((flat == 0).unsqueeze(1), float("-inf")).amax(2)
        hidden = hidden.masked_fill(torch.isinf(hidden), 0.0)  # padded word positions have no characters
        return hidden.view(batch, time, -1)


class CharBiLSTM(nn.Module):
    """Character embeddings → BiLSTM; a word is the concatenation of both final states (Lample et al. 2016)."""

    def __init__(self, num_chars: int, char_dim: int = 25, hidden: int = 25) -> None:
        super().__init__()
        self.embed = nn.Embedding(num_chars, char_dim, padding_idx=0)
        self.encoder = RecurrentEncoder(char_dim, EncoderConfig(cell="lstm", hidden_size=hidden))
        self.output_size = 2 * hidden

    def forward(self, chars: Tensor) -> Tensor:
        """``chars [batch, time, max_chars]`` (0 = padding) → ``[batch, time, 2 × hidden]``."""
        batch, time, length = chars.shape
        flat = chars.reshape(batch * time, length)
        lengths = (flat != 0).sum(1)
        words = lengths > 0
        if not words.any():
            return flat.new_zeros(batch, time, self.output_size, dtype=self.embed.weight.dtype)
        used = int(lengths.max())
        final = self.encoder(self.embed(flat[words][:, :used]), lengths[words]).last_hidden[-1]  # [2, N, hidden]
        # the buffer takes the encoder's dtype: under autocast (bf16/fp16) that is not the embedding's
        out = final.new_zeros(batch * time, self.output_size)
        out[words] = torch.cat([final[0], final[1]], dim=-1)
        return out.view(batch, time, -1)
