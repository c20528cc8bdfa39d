"""Recurrent cells beyond torch's fused kernels: the LSTM ablations, MUT1–3 and SRU, one layer each.

Equations (x_t input, h_t state, ⊙ elementwise, σ the logistic function; Jozefowicz et al. 2015, Lei et al. 2018)::

    lstm_f   the LSTM with its forget gate fixed to 1:  c_t = c_{t-1} + i ⊙ g
    lstm_i   the LSTM with its input gate fixed to 1:   c_t = f ⊙ c_{t-1} + g
    lstm_o   the LSTM with its output gate fixed to 1:  h_t = tanh(c_t)
    mut1     z = σ(W_xz x + b_z)
             r = σ(W_xr x + W_hr h + b_r)
             h' = tanh(W_hh (r ⊙ h) + tanh(x̃) + b_h) ⊙ z + h ⊙ (1 − z)
    mut2     z = σ(W_xz x + W_hz h + b_z)
             r = σ(x̃ + W_hr h + b_r)
             h' = tanh(W_hh (r ⊙ h) + W_xh x + b_h) ⊙ z + h ⊙ (1 − z)
    mut3     z = σ(W_xz x + W_hz tanh(h) + b_z)
             r = σ(W_xr x + W_hr h + b_r)
             h' = tanh(W_hh (r ⊙ h) + W_xh x + b_h) ⊙ z + h ⊙ (1 − z)
    sru      f = σ(W_f x + v_f ⊙ c + b_f);  r = σ(W_r x + v_r ⊙ c + b_r)
             c' = f ⊙ c + (1 − f) ⊙ (W x);   h = r ⊙ c' + (1 − r) ⊙ x̃

``x̃`` is x itself when the input size equals the hidden size, else a learned projection ``P x`` (no bias): MUT1's
tanh(x) and MUT2's x inside r, and SRU's highway term, need the hidden size. The ``lstm`` and ``gru`` kinds here
are the plain cells in the same code, used to check this implementation against ``nn.LSTM``/``nn.GRU``.

Speed: every input projection, for all time steps, is one matrix product before the loop; the loop holds only the
recurrent products and the elementwise gates (SRU's loop is elementwise only), each step ``torch.compile``d while
training and the whole loop TorchScript for inference (:func:`use_loop_backend`; the steps are in
:mod:`toolkit.nn.cell_steps`). Parameter names follow
``nn.LSTM`` (``weight_ih_l0``, ``weight_hh_l0``, ``bias_ih_l0``, ``bias_hh_l0``, gate blocks stacked in rows), so the
encoder's initialisation and DropConnect apply unchanged.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from toolkit.nn.cell_steps import STEPS, chunk_loop, chunked, scripted_loop, stepwise

GATES = {"lstm": 4, "lstm_f": 3, "lstm_i": 3, "lstm_o": 3, "gru": 3, "mut1": 2, "mut2": 2, "mut3": 3, "sru": 3}
"""Blocks of ``hidden_size`` rows in ``weight_ih`` per cell (the recurrent matrix ``weight_hh`` has its own count)."""
RECURRENT_BLOCKS = {"lstm": 4, "lstm_f": 3, "lstm_i": 3, "lstm_o": 3, "gru": 3, "mut1": 2, "mut2": 3, "mut3": 3,
                    "sru": 0}
LSTM_KINDS = ("lstm", "lstm_f", "lstm_i", "lstm_o")
X_TILDE_CELLS = ("mut1", "mut2", "sru")
"""Cells that add x itself to a hidden-sized vector (through a projection when the sizes differ)."""
SCRIPTED_CELLS = ("lstm_f", "lstm_i", "lstm_o", "mut1", "mut2", "mut3", "sru")
"""The cells an encoder config may name beyond the fused ones."""


LOOP_BACKENDS = ("auto", "script", "compile", "eager")
LOOP_ENVIRONMENT = "BILSTM_CELL_LOOP"
"""Environment variable that sets the loop backend of a process (e.g. ``eager`` where no C++ compiler exists)."""
_compiled: dict[str, Callable] = {}
COMPILE_OPTIONS: dict[str, Any] = {"dynamic": True}
"""``torch.compile`` options of the loops (a test swaps inductor for ``aot_eager``: the same graph capture and
autograd, without the minutes of C++ code generation)."""
_scripted: list[Callable] = []


def _checked(backend: str) -> str:
    if backend not in LOOP_BACKENDS:
        raise ValueError(f"the cell loop backend must be one of {LOOP_BACKENDS}, got {backend!r} "
                         f"(from {LOOP_ENVIRONMENT} or use_loop_backend)")
    return backend


def _from_environment() -> str:
    backend = os.environ.get(LOOP_ENVIRONMENT) or "auto"
    if backend not in LOOP_BACKENDS:  # a warning, not an error: this runs at import, before any CLI could explain
        warnings.warn(f"{LOOP_ENVIRONMENT}={backend!r} is not one of {LOOP_BACKENDS}; using 'auto'", RuntimeWarning,
                      stacklevel=2)
        return "auto"
    return backend


_backend = _from_environment()


def use_loop_backend(backend: str) -> None:
    """How the time loops run: ``compile`` (fixed-length pieces of the loop ``torch.compile``d: the fastest for
    training here, after a compile of about a minute per cell the first time, cached on disk by torch after that),
    ``script`` (one TorchScript loop: the fastest for inference of the matrix cells, no compile wait), ``eager``
    (plain Python), or ``auto`` (the default: ``compile`` while gradients are recorded, else ``script``).
    docs/benchmarks.md has the measurements (benchmarks/cell_speed.py)."""
    global _backend
    _backend = _checked(backend)


def _run_loop(kind: str, xw: Tensor, x: Tensor, h: Tensor, c: Tensor, p: Tensor, q: Tensor
              ) -> tuple[Tensor, Tensor, Tensor]:
    backend = _backend
    if backend == "auto":
        backend = "compile" if torch.is_grad_enabled() else "script"
    if backend == "script":
        if not _scripted:  # scripted on first use: scripting at import would slow every CLI start
            with warnings.catch_warnings():  # deprecated in torch 2.13, still the fastest inference loop here
                warnings.simplefilter("ignore", DeprecationWarning)
                _scripted.append(torch.jit.script(scripted_loop))
        return _scripted[0](xw, x, h, c, p, q, kind)
    if backend == "compile" and _compiled.get(kind) is not stepwise:
        if kind not in _compiled:
            _compiled[kind] = torch.compile(chunk_loop(STEPS[kind]), **COMPILE_OPTIONS)
        try:
            return chunked(_compiled[kind], xw, x, h, c, p, q)
        except Exception as error:  # e.g. no C++ compiler for inductor: the same maths, only slower
            warnings.warn(f"torch.compile of the {kind} cell failed ({type(error).__name__}: {str(error)[:200]}); "
                          f"running its loop in plain Python instead (set {LOOP_ENVIRONMENT}=eager to skip the try)",
                          RuntimeWarning, stacklevel=2)
            _compiled[kind] = stepwise
    return stepwise(STEPS[kind], xw, x, h, c, p, q)


class CellRNN(nn.Module):
    """One unidirectional layer of a scripted cell, time-major like ``nn.LSTM(batch_first=False)``.

    ``forward(x [T, B, I], hx) → (outputs [T, B, H], state)`` where ``hx``/``state`` is ``(h, c)`` for the LSTM kinds
    and SRU (SRU carries ``c``; ``h`` is returned for symmetry) and ``h`` for GRU and MUT, each ``[1, B, H]`` as in
    torch's RNN modules.

    Args:
        kind: one of :data:`GATES`.
        input_size, hidden_size: sizes.
        weight_drop: DropConnect on ``weight_hh`` while training (one mask per call).
    """

    def __init__(self, kind: str, input_size: int, hidden_size: int, weight_drop: float = 0.0) -> None:
        super().__init__()
        if kind not in GATES:
            raise ValueError(f"unknown scripted cell {kind!r}; choose one of {tuple(GATES)}")
        self.kind, self.input_size, self.hidden_size, self.weight_drop = kind, input_size, hidden_size, weight_drop
        self.weight_ih_l0 = nn.Parameter(torch.empty(GATES[kind] * hidden_size, input_size))
        self.bias_ih_l0 = nn.Parameter(torch.empty(GATES[kind] * hidden_size))
        if RECURRENT_BLOCKS[kind]:
            self.weight_hh_l0 = nn.Parameter(torch.empty(RECURRENT_BLOCKS[kind] * hidden_size, hidden_size))
            self.bias_hh_l0 = nn.Parameter(torch.empty(RECURRENT_BLOCKS[kind] * hidden_size))
        else:  # SRU: elementwise recurrence, v_f and v_r
            self.v_f = nn.Parameter(torch.empty(hidden_size))
            self.v_r = nn.Parameter(torch.empty(hidden_size))
        self.project = nn.Linear(input_size, hidden_size, bias=False) \
            if kind in X_TILDE_CELLS and input_size != hidden_size else None
        self.reset_parameters()

    @property
    def has_cell_state(self) -> bool:
        return self.kind in LSTM_KINDS or self.kind == "sru"

    def reset_parameters(self) -> None:
        """PyTorch's default for its RNNs: uniform ±1/√hidden (the encoder may re-initialise)."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for parameter in self.parameters():
            nn.init.uniform_(parameter, -bound, bound)

    def _x_tilde(self, x: Tensor) -> Tensor:
        return self.project(x) if self.project is not None else x

    def forward(self, x: Tensor, hx: Tensor | tuple[Tensor, Tensor] | None = None
                ) -> tuple[Tensor, Tensor | tuple[Tensor, Tensor]]:
        batch = x.size(1)
        zeros = x.new_zeros(batch, self.hidden_size)
        if hx is None:
            h = c = zeros
        elif isinstance(hx, tuple):
            h, c = hx[0][0], hx[1][0]
        else:
            h, c = hx[0], zeros
        xw = torch.addmm(self.bias_ih_l0, x.reshape(-1, self.input_size), self.weight_ih_l0.t()).view(
            x.size(0), batch, -1)  # every time step's input terms in one product
        x_tilde = self._x_tilde(x) if self.kind in X_TILDE_CELLS else xw  # (the others ignore it)
        if self.kind == "sru":
            p, q = self.v_f, self.v_r
        else:
            p, q = self.weight_hh_l0, self.bias_hh_l0
            if self.training and self.weight_drop > 0:
                p = nn.functional.dropout(p, self.weight_drop, training=True)
        outputs, h, c = _run_loop(self.kind, xw, x_tilde, h, c, p, q)
        if self.has_cell_state:
            return outputs, (h.unsqueeze(0), c.unsqueeze(0))
        return outputs, h.unsqueeze(0)
