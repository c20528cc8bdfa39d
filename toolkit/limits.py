"""The limits generation and decoding enforce, in one leaf module (no imports) so the Predictor, `bilstm generate`,
the HTTP request schemas and `bilstm serve --dry-run` accept and refuse exactly the same values."""

MAX_PROMPT_TOKENS = 512
"""Longest prompt a language model continues (the state is rebuilt from the whole prompt)."""
MAX_NEW_TOKENS = 2048
"""Most tokens one continuation may ask for."""
MAX_TEMPERATURE = 100.0
"""Highest sampling temperature (at 100 a small LM's distribution is already flat)."""
SEED_RANGE = (0, 2**64 - 1)
"""Seeds ``torch.Generator.manual_seed`` takes without overflowing: unsigned 64-bit integers."""
MAX_SERVE_BEAM_SIZE = 64
"""Widest beam `bilstm serve` decodes with: every step holds ``batch × beam`` hypotheses per request batch."""
PORT_RANGE = (1, 65535)
"""TCP ports a server can listen on."""
