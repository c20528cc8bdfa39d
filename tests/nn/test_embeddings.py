import gzip

import numpy as np
import pytest
import torch

from toolkit.data.vectors import GLOVE_PACKAGE, load_pretrained
from toolkit.errors import ConfigError, DataError
from toolkit.nn.embeddings import WordEmbedding

TOKENS = ["<pad>", "<unk>", "the", "Paris", "cat", "zzzunseen"]


def write_vectors(path, header: bool, rows: dict[str, list[float]]) -> None:
    lines = [f"{len(rows)} 3"] if header else []
    lines += [" ".join([word, *map(str, vector)]) for word, vector in rows.items()]
    text = "\n".join(lines) + "\n"
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)


@pytest.mark.parametrize(("name", "header"), [("vectors.txt", False), ("vectors.vec", True), ("vectors.txt.gz", False)])
def test_text_vectors_with_lowercase_fallback(tmp_path, name, header):
    path = tmp_path / name
    write_vectors(path, header, {"the": [1, 2, 3], "paris": [4, 5, 6], "cat": [7, 8, 9]})
    vectors, found, stats = load_pretrained(str(path), TOKENS, 3)
    assert found.tolist() == [False, False, True, True, True, False]
    assert vectors[3].tolist() == [4, 5, 6]  # "Paris" found as "paris"
    assert (stats.found_exact, stats.found_lowercase, stats.found) == (2, 1, 3)
    assert "3/6 tokens found" in str(stats)


def test_exact_case_wins_over_lowercase(tmp_path):
    path = tmp_path / "v.txt"
    write_vectors(path, False, {"Paris": [1, 1, 1], "paris": [2, 2, 2]})
    vectors, _, stats = load_pretrained(str(path), ["<pad>", "<unk>", "Paris"], 3)
    assert vectors[2].tolist() == [1, 1, 1] and stats.found_exact == 1


def test_wrong_dimension_is_a_clear_error(tmp_path):
    path = tmp_path / "v.txt"
    write_vectors(path, False, {"the": [1, 2, 3]})
    with pytest.raises(DataError, match=r"v.txt:1: expected a word and 4 numbers, found 3"):
        load_pretrained(str(path), TOKENS, 4)
    with pytest.raises(ConfigError, match="not found"):
        load_pretrained(str(tmp_path / "missing.txt"), TOKENS, 3)


def test_glove_package_vectors():
    vectors, found, stats = load_pretrained(GLOVE_PACKAGE, TOKENS, 50)
    assert found.tolist() == [False, False, True, True, True, False]
    # First row of GloVe 6B 50d is "the": 0.418 0.24968 -0.41242 ...
    assert np.allclose(vectors[2, :3].numpy(), [0.418, 0.24968, -0.41242])
    assert stats.found_lowercase == 1  # "Paris" via "paris"
    with pytest.raises(ConfigError, match="embedding_dim: 50"):
        load_pretrained(GLOVE_PACKAGE, TOKENS, 100)


def test_initialise_and_freeze(tmp_path):
    path = tmp_path / "v.txt"
    write_vectors(path, False, {"cat": [7, 8, 9]})
    embedding = WordEmbedding(len(TOKENS), 3)
    before = embedding.embedding.weight[2].clone()
    vectors, found, stats = load_pretrained(str(path), TOKENS, 3)
    embedding.initialise_from(vectors, found, freeze=True)
    assert stats.found == 1
    assert embedding.embedding.weight[4].tolist() == [7, 8, 9]
    assert torch.equal(embedding.embedding.weight[2], before)  # not found: keeps its random init
    assert not embedding.embedding.weight.requires_grad


def test_word_dropout_only_in_training_and_never_on_padding():
    embedding = WordEmbedding(10, 4, word_dropout=1.0)
    ids = torch.tensor([[2, 3, 0]])
    embedding.train()
    out = embedding(ids)
    torch.testing.assert_close(out[0, 0], embedding.embedding.weight[1])  # replaced by <unk>
    assert torch.all(out[0, 2] == 0)  # padding stays padding
    embedding.eval()
    torch.testing.assert_close(embedding(ids)[0, 0], embedding.embedding.weight[2])


def test_vectors_of_the_wrong_shape_are_refused():
    with pytest.raises(ValueError, match=r"pretrained vectors \(4, 3\) do not fit the embedding table \(6, 3\)"):
        WordEmbedding(len(TOKENS), 3).initialise_from(torch.zeros(4, 3), torch.ones(4, dtype=torch.bool))
