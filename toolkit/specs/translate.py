"""The translator's model directory: subword tokenizer file(s), their settings, the network and its search
defaults."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from toolkit.artifact import ModelDir
from toolkit.data.subword import BOS_ID, EOS_ID, PAD_ID, BitextTokenizer, SubwordTokenizer
from toolkit.errors import ModelDirError
from toolkit.nn.beam import DecodingConfig
from toolkit.nn.seq2seq import TranslateNet, TranslateNetConfig
from toolkit.specs.base import TaskSpec, read_json_side_file


@dataclass
class SpecialIds:
    """Ids of the special target tokens (fixed in every tokenizer the toolkit trains: toolkit.data.subword)."""

    pad: int = PAD_ID
    bos: int = BOS_ID
    eos: int = EOS_ID


@dataclass
class TranslateConfig:
    """meta.json ``model_config`` of a translator."""

    network: TranslateNetConfig
    source_vocab_size: int
    target_vocab_size: int
    decoding: DecodingConfig = field(default_factory=DecodingConfig)
    """The search the model was saved with (the Predictor can override beam size and length penalty)."""
    special_ids: SpecialIds = field(default_factory=SpecialIds)


class TranslateSpec(TaskSpec[TranslateConfig, BitextTokenizer]):
    """``tokenizer.json`` (or ``source_tokenizer.json`` + ``target_tokenizer.json``), ``tokenizer`` =
    :class:`BitextTokenizer`, no labels."""

    task = "translate"
    config_type = TranslateConfig
    tokenizer_type = BitextTokenizer

    def side_files(self, tokenizer: BitextTokenizer) -> tuple[str, ...]:
        return tuple(dict.fromkeys((tokenizer.files["source"], tokenizer.files["target"])))

    def build_net(self, config: TranslateConfig, labels: list[str] | None, **options: Any) -> TranslateNet:
        special = config.special_ids
        return TranslateNet(config.network, config.source_vocab_size, config.target_vocab_size, bos=special.bos,
                          eos=special.eos, banned=(special.pad, special.bos))

    def read_side_files(self, model_dir: ModelDir, config: TranslateConfig,
                        tokenizer: BitextTokenizer) -> tuple[SubwordTokenizer, SubwordTokenizer]:
        """``(source, target)`` subword tokenizers; the same object for a joint vocabulary."""
        source = read_json_side_file(model_dir, tokenizer.files["source"], SubwordTokenizer.from_json)
        target = source if tokenizer.files["target"] == tokenizer.files["source"] else read_json_side_file(
            model_dir, tokenizer.files["target"], SubwordTokenizer.from_json)
        if (source.vocab_size, target.vocab_size) != (config.source_vocab_size, config.target_vocab_size):
            raise ModelDirError(f"{model_dir.path}: tokenizer vocabularies do not match the sizes in meta.json")
        return source, target


SPEC = TranslateSpec()
