"""The tagger's model directory: word and character vocabularies, feature settings, tag set, network (and the
files of a transformer whose features it reads)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

from toolkit.artifact import ModelDir
from toolkit.data.casing import CASINGS
from toolkit.data.tag_features import FeatureSettings, lm_vocab_file
from toolkit.data.tagschemes import SCHEMES, allowed_transitions
from toolkit.data.vocab import Vocab
from toolkit.errors import ConfigError, ModelDirError
from toolkit.nn.tagger import TagNet, TagNetConfig
from toolkit.specs.base import TaskSpec, differs, read_json_side_file
from toolkit.specs.lm import LMConfig

LM_DIRECTIONS = ("forward", "backward")

TRANSFORMER_FOLDER = "transformer"


@dataclass
class TagConfig:
    """meta.json ``model_config`` of a tagger."""

    network: TagNetConfig
    vocab_size: int
    num_chars: int
    scheme: str
    """The tag scheme the network is trained and decodes in (``labels`` are its tags)."""
    input_scheme: str
    """The scheme of the training data, in which tags are read and written."""
    transformer: bool = False
    """Whether the network reads transformer features (their files are in ``transformer/``)."""
    lm_forward: LMConfig | None = None
    """The frozen forward LM whose states are word features (its vocabulary: ``lm_forward_vocab.json``)."""
    lm_backward: LMConfig | None = None
    """The frozen backward LM (``lm_backward_vocab.json``)."""

    def language_models(self) -> dict[str, LMConfig]:
        """``{direction: LM config}`` of the LM features, forward first."""
        return {direction: lm for direction in LM_DIRECTIONS
                if (lm := getattr(self, f"lm_{direction}")) is not None}

    def validate(self) -> None:
        for name, scheme in (("scheme", self.scheme), ("input_scheme", self.input_scheme)):
            if scheme not in SCHEMES:
                raise ConfigError(f"{name} must be one of {SCHEMES}, got {scheme!r}")
        for direction, lm in self.language_models().items():
            lm.validate()
            if lm.direction != direction:
                raise ConfigError(f"lm_{direction} is a {lm.direction} language model")


class TagFiles(NamedTuple):
    """A tagger's side files, loaded."""

    words: Vocab
    chars: Vocab
    transformer: str | None
    """The folder of the transformer's files (every one listed in meta.json), or None."""
    lm_vocabs: dict[str, Vocab]
    """``{direction: vocabulary}`` of the LM features' language models (empty without them)."""


class TagSpec(TaskSpec[TagConfig, FeatureSettings]):
    """``vocab.json`` (words), ``chars.json`` (characters), ``tokenizer`` = :class:`FeatureSettings`, ``labels`` =
    the tags in ``scheme``; with transformer features, the transformer's config and tokenizer in ``transformer/``;
    with LM features, each LM's vocabulary in ``lm_{direction}_vocab.json`` (its weights are the network's)."""

    task = "tag"
    config_type = TagConfig
    tokenizer_type = FeatureSettings

    def side_files(self, tokenizer: FeatureSettings) -> tuple[str, ...]:
        return ("vocab.json", "chars.json", *(lm_vocab_file(direction) for direction in tokenizer.lm_directions))

    def build_net(self, config: TagConfig, labels: list[str] | None, *, transformer_path: str | None = None,
                  load_transformer_weights: bool = False, **options: Any) -> TagNet:
        tags = list(labels or [])
        language_models = {direction: (lm.network, lm.vocab_size)
                           for direction, lm in config.language_models().items()}
        return TagNet(config.network, config.vocab_size, config.num_chars, len(tags),
                                 allowed_transitions(tags, config.scheme), transformer_path,
                                 load_transformer_weights=load_transformer_weights, num_casings=len(CASINGS),
                                 language_models=language_models)

    def ensemble_config(self, members: Sequence[TagConfig]) -> TagConfig:
        """The shared fields (as every task's), one decoder for all (a CRF ensemble averages transitions, a softmax
        one probabilities: they do not mix), and the character features the most demanding member reads: the
        predictor featurises characters if any member reads them, and ONNX export sees a character BiLSTM if any
        member has one. The result describes no network of its own (:meth:`load_net` builds the members')."""
        first = super().ensemble_config(members)
        for position, member in enumerate(members[1:], start=2):
            if member.network.decoder != first.network.decoder:
                raise differs("decoders (a CRF ensemble averages transition scores, a softmax one probabilities)",
                              1, position, first.network.decoder, member.network.decoder)
        chars = next((kind for kind in ("lstm", "cnn") if any(m.network.chars == kind for m in members)), "none")
        return replace(first, network=replace(first.network, chars=chars))

    def read_side_files(self, model_dir: ModelDir, config: TagConfig, tokenizer: FeatureSettings) -> TagFiles:
        """The word and character vocabularies, and the transformer's folder if it has one."""
        words = read_json_side_file(model_dir, "vocab.json", Vocab.from_json)
        chars = read_json_side_file(model_dir, "chars.json", Vocab.from_json)
        if (len(words), len(chars)) != (config.vocab_size, config.num_chars):
            raise ModelDirError(f"{model_dir.path}: vocab.json/chars.json do not match the sizes in meta.json")
        try:
            allowed_transitions(list(model_dir.meta.labels or []), config.scheme)
        except ValueError as error:
            raise ModelDirError(f"{model_dir.path}: the tag set in meta.json is not valid ({error})") from None
        transformer = str(model_dir.folder(TRANSFORMER_FOLDER)) if config.transformer else None
        lms = config.language_models()
        if sorted(lms) != sorted(tokenizer.lm_directions):
            raise ModelDirError(f"{model_dir.path}: meta.json's tokenizer.lm_directions {tokenizer.lm_directions} do "
                                f"not match the LM features of model_config {sorted(lms)}; re-export the model")
        lm_vocabs = {}
        for direction, lm in lms.items():
            vocab = read_json_side_file(model_dir, lm_vocab_file(direction), Vocab.from_json)
            if len(vocab) != lm.vocab_size:
                raise ModelDirError(f"{model_dir.path}: {lm_vocab_file(direction)} has {len(vocab)} entries, "
                                    f"meta.json's lm_{direction} {lm.vocab_size}")
            lm_vocabs[direction] = vocab
        return TagFiles(words, chars, transformer, lm_vocabs)


SPEC = TagSpec()
