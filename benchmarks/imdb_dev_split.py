"""Write the IMDB dev split the configs carve (train.jsonl.gz, dev_fraction 0.1, split_seed 1234) as a JSONL file,
so `bilstm evaluate` can score any IMDB model on exactly the reviews it was selected on.

    python benchmarks/imdb_dev_split.py OUT.jsonl     # keep OUT outside the repository: it is dataset text
"""

from __future__ import annotations

import json
import sys

from toolkit.data.datamodule import carve_dev
from toolkit.data.readers import read_labelled

if __name__ == "__main__":
    _, dev = carve_dev(read_labelled("../shared/data/imdb/train.jsonl.gz", "text", "label"), 0.1, 1234)
    with open(sys.argv[1], "w", encoding="utf-8") as out:
        out.writelines(json.dumps({"text": example.text, "label": example.label}) + "\n" for example in dev)
    print(len(dev), "dev reviews")
