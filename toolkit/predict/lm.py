"""Language model predictor: per-text perplexity and token log-probabilities, sampling, corpus perplexity.

Each text is scored on its own, from ``<eos>`` as the start symbol: forward, ``<eos> w1 … wn`` predicts
``w1 … wn <eos>`` (a backward model reads the text reversed). ``evaluate`` reads a whole file as one stream, the
way the model was trained and the way the literature reports perplexity (PTB: every line then ``<eos>``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path
from typing import Any

import torch

from toolkit.data.batching import pad_ids, sorted_batches
from toolkit.data.lm_text import TextToTokens, read_lines, token_stream
from toolkit.data.textrules import SURROGATE, excerpt
from toolkit.data.vocab import Vocab
from toolkit.errors import InputError
from toolkit.limits import MAX_NEW_TOKENS, MAX_PROMPT_TOKENS, MAX_TEMPERATURE, SEED_RANGE
from toolkit.metrics import perplexity_scores
from toolkit.predict.base import TaskPredictor
from toolkit.specs.base import Opened


@dataclass(frozen=True)
class LMScore:
    """A text's perplexity under the model, and each token's log-probability (natural log, ``<eos>`` last)."""

    perplexity: float
    log_likelihood: float
    tokens: list[str]
    """The tokens scored, in the model's reading order, ending with ``<eos>``."""
    token_log_probs: list[float]
    input_truncated: bool = False
    """The text was over the length limit and only its start was scored (``truncate=True``)."""

    def to_dict(self) -> dict:
        """JSON-able form; ``input_truncated`` only appears when true."""
        result: dict[str, Any] = {"perplexity": self.perplexity, "log_likelihood": self.log_likelihood,
                                  "tokens": self.tokens, "token_log_probs": self.token_log_probs}
        if self.input_truncated:
            result["input_truncated"] = True
        return result


@dataclass(frozen=True)
class Generation:
    """A continuation sampled after a prompt."""

    prompt: str
    text: str
    """The generated tokens only, joined (spaces between words; characters as they are)."""
    tokens: list[str]
    stopped: str
    """``eos`` (the model ended the text) or ``max_tokens`` (cut at the limit)."""
    full_text: str
    """Prompt and continuation in reading order (a backward model's continuation comes before the prompt)."""

    def to_dict(self) -> dict:
        return {"prompt": self.prompt, "text": self.text, "tokens": self.tokens, "stopped": self.stopped,
                "full_text": self.full_text}


@dataclass(frozen=True)
class Sampling:
    """How the next token is drawn."""

    max_tokens: int = 50
    temperature: float = 1.0
    """Divides the scores before the softmax; 0 = always the most likely token (greedy)."""
    top_k: int = 0
    """Keep only the ``top_k`` most likely tokens (0 = all)."""
    top_p: float = 1.0
    """Keep the smallest set of most likely tokens whose probability reaches ``top_p`` (nucleus sampling)."""
    seed: int | None = None
    """Seeds the sampler (``SEED_RANGE``: unsigned 64-bit); None draws a fresh seed."""

    def validate(self) -> None:
        """Raise InputError naming the first field out of range. Every value that passes is served: a temperature
        or top_p so small that it underflows samples the most likely token (see :func:`sample_next`)."""
        if not _is_int(self.max_tokens) or not 1 <= self.max_tokens <= MAX_NEW_TOKENS:
            raise InputError(f"max_tokens must be an integer in 1..{MAX_NEW_TOKENS}, got {self.max_tokens!r}")
        if not (_is_number(self.temperature) and 0 <= self.temperature <= MAX_TEMPERATURE):
            raise InputError(f"temperature must be a number in [0, {MAX_TEMPERATURE:g}] (0 = greedy), "
                             f"got {self.temperature!r}")
        if not _is_int(self.top_k) or self.top_k < 0:
            raise InputError(f"top_k must be an integer >= 0 (0 = no limit), got {self.top_k!r}")
        if not (_is_number(self.top_p) and 0 < self.top_p <= 1):
            raise InputError(f"top_p must be in (0, 1], got {self.top_p!r}")
        low, high = SEED_RANGE
        if self.seed is not None and not (_is_int(self.seed) and low <= self.seed <= high):
            raise InputError(f"seed must be an integer in {low}..{high} (unsigned 64-bit) or absent, got {self.seed!r}")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def filter_scores(log_probs: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """``[batch, vocab]`` log-probabilities with everything outside top-k / the top-p nucleus set to -inf.

    The most likely token always stays: a ``top_p`` below float32's smallest number (``1e-320`` as a float64) would
    otherwise compare as 0 and drop every token, leaving nothing to sample.
    """
    if top_k and top_k < log_probs.size(-1):
        kth = log_probs.topk(top_k, dim=-1).values[:, -1:]
        log_probs = log_probs.masked_fill(log_probs < kth, float("-inf"))
    if top_p < 1.0:
        ordered, order = log_probs.sort(dim=-1, descending=True)
        mass_before = ordered.softmax(-1).cumsum(-1) - ordered.softmax(-1)
        drop = mass_before >= top_p  # keep each token until the mass before it reaches top_p
        drop[:, 0] = False
        log_probs = log_probs.masked_fill(drop.scatter(1, order, drop), float("-inf"))
    return log_probs


def sample_next(scores: torch.Tensor, temperature: float, generator: torch.Generator) -> torch.Tensor:
    """One token id per row of ``[batch, vocab]`` filtered log-probabilities (``-inf`` = excluded): ``[batch]``.

    The scores are shifted so that each row's best is 0, then divided by the temperature in float64 (a float32
    tensor would round ``1e-300`` to 0 and divide 0 by 0): the best token's weight is exp(0) = 1 at every
    temperature, so a temperature small enough to overflow the division gives ``-inf`` for the others and
    samples the most likely token, instead of rows of NaN that ``torch.multinomial`` refuses. Temperature 0
    is greedy by definition.
    """
    if temperature == 0:
        return scores.argmax(-1)
    best = scores.max(dim=-1, keepdim=True).values
    weights = ((scores - best).double() / temperature).softmax(-1)
    return torch.multinomial(weights, 1, generator=generator)[:, 0]


class LMPredictor(TaskPredictor):
    """Scores texts (``predict`` = :meth:`score`), samples continuations, measures corpus perplexity."""

    task = "lm"

    def __init__(self, opened: Opened, device: torch.device) -> None:
        super().__init__(opened, device)
        self.vocab: Vocab = opened.side
        self.tokenize = TextToTokens(opened.tokenizer)
        self.backward = opened.config.direction == "backward"
        self.eos = self.vocab.index["<eos>"]
        self.net = opened.spec.load_net(opened.model_dir, opened.config).to(device)

    def use_onnx(self, int8: bool, threads: int) -> None:
        """The network from ONNX Runtime (``model.onnx``): scoring, perplexity and sampling drive it unchanged."""
        from toolkit.predict.onnx_backend import OnnxLanguageModelNet

        torch_net = self.net
        super().use_onnx(int8, threads)
        self.net = OnnxLanguageModelNet(self.net, torch_net)

    def _ids(self, tokens: list[str]) -> list[int]:
        return self.vocab.encode(tokens[::-1] if self.backward else tokens)

    @torch.inference_mode()
    def score(self, texts: Sequence[str], batch_size: int = 32) -> list[LMScore]:
        """Each text's perplexity and per-token log-probabilities, in input order."""
        read, cut = self.model_texts(texts)
        ids = [self._ids(tokens) for tokens in self.tokenize(read)]
        results: list[LMScore | None] = [None] * len(read)
        for _, batch in sorted_batches(list(range(len(ids))), [len(row) + 1 for row in ids], batch_size):
            inputs, lengths = pad_ids([[self.eos, *ids[i]] for i in batch], self.eos)
            targets, _ = pad_ids([[*ids[i], self.eos] for i in batch], self.eos)
            output = self.net(inputs.to(self.device), lengths=lengths.to(self.device))
            log_probs = torch.log_softmax(self.net.logits(output.hidden).float(), dim=-1)
            chosen = log_probs.gather(2, targets.to(self.device).unsqueeze(2)).squeeze(2).cpu()
            for row, index in enumerate(batch):
                values = chosen[row, : len(ids[index]) + 1].tolist()
                total = sum(values)
                tokens = self.vocab.decode([*ids[index], self.eos])
                results[index] = LMScore(round(math.exp(-total / len(values)), 4), round(total, 4), tokens,
                                         [round(value, 5) for value in values], cut[index])
        return results

    def predict(self, texts: Sequence[str], batch_size: int = 32) -> list[LMScore]:
        """The same as :meth:`score` (what the batch job, the HTTP ``/score`` route and spaCy call)."""
        return self.score(texts, batch_size)

    def _prompt_ids(self, position: int, prompt: object) -> list[int]:
        if not isinstance(prompt, str):
            raise InputError(f"prompt {position} is a {type(prompt).__name__}, not a string")
        if SURROGATE.search(prompt):
            raise InputError(f"prompt {position} {excerpt(prompt)} contains an unpaired UTF-16 surrogate; send "
                             "valid Unicode text")
        tokens = self.tokenize([prompt])[0] if prompt.strip() else []
        if len(tokens) > MAX_PROMPT_TOKENS:
            raise InputError(f"prompt {position} has {len(tokens)} tokens, over the limit of {MAX_PROMPT_TOKENS}; "
                             "give the last part of it")
        return [self.eos, *self._ids(tokens)]

    @torch.inference_mode()
    def generate(self, prompts: Sequence[str], max_tokens: int = 50, temperature: float = 1.0, top_k: int = 0,
                 top_p: float = 1.0, seed: int | None = None, batch_size: int = 32) -> list[Generation]:
        """Sample a continuation of each prompt (an empty prompt starts a text from scratch).

        A backward model continues to the left: its continuation comes first in reading order.
        """
        if isinstance(prompts, str):
            raise InputError("generate() takes a list of prompts, not a single string; wrap it: generate([prompt])")
        sampling = Sampling(max_tokens, temperature, top_k, top_p, seed)
        sampling.validate()
        ids = [self._prompt_ids(position, prompt) for position, prompt in enumerate(prompts)]
        generator = torch.Generator(device="cpu")
        if seed is not None:
            generator.manual_seed(seed)
        else:
            generator.seed()
        results: list[Generation | None] = [None] * len(ids)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        for _, same_length in groupby(order, key=lambda i: len(ids[i])):  # one exact state per prompt length
            group = list(same_length)
            for start in range(0, len(group), batch_size):
                batch = group[start : start + batch_size]
                for index, new in zip(batch, self._sample([ids[i] for i in batch], sampling, generator), strict=True):
                    results[index] = self._generation(prompts[index], new, sampling.max_tokens)
        return results

    def _sample(self, prompts: list[list[int]], sampling: Sampling, generator: torch.Generator) -> list[list[int]]:
        """Token ids sampled after same-length prompts, each up to ``<eos>`` (included) or ``max_tokens``."""
        output = self.net(torch.tensor(prompts, device=self.device))
        state = output.state
        log_probs = torch.log_softmax(self.net.logits(output.hidden[:, -1]).float(), dim=-1)
        generated: list[list[int]] = [[] for _ in prompts]
        live = list(range(len(prompts)))
        for _ in range(sampling.max_tokens):
            scores = filter_scores(log_probs, sampling.top_k, sampling.top_p).cpu()
            chosen = sample_next(scores, sampling.temperature, generator)
            keep = []
            for row, token in enumerate(chosen.tolist()):
                generated[live[row]].append(token)
                if token != self.eos:
                    keep.append(row)
            if not keep:
                break
            rows = torch.tensor(keep, device=self.device)
            live = [live[row] for row in keep]
            state = tuple(part.index_select(1, rows) for part in state)
            log_probs, state = self.net.step(chosen.to(self.device).index_select(0, rows), state)
        return generated

    def _generation(self, prompt: str, new: list[int], max_tokens: int) -> Generation:
        stopped = "eos" if new and new[-1] == self.eos else "max_tokens"
        tokens = self.vocab.decode(new[:-1] if stopped == "eos" else new)
        if self.backward:
            tokens = tokens[::-1]
        joiner = "" if self.tokenize.settings.level == "char" else " "
        text = joiner.join(tokens)
        parts = (text, prompt) if self.backward else (prompt, text)
        return Generation(prompt, text, tokens, stopped, joiner.join(part for part in parts if part))

    @torch.inference_mode()
    def evaluate(self, data_file: str | Path, batch_size: int = 10, text_field: str = "text", bptt: int = 70,
                 **_: Any) -> dict[str, Any]:
        """Corpus perplexity of a .txt/.jsonl file read as one stream (every line, then ``<eos>``), in
        ``batch_size`` columns read ``bptt`` tokens at a time with the state carried: how PTB figures are made.
        Every token is scored, ``<eos>`` included (PTB valid: 73,760 tokens), none dropped."""
        texts = [text for _, text in read_lines(data_file, text_field)]
        if not texts:
            raise InputError(f"{data_file} has no text to score")
        # <eos> first, as the start symbol, so that every token of the file is predicted and counted.
        stream = [self.eos, *self.vocab.encode(token_stream(self.tokenize(texts), self.backward))]
        columns = max(1, min(batch_size, len(stream) // 2))
        width = math.ceil(len(stream) / columns)
        rows = [stream[start : start + width + 1] for start in range(0, len(stream), width)]
        nll, tokens, state = 0.0, 0, None
        data, lengths = pad_ids(rows, self.eos)
        for start in range(0, data.size(1) - 1, bptt):
            window = data[:, start : start + bptt + 1]
            usable = (lengths - 1 - start).clamp(min=0, max=window.size(1) - 1)  # targets each row still has
            output = self.net(window[:, :-1].to(self.device), state)
            state = output.state
            log_probs = torch.log_softmax(self.net.logits(output.hidden).float(), dim=-1).cpu()
            chosen = log_probs.gather(2, window[:, 1:].unsqueeze(2)).squeeze(2)
            mask = torch.arange(chosen.size(1)).unsqueeze(0) < usable.unsqueeze(1)
            nll -= float(chosen[mask].sum())
            tokens += int(mask.sum())
        return {**perplexity_scores(nll, tokens), "lines": len(texts), "columns": columns,
                "direction": "backward" if self.backward else "forward"}
