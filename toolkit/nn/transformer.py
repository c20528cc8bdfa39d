"""Word features from a local Hugging Face transformer: subwords → hidden states → one vector per word."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from toolkit.errors import ConfigError

POOLINGS = ("first", "mean")


@dataclass
class TransformerFeaturesConfig:
    """How transformer hidden states become word features (the model itself is chosen by the data)."""

    pooling: str = "first"
    """Subword → word pooling: ``first`` subword or ``mean`` of the word's subwords."""
    layers: int = 1
    """Average of the last N hidden layers (1 = the last layer only)."""
    fine_tune: bool = False
    """Train the transformer's weights too (otherwise frozen and always in eval mode)."""


class TransformerWordFeatures(nn.Module):
    """Runs a transformer over subwords and pools its states per word.

    Args:
        path: local HF model directory (``config.json``, weights unless ``load_weights`` is False).
        config: pooling, layers, fine-tuning.
        load_weights: load pretrained weights (training) or only build the architecture (the Predictor
            then loads every weight from the model directory's safetensors file).
    """

    def __init__(self, path: str, config: TransformerFeaturesConfig, load_weights: bool = True) -> None:
        super().__init__()
        from transformers import AutoConfig, AutoModel

        if config.pooling not in POOLINGS:
            raise ValueError(f"transformer pooling must be one of {POOLINGS}, got {config.pooling!r}")
        self.config = config
        if load_weights:  # float32 whatever the checkpoint stores: the rest of the tagger is float32
            try:  # safetensors only: a pytorch_model.bin is a pickle and is never loaded
                self.model = AutoModel.from_pretrained(path, dtype=torch.float32, use_safetensors=True)
            except OSError as error:
                raise ConfigError(f"transformer {path}: no loadable model.safetensors ({error}); convert the "
                                 "weights to safetensors (save_pretrained does by default)") from None
        else:
            self.model = AutoModel.from_config(AutoConfig.from_pretrained(path))
        self.output_size = self.model.config.hidden_size
        self.max_positions = getattr(self.model.config, "max_position_embeddings", 512)
        if not config.fine_tune:
            self.model.requires_grad_(False)
            self.model.eval()

    def train(self, mode: bool = True) -> TransformerWordFeatures:
        super().train(mode)
        if not self.config.fine_tune:
            self.model.eval()  # a frozen transformer never uses dropout
        return self

    def _hidden_states(self, subwords: Tensor, mask: Tensor) -> Tensor:
        outputs = self.model(input_ids=subwords, attention_mask=mask.long(),
                             output_hidden_states=self.config.layers > 1)
        if self.config.layers == 1:
            return outputs.last_hidden_state
        return torch.stack(outputs.hidden_states[-self.config.layers:]).mean(0)

    def forward(self, subwords: Tensor, mask: Tensor, subword_words: Tensor, num_words: int) -> Tensor:
        """Word features.

        Args:
            subwords: ``[B, S]`` subword ids (with the tokenizer's special tokens).
            mask: ``[B, S]`` bool, True at real subwords.
            subword_words: ``[B, S]`` index of the word each subword belongs to (-1: special/padding).
            num_words: T, the padded number of words.

        Returns:
            ``[B, T, hidden]``; words longer than the model's positions are handled window by window.
        """
        window = self.max_positions
        with torch.set_grad_enabled(self.config.fine_tune and torch.is_grad_enabled()):
            if subwords.size(1) <= window:
                states = self._hidden_states(subwords, mask)
            else:  # longer than the model allows: encode independent windows rather than fail
                states = torch.cat([self._hidden_states(subwords[:, s:s + window], mask[:, s:s + window])
                                    for s in range(0, subwords.size(1), window)], dim=1)
        batch, _, hidden = states.shape
        index = subword_words.clamp(min=-1)
        if self.config.pooling == "first":
            previous = torch.cat([index.new_full((batch, 1), -2), index[:, :-1]], dim=1)
            use = (index >= 0) & (index != previous)
        else:
            use = index >= 0
        slot = torch.where(use, index, torch.full_like(index, num_words))  # unused subwords go to a dummy slot
        pooled = states.new_zeros(batch, num_words + 1, hidden).scatter_add_(
            1, slot.unsqueeze(-1).expand(-1, -1, hidden), states)
        counts = states.new_zeros(batch, num_words + 1).scatter_add_(1, slot, use.to(states.dtype))
        return (pooled / counts.clamp(min=1).unsqueeze(-1))[:, :num_words]
