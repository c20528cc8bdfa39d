"""Hyper-parameter sweep for the IMDB classifier on pre-tokenised data (plain torch, CPU or GPU).

Two steps, so the sweep can run where spaCy and the dataset are not installed (e.g. a rented GPU):

    python benchmarks/imdb_sweep.py prepare --out .cache/imdb.npz      # tokenise with the toolkit's DataModule
    python benchmarks/imdb_sweep.py run --data .cache/imdb.npz --configs A,B --device cuda

``prepare`` uses :class:`ClassifyData` itself (same split seed, vocabulary and tokeniser as
``bilstm fit``), keeps full-length reviews, and stores GloVe vectors for the vocabulary. ``run`` trains
each named configuration with the same network (:class:`ClassifyNet`), AdamW, warm-up + linear
decay and gradient clipping as the LightningModule, and prints dev accuracy after every epoch. Configs
that run on a GPU are chosen there and then trained again with ``bilstm fit`` on the CPU for the
recorded figures.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from toolkit.nn import ClassifyNet, ClassifyNetConfig, EncoderConfig  # noqa: E402

BASE = dict(embedding_dim=50, pretrained=True, embedding_dropout=0.3, word_dropout=0.0, head_dropout=0.3,
            cell="lstm", hidden=128, layers=1, pooling="max+mean", max_tokens=800, truncate="head+tail",
            lr=2e-3, batch=32, epochs=4, weight_decay=0.01, layer_dropout=0.0)
CONFIGS = {
    "A": {},
    "B": {"layers": 2, "layer_dropout": 0.3},
    "C": {"hidden": 256},
    "D": {"max_tokens": 400, "truncate": "tail"},
    "E": {"pretrained": False, "embedding_dim": 100},
    "F": {"pooling": "attention"},
    "G": {"embedding_dropout": 0.5, "word_dropout": 0.1},
    "H": {"cell": "gru"},
    "I": {"max_tokens": 2500},
    "J": {"epochs": 6},
    "K": {"max_tokens": 400, "truncate": "head"},
    "L": {"lr": 1e-3, "epochs": 6},
    "M": {"hidden": 256, "layers": 2, "layer_dropout": 0.3, "epochs": 5},
    "N": {"pooling": "max"},
    "O": {"batch": 64, "lr": 3e-3},
    "P": {"hidden": 192, "embedding_dropout": 0.4, "word_dropout": 0.05, "epochs": 5},
}


def prepare(out: Path, train_file: str) -> None:
    from toolkit.data.classify import ClassifyData
    from toolkit.data.vectors import GLOVE_PACKAGE, load_pretrained

    data = ClassifyData(train_file=train_file, max_vocab=50_000)
    data.setup("fit")
    arrays = {}
    for split in ("train", "val"):
        dataset = data.datasets[split]
        arrays[f"{split}_ids"] = torch.cat(dataset.ids).numpy().astype(np.int32)
        arrays[f"{split}_offsets"] = np.cumsum([0, *dataset.lengths]).astype(np.int64)
        arrays[f"{split}_labels"] = np.asarray(dataset.labels, dtype=np.int64)
    vectors, found, stats = load_pretrained(GLOVE_PACKAGE, data.vocab.tokens, 50)
    print(stats)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, glove=vectors.numpy(), glove_found=found.numpy(), **arrays)


def truncate(ids: np.ndarray, limit: int, mode: str) -> np.ndarray:
    if len(ids) <= limit:
        return ids
    if mode == "head":
        return ids[:limit]
    if mode == "tail":
        return ids[-limit:]
    head = limit // 4
    return np.concatenate([ids[:head], ids[len(ids) - (limit - head):]])


def split_examples(data, split: str, limit: int, mode: str) -> list[tuple[np.ndarray, int]]:
    ids, offsets, labels = data[f"{split}_ids"], data[f"{split}_offsets"], data[f"{split}_labels"]
    return [(truncate(ids[offsets[i]:offsets[i + 1]], limit, mode), int(labels[i])) for i in range(len(labels))]


def batches(examples, size: int, shuffle: bool, rng: random.Random):
    order = list(range(len(examples)))
    if shuffle:
        rng.shuffle(order)
    pools = [order[s:s + size * 50] for s in range(0, len(order), size * 50)]
    out = []
    for pool in pools:
        pool.sort(key=lambda i: len(examples[i][0]))
        out += [pool[s:s + size] for s in range(0, len(pool), size)]
    if shuffle:
        rng.shuffle(out)
    for batch in out:
        lengths = torch.tensor([len(examples[i][0]) for i in batch])
        ids = torch.zeros(len(batch), int(lengths.max()), dtype=torch.long)
        for row, i in enumerate(batch):
            ids[row, :lengths[row]] = torch.from_numpy(examples[i][0].astype(np.int64))
        yield ids, lengths, torch.tensor([examples[i][1] for i in batch])


def run_config(name: str, data, device: str, seed: int) -> dict:
    hp = {**BASE, **CONFIGS[name]}
    torch.manual_seed(seed)
    rng = random.Random(seed)
    config = ClassifyNetConfig(embedding_dim=hp["embedding_dim"], embedding_dropout=hp["embedding_dropout"],
                              word_dropout=hp["word_dropout"], head_dropout=hp["head_dropout"], pooling=hp["pooling"],
                              encoder=EncoderConfig(cell=hp["cell"], hidden_size=hp["hidden"], num_layers=hp["layers"],
                                                    dropout=hp["layer_dropout"]))
    net = ClassifyNet(config, len(data["glove"]), 2)
    if hp["pretrained"]:
        found = torch.from_numpy(data["glove_found"])
        with torch.no_grad():
            net.embed.embedding.weight[found] = torch.from_numpy(data["glove"])[found]
    net.to(device)
    train = split_examples(data, "train", hp["max_tokens"], hp["truncate"])
    dev = split_examples(data, "val", hp["max_tokens"], hp["truncate"])
    decay = [p for n, p in net.named_parameters() if p.ndim >= 2 and "embed" not in n]
    rest = [p for n, p in net.named_parameters() if not (p.ndim >= 2 and "embed" not in n)]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": hp["weight_decay"]},
                                   {"params": rest, "weight_decay": 0.0}], lr=hp["lr"])
    total = math.ceil(len(train) / hp["batch"]) * hp["epochs"]
    warmup = int(0.05 * total)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: (s + 1) / warmup if s < warmup else max(0.0, 1 - (s - warmup) / max(1, total - warmup)))
    history = []
    started = time.perf_counter()
    for epoch in range(hp["epochs"]):
        net.train()
        for ids, lengths, labels in batches(train, hp["batch"], True, rng):
            loss = torch.nn.functional.cross_entropy(net(ids.to(device), lengths), labels.to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            optimizer.step()
            schedule.step()
        net.eval()
        correct = 0
        with torch.inference_mode():
            for ids, lengths, labels in batches(dev, 256, False, rng):
                correct += int((net(ids.to(device), lengths).argmax(-1).cpu() == labels).sum())
        history.append(round(correct / len(dev), 4))
        print(json.dumps({"config": name, "epoch": epoch + 1, "dev_acc": history[-1],
                          "seconds": round(time.perf_counter() - started, 1)}), flush=True)
    return {"config": name, "hp": hp, "dev_acc": history, "seconds": round(time.perf_counter() - started, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--out", default=".cache/imdb.npz")
    p.add_argument("--train-file", default=str(ROOT.parent / "shared/data/imdb/train.jsonl.gz"))
    r = sub.add_parser("run")
    r.add_argument("--data", default=".cache/imdb.npz")
    r.add_argument("--configs", default=",".join(CONFIGS))
    r.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    r.add_argument("--seed", type=int, default=42)
    r.add_argument("--limit", type=int, help="use only N training reviews (smoke test)")
    args = parser.parse_args()
    if args.command == "prepare":
        prepare(Path(args.out), args.train_file)
        return
    data = dict(np.load(args.data))
    if args.limit:
        cut = int(data["train_offsets"][args.limit])
        data["train_ids"], data["train_offsets"] = data["train_ids"][:cut], data["train_offsets"][:args.limit + 1]
        data["train_labels"] = data["train_labels"][:args.limit]
        cut = int(data["val_offsets"][args.limit])
        data["val_ids"], data["val_offsets"] = data["val_ids"][:cut], data["val_offsets"][:args.limit + 1]
        data["val_labels"] = data["val_labels"][:args.limit]
    for name in args.configs.split(","):
        print(json.dumps(run_config(name, data, args.device, args.seed)), flush=True)


if __name__ == "__main__":
    main()
