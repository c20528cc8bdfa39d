"""Jozefowicz et al. (2015)'s two synthetic character tasks, generated on the fly (benchmarks/cell_comparison.py).

* **Arith.**: read ``a+b=`` or ``a-b=`` (each number 1–``digits`` digits, either sign) with a random number of
  distractor symbols ``#`` after each input character, then emit the result and ``.``. Scored on the result
  characters only; a problem counts as solved when every result character is the model's top prediction given the
  ones before it (teacher forcing), which is exactly when greedy decoding would print the right answer.
* **XML**: a stream of nested tags ``<name>…</name>`` whose names are 2–``max_name`` lowercase letters; at each step
  a new tag opens with probability ``open_p`` (while shallower than ``max_depth``), else the innermost one closes.
  Scored on next-character accuracy over every position, as in the paper (only closing tags are predictable, hence
  its accuracies well below 1).

Every sequence is ``(ids [length], scored [length] bool)``: ``scored[t]`` marks positions whose *next* character is
scored; sequences start with ``^`` so that the first character is predicted too.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch
from torch import Tensor

ALPHABET = "^.#+-=0123456789<>/abcdefghijklmnopqrstuvwxyz"
CHAR_ID = {char: index + 1 for index, char in enumerate(ALPHABET)}  # 0 is padding
VOCAB_SIZE = len(ALPHABET) + 1


@dataclass(frozen=True)
class ArithConfig:
    digits: int = 3
    """Most digits per number."""
    max_distractors: int = 2
    """Up to this many ``#`` after each input character (uniform 0…max)."""


@dataclass(frozen=True)
class XmlConfig:
    length: int = 96
    """Characters per sequence (the stream is cut there)."""
    max_name: int = 6
    max_depth: int = 6
    open_p: float = 0.5


def _number(rng: random.Random, digits: int) -> int:
    value = rng.randint(1, 10 ** rng.randint(1, digits) - 1)
    return value if rng.random() < 0.5 else -value


def arith_example(rng: random.Random, config: ArithConfig) -> tuple[str, int]:
    """``(text, answer_start)``: the whole sequence and the index of the first result character."""
    a, b = _number(rng, config.digits), _number(rng, config.digits)
    operator = rng.choice("+-")
    result = a + b if operator == "+" else a - b
    reads = f"{a}{operator}{b}"
    # No distractor after "=": the result must start right after it, or its first character is unguessable.
    text = "^" + "".join(char + "#" * rng.randint(0, config.max_distractors) for char in reads) + "="
    return text + f"{result}.", len(text)


def xml_example(rng: random.Random, config: XmlConfig) -> str:
    """One ``^``-started stream of nested tags, exactly ``config.length`` characters after the ``^``."""
    text, stack = [], []
    size = 0
    while size < config.length:
        if not stack or (len(stack) < config.max_depth and rng.random() < config.open_p):
            name = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, config.max_name)))
            stack.append(name)
            piece = f"<{name}>"
        else:
            piece = f"</{stack.pop()}>"
        text.append(piece)
        size += len(piece)
    return "^" + "".join(text)[: config.length]


def encode(text: str, first_scored: int) -> tuple[Tensor, Tensor]:
    """``(ids [len], scored [len])`` where ``scored[t]`` says the character at ``t + 1`` is scored."""
    ids = torch.tensor([CHAR_ID[char] for char in text])
    scored = torch.zeros(len(text), dtype=torch.bool)
    scored[first_scored - 1 : len(text) - 1] = True
    return ids, scored


def make_examples(task: str, count: int, seed: int, arith: ArithConfig | None = None,
                  xml: XmlConfig | None = None) -> list[tuple[Tensor, Tensor]]:
    """``count`` encoded sequences of ``task`` (``arith`` or ``xml``) from a seeded generator."""
    rng = random.Random(seed)
    examples = []
    for _ in range(count):
        if task == "arith":
            text, start = arith_example(rng, arith or ArithConfig())
            examples.append(encode(text, start))
        elif task == "xml":
            examples.append(encode(xml_example(rng, xml or XmlConfig()), 1))
        else:
            raise ValueError(f"unknown task {task!r}; choose arith or xml")
    return examples


def collate(examples: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Right-pad a batch: ``(inputs [B, T], targets [B, T], scored [B, T], lengths [B])`` with ``T = max len - 1``."""
    lengths = torch.tensor([len(ids) - 1 for ids, _ in examples])
    width = int(lengths.max())
    inputs = torch.zeros(len(examples), width, dtype=torch.long)
    targets = torch.zeros_like(inputs)
    scored = torch.zeros(len(examples), width, dtype=torch.bool)
    for row, (ids, marks) in enumerate(examples):
        inputs[row, : len(ids) - 1] = ids[:-1]
        targets[row, : len(ids) - 1] = ids[1:]
        scored[row, : len(ids) - 1] = marks[:-1]
    return inputs, targets, scored, lengths
