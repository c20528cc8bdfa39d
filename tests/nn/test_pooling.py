import pytest
import torch

from toolkit.nn import ClassifyNet, ClassifyNetConfig, EncoderConfig
from toolkit.nn.encoder import EncoderOutput
from toolkit.nn.pooling import SequencePooling


def encoded(outputs: torch.Tensor) -> EncoderOutput:
    return EncoderOutput(outputs, torch.zeros(1, 2, outputs.size(0), outputs.size(-1) // 2))


def test_mean_and_max_ignore_padding():
    outputs = torch.tensor([[[-3.0, -1.0], [-5.0, -2.0], [0.0, 0.0]]])  # third position is padding (zeros)
    lengths = torch.tensor([2])
    assert SequencePooling("max", 2)(encoded(outputs), lengths).tolist() == [[-3.0, -1.0]]
    assert SequencePooling("mean", 2)(encoded(outputs), lengths).tolist() == [[-4.0, -1.5]]
    assert SequencePooling("max+mean", 2)(encoded(outputs), lengths).shape == (1, 4)


def test_attention_pooling_ignores_padding():
    torch.manual_seed(0)
    pool = SequencePooling("attention", 4)
    outputs = torch.randn(1, 5, 4)
    padded = outputs.clone()
    padded[0, 3:] = 100.0
    torch.testing.assert_close(pool(encoded(outputs), torch.tensor([3])), pool(encoded(padded), torch.tensor([3])))


@pytest.mark.parametrize("pooling", ["last", "mean", "max", "attention", "last+max"])
@pytest.mark.parametrize("merge", ["concat", "sum"])
def test_classifier_is_padding_invariant(pooling, merge):
    torch.manual_seed(0)
    net = ClassifyNet(ClassifyNetConfig(embedding_dim=8, pooling=pooling,
                                             encoder=EncoderConfig(hidden_size=6, merge=merge)), 20, 3).eval()
    ids = torch.tensor([[2, 3, 4, 5], [6, 7, 0, 0]])
    with torch.no_grad():
        batch = net(ids, torch.tensor([4, 2]))
        alone = net(ids[1:, :2], torch.tensor([2]))
    torch.testing.assert_close(batch[1:], alone, atol=1e-5, rtol=1e-4)


def test_unknown_pooling_is_rejected():
    with pytest.raises(ValueError, match="pooling must be one of"):
        SequencePooling("median", 4)
