import torch
from torch.utils.data import RandomSampler

from toolkit.data.batching import BucketBatchSampler, pad_ids
from toolkit.data.tokenize import Tokenizer, TokenizerSettings
from toolkit.data.vocab import PAD, UNK, Vocab


def test_tokenizer_removes_html_breaks_and_keeps_offsets():
    tokenizer = Tokenizer(TokenizerSettings(lowercase=False))
    text = "Great film!<br /><br />Loved it, didn't you?"
    assert tokenizer(text) == ["Great", "film", "!", "Loved", "it", ",", "did", "n't", "you", "?"]
    for token, start, end in tokenizer.spans(text):
        assert text[start:end] == token
    assert "br" not in Tokenizer()("a<BR/>b <br> c")


def test_tokenizer_lowercases_and_truncates():
    tokenizer = Tokenizer(TokenizerSettings(lowercase=True, max_tokens=3))
    assert tokenizer("The Cat sat on the mat") == ["the", "cat", "sat"]
    assert tokenizer.tokenize_many(["A b", "C"]) == [["a", "b"], ["c"]]


def test_vocab_frequency_order_limits_and_roundtrip():
    vocab = Vocab.build([["b", "a", "a"], ["c", "a", "b"]], max_size=4, min_freq=1)
    assert vocab.tokens == [PAD, UNK, "a", "b"]
    assert vocab.encode(["a", "c", "zzz"]) == [2, 1, 1]
    assert Vocab.build([["x", "y", "y"]], min_freq=2).tokens == [PAD, UNK, "y"]
    assert Vocab.from_json(vocab.to_json()).tokens == vocab.tokens


def test_pad_ids():
    ids, lengths = pad_ids([[5, 6, 7], [8]])
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]] and lengths.tolist() == [3, 1]


def test_bucket_batches_cover_every_index_once_with_similar_lengths():
    torch.manual_seed(0)
    lengths = torch.randint(1, 100, (1000,)).tolist()
    sampler = BucketBatchSampler(RandomSampler(range(1000)), 16, lengths=lengths, pool_factor=10)
    batches = list(sampler)
    assert len(batches) == len(sampler)
    assert sorted(i for batch in batches for i in batch) == list(range(1000))
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches) / len(batches)
    assert spread < 15  # random batches would spread ~90
    assert list(sampler) != batches  # a new order every epoch


def test_bucket_sampler_takes_an_injected_distributed_sampler():
    lengths = list(range(50))
    shards = []
    for rank in range(2):
        sampler = torch.utils.data.DistributedSampler(range(50), num_replicas=2, rank=rank, shuffle=True, seed=1)
        shards.append({i for batch in BucketBatchSampler(sampler, 8, lengths=lengths) for i in batch})
    assert not shards[0] & shards[1] and len(shards[0] | shards[1]) == 50


def test_truncation_keeps_head_tail_or_both():
    text = "one two three four five six seven eight"
    assert Tokenizer(TokenizerSettings(max_tokens=3, truncate="head"))(text) == ["one", "two", "three"]
    assert Tokenizer(TokenizerSettings(max_tokens=3, truncate="tail"))(text) == ["six", "seven", "eight"]
    assert Tokenizer(TokenizerSettings(max_tokens=4, truncate="head+tail"))(text) == ["one", "six", "seven", "eight"]
    with __import__("pytest").raises(ValueError, match="truncate must be one of"):
        TokenizerSettings(truncate="middle")
