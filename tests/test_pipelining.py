from toolkit.predict.pipelining import prefetched_windows, sorted_batches


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
