"""`bilstm report model MODEL_DIR DATA_FILE --out DIR` and `bilstm report run RUN_DIR --out DIR`.

``configure`` only defines arguments (it runs on every ``bilstm`` call); the report modules, torch and matplotlib
are imported when a report is made.
"""

from __future__ import annotations

import argparse

from toolkit.argtypes import positive_int

MODEL_HELP = "a model directory on a labelled file: headline metrics (= bilstm evaluate), breakdowns, figures"
RUN_HELP = "a training run's learning curves (loss, validation metrics, learning rate) from its metrics.csv"


def configure(parser: argparse.ArgumentParser) -> None:
    kinds = parser.add_subparsers(dest="report", required=True, metavar="KIND")
    model = kinds.add_parser("model", help=MODEL_HELP, description=MODEL_HELP)
    model.add_argument("model_dir")
    model.add_argument("data_file", help="the labelled file, as for bilstm evaluate: classification .jsonl/.csv; "
                       "tagging CoNLL; translation source file with its reference beside it, or .jsonl; language "
                       "model .txt or .jsonl")
    model.add_argument("--out", required=True, help="folder for index.html, the PNG figures and report.json "
                       "(made if missing; not inside the model directory)")
    model.add_argument("--batch-size", type=positive_int, help="as for bilstm evaluate (default: the task's)")
    model.add_argument("--max-examples", type=positive_int, default=20,
                       help="rows of the example tables: mistakes, error sentences, samples (default 20)")
    model.add_argument("--text-field", default="text", help="text field of JSONL/CSV files")
    model.add_argument("--label-field", default="label", help="label field of JSONL/CSV files")
    model.add_argument("--max-chars", type=positive_int, help="longest text accepted, as for bilstm evaluate "
                       "(default 20000)")
    run_parser = kinds.add_parser("run", help=RUN_HELP, description=RUN_HELP)
    run_parser.add_argument("run_dir", help="the trainer's default_root_dir (the latest lightning_logs/version_N "
                            "is used), a version_N folder, or its metrics.csv")
    run_parser.add_argument("--out", required=True, help="folder for index.html, the PNG figures and report.json")


def run(args: argparse.Namespace) -> int:
    if args.report == "model":
        from toolkit.report.model import model_report

        written = model_report(args.model_dir, args.data_file, args.out, batch_size=args.batch_size,
                               max_examples=args.max_examples, text_field=args.text_field,
                               label_field=args.label_field, max_chars=args.max_chars)
    else:
        from toolkit.report.run import run_report

        written = run_report(args.run_dir, args.out)
    for path in written:
        print(path)
    print(f"report: {written[0]}")
    return 0
