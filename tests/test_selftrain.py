"""Self-training: a trained classifier (the teacher) labels unlabelled texts and the confident ones join the
training split of `ClassifyData` (data.unlabelled_files, data.pseudo_label_*). The teacher is the session's
sample classifier; it runs for real (`bilstm label` in a child process), and the in-process Predictor checks what it
said. No dev (or test) text may ever reach the teacher or the training set."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import toolkit.data.classify as classify
from tests.conftest import ROOT, run_bilstm
from tests.test_cli_errors import QUICK, one_error_line
from toolkit import Predictor
from toolkit.data.classify import ClassifyData, select_confident, text_key
from toolkit.data.datamodule import carve_dev
from toolkit.data.readers import read_labelled
from toolkit.data.tokenize import Tokenizer
from toolkit.errors import ConfigError, DataError, ModelDirError

SAMPLE = ROOT / "samples" / "textcat"
TRAIN, DEV = str(SAMPLE / "train.jsonl"), str(SAMPLE / "dev.jsonl")
UNLABELLED_FILE = str(SAMPLE / "unlabelled.txt")
UNLABELLED = [line for line in Path(UNLABELLED_FILE).read_text(encoding="utf-8").splitlines() if line.strip()]
TEACHER = "<the session's sample classifier>"
BOTH = {"unlabelled_files": [UNLABELLED_FILE], "pseudo_label_model": TEACHER}


@pytest.fixture
def teacher_calls(monkeypatch) -> list[str]:
    """Every text given to a teacher: `label_with_teacher` is the one way to one, wrapped to record (and run)."""
    calls: list[str] = []
    real = classify.label_with_teacher

    def recording(model_dir, texts, batch_size=256):
        calls.extend(texts)
        return real(model_dir, texts, batch_size)

    monkeypatch.setattr(classify, "label_with_teacher", recording)
    return calls


def unlabelled_file(tmp_path: Path, *extra: str) -> str:
    path = tmp_path / "unlabelled.txt"
    path.write_text("\n".join([*UNLABELLED, *extra]) + "\n", encoding="utf-8")
    return str(path)


def teacher_says(model_dir: Path, texts: list[str]) -> dict[str, tuple[str, float]]:
    """The teacher's label and top probability of each text, from the in-process Predictor."""
    predictions = Predictor.load(model_dir, device="cpu").predict(texts)
    return {text: (p.label, p.score) for text, p in zip(texts, predictions, strict=True)}


def training_rows(data: ClassifyData) -> set[tuple[int, ...]]:
    return {tuple(ids.tolist()) for ids in data.datasets["train"].ids}


def encoded(data: ClassifyData, text: str) -> tuple[int, ...]:
    """The row ``text`` would be in the training set."""
    return tuple(data.vocab.encode(Tokenizer(data.tokenizer_settings).tokenize_many([text])[0]))


def test_confident_pseudo_labels_join_train_only_with_the_teachers_labels(tmp_path, textcat_model_dir,
                                                                         teacher_calls):
    # A dev review, re-spaced, hidden among the unlabelled ones: it must be dropped before the teacher sees it.
    dev_texts = [example.text for example in read_labelled(DEV)]
    hidden = "  " + dev_texts[3].replace(" ", "   ") + " "
    data = ClassifyData(TRAIN, DEV, unlabelled_files=[unlabelled_file(tmp_path, hidden)],
                        pseudo_label_model=str(textcat_model_dir), pseudo_label_threshold=0.6,
                        pseudo_label_balance=False)
    data.setup("fit")
    said = teacher_says(textcat_model_dir, UNLABELLED)
    confident = [text for text in UNLABELLED if said[text][1] >= 0.6]
    assert 0 < len(confident) < len(UNLABELLED)  # the threshold separates something
    assert teacher_calls == UNLABELLED  # each unlabelled text once, in file order; not the dev review
    assert [example.text for example in data.pseudo_examples] == confident
    assert all(example.label == said[example.text][0] for example in data.pseudo_examples)
    assert len(data.datasets["train"]) == 400 + len(confident) and len(data.datasets["val"]) == 100
    assert encoded(data, hidden) not in training_rows(data)
    record = data.export().record
    assert record["train_examples"] == 400 + len(confident) and record["dev_examples"] == 100
    pseudo = record["pseudo_labels"]
    assert pseudo["read"] == len(UNLABELLED) + 1 and pseudo["dropped_held_out"] == 1
    assert pseudo["kept"] == {label: sum(said[t][0] == label for t in confident) for label in ("neg", "pos")}
    assert pseudo["threshold"] == 0.6 and pseudo["gold_train_examples"] == 400
    weights = json.loads((textcat_model_dir / "meta.json").read_text())["files"]["model.safetensors"]["sha256"]
    assert pseudo["teacher_sha256"] == weights
    assert data.vocabulary_tokens() == ClassifyData(TRAIN, DEV).vocabulary_tokens()  # the gold text's vocabulary


def test_carved_dev_never_reaches_the_teacher_and_balance_and_max_hold(tmp_path, textcat_model_dir, teacher_calls):
    """dev carved from train (dev_fraction): its reviews, and a test review, planted among the unlabelled texts,
    are dropped before labelling; the kept texts are the most confident of each label, as many of each."""
    _, carved = carve_dev(read_labelled(TRAIN), 0.2, 7)
    test_file = tmp_path / "test.jsonl"
    test_file.write_text(json.dumps({"text": "A test review nobody may label.", "label": "pos"}) + "\n")
    planted = [carved[0].text.upper(), carved[5].text, "a test review   nobody may label."]  # lower-casing model
    data = ClassifyData(TRAIN, test_file=str(test_file), dev_fraction=0.2, split_seed=7,
                        unlabelled_files=[unlabelled_file(tmp_path, *planted)],
                        pseudo_label_model=str(textcat_model_dir), pseudo_label_threshold=0.5, pseudo_label_max=6,
                        pseudo_label_balance=True)
    data.setup("fit")
    assert teacher_calls == UNLABELLED
    held_out = {text_key(example.text, True) for example in carved} | {text_key(planted[2], True)}
    assert not held_out & {text_key(example.text, True) for example in data.pseudo_examples}
    assert not {encoded(data, text) for text in planted} & training_rows(data)
    said = teacher_says(textcat_model_dir, UNLABELLED)
    kept = {example.label: [] for example in data.pseudo_examples}
    for example in data.pseudo_examples:
        kept[example.label].append(example.text)
    assert sorted(kept) == ["neg", "pos"] and [len(texts) for texts in kept.values()] == [3, 3]
    for label, texts in kept.items():  # each label's three most confident
        ranked = sorted((t for t in UNLABELLED if said[t][0] == label), key=lambda t: -said[t][1])
        assert set(texts) == set(ranked[:3])
    assert len(data.datasets["train"]) == 320 + 6 and len(data.datasets["val"]) == 80
    assert data.export().record["pseudo_labels"]["dropped_held_out"] == 3


def test_selection_is_deterministic_most_confident_first_ties_by_input_order():
    scored = [(0, "a", 0.95), (1, "b", 0.99), (2, "a", 0.95), (3, "a", 0.97), (4, "b", 0.5), (5, "a", 0.95)]
    assert select_confident(scored, 0.9, None, None) == [(0, "a"), (1, "b"), (2, "a"), (3, "a"), (5, "a")]
    assert select_confident(scored, 0.9, 3, None) == [(0, "a"), (1, "b"), (3, "a")]  # 0 beats 2 and 5 on a tie
    assert select_confident(scored, 0.9, None, ["a", "b"]) == [(1, "b"), (3, "a")]  # one "b" is confident
    assert select_confident(scored, 0.4, 4, ["a", "b"]) == [(0, "a"), (1, "b"), (3, "a"), (4, "b")]
    assert select_confident(scored, 1.0, None, None) == []


UNLABELLED_FILE = str(SAMPLE / "unlabelled.txt")


@pytest.mark.parametrize(("options", "message"), [
    ({"unlabelled_files": [UNLABELLED_FILE]}, "unlabelled_files is set but data.pseudo_label_model is not"),
    ({"pseudo_label_model": TEACHER}, "pseudo_label_model is '.*' but data.unlabelled_files is not set"),
    ({**BOTH, "pseudo_label_threshold": 0.0}, r"pseudo_label_threshold must be in \(0, 1\], got 0.0"),
    ({**BOTH, "pseudo_label_threshold": 1.01}, r"pseudo_label_threshold must be in \(0, 1\], got 1.01"),
    ({**BOTH, "pseudo_label_max": 0}, "pseudo_label_max must be a whole number ≥ 1"),
    ({**BOTH, "pseudo_label_model": "/no/such/teacher"},
     "data.pseudo_label_model: model directory not found: /no/such/teacher"),
])
def test_bad_settings_are_refused_before_reading_anything(options, message, textcat_model_dir):
    settings = {key: str(textcat_model_dir) if value == TEACHER else value for key, value in options.items()}
    with pytest.raises(ConfigError, match=message):
        ClassifyData("never-read.jsonl", **settings)


def test_a_teacher_of_another_task_or_other_labels_is_refused(tmp_path, textcat_model_dir):
    other_task = shutil.copytree(textcat_model_dir, tmp_path / "tagger")
    meta = json.loads((other_task / "meta.json").read_text())
    (other_task / "meta.json").write_text(json.dumps({**meta, "task": "tag"}))
    with pytest.raises(ConfigError, match="holds a 'tag' model, not a text classifier"):
        ClassifyData(TRAIN, DEV, unlabelled_files=[UNLABELLED_FILE],
                     pseudo_label_model=str(other_task))
    other_labels = shutil.copytree(textcat_model_dir, tmp_path / "stars")
    (other_labels / "meta.json").write_text(json.dumps({**meta, "labels": ["1star", "5stars"]}))
    data = ClassifyData(TRAIN, DEV, unlabelled_files=[UNLABELLED_FILE],
                        pseudo_label_model=str(other_labels))
    with pytest.raises(DataError, match=r"the teacher's labels \['1star', '5stars'\] are not among the data's labels "
                       r"\['neg', 'pos'\]"):
        data.setup("fit")
    (other_labels / "model.safetensors").write_bytes(b"not the weights")
    with pytest.raises(ModelDirError, match="corrupt"):
        data.setup("fit")


def test_fit_with_pseudo_labels_records_them_in_meta_json(tmp_path, textcat_model_dir):
    """The shipped sample config, its teacher swapped for the session's: a real `bilstm fit`, one short epoch."""
    result = run_bilstm("fit", "--config", "configs/textcat_sample_selftrain.yaml", *QUICK,
                        "--data.init_args.pseudo_label_model", str(textcat_model_dir),
                        "--data.init_args.pseudo_label_threshold", "0.6", "--trainer.default_root_dir", str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads((tmp_path / "model/meta.json").read_text())["training"]["data"]
    pseudo = data["pseudo_labels"]
    weights = json.loads((textcat_model_dir / "meta.json").read_text())["files"]["model.safetensors"]["sha256"]
    assert pseudo["teacher_sha256"] == weights and pseudo["model"] == str(textcat_model_dir)
    assert pseudo["files"] == ["samples/textcat/unlabelled.txt"] and pseudo["read"] == len(UNLABELLED)
    assert pseudo["threshold"] == 0.6 and pseudo["balance"] is True and pseudo["max"] is None
    kept = pseudo["kept"]
    assert kept["neg"] == kept["pos"] > 0 and data["train_examples"] == 400 + 2 * kept["neg"]


def test_the_student_before_its_teacher_gives_one_error_line():
    """The same check as above through `bilstm fit` (status 2, one line): the teacher's directory is not there."""
    result = run_bilstm("fit", "--config", "configs/textcat_sample_selftrain.yaml", *QUICK,
                        "--data.init_args.pseudo_label_model", "runs/no_such_teacher")
    assert one_error_line(result) == (
        "bilstm: error: invalid setting: data.pseudo_label_model: model directory not found: runs/no_such_teacher; "
        "give a classifier model directory written by `bilstm fit` (run the teacher's config first)")


def test_a_smaller_training_split_is_a_seeded_sample_with_every_class(tmp_path):
    """`max_train_examples` (the smaller-data study the self-training benchmark runs) draws from the whole split, so a
    file sorted by label (IMDB's is) still gives both classes; the same seed gives the same sample."""
    rows = [{"text": f"review {i} {'bad' if i < 30 else 'good'}", "label": "neg" if i < 30 else "pos"}
            for i in range(60)]
    sorted_file = tmp_path / "sorted.jsonl"
    sorted_file.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")

    def sample(seed: int) -> list[int]:
        data = ClassifyData(str(sorted_file), dev_fraction=0.1, split_seed=seed, max_train_examples=10)
        data.setup("fit")
        return data.datasets["train"].labels

    first = sample(3)
    assert len(first) == 10 and set(first) == {0, 1} and sample(3) == first
