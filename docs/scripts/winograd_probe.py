"""Probe: Winograd F(2x2, 3x3) in torch ops against oneDNN direct convolution, per layer of the paper net.

    python docs/scripts/winograd_probe.py

One thread, batch 4 at 256 x 256 (the layer shapes of the `paper` U-Net). Prints the time of both
per layer, the ratio and the relative error. Measured 2026-11-24 on the idle machine (issue 3 note): 0.32x overall;
only layers with 256 or more channels gained (1.08-1.46x). Not used by the product.
"""

# ruff: noqa: B023 - each lambda is timed within its own loop iteration
import time

import torch
import torch.nn.functional as F

torch.set_num_threads(1)
G = torch.tensor([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], dtype=torch.float64)


def wino_weights(w):
    U = G @ w.double() @ G.T  # (Cout, Cin, 4, 4)
    return U.permute(2, 3, 1, 0).reshape(16, w.shape[1], w.shape[0]).float().contiguous()


def wino_conv(x, U, bias):
    """x: (N,C,H,W) channels-last; 3x3, pad 1; H, W even. Returns channels-last (N,Cout,H,W)."""
    N, C, H, W = x.shape
    th, tw = H // 2, W // 2
    xh = x.permute(0, 2, 3, 1)  # NHWC view
    xp = F.pad(xh, (0, 0, 1, 1, 1, 1))  # (N, H+2, W+2, C)
    d = [xp[:, k : k + 2 * th : 2] for k in range(4)]  # (N, th, W+2, C)
    r = [d[0] - d[2], d[1] + d[2], d[2] - d[1], d[1] - d[3]]
    V = x.new_empty((4, 4, N, th, tw, C))
    for i in range(4):
        c = [r[i][:, :, k : k + 2 * tw : 2] for k in range(4)]
        torch.sub(c[0], c[2], out=V[i, 0])
        torch.add(c[1], c[2], out=V[i, 1])
        torch.sub(c[2], c[1], out=V[i, 2])
        torch.sub(c[1], c[3], out=V[i, 3])
    M = torch.bmm(V.view(16, N * th * tw, C), U).view(4, 4, N, th, tw, -1)
    Cout = M.shape[-1]
    t0 = M[0] + M[1] + M[2]  # (4, N, th, tw, Cout)
    t1 = M[1] - M[2] - M[3]
    out = x.new_empty((N, th, 2, tw, 2, Cout))
    for a, t in enumerate((t0, t1)):
        torch.add(t[0] + t[1], t[2], out=out[:, :, a, :, 0])
        torch.sub(t[1] - t[2], t[3], out=out[:, :, a, :, 1])
    y = out.view(N, H, W, Cout).permute(0, 3, 1, 2)
    return y.add_(bias.view(1, -1, 1, 1))


def bench(f, n=3):
    f()
    best = 1e9
    for _ in range(n):
        s = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - s)
    return best


layers = [
    (256, 32, 32),
    (128, 32, 64),
    (128, 64, 64),
    (64, 64, 128),
    (64, 128, 128),
    (32, 128, 256),
    (32, 256, 256),
    (16, 256, 512),
    (16, 512, 512),
    (32, 512, 256),
    (64, 256, 128),
    (128, 128, 64),
    (256, 64, 32),
]
N = 4
tot_d = tot_w = 0
with torch.inference_mode():
    for res, cin, cout in layers:
        x = torch.randn(N, cin, res, res).contiguous(memory_format=torch.channels_last)
        conv = torch.nn.Conv2d(cin, cout, 3, padding=1).to(memory_format=torch.channels_last)
        U = wino_weights(conv.weight)
        ref = conv(x)
        got = wino_conv(x, U, conv.bias)
        err = ((ref - got).abs().max() / ref.abs().max()).item()
        td = bench(lambda: conv(x))
        tw_ = bench(lambda: wino_conv(x, U, conv.bias))
        tot_d += td
        tot_w += tw_
        print(
            f"{res:4d} {cin:4d}->{cout:4d} direct {td * 1e3:7.1f} ms wino {tw_ * 1e3:7.1f} ms  x{td / tw_:.2f} relerr {err:.1e}"
        )
print(f"total direct {tot_d * 1e3:.0f} ms, wino {tot_w * 1e3:.0f} ms, x{tot_d / tot_w:.2f}")
