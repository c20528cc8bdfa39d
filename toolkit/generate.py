"""`bilstm generate LM_DIR --prompt "..."`: sample continuations from a language model directory."""

from __future__ import annotations

import argparse
import json
import sys

from toolkit.argtypes import positive_int


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model_dir", help="a language model directory (task lm)")
    parser.add_argument("--prompt", action="append", default=None,
                        help='text to continue; repeatable; "" or none starts a text from scratch')
    parser.add_argument("--max-tokens", type=positive_int, default=50, help="most tokens to generate (default 50)")
    parser.add_argument("--temperature", type=float, default=1.0, help="0 = always the most likely token")
    parser.add_argument("--top-k", type=int, default=0, help="sample from the k most likely tokens (0 = all)")
    parser.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling: smallest set with this mass")
    parser.add_argument("--seed", type=int, help="the same seed gives the same text")
    parser.add_argument("--samples", type=positive_int, default=1, help="continuations per prompt")
    parser.add_argument("--json", action="store_true", help="one JSON object per continuation instead of text")


def run(args: argparse.Namespace) -> int:
    from toolkit.errors import ModelDirError
    from toolkit.predict import Predictor
    from toolkit.registry import TASKS

    predictor = Predictor.load(args.model_dir)
    if TASKS[predictor.task].generation is None:
        samplers = ", ".join(task for task, entry in TASKS.items() if entry.generation is not None)
        raise ModelDirError(f"{args.model_dir} holds a {predictor.task!r} model, which does not sample text; generate "
                            f"needs a model that does (task {samplers}: a language model, configs/lm_*.yaml)")
    prompts = [prompt for prompt in (args.prompt or [""]) for _ in range(args.samples)]
    results = predictor.generate(prompts, max_tokens=args.max_tokens, temperature=args.temperature,
                                 top_k=args.top_k, top_p=args.top_p, seed=args.seed)
    for result in results:
        print(json.dumps(result.to_dict(), ensure_ascii=False) if args.json else result.full_text)
    sys.stdout.flush()
    return 0
