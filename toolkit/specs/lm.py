"""The language model's model directory: vocabulary (``<eos>``, ``<unk>``, words), tokenizer settings, network.

Other tasks reuse a trained LM (the tagger's LM features, ``model.init_from``): the directory is opened once, by
:func:`toolkit.data.lm.open_lm_directory` (checksums, tokenizer settings, vocabulary: what a data module needs,
without this module's network types), and :func:`reuse_language_model` types its network side here from the same
opened directory (model_config, weights), giving a :class:`PretrainedLM`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from toolkit.artifact import ModelDir
from toolkit.data.lm_text import LMTokenizer, direction_checked
from toolkit.data.vocab import LM_SPECIALS, Vocab
from toolkit.errors import ConfigError, ModelDirError
from toolkit.nn.lm import LMNet, LMNetConfig
from toolkit.specs.base import TaskSpec, is_ensemble, read_json_side_file

if TYPE_CHECKING:
    from pathlib import Path

    from torch import Tensor

    from toolkit.data.lm import LMDirectory  # a DataModule's module (Lightning): never imported here


@dataclass
class LMConfig:
    """meta.json ``model_config`` of a language model."""

    network: LMNetConfig
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

    def build_net(self, config: LMConfig, labels: list[str] | None, **options: Any) -> LMNet:
        return LMNet(config.network, config.vocab_size)

    def read_side_files(self, model_dir: ModelDir, config: LMConfig, tokenizer: LMTokenizer) -> Vocab:
        vocab = read_json_side_file(model_dir, "vocab.json", Vocab.from_json)
        if vocab.specials != LM_SPECIALS or len(vocab) != config.vocab_size:
            raise ModelDirError(f"{model_dir.path}: vocab.json is not this language model's vocabulary (it must start "
                                f"with {list(LM_SPECIALS)} and have the {config.vocab_size} entries meta.json says)")
        return vocab


SPEC = LMSpec()


@dataclass(frozen=True, eq=False)
class PretrainedLM:
    """A language model ready for another task to reuse: its opened directory and its typed ``model_config``."""

    directory: LMDirectory
    """The directory as the data side opened it: checked files, tokenizer settings, vocabulary, loaded weights."""
    config: LMConfig
    """meta.json ``model_config``, typed and checked against the vocabulary."""

    @property
    def path(self) -> Path:
        return self.directory.path

    @property
    def vocab(self) -> Vocab:
        return self.directory.vocab

    @property
    def state_dict(self) -> dict[str, Tensor]:
        """The LM's weights (``embed.*``, ``encoder.*``, ``decoder.*``), as loaded with checksums checked."""
        return self.directory.model_dir.state_dict

    def record(self) -> dict[str, Any]:
        """meta.json ``init_from`` of a model that starts from this LM (the caller adds what it copied)."""
        return {"path": str(self.path), "task": "lm", "sha256": self.directory.sha256,
                "direction": self.config.direction}


def reuse_language_model(directory: LMDirectory, direction: str | None = None) -> PretrainedLM:
    """The network side of an opened LM directory: ``model_config`` typed and validated (as :meth:`LMSpec.open`
    does), its vocabulary size checked, and (when ``direction`` is given) its reading direction.

    Raises:
        ConfigError: naming the setting that gave the directory (``directory.option``) and what to do.
    """
    where = directory.option
    if is_ensemble(directory.model_dir.meta):  # its weights are several networks': none fits one LM's place
        raise ConfigError(f"{where}: {directory.path} is an ensemble of language models (`bilstm ensemble`), whose "
                          "weights do not fit one network; give one of its members")
    try:
        config, _ = SPEC.parse(directory.model_dir.meta, directory.path)
    except ModelDirError as error:
        raise ConfigError(f"{where}: {error}") from None
    if len(directory.vocab) != config.vocab_size:
        raise ConfigError(f"{where}: {directory.path}/vocab.json has {len(directory.vocab)} entries, meta.json's "
                          f"model_config.vocab_size {config.vocab_size}; re-export the language model")
    if direction is not None and config.direction != direction:
        raise ConfigError(f"{where}: {directory.path} is a {config.direction} language model; give one trained "
                          f"with data.direction: {direction}")
    return PretrainedLM(directory, config)
