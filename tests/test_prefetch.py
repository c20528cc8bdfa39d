from toolkit.data.batching import sorted_batches
from toolkit.predict.prefetch import prefetched_windows


def test_windows_cover_every_text_once_and_encode_in_order():
    texts = [f"text {'x' * (i % 7)}" for i in range(50)]
    seen = []
    for indices, encoded in prefetched_windows(texts, lambda batch: [len(t) for t in batch], window=8):
        assert encoded == [len(texts[i]) for i in indices]
        seen += indices
    assert sorted(seen) == list(range(50))


def test_first_window_is_small_so_the_model_starts_early():
    texts = [f"text {'x' * i}" for i in range(40)]
    sizes = [len(indices) for indices, _ in prefetched_windows(texts, lambda batch: batch, window=16)]
    assert sizes == [4, 16, 16, 4]  # window // 4 first, then full windows, longest texts first
    sizes = [len(indices) for indices, _ in prefetched_windows(texts, lambda batch: batch, window=16, first_window=30)]
    assert sizes == [16, 16, 8]  # never larger than a window


def test_exact_length_groups_become_unpadded_batches():
    lengths = [5] * 10 + [7] * 3 + [9, 8, 6]
    batches = [positions for positions, _ in sorted_batches(list(range(len(lengths))), lengths, batch_size=8)]
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    exact = [batch for batch in batches if len({lengths[i] for i in batch}) == 1]
    assert [len(batch) for batch in exact[:2]] == [3, 8]  # the 7s (≥ a quarter batch), then eight 5s
    assert all(len(batch) <= 8 for batch in batches)


def test_windows_also_end_at_their_size_budget():
    texts = ["x" * 100] * 10
    sizes = [len(indices) for indices, _ in prefetched_windows(texts, lambda batch: batch, window=16, max_size=250)]
    assert sizes == [2, 2, 2, 2, 2]  # at most 250 characters per window (the first window is one or more texts)


def test_a_batch_holds_at_most_its_token_budget():
    lengths = [1000, 900, 800, 10, 10, 10, 10, 10]
    batches = [positions for positions, _ in sorted_batches(list(range(8)), lengths, batch_size=8, max_tokens=2000)]
    assert sorted(i for batch in batches for i in batch) == list(range(8))
    assert all(len(batch) * max(lengths[i] for i in batch) <= 2000 or len(batch) == 1 for batch in batches)
    assert [0, 1] in batches and [2] in batches  # 2 × 1000 fits the 2,000 tokens; a third 1000-wide row would not
