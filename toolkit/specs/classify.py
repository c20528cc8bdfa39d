"""The text classifier's model directory: vocabulary, tokenizer settings, label set, network."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from toolkit.artifact import ModelDir
from toolkit.data.tokenize import TokenizerSettings
from toolkit.data.vocab import Vocab
from toolkit.errors import ModelDirError
from toolkit.nn.classifier import ClassifyNet, ClassifyNetConfig
from toolkit.specs.base import TaskSpec, read_json_side_file


@dataclass
class ClassifyConfig:
    """meta.json ``model_config`` of a classifier."""

    network: ClassifyNetConfig
    vocab_size: int
    num_labels: int


class ClassifySpec(TaskSpec[ClassifyConfig, TokenizerSettings]):
    """``vocab.json`` (token → id, index order), ``tokenizer`` = :class:`TokenizerSettings`, ``labels`` = classes."""

    task = "classify"
    config_type = ClassifyConfig
    tokenizer_type = TokenizerSettings

    def side_files(self, tokenizer: TokenizerSettings) -> tuple[str, ...]:
        return ("vocab.json",)

    def build_net(self, config: ClassifyConfig, labels: list[str] | None, **options: Any) -> ClassifyNet:
        return ClassifyNet(config.network, config.vocab_size, config.num_labels)

    def read_side_files(self, model_dir: ModelDir, config: ClassifyConfig, tokenizer: TokenizerSettings) -> Vocab:
        """The vocabulary (``vocab.json``)."""
        vocab = read_json_side_file(model_dir, "vocab.json", Vocab.from_json)
        if len(vocab) != config.vocab_size or len(model_dir.meta.labels or []) != config.num_labels:
            raise ModelDirError(f"{model_dir.path}: vocab.json/labels do not match the sizes in meta.json")
        return vocab


SPEC = ClassifySpec()
