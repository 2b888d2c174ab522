"""Inference-only rewrites of a U-Net: batch-norm folding and channels-last layout.

Folding is valid because in inference (MC mode or deterministic) batch norm uses
its running statistics, i.e. it is a fixed per-channel affine map that can be
merged into the convolution right before it:
    w' = w * gamma / sqrt(var + eps),  b' = beta + (b - mean) * gamma / sqrt(var + eps).
The folded net is a copy; the original keeps training normally.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn import functional as F

from mltasks.nets import UNet, is_channels_last, keep_mask


@torch.no_grad()
def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A new conv (with bias) equal to ``bn(conv(x))`` with BN in eval mode."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    fused = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        groups=conv.groups,
        bias=True,
    )
    fused.weight.copy_(conv.weight * scale.reshape(-1, 1, 1, 1))
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    fused.bias.copy_(bn.bias + (bias - bn.running_mean) * scale)
    if is_channels_last(conv.weight):
        fused = fused.to(memory_format=torch.channels_last)
    return fused


def _fold_sequential(seq: nn.Sequential) -> None:
    layers = list(seq)
    for i in range(len(layers) - 1):
        if isinstance(layers[i], nn.Conv2d) and isinstance(layers[i + 1], nn.BatchNorm2d):
            seq[i] = fold_conv_bn(layers[i], layers[i + 1])
            seq[i + 1] = nn.Identity()


def fold_batch_norm(model: UNet) -> UNet:
    """A copy of ``model`` with every conv + BN pair merged into one conv, in MC mode.

    The copy is for inference only (training it would no longer normalise).
    """
    folded = copy.deepcopy(model)
    for module in folded.modules():
        if isinstance(module, nn.Sequential):
            _fold_sequential(module)
    folded.mc_mode()
    for p in folded.parameters():
        p.requires_grad_(False)
    return folded


class FastMC:
    """MC-dropout sampler for a Bayesian ``UNet`` tuned for CPU inference.

    Same function as ``UNet.mc_mode()`` (same masks for the same generator
    state), rearranged for speed:
    - batch norm folded into the convolutions;
    - channels-last tensors (oneDNN's fast convolution layout);
    - dropout as in-place zeroing with masks unpacked from random bits; its
      1 / (1 - p) scale folded into the next convolution's weights (max-pool
      commutes with a positive scale);
    - the first encoder block sits before any dropout, so it and its skip
      connection's share of the last decoder convolution are computed once
      per batch (``prepare``) and reused by every sample.

    Use: ``state = runner.prepare(x)`` then ``runner.sample(state)`` T times.
    """

    def __init__(self, model: UNet, *, channels_last: bool = True) -> None:
        if not model.config.bayesian or model.config.depth < 2:
            raise ValueError("FastMC needs a Bayesian UNet with depth >= 2")
        net = fold_batch_norm(model)
        self.config = model.config
        self.p = model.config.dropout
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.generator: torch.Generator | None = None
        scale = 1.0 / (1.0 - self.p)
        blocks = [*net.down, net.bottom]
        with torch.no_grad():
            for block in blocks[1:]:
                block[0].weight.mul_(scale)  # input came through dropout + max-pool
            for block, up in zip(net.up_block, net.up, strict=True):
                block[0].weight[:, : up.out_channels].mul_(scale)  # up-conv half of the concat
        self.down = [self._convs(b) for b in blocks[:-1]]
        self.bottom = self._convs(blocks[-1])
        self.ups = [u.to(memory_format=self.memory_format) for u in net.up]
        self.up_blocks = [self._convs(b) for b in net.up_block]
        self.head = net.head.to(memory_format=self.memory_format)
        # Split the last decoder's first conv: conv(cat[u, s]) = conv_u(u) + conv_s(s) + bias.
        last = self.up_blocks[-1][0]
        w = self.ups[-1].out_channels
        self.last_up = self._sub_conv(last, last.weight[:, :w], bias=False)
        self.last_skip = self._sub_conv(last, last.weight[:, w:], bias=True)

    def _convs(self, block: nn.Sequential) -> list[nn.Conv2d]:
        return [m.to(memory_format=self.memory_format) for m in block if isinstance(m, nn.Conv2d)]

    def _sub_conv(self, conv: nn.Conv2d, weight: torch.Tensor, *, bias: bool) -> nn.Conv2d:
        sub = nn.Conv2d(
            weight.shape[1], weight.shape[0], conv.kernel_size, padding=conv.padding, bias=bias
        )
        with torch.no_grad():
            sub.weight.copy_(weight)
            if bias:
                sub.bias.copy_(conv.bias)
        sub.requires_grad_(False)
        return sub.to(memory_format=self.memory_format)

    @staticmethod
    def _block(convs: list[nn.Conv2d], x: torch.Tensor) -> torch.Tensor:
        for conv in convs:
            x = torch.relu_(conv(x))
        return x

    def _drop(self, x: torch.Tensor, *, inplace: bool) -> torch.Tensor:
        keep = keep_mask(
            tuple(x.shape), self.p, generator=self.generator, channels_last=is_channels_last(x)
        )
        return x.mul_(keep) if inplace else x * keep

    @torch.inference_mode()
    def prepare(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Deterministic part for a (B, 1, H, W) batch: first block output and its skip term."""
        x = x.contiguous(memory_format=self.memory_format)
        first = self._block(self.down[0], x)
        return first, self.last_skip(first)

    @torch.inference_mode()
    def sample(self, state: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """One MC sample: (B, n_classes, H, W) logits and (B, descriptor_size) bottleneck means."""
        first, skip_term = state
        skips = [first]
        h = F.max_pool2d(self._drop(first, inplace=False), 2)
        for convs in self.down[1:]:
            h = self._block(convs, h)
            skips.append(h)
            h = F.max_pool2d(self._drop(h, inplace=False), 2)
        h = self._block(self.bottom, h)
        features = h.mean(dim=(2, 3))
        n_up = len(self.ups)
        for i, (up, convs) in enumerate(zip(self.ups, self.up_blocks, strict=True)):
            u = self._drop(up(h), inplace=True)
            skip = skips.pop()
            if i < n_up - 1:
                h = self._block(convs, torch.cat([u, skip], dim=1))
            else:
                h = torch.relu_(self.last_up(u).add_(skip_term))
                h = self._block(convs[1:], h)
        return self.head(h), features
