"""Batch labelling on Ray Data, for real: a local two-node Ray cluster and a local S3-compatible server (moto).

Every result is compared with `bilstm label` (``pipelines.label.label_file``) on the same inputs, for all four tasks
(:mod:`tests.raydata.records`). The inputs are tiny, so each Ray run costs about the start of its actors (each loads
the model once). The kill tests are in ``test_ray_kill.py``.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest

ray = pytest.importorskip("ray", reason="the [ray] extra (ray[data]) is not installed")

import pyarrow as pa  # noqa: E402 - after the skip: ray[data] brings it
import pyarrow.parquet as pq  # noqa: E402

from pipelines.checkpoint import ResumeError  # noqa: E402
from pipelines.ray_files import label_files  # noqa: E402
from pipelines.ray_label import label_dataset  # noqa: E402
from pipelines.ray_sources import list_inputs  # noqa: E402
from tests.conftest import SAMPLES, copy_with_wrong_hidden_size  # noqa: E402
from tests.pipelines.test_batch_label import sample_texts  # noqa: E402
from tests.raydata.records import (  # noqa: E402
    TOLERANCE,
    assert_same,
    close,
    expected,
    parquet_records,
    predictions,
    read_jsonl,
    reference,
)
from toolkit.cli import main  # noqa: E402
from toolkit.errors import ConfigError, DataError, ModelDirError  # noqa: E402


def test_label_dataset_adds_the_prediction_columns_and_error_rows_on_both_nodes(cluster, textcat_model_dir):
    texts = ["A wonderful film, I loved it.", "\ud800 broken", "   ", 7, None, "x " * 15_000, "Dull and far too long."]
    # one block: values of several types cannot share an Arrow column across blocks (Ray keeps them as objects)
    ds = ray.data.from_items([{"id": i, "text": text} for i, text in enumerate(texts)], override_num_blocks=1)
    # two actors of 2 CPUs each: one on each node (a node has 2), each loading the model once
    rows = sorted(label_dataset(ds, textcat_model_dir, num_actors=2, threads_per_actor=2, window=2).take_all(),
                  key=lambda row: row["id"])
    from toolkit.predict import Predictor

    predictor = Predictor.load(textcat_model_dir, device="cpu")
    good = [i for i, text in enumerate(texts) if predictor.input_problem(text) is None]
    assert good == [0, 6]
    for row, want in zip([rows[i] for i in good], predictor.predict([texts[i] for i in good]), strict=True):
        assert row["error"] is None and row["label"] == want.label
        assert abs(row["score"] - want.score) <= TOLERANCE and not row["input_truncated"]
        assert close(dict(row["probabilities"]), want.probabilities)
    for i in sorted(set(range(len(texts))) - set(good)):
        assert rows[i]["error"] == f"text {predictor.input_problem(texts[i])}" and rows[i]["label"] is None
    with pytest.raises(ConfigError, match="already has the column"):
        label_dataset(ray.data.from_items([{"text": "hi", "label": "pos"}]), textcat_model_dir)
    with pytest.raises(ConfigError, match="no column 'text'"):
        label_dataset(ray.data.from_items([{"body": "hi"}]), textcat_model_dir)
    with pytest.raises(ModelDirError, match="no onnx export"):  # refused here, before any actor starts
        label_dataset(ds, textcat_model_dir, backend="onnx")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """200 tiny .txt/.jsonl files in subfolders, an empty file, a gzipped one and one of bad records."""
    root = tmp_path_factory.mktemp("corpus") / "in"
    texts = sample_texts(400)
    for i in range(200):
        folder = root / f"part{i % 4}"
        folder.mkdir(parents=True, exist_ok=True)
        chunk = texts[2 * i: 2 * i + 1 + i % 2]
        if i % 2:
            (folder / f"f{i:03}.jsonl").write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for t in chunk))
        else:
            (folder / f"f{i:03}.txt").write_text("\n".join(chunk) + "\n")
    (root / "empty.txt").write_text("")
    (root / "README").write_text("not an input: a listing takes only files with a format's suffix\n")
    with gzip.open(root / "zipped.jsonl.gz", "wt") as handle:
        handle.write("".join(json.dumps({"text": t}) + "\n" for t in texts[:5]))
    (root / "bad.jsonl").write_bytes(b'{"text": "fine"}\n{"text": broken\n{"body": "no text"}\n{"text": "\\ud800"}\n'
                                     b'\n{"text": "   "}\n\xff\xfe\n{"text": 5}\n{"text": "also fine"}\n')
    return root


def test_inputs_are_files_directories_and_globs_local_or_s3(s3, corpus, tmp_path):
    storage, filesystem = s3
    files, roots = list_inputs([f"{corpus}/part0/f00?.txt", f"{corpus}/**/f00?.jsonl", str(corpus / "README")],
                               storage)
    assert [(f.name, f.kind) for f in files] == [
        ("f000", "txt"), ("f004", "txt"), ("f008", "txt"), *[(f"part1/f00{i}", "jsonl") for i in (1, 5, 9)],
        *[(f"part3/f00{i}", "jsonl") for i in (3, 7)], ("README", "txt")]  # a file given by name: any kind
    assert [(Path(root.uri), root.recursive) for root in roots] == [(corpus / "part0", False), (corpus, True)]
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(DataError, match="same name"):
        list_inputs([str(corpus / "empty.txt"), str(tmp_path / "empty.jsonl")], storage)
    for key in ("glob/a.txt", "glob/sub/b.txt.gz", "glob/c.csv", "glob/_SUCCESS"):
        with filesystem.open_output_stream(f"labels/{key}") as stream:
            stream.write(b"text\n")

    def names(*arguments: str) -> list[str]:
        return [f.uri for f in list_inputs(list(arguments), storage)[0]]

    assert names("s3://labels/glob/*.txt") == ["s3://labels/glob/a.txt"]  # * stays within a segment, as locally
    assert names("s3://labels/glob/**/*.txt*") == ["s3://labels/glob/a.txt", "s3://labels/glob/sub/b.txt.gz"]
    assert names("s3://labels/glob") == ["s3://labels/glob/a.txt", "s3://labels/glob/sub/b.txt.gz"]
    with pytest.raises(DataError, match="cannot label a csv file"):
        names("s3://labels/glob/c.csv")
    with pytest.raises(DataError, match="not found"):
        names("s3://labels/nothing-here")


def test_a_directory_of_many_files_gives_bilstm_labels_records(cluster, textcat_model_dir, corpus, tmp_path):
    output, references = tmp_path / "labels", tmp_path / "references"
    summary = label_files(textcat_model_dir, [str(corpus)], str(output), num_actors=1, window=256)
    inputs = sorted(p for p in corpus.rglob("*") if p.is_file() and p.name != "README")
    assert (summary["files"], summary["skipped"], len(inputs)) == (203, 0, 203)
    small = [p for p in inputs if p.parent.name.startswith("part")]
    lines = {p: dict(enumerate((json.loads(line)["text"] if p.suffix == ".jsonl" else line
                                for line in p.read_text().splitlines()), 1)) for p in small}
    by_text = predictions(textcat_model_dir, [text for found in lines.values() for text in found.values()], references)
    for path in small:  # 200 files: compared with one `bilstm label` job over all their texts
        name = str(path.relative_to(corpus).with_suffix(""))
        assert_same(read_jsonl(output / f"{name}.jsonl"), expected(by_text, lines[path]), str(path))
        assert not (output / f"{name}.errors.jsonl").exists()
    for path in sorted(set(inputs) - set(small)):  # the empty, gzipped and bad files: one job each
        name = path.name.removesuffix(".gz").rsplit(".", 1)[0]
        records, errors = reference(textcat_model_dir, path, references)
        assert_same(read_jsonl(output / f"{name}.jsonl"), records, str(path))
        errors_file = output / f"{name}.errors.jsonl"
        assert (read_jsonl(errors_file) if errors_file.exists() else []) == [
            {"file": str(path), **error} for error in errors]
    assert (output / "empty.jsonl").read_bytes() == b""
    assert len(read_jsonl(output / "bad.errors.jsonl")) == 6 and len(read_jsonl(output / "bad.jsonl")) == 2
    assert not list(output.rglob(".*.tmp-*")) and not (output / "README.jsonl").exists()
    # the same command again: everything is done, nothing is relabelled (no Ray work at all)
    before = {p: p.stat().st_mtime_ns for p in output.rglob("*.jsonl")}
    again = label_files(textcat_model_dir, [str(corpus)], str(output), num_actors=1, window=256)
    assert (again["files"], again["skipped"]) == (0, 203)
    assert {p: p.stat().st_mtime_ns for p in output.rglob("*.jsonl")} == before
    # another model or setting on the same OUTPUT is refused, naming what changed
    with pytest.raises(ResumeError, match="batch_size: 64 → 32"):
        label_files(textcat_model_dir, [str(corpus)], str(output), batch_size=32, window=256)
    other = copy_with_wrong_hidden_size(textcat_model_dir, tmp_path / "other_model")
    with pytest.raises(ResumeError, match="model_sha256"):
        label_files(other, [str(corpus)], str(output), window=256)


def test_parquet_and_jsonl_over_s3_into_parquet(cluster, s3, textcat_model_dir, tmp_path):
    storage, filesystem = s3
    texts = sample_texts(12)
    texts[5] = None
    local = tmp_path / "reviews.parquet"
    pq.write_table(pa.table({"id": list(range(12)), "text": texts}), local, row_group_size=5)
    more = tmp_path / "more.jsonl.gz"
    with gzip.open(more, "wt") as handle:
        handle.write("".join(json.dumps({"text": t}) + "\n" for t in texts[:4]) + "not json\n")
    for path, key in ((local, "labels/in/reviews.parquet"), (more, "labels/in/deeper/more.jsonl.gz")):
        with filesystem.open_output_stream(key) as stream:
            stream.write(path.read_bytes())
    summary = label_files(textcat_model_dir, ["s3://labels/in/"], "s3://labels/out", output_format="parquet",
                          num_actors=1, storage=storage)
    assert (summary["files"], summary["records"], summary["errors"]) == (2, 15, 2)

    def read(name: str) -> Any:
        with filesystem.open_input_file(f"labels/out/{name}") as handle:
            return pq.read_table(handle) if name.endswith(".parquet") else handle.read().decode()

    by_text = predictions(textcat_model_dir, [t for t in texts if t is not None], tmp_path / "references")
    assert_same(parquet_records(read("reviews.parquet")),
                expected(by_text, {row: t for row, t in enumerate(texts, 1) if t is not None}),
                "s3://labels/in/reviews.parquet")
    assert [json.loads(line) for line in read("reviews.errors.jsonl").splitlines()] == [
        {"file": "s3://labels/in/reviews.parquet", "line": 6, "reason": "text is a null, not a string"}]
    records, errors = reference(textcat_model_dir, more, tmp_path / "references")
    assert_same(parquet_records(read("deeper/more.parquet")), records, "s3://labels/in/deeper/more.jsonl.gz")
    assert [json.loads(line) for line in read("deeper/more.errors.jsonl").splitlines()] == [
        {"file": "s3://labels/in/deeper/more.jsonl.gz", **error} for error in errors]
    assert json.loads(read("manifest.json"))["settings"]["output_format"] == "parquet"
    again = label_files(textcat_model_dir, ["s3://labels/in"], "s3://labels/out", output_format="parquet",
                        storage=storage)
    assert (again["files"], again["skipped"]) == (0, 2)


def test_a_tagger_labels_conll_sentences_and_texts(cluster, ner_model_dir, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    conll = inputs / "dev.conll"
    conll.write_bytes((SAMPLES / "ner/dev.conll").read_bytes())
    texts = inputs / "news.txt"
    texts.write_text("Peter Blackburn visited Bonn in 1996 .\nThe EU rejects German call .\n")
    output = tmp_path / "tags"
    assert main(["label", str(ner_model_dir), str(conll), str(texts), str(output), "--engine", "ray",
                 "--num-actors", "1", "--quiet"]) == 0
    for path in (conll, texts):
        records, errors = reference(ner_model_dir, path, tmp_path / "references")
        assert_same(read_jsonl(output / f"{path.stem}.jsonl"), records, str(path))
        assert errors == [] and not (output / f"{path.stem}.errors.jsonl").exists()


def test_an_output_inside_an_input_directory_is_refused_before_any_work(textcat_model_dir, corpus, tmp_path, capsys):
    listing = sorted(corpus.rglob("*"))
    for output, why in ((corpus, "inside the input directory"), (corpus / "part1" / "out", "inside the input"),
                        (corpus.parent, "holds the input")):
        code = main(["label", str(textcat_model_dir), str(corpus), str(output), "--engine", "ray"])
        assert code == 2 and why in capsys.readouterr().err
    assert sorted(corpus.rglob("*")) == listing  # nothing written: no manifest, no folder
    with pytest.raises(DataError, match="is a file"):
        label_files(textcat_model_dir, [str(corpus / "empty.txt")], str(corpus / "README"))
    assert main(["label", str(textcat_model_dir), str(corpus / "empty.txt"), str(tmp_path / "x"), str(tmp_path / "y"),
                 ]) == 2 and "--engine ray" in capsys.readouterr().err
    assert main(["label", str(textcat_model_dir), str(corpus / "empty.txt"), str(tmp_path / "o.jsonl"),
                 "--num-actors", "2"]) == 2 and "belongs to --engine ray" in capsys.readouterr().err


@pytest.fixture(params=["lm", "translate"])
def other_task(request) -> tuple[str, Path]:
    """The language model's and the translator's task and model directory (the session's tiny models)."""
    return request.param, request.getfixturevalue(f"{request.param}_model_dir")


def test_a_language_model_and_a_translator_give_bilstm_labels_records(cluster, other_task, tmp_path):
    """The other two tasks, into Parquet (columns typed from their result dataclasses): per-text perplexities
    and token log-probabilities, translations and their scores, equal to `bilstm label`'s; an over-long text refused."""
    task, model_dir = other_task
    sample = (SAMPLES / ("lm/dev.txt" if task == "lm" else "translate/dev.de")).read_text(encoding="utf-8")
    lines = sample.splitlines()
    path = tmp_path / "in" / f"{task}.txt"
    path.parent.mkdir()
    path.write_text("\n".join([*lines[:3], "word " * 4001, *lines[3:6]]) + "\n", encoding="utf-8")  # over max_chars
    output = tmp_path / "out"
    summary = label_files(model_dir, [str(path)], str(output), output_format="parquet", num_actors=1)
    assert (summary["records"], summary["errors"]) == (6, 1)
    records, errors = reference(model_dir, path, tmp_path / "references")
    assert len(records) == 6 and [error["line"] for error in errors] == [4]
    assert_same(parquet_records(pq.read_table(output / f"{task}.parquet")), records, str(path))
    assert read_jsonl(output / f"{task}.errors.jsonl") == [{"file": str(path), **error} for error in errors]
