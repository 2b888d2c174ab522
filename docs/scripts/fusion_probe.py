"""Probe: ReLU fused into oneDNN convolutions, and the 2x2 transposed conv as 1x1 conv + pixel shuffle.

    python docs/scripts/fusion_probe.py

Exactness and time side by side for a few layer shapes of the paper net (2 threads). Measured
2026-11-24 (issue 3 note): fused ReLU with prepacked weights from 1 % slower to 10 % faster per
layer; 1x1 + pixel shuffle 1.2x slower than the transposed conv. Not used by the product.
"""

# ruff: noqa: B023 - each lambda is timed within its own loop iteration

import time

import torch

torch.set_num_threads(2)
conv = torch.nn.Conv2d(64, 64, 3, padding=1).to(memory_format=torch.channels_last)
x = torch.randn(4, 64, 128, 128).contiguous(memory_format=torch.channels_last)
op = torch.ops.mkldnn._convolution_pointwise
with torch.inference_mode():
    ref = torch.relu(conv(x))
    got = op(x, conv.weight, conv.bias, [1, 1], [1, 1], [1, 1], 1, "relu", [], "")
    print(
        "max diff",
        (ref - got).abs().max().item(),
        got.is_contiguous(memory_format=torch.channels_last),
    )

    def bench(f, n=10):
        f()
        s = time.perf_counter()
        for _ in range(n):
            f()
        return (time.perf_counter() - s) / n

    a = bench(lambda: torch.relu_(conv(x)))
    b = bench(lambda: op(x, conv.weight, conv.bias, [1, 1], [1, 1], [1, 1], 1, "relu", [], ""))
    print(f"conv+relu_ {a * 1e3:.1f} ms fused {b * 1e3:.1f} ms")
    # transposed conv 2x2 s2 vs 1x1 conv + pixel_shuffle
    up = torch.nn.ConvTranspose2d(128, 64, 2, stride=2).to(memory_format=torch.channels_last)
    h = torch.randn(4, 128, 64, 64).contiguous(memory_format=torch.channels_last)
    w1 = (
        up.weight.permute(1, 2, 3, 0).reshape(64 * 4, 128, 1, 1).contiguous()
    )  # (cout, a, b, cin) -> (cout*4, cin)
    b1 = up.bias.repeat_interleave(4)
    conv1 = torch.nn.Conv2d(128, 256, 1).to(memory_format=torch.channels_last)
    conv1.weight.copy_(w1)
    conv1.bias.copy_(b1)
    ref = up(h)
    got = torch.pixel_shuffle(conv1(h), 2)
    print(
        "up max diff",
        (ref - got).abs().max().item(),
        got.is_contiguous(memory_format=torch.channels_last),
    )
    a = bench(lambda: up(h))
    b = bench(lambda: torch.pixel_shuffle(conv1(h), 2))
    print(f"convT {a * 1e3:.1f} ms 1x1+shuffle {b * 1e3:.1f} ms")
    print("--- prepacked")
    reorder = torch.ops.mkldnn._reorder_convolution_weight
    for shape, cin, cout in (
        ((4, 64, 128, 128), 64, 64),
        ((4, 32, 256, 256), 32, 32),
        ((4, 256, 32, 32), 256, 256),
    ):
        conv = torch.nn.Conv2d(cin, cout, 3, padding=1).to(memory_format=torch.channels_last)
        x = torch.randn(*shape).contiguous(memory_format=torch.channels_last)
        wp = reorder(conv.weight, [1, 1], [1, 1], [1, 1], 1, list(shape))
        ref = torch.relu(conv(x))
        got = op(x, wp, conv.bias, [1, 1], [1, 1], [1, 1], 1, "relu", [], "")
        a = bench(lambda: torch.relu_(conv(x)))
        b = bench(lambda: op(x, wp, conv.bias, [1, 1], [1, 1], [1, 1], 1, "relu", [], ""))
        c = bench(lambda: conv(x))
        print(
            shape,
            f"diff {(ref - got).abs().max().item():.1e} conv+relu_ {a * 1e3:.1f} prepacked fused {b * 1e3:.1f} conv alone {c * 1e3:.1f} ms",
        )
