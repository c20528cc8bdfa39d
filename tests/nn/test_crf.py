import itertools

import pytest
import torch

from toolkit.data.tagschemes import allowed_transitions, is_valid
from toolkit.nn.crf import CRF


def random_crf(tags: int, allowed=None, seed: int = 0) -> CRF:
    torch.manual_seed(seed)
    crf = CRF(tags, allowed)
    with torch.no_grad():
        for parameter in crf.parameters():
            parameter.normal_()
    return crf


def brute_force(crf: CRF, emissions: torch.Tensor) -> dict[tuple[int, ...], float]:
    """Score of every tag sequence of one unpadded sentence ``[T, K]``."""
    scores = {}
    mask = torch.ones(1, emissions.size(0), dtype=torch.bool)
    for path in itertools.product(range(crf.num_tags), repeat=emissions.size(0)):
        scores[path] = crf.sequence_score(emissions.unsqueeze(0), torch.tensor([path]), mask).item()
    return scores


@pytest.mark.parametrize("length", [1, 2, 4])
def test_log_likelihood_equals_brute_force_enumeration(length):
    crf = random_crf(3)
    emissions = torch.randn(length, 3)
    scores = brute_force(crf, emissions)
    log_z = torch.logsumexp(torch.tensor(list(scores.values())), 0).item()
    mask = torch.ones(1, length, dtype=torch.bool)
    for path in list(scores)[:5]:
        expected = scores[path] - log_z
        got = crf.log_likelihood(emissions.unsqueeze(0), torch.tensor([path]), mask).item()
        assert got == pytest.approx(expected, abs=1e-4)


def test_viterbi_equals_brute_force_argmax_in_a_padded_batch():
    crf = random_crf(4, seed=1)
    lengths = [5, 3, 1, 4]
    emissions = torch.randn(4, 5, 4)
    mask = torch.arange(5).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)
    decoded = crf.viterbi(emissions, mask)
    for row, length in enumerate(lengths):
        scores = brute_force(crf, emissions[row, :length])
        assert tuple(decoded[row]) == max(scores, key=scores.get)


def test_marginals_equal_brute_force_and_sum_to_one():
    crf = random_crf(3, seed=2)
    emissions = torch.randn(2, 4, 3)
    mask = torch.tensor([[True] * 4, [True, True, True, False]])
    marginals = crf.marginals(emissions, mask)
    torch.testing.assert_close(marginals[mask].sum(-1), torch.ones(7))
    assert torch.all(marginals[1, 3] == 0)
    scores = brute_force(crf, emissions[1, :3])
    log_z = torch.logsumexp(torch.tensor(list(scores.values())), 0)
    expected = torch.zeros(3, 3)
    for path, score in scores.items():
        for t, tag in enumerate(path):
            expected[t, tag] += torch.exp(torch.tensor(score) - log_z)
    torch.testing.assert_close(marginals[1, :3], expected, atol=1e-5, rtol=1e-4)


def test_padding_does_not_change_likelihood():
    crf = random_crf(3, seed=3)
    emissions = torch.randn(1, 3, 3)
    tags = torch.tensor([[0, 2, 1]])
    alone = crf.log_likelihood(emissions, tags, torch.ones(1, 3, dtype=torch.bool))
    padded = crf.log_likelihood(torch.cat([emissions, torch.randn(1, 2, 3)], 1), torch.tensor([[0, 2, 1, 0, 0]]),
                                torch.tensor([[True, True, True, False, False]]))
    torch.testing.assert_close(alone, padded)


@pytest.mark.parametrize("scheme", ["iob1", "iob2", "bioes"])
def test_constrained_decoding_never_emits_an_invalid_transition(scheme):
    tags = ["O"] + [f"{p}-{k}" for k in ("LOC", "PER") for p in ("BIES" if scheme == "bioes" else "BI")]
    crf = random_crf(len(tags), allowed_transitions(tags, scheme), seed=4)
    emissions = torch.randn(64, 9, len(tags)) * 3  # strong random emissions push towards invalid paths
    mask = torch.ones(64, 9, dtype=torch.bool)
    for path in crf.viterbi(emissions, mask):
        assert is_valid([tags[i] for i in path], scheme), [tags[i] for i in path]


def test_gradients_reach_transitions():
    crf = random_crf(3)
    loss = -crf.log_likelihood(torch.randn(2, 3, 3, requires_grad=True), torch.tensor([[0, 1, 2], [2, 2, 0]]),
                               torch.ones(2, 3, dtype=torch.bool)).sum()
    loss.backward()
    assert crf.transitions.grad.abs().sum() > 0 and torch.isfinite(crf.transitions.grad).all()
