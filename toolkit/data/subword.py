"""Subword vocabularies (BPE or unigram) trained with Hugging Face ``tokenizers`` on training data only.

Text is NFKC-normalised, split on whitespace the SentencePiece way (a word-initial ``▁`` marks where a
space was) and at punctuation, then cut into subwords. Because every space is kept in the tokens,
decoding is exact: ``decode(encode(text)) == " ".join(text.split())`` for characters the vocabulary
knows: printable ASCII and Latin-1 letters always, anything else seen in training (other characters
become ``<unk>`` and vanish from decoded text).

The first four ids are fixed in every tokenizer this module trains (and checked when one is loaded):
``<pad>`` 0, ``<unk>`` 1, ``<s>`` 2, ``</s>`` 3. The trained tokenizer is saved as its JSON inside the
model directory (``tokenizer.json``, or ``source_tokenizer.json`` + ``target_tokenizer.json`` when the
two languages have separate vocabularies).
"""

from __future__ import annotations

import json
import string
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field

from toolkit.data.textrules import blank_controls
from toolkit.errors import ConfigError, ModelDirError

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<s>", "</s>"
SPECIAL_TOKENS = (PAD, UNK, BOS, EOS)
PAD_ID, UNK_ID, BOS_ID, EOS_ID = range(4)
SUBWORD_MODELS = ("bpe", "unigram")
# Always in the vocabulary, seen in training or not, so common characters never decode to nothing:
# printable ASCII and the Latin-1 letters (German umlauts and ß, French and Spanish accents).
BASE_ALPHABET = sorted(set(string.ascii_letters + string.digits + string.punctuation)
                       | {chr(c) for c in range(0xC0, 0x100) if chr(c).isalpha()})


@dataclass(frozen=True)
class SubwordSettings:
    """How the subword vocabulary is trained; stored in meta.json next to the tokenizer files."""

    model: str = "bpe"
    """``bpe`` (byte-pair encoding merges) or ``unigram`` (SentencePiece-style unigram language model)."""
    vocab_size: int = 8000
    """Target vocabulary size, special tokens included (per side when ``joint`` is false)."""
    joint: bool = True
    """One vocabulary for source and target (needed for ``share_embeddings``)."""
    min_frequency: int = 2
    """BPE: a merge must occur at least this often."""
    lowercase: bool = False
    """Lower-case text before splitting (the output is then lower-case too)."""

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the bad option."""
        if self.model not in SUBWORD_MODELS:
            raise ConfigError(f"subword model must be one of {SUBWORD_MODELS}, got {self.model!r}")
        if self.vocab_size < len(SPECIAL_TOKENS) + 16:
            raise ConfigError(f"vocab_size {self.vocab_size} is too small; use at least {len(SPECIAL_TOKENS) + 16}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class BitextTokenizer:
    """How a translator's text becomes subword ids: meta.json ``tokenizer`` of a translation model."""

    kind: str = "subword"
    """Always ``subword`` (the tokenizer files are Hugging Face ``tokenizers`` JSON)."""
    model: str = "bpe"
    """``bpe`` or ``unigram`` (see :class:`SubwordSettings`)."""
    vocab_size: int = 8000
    joint: bool = True
    min_frequency: int = 2
    lowercase: bool = False
    files: dict[str, str] = field(default_factory=lambda: {"source": "tokenizer.json", "target": "tokenizer.json"})
    """The tokenizer file of each side (the same file when ``joint``)."""
    source_lang: str = "de"
    target_lang: str = "en"

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the bad field."""
        SubwordSettings(self.model, self.vocab_size, self.joint, self.min_frequency, self.lowercase).validate()
        if set(self.files) != {"source", "target"}:
            raise ConfigError(f"tokenizer files must name a 'source' and a 'target' file, got {sorted(self.files)}")

    def to_dict(self) -> dict:
        return asdict(self)


class SubwordTokenizer:
    """A trained ``tokenizers.Tokenizer`` with the fixed special ids; text ↔ ids, batched."""

    def __init__(self, tokenizer) -> None:  # a tokenizers.Tokenizer
        for expected, token in enumerate(SPECIAL_TOKENS):
            if tokenizer.token_to_id(token) != expected:
                found = tokenizer.token_to_id(token)
                raise ModelDirError(f"tokenizer maps {token!r} to id {found}, expected {expected}")
        self.tokenizer = tokenizer

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Texts → subword ids (no ``<s>``/``</s>``; a text of unknown characters only gives ``[<unk>]``).

        Control characters are read as spaces, as everywhere in the toolkit (``toolkit.data.textrules``).
        """
        texts = [blank_controls(text) for text in texts]
        return [encoding.ids or [UNK_ID] for encoding in self.tokenizer.encode_batch(texts)]

    def decode(self, sequences: Sequence[Sequence[int]]) -> list[str]:
        """Subword ids → detokenised texts (special tokens dropped)."""
        return self.tokenizer.decode_batch([list(ids) for ids in sequences], skip_special_tokens=True)

    def tokens(self, ids: Sequence[int]) -> list[str]:
        """The subword strings of ``ids`` (for attention plots)."""
        return [self.tokenizer.id_to_token(i) for i in ids]

    def to_json(self) -> dict:
        """The tokenizer as a JSON object (``tokenizers``' own format)."""
        return json.loads(self.tokenizer.to_str())

    @classmethod
    def from_json(cls, data: dict) -> SubwordTokenizer:
        from tokenizers import Tokenizer

        try:
            return cls(Tokenizer.from_str(json.dumps(data)))
        except Exception as error:  # tokenizers raises a plain Exception on a malformed file
            if isinstance(error, ModelDirError):
                raise
            raise ModelDirError(f"tokenizer file cannot be read by `tokenizers`: {error}") from None


def train_subword(texts: Iterable[str], settings: SubwordSettings, length: int | None = None) -> SubwordTokenizer:
    """Train a subword tokenizer on ``texts`` (deterministic for the same texts and settings).

    Args:
        texts: training sentences (only training data: the dev/test sets must stay unseen).
        settings: model kind, size, lower-casing.
        length: number of texts, for the trainer's bookkeeping (optional).
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    settings.validate()
    if settings.model == "bpe":
        tokenizer = Tokenizer(models.BPE(unk_token=UNK))
        trainer = trainers.BpeTrainer(vocab_size=settings.vocab_size, min_frequency=settings.min_frequency,
                                      special_tokens=list(SPECIAL_TOKENS), initial_alphabet=BASE_ALPHABET,
                                      show_progress=False)
    else:
        tokenizer = Tokenizer(models.Unigram())
        trainer = trainers.UnigramTrainer(vocab_size=settings.vocab_size, special_tokens=list(SPECIAL_TOKENS),
                                          unk_token=UNK, initial_alphabet=BASE_ALPHABET, show_progress=False)
    steps = [normalizers.NFKC()] + ([normalizers.Lowercase()] if settings.lowercase else [])
    tokenizer.normalizer = normalizers.Sequence(steps)
    # Metaspace keeps every space as "▁" inside the tokens, so splitting at punctuation afterwards
    # still decodes exactly ("house." → "▁house" "." → "house.").
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Metaspace(), pre_tokenizers.Punctuation()])
    tokenizer.decoder = decoders.Metaspace()
    tokenizer.train_from_iterator((blank_controls(text) for text in texts), trainer, length=length)
    return SubwordTokenizer(tokenizer)
