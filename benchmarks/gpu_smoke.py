"""GPU checks of the plain-torch parts (no spaCy needed): exact padding on cuDNN, CPU/GPU agreement,
bf16 autocast, and encoder speed beside the bare nn.LSTM on the same batches.

    python benchmarks/gpu_smoke.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from toolkit.nn import ClassifyNet, ClassifyNetConfig, EncoderConfig, RecurrentEncoder


def main() -> None:
    assert torch.cuda.is_available(), "needs a CUDA device"
    print(torch.__version__, torch.cuda.get_device_name(0), "cudnn", torch.backends.cudnn.version())
    torch.manual_seed(0)
    # cuDNN RNNs use TF32 by default on Ampere+ (differences ~1e-4); compare in full fp32 here.
    torch.backends.cudnn.allow_tf32 = False
    for cell in ("lstm", "gru", "rnn_tanh"):
        for padding in ("reverse", "packed"):
            config = EncoderConfig(cell=cell, hidden_size=32, num_layers=2, padding=padding)
            encoder = RecurrentEncoder(16, config).eval()
            x, lengths = torch.randn(6, 11, 16), torch.tensor([11, 3, 7, 1, 9, 11])
            with torch.no_grad():
                cpu = encoder(x, lengths).outputs
                encoder.cuda()
                gpu = encoder(x.cuda(), lengths.cuda())
                worst = max((gpu.outputs[b, :n] - encoder(x[b:b + 1, :n].cuda(), lengths[b:b + 1].cuda()).outputs[0])
                            .abs().max().item() for b, n in enumerate(lengths.tolist()))
            print(f"{cell:8} {padding:7} padding-invariance max|diff| {worst:.2e}  "
                  f"cpu-vs-gpu {(cpu - gpu.outputs.cpu()).abs().max():.2e}")
            assert worst < 1e-4, worst
    torch.backends.cudnn.allow_tf32 = True
    net = ClassifyNet(ClassifyNetConfig(embedding_dim=50, encoder=EncoderConfig(hidden_size=128),
                                             pooling="max+mean"), 50_000, 2).cuda().eval()
    ids = torch.randint(2, 50_000, (64, 300), device="cuda")
    lengths = torch.randint(150, 301, (64,), device="cuda")
    with torch.inference_mode():
        full = net(ids, lengths).softmax(-1)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            half = net(ids, lengths).float().softmax(-1)
    print(f"bf16 autocast: max prob diff {(full - half).abs().max():.3e}, "
          f"same argmax {(full.argmax(-1) == half.argmax(-1)).float().mean():.3f}")
    bare = torch.nn.LSTM(50, 128, bidirectional=True, batch_first=True).cuda().eval()
    x = torch.randn(64, 300, 50, device="cuda")
    for name, fn in (("bare nn.LSTM", lambda: bare(x)), ("RecurrentEncoder", lambda: net.encoder(x, lengths)),
                     ("classifier fp32", lambda: net(ids, lengths)),):
        with torch.inference_mode():
            for _ in range(3):
                fn()
            torch.cuda.synchronize()
            started = time.perf_counter()
            for _ in range(20):
                fn()
            torch.cuda.synchronize()
        print(f"{name:18} {20 * int(lengths.sum()) / (time.perf_counter() - started):,.0f} tokens/s (batch 64 x <=300)")


if __name__ == "__main__":
    main()
