"""One time step of each scripted cell, and the loops that run them (see :mod:`toolkit.nn.cells` for the equations).

Every step has the same signature, ``step(xw, x, h, c, p, q) → (h, c)``:

* ``xw [B, G·H]``: this step's input terms with their biases (all steps come from one matrix product before the loop);
* ``x [B, H]``: x̃, the hidden-sized input (MUT1, MUT2 and SRU read it; the others ignore it);
* ``h, c [B, H]``: the state (cells without a memory cell return ``c`` unchanged);
* ``p, q``: the recurrent weights ``w_hh [R·H, H]`` and bias ``b_hh [R·H]``; for SRU the vectors ``v_f, v_r [H]``.

The steps are written once and run three ways: inside one TorchScript loop (:func:`scripted_loop`, which scripts
the steps it calls), or called from a Python loop (:func:`stepwise`) either as they are or ``torch.compile``d
(one fused kernel per step and direction of autograd).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def lstm_step(xw: Tensor, x: Tensor, h: Tensor, c: Tensor, p: Tensor, q: Tensor) -> tuple[Tensor, Tensor]:
    i, f, g, o = (xw + torch.mm(h, p.t()) + q).chunk(4, 1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def lstm_f_step(xw: Tensor, x: Tensor, h: Tensor, c: Tensor, p: Tensor, q: Tensor) -> tuple[Tensor, Tensor]:
    """No forget gate: c' = c + i ⊙ g. Gate blocks (i, g, o)."""
    i, g, o = (xw + torch.mm(h, p.t()) + q).chunk(3, 1)
    c = c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def lstm_i_step(xw: Tensor, x: Tensor, h: Tensor, c: Tensor, p: Tensor, q: Tensor) -> tuple[Tensor, Tensor]:
    """No input gate: c' = f ⊙ c + g. Gate blocks (f, g, o)."""
    f, g, o = (xw + torch.mm(h, p.t()) + q).chunk(3, 1)
    c = torch.sigmoid(f) * c + torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def lstm_o_step(xw: Tensor, x: Tensor, h: Tensor, c: Tensor, p: Tensor, q: Tensor) -> tuple[Tensor, Tensor]:
    """No output gate: h' = tanh(c'). Gate blocks (i, f, g)."""
    i, f, g = (xw + torch.mm(h, p.t()) + q).chunk(3, 1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.tanh(c), c


def gru_step(xw: Tensor, x: Tensor, h: Tensor, c: Tensor, p: Tensor, q: Tensor) -> tuple[Tensor, Tensor]:
    """PyTorch's GRU: r, z = σ(·); n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn)); h' = (1 − z) ⊙ n + z ⊙ h."""
    x_r, x_z, x_n = xw.chunk(3, 1)
    h_r, h_z, h_n = (torch.mm(h, p.t()) + q).chunk(3, 1)
    r = torch.sigmoid(x_r + h_r)
    z = torch.sigmoid(x_z + h_z)
    n = torch.tanh(x_n + r * h_n)
    return (1 - z) * n + z * h, c


def mut1_step(xw: Tensor, x: Tensor, h: Tensor, c: Tensor, p: Tensor, q: Tensor) -> tuple[Tensor, Tensor]:
    """Input blocks (z, r); recurrent blocks (r, h)."""
    hidden = h.size(1)
    x_z, x_r = xw.chunk(2, 1)
    z = torch.sigmoid(x_z)
    r = torch.sigmoid(x_r + torch.mm(h, p[:hidden].t()) + q[:hidden])
    candidate = torch.tanh(torch.mm(r * h, p[hidden:].t()) + q[hidden:] + torch.tanh(x))
    return candidate * z + h * (1 - z), c


def mut2_step(xw: Tensor, x: Tensor, h: Tensor, c: Tensor, p: Tensor, q: Tensor) -> tuple[Tensor, Tensor]:
    """Input blocks (z, h); recurrent blocks (z, r, h); r reads x̃ itself."""
    hidden = h.size(1)
    x_z, x_h = xw.chunk(2, 1)
    h_z, h_r = (torch.mm(h, p[: 2 * hidden].t()) + q[: 2 * hidden]).chunk(2, 1)
    z = torch.sigmoid(x_z + h_z)
    r = torch.sigmoid(x + h_r)
    candidate = torch.tanh(torch.mm(r * h, p[2 * hidden :].t()) + q[2 * hidden :] + x_h)
    return candidate * z + h * (1 - z), c


def mut3_step(xw: Tensor, x: Tensor, h: Tensor, c: Tensor, p: Tensor, q: Tensor) -> tuple[Tensor, Tensor]:
    """Input and recurrent blocks (z, r, h); z reads tanh(h)."""
    hidden = h.size(1)
    x_z, x_r, x_h = xw.chunk(3, 1)
    z = torch.sigmoid(x_z + torch.mm(torch.tanh(h), p[:hidden].t()) + q[:hidden])
    r = torch.sigmoid(x_r + torch.mm(h, p[hidden : 2 * hidden].t()) + q[hidden : 2 * hidden])
    candidate = torch.tanh(torch.mm(r * h, p[2 * hidden :].t()) + q[2 * hidden :] + x_h)
    return candidate * z + h * (1 - z), c


def sru_step(xw: Tensor, x: Tensor, h: Tensor, c: Tensor, p: Tensor, q: Tensor) -> tuple[Tensor, Tensor]:
    """Input blocks (W x, W_f x + b_f, W_r x + b_r); ``p, q`` are v_f, v_r. Elementwise only."""
    x_c, x_f, x_r = xw.chunk(3, 1)
    f = torch.sigmoid(x_f + p * c)
    r = torch.sigmoid(x_r + q * c)
    c = f * c + (1 - f) * x_c
    return r * c + (1 - r) * x, c


STEPS: dict[str, Callable[..., tuple[Tensor, Tensor]]] = {
    "lstm": lstm_step, "lstm_f": lstm_f_step, "lstm_i": lstm_i_step, "lstm_o": lstm_o_step, "gru": gru_step,
    "mut1": mut1_step, "mut2": mut2_step, "mut3": mut3_step, "sru": sru_step,
}


def stepwise(step: Callable[..., tuple[Tensor, Tensor]], xw: Tensor, x: Tensor, h: Tensor, c: Tensor, p: Tensor,
             q: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """A Python loop over ``xw [T, B, G·H]`` and ``x [T, B, H]`` → ``(outputs [T, B, H], h, c)``."""
    outputs = []
    for t in range(xw.size(0)):
        h, c = step(xw[t], x[t], h, c, p, q)
        outputs.append(h)
    return torch.stack(outputs), h, c


def scripted_loop(xw: Tensor, x: Tensor, h: Tensor, c: Tensor, p: Tensor, q: Tensor, kind: str
                  ) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`stepwise` for TorchScript (which cannot take a function argument): ``kind`` picks the step."""
    outputs = []
    for t in range(xw.size(0)):
        if kind == "lstm":
            h, c = lstm_step(xw[t], x[t], h, c, p, q)
        elif kind == "lstm_f":
            h, c = lstm_f_step(xw[t], x[t], h, c, p, q)
        elif kind == "lstm_i":
            h, c = lstm_i_step(xw[t], x[t], h, c, p, q)
        elif kind == "lstm_o":
            h, c = lstm_o_step(xw[t], x[t], h, c, p, q)
        elif kind == "gru":
            h, c = gru_step(xw[t], x[t], h, c, p, q)
        elif kind == "mut1":
            h, c = mut1_step(xw[t], x[t], h, c, p, q)
        elif kind == "mut2":
            h, c = mut2_step(xw[t], x[t], h, c, p, q)
        elif kind == "mut3":
            h, c = mut3_step(xw[t], x[t], h, c, p, q)
        else:
            h, c = sru_step(xw[t], x[t], h, c, p, q)
        outputs.append(h)
    return torch.stack(outputs), h, c


CHUNK = 16
"""Time steps per compiled piece: ``torch.compile`` unrolls a loop, so it sees fixed-length pieces (the last one
padded) instead of recompiling for every sequence length."""


def chunk_loop(step: Callable[..., tuple[Tensor, Tensor]]) -> Callable[..., tuple[Tensor, Tensor, Tensor]]:
    """A loop over exactly :data:`CHUNK` steps, for ``torch.compile`` (one fused graph per chunk and direction).

    The returned function takes ``(xw [CHUNK, B, G·H], x [CHUNK, B, H], h, c, p, q, valid)``; steps at or after
    ``valid`` (a 0-d tensor) are padding: their outputs are computed but the state stops changing there, so the
    returned ``(h, c)`` is the state after the last real step.
    """

    def loop(xw: Tensor, x: Tensor, h: Tensor, c: Tensor, p: Tensor, q: Tensor, valid: Tensor
             ) -> tuple[Tensor, Tensor, Tensor]:
        outputs = []
        for t in range(CHUNK):
            h_next, c_next = step(xw[t], x[t], h, c, p, q)
            outputs.append(h_next)
            real = valid > t
            h, c = torch.where(real, h_next, h), torch.where(real, c_next, c)
        return torch.stack(outputs), h, c

    # torch.compile keeps its compiled variants per code object, at most 8 (torch._dynamo's recompile_limit): one
    # code object shared by every cell would run out when a process uses several cells and fall back to eager.
    loop.__code__ = loop.__code__.replace(co_name=f"{step.__name__}_chunk", co_qualname=f"{step.__name__}_chunk")
    return loop


def chunked(loop: Callable[..., tuple[Tensor, Tensor, Tensor]], xw: Tensor, x: Tensor, h: Tensor, c: Tensor,
            p: Tensor, q: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Run a :func:`chunk_loop` over ``xw [T, B, G·H]``/``x [T, B, H]`` → ``(outputs [T, B, H], h, c)``."""
    steps = xw.size(0)
    padded = -steps % CHUNK
    if padded:
        xw = torch.cat([xw, xw.new_zeros(padded, *xw.shape[1:])])
        x = torch.cat([x, x.new_zeros(padded, *x.shape[1:])])
    outputs = []
    for start in range(0, steps, CHUNK):
        valid = torch.tensor(min(CHUNK, steps - start))
        piece, h, c = loop(xw[start : start + CHUNK], x[start : start + CHUNK], h, c, p, q, valid)
        outputs.append(piece)
    return torch.cat(outputs)[:steps], h, c
