"""Attention, the attentional decoder and greedy / beam search (plain torch, tiny sizes)."""

import pytest
import torch
from safetensors.torch import save

from toolkit.nn.attention import ATTENTIONS, Attention
from toolkit.nn.beam import DecodingConfig, beam_search, greedy_search
from toolkit.nn.decoder import DecoderConfig
from toolkit.nn.encoder import EncoderConfig
from toolkit.nn.seq2seq import TranslateNet, TranslateNetConfig

BOS, EOS = 2, 3


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # Tiny tensors: a second OpenMP thread only adds spin-waiting on a shared machine.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def make_net(attention="general", input_feeding=True, cell="lstm", layers=1, vocab=24, share=True, seed=0):
    torch.manual_seed(seed)
    config = TranslateNetConfig(
        embedding_dim=16, embedding_dropout=0.0, share_embeddings=share,
        encoder=EncoderConfig(hidden_size=16, num_layers=2),
        decoder=DecoderConfig(cell=cell, hidden_size=32, num_layers=layers, attention=attention,
                              input_feeding=input_feeding, dropout=0.0),
    )
    return TranslateNet(config, vocab, vocab, bos=BOS, eos=EOS, banned=(0, BOS))


def padded(sequences):
    lengths = torch.tensor([len(s) for s in sequences])
    ids = torch.zeros(len(sequences), int(lengths.max()), dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.tensor(seq)
    return ids, lengths


SOURCES = [[5, 6, 7, 8, 9, 10], [11, 12], [13, 14, 15, 16], [17], [18, 19, 20, 21, 22]]
# A tiny "language": each target is a deterministic function of its source (reverse, shift by one).
PAIRS = [(src, [t + 1 for t in reversed(src)]) for src in SOURCES]


@pytest.fixture(scope="module")
def trained():
    """A tiny model that has memorised PAIRS (teacher forcing, label smoothing off)."""
    net = make_net(vocab=24)
    optimiser = torch.optim.Adam(net.parameters(), lr=0.01)
    source, lengths = padded([s for s, _ in PAIRS])
    target_in, _ = padded([[BOS, *t] for _, t in PAIRS])
    target_out, _ = padded([[*t, EOS] for _, t in PAIRS])
    real = target_out != 0
    for _ in range(300):
        attentional, _ = net(source, lengths, target_in)
        loss = torch.nn.functional.cross_entropy(net.logits(attentional[real]), target_out[real])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if loss.item() < 0.01:
            break
    return net.eval()


@pytest.mark.parametrize("kind", ATTENTIONS)
def test_attention_ignores_padding_exactly(kind):
    torch.manual_seed(0)
    attention = Attention(kind, 8, 8, attention_size=6)
    memory = torch.randn(2, 5, 8)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    query = torch.randn(2, 3, 8)
    context, weights = attention(query, attention.keys(memory), memory, mask)
    assert context.shape == (2, 3, 8) and weights.shape == (2, 3, 5)
    assert torch.all(weights[0, :, 3:] == 0)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 3))
    # Garbage in the padded positions changes nothing.
    noisy = memory.clone()
    noisy[0, 3:] = 100.0
    context2, _ = attention(query, attention.keys(noisy), noisy, mask)
    torch.testing.assert_close(context2[0], context[0])


def test_dot_attention_needs_matching_sizes():
    with pytest.raises(ValueError, match="dot attention needs"):
        Attention("dot", 8, 6)


@pytest.mark.parametrize("attention", ATTENTIONS)
@pytest.mark.parametrize("input_feeding", [True, False])
@pytest.mark.parametrize("cell,layers", [("lstm", 1), ("gru", 2)])
def test_step_by_step_equals_teacher_forcing(attention, input_feeding, cell, layers):
    net = make_net(attention if attention != "dot" else "general", input_feeding, cell, layers).eval()
    source, lengths = padded(SOURCES)
    targets = torch.randint(4, 24, (len(SOURCES), 6))
    with torch.no_grad():
        attentional, weights = net(source, lengths, targets)
        memory, state = net.encode(source, lengths)
        steps = []
        for t in range(targets.size(1)):
            logits, state, step_weights = net.decoder.step(targets[:, t], state, memory)
            steps.append(logits)
            torch.testing.assert_close(step_weights, weights[:, t], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(torch.stack(steps, 1), net.logits(attentional), atol=1e-5, rtol=1e-4)


def test_state_and_memory_are_reindexed_not_mutated():
    net = make_net().eval()
    source, lengths = padded(SOURCES)
    memory, state = net.encode(source, lengths)
    rows = torch.tensor([4, 4, 0])
    picked = state.index(rows)
    assert picked.hidden.shape == (1, 3, 32) and picked.feed.shape == (3, 32)
    assert memory.index(rows).values.shape[0] == 3
    before = state.hidden.clone()
    net.decoder.step(torch.full((5,), BOS), state, memory)
    assert torch.equal(state.hidden, before)  # the old state is untouched: a new one is returned


def test_tiny_model_memorises_a_few_pairs(trained):
    source, lengths = padded([s for s, _ in PAIRS])
    for beam in (1, 3):
        results = trained.translate(source, lengths, DecodingConfig(beam_size=beam))
        assert [r.tokens for r in results] == [t for _, t in PAIRS]


@pytest.mark.parametrize("which", ["trained", "random"])
def test_beam_size_one_equals_greedy(which, trained):
    net = trained if which == "trained" else make_net(seed=3).eval()
    source, lengths = padded(SOURCES)
    greedy = net.translate(source, lengths, DecodingConfig(beam_size=1))
    memory, state = net.encode(source, lengths)
    limits = DecodingConfig().max_lengths(lengths)
    beam = beam_search(net.decoder, memory, state, limits, BOS, EOS, beam_size=1, length_penalty=0.0,
                       banned=net.banned)
    assert [g.tokens for g in greedy] == [b.tokens for b in beam]
    for g, b in zip(greedy, beam, strict=True):
        assert b.log_prob == pytest.approx(g.log_prob, abs=1e-4)


@pytest.mark.parametrize("which", ["trained", "random"])
@pytest.mark.parametrize("beam_size", [2, 4])
def test_batched_beam_equals_one_at_a_time(which, beam_size, trained):
    net = trained if which == "trained" else make_net(seed=5, attention="additive").eval()
    decoding = DecodingConfig(beam_size=beam_size, length_penalty=0.8, max_length_offset=4)
    source, lengths = padded(SOURCES)
    batched = net.translate(source, lengths, decoding, return_attention=True)
    for row, sentence in enumerate(SOURCES):
        alone = net.translate(*padded([sentence]), decoding, return_attention=True)[0]
        assert alone.tokens == batched[row].tokens
        assert alone.score == pytest.approx(batched[row].score, abs=1e-4)
        torch.testing.assert_close(alone.attention, batched[row].attention, atol=1e-5, rtol=1e-4)


def test_search_results_respect_limits_and_special_tokens():
    net = make_net(seed=7).eval()  # untrained: rarely ends by itself, so the limits matter
    source, lengths = padded(SOURCES)
    decoding = DecodingConfig(beam_size=3, max_length_ratio=0.0, max_length_offset=4)
    for beam_size in (1, 3):
        decoding.beam_size = beam_size
        for result in net.translate(source, lengths, decoding, return_attention=True):
            assert 0 < len(result.attention) <= 4 and len(result.tokens) <= 4
            assert not {0, BOS, EOS} & set(result.tokens)
            assert len(result.attention) in (len(result.tokens), len(result.tokens) + 1)
            torch.testing.assert_close(result.attention.sum(-1), torch.ones(len(result.attention)))


def test_greedy_and_beam_functions_share_the_protocol(trained):
    source, lengths = padded(SOURCES[:2])
    memory, state = trained.encode(source, lengths)
    limits = torch.tensor([3, 3])
    greedy = greedy_search(trained.decoder, memory, state, limits, BOS, EOS, banned=(0, BOS))
    assert all(len(g.tokens) <= 3 for g in greedy)
    assert greedy[1].tokens == PAIRS[1][1]  # [13, 12] then </s> fits in 3 steps


def test_tied_and_shared_weights_are_stored_once():
    net = make_net(share=True)
    names = set(net.state_dict())
    assert "decoder.embed.embedding.weight" in names and not any(n.startswith("source_embed") for n in names)
    save({k: v.contiguous() for k, v in net.state_dict().items()})  # safetensors refuses aliased tensors
    with pytest.raises(ValueError, match="joint vocabulary"):
        TranslateNet(TranslateNetConfig(share_embeddings=True), 100, 120, bos=BOS, eos=EOS)
    separate = TranslateNet(TranslateNetConfig(share_embeddings=False, embedding_dim=8,
                                        encoder=EncoderConfig(hidden_size=4), decoder=DecoderConfig(hidden_size=8)),
                          100, 120, bos=BOS, eos=EOS)
    assert separate.source_embed.embedding.weight.shape == (100, 8)
    assert separate.decoder.embed.embedding.weight.shape == (120, 8)


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match=r"decoder\.attention"):
        DecoderConfig(attention="cosine").validate()
    with pytest.raises(ValueError, match=r"decoder\.cell"):
        DecoderConfig(cell="rnn_tanh").validate()
    with pytest.raises(ValueError, match="beam_size"):
        DecodingConfig(beam_size=0).validate()
