"""The language model's model directory: vocabulary (``<eos>``, ``<unk>``, words), tokenizer settings, network."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from toolkit.artifact import ModelDir
from toolkit.data.lm_text import LMTokenizer, direction_checked
from toolkit.data.vocab import LM_SPECIALS, Vocab
from toolkit.errors import ModelDirError
from toolkit.nn.lm import LanguageModelConfig, LanguageModelNet
from toolkit.specs.base import TaskSpec, read_json_side_file


@dataclass
class LMConfig:
    """meta.json ``model_config`` of a language model."""

    network: LanguageModelConfig
    vocab_size: int
    direction: str = "forward"
    """``forward``, or ``backward``: the model reads (and generates) right to left."""

    def validate(self) -> None:
        direction_checked(self.direction)


class LMSpec(TaskSpec[LMConfig, LMTokenizer]):
    """``vocab.json`` (``<eos>`` 0, ``<unk>`` 1, then the corpus' types: exactly the softmax), ``tokenizer`` =
    :class:`LMTokenizer`, no labels."""

    task = "lm"
    config_type = LMConfig
    tokenizer_type = LMTokenizer

    def side_files(self, tokenizer: LMTokenizer) -> tuple[str, ...]:
        return ("vocab.json",)

    def build_net(self, config: LMConfig, labels: list[str] | None, **options: Any) -> LanguageModelNet:
        return LanguageModelNet(config.network, config.vocab_size)

    def read_side_files(self, model_dir: ModelDir, config: LMConfig, tokenizer: LMTokenizer) -> Vocab:
        vocab = read_json_side_file(model_dir, "vocab.json", Vocab.from_json)
        if vocab.specials != LM_SPECIALS or len(vocab) != config.vocab_size:
            raise ModelDirError(f"{model_dir.path}: vocab.json is not this language model's vocabulary (it must start "
                                f"with {list(LM_SPECIALS)} and have the {config.vocab_size} entries meta.json says)")
        return vocab


SPEC = LMSpec()
