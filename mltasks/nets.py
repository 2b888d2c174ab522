"""2D U-Nets: the deterministic body-mask net and the Bayesian muscle net (method.md §2).

Both are one ``UNet`` class; ``NetConfig.bayesian`` inserts dropout before every
max-pool and after every up-convolution. Blocks are two 3x3 conv + batch norm +
ReLU, 2x2 max-pool, 2x2 transposed-conv upsampling, He initialisation.

Inference mode (our **choice**, after the finding in method.md §2): with dropout
0.5 in front of batch norm a deterministic pass (dropout off) shifts the
activations the following BN layers were trained on and the prediction
collapses. So a Bayesian net is validated and used in *MC mode* only: batch
norm in eval mode, dropout active (``UNet.mc_mode()``). ``UNet.eval()`` on a
Bayesian net also keeps dropout active; ``deterministic_mode()`` exists for
comparison only.

Tensors are (B, C, H, W); H and W must be divisible by 2 ** (depth - 1).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import torch
from torch import nn
from torch.nn import functional as F

from mltasks.errors import BadNetConfig


@dataclass(frozen=True)
class NetConfig:
    """Architecture of a U-Net; plain values only, so checkpoints load with weights_only=True.

    Attributes:
        n_classes: output channels including background.
        width: filters at the first level; doubled at every level below.
        depth: number of resolution levels (depth - 1 max-pools).
        dropout: dropout ratio of the Bayesian net (ignored when not bayesian).
        bayesian: dropout before every max-pool and after every up-convolution.
        matrix: in-plane size (pixels) of the slices the net is trained and run on.
        in_channels: input channels (1: the normalised CT slice).
    """

    n_classes: int
    width: int = 32
    depth: int = 5
    dropout: float = 0.5
    bayesian: bool = True
    matrix: int = 512
    in_channels: int = 1

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> NetConfig:
        return cls(**data)

    def validate(self) -> None:
        if self.depth < 1 or self.width < 1 or self.n_classes < 2:
            msg = f"depth {self.depth}, width {self.width}, n_classes {self.n_classes}: need depth >= 1, width >= 1, n_classes >= 2"
            raise BadNetConfig(msg)
        if not 0.0 <= self.dropout < 1.0:
            raise BadNetConfig(f"dropout ratio {self.dropout} must be in [0, 1)")
        if self.matrix % (2 ** (self.depth - 1)):
            msg = f"matrix {self.matrix} is not divisible by 2**(depth-1) = {2 ** (self.depth - 1)}; choose another matrix or depth"
            raise BadNetConfig(msg)

    @property
    def descriptor_size(self) -> int:
        """Length of the per-slice descriptor (bottleneck channels)."""
        return self.width * 2 ** (self.depth - 1)


# Named profiles. ``paper`` is the authors' configuration; ``fast`` is the provisional
# default chosen in docs/profiles.md (21x fewer FLOPs than paper); ``tiny`` is for tests.
PROFILES: dict[str, dict] = {
    "paper": {"width": 32, "depth": 5, "dropout": 0.5, "matrix": 512},
    "fast": {"width": 16, "depth": 4, "dropout": 0.5, "matrix": 256},
    "tiny": {"width": 8, "depth": 3, "dropout": 0.5, "matrix": 64},
}
DEFAULT_PROFILE = "fast"


def profile(name: str, *, n_classes: int, bayesian: bool = True, **overrides) -> NetConfig:
    """The ``NetConfig`` of a named profile (``paper``, ``fast``, ``tiny``), with overrides."""
    if name not in PROFILES:
        raise BadNetConfig(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}")
    cfg = NetConfig(n_classes=n_classes, bayesian=bayesian, **PROFILES[name])
    cfg = replace(cfg, **overrides)
    cfg.validate()
    return cfg


def keep_mask(
    shape: tuple[int, ...],
    p: float,
    *,
    generator: torch.Generator | None = None,
    channels_last: bool = False,
) -> torch.Tensor:
    """float32 mask of 0 (dropped, probability ``p``) and 1 (kept), not yet scaled.

    For p = 0.5 the mask is unpacked from random 64-bit words through a byte ->
    8 floats look-up table: one random draw per 64 elements, about ten times
    cheaper than ``bernoulli_``. With ``channels_last`` a 4D mask is laid out
    (B, H, W, C) in memory, matching a channels-last tensor.
    """
    if channels_last and len(shape) == 4:
        b, c, h, w = shape
        return keep_mask((b, h, w, c), p, generator=generator).permute(0, 3, 1, 2)
    if p != 0.5:
        return torch.rand(shape, generator=generator).lt_(1.0 - p).float()
    n = math.prod(shape)
    # The default int64 range leaves the sign bit at 0: ask for the full range.
    words = torch.empty((n + 63) // 64, dtype=torch.int64).random_(
        -(2**63), 2**63 - 1, generator=generator
    )
    return (
        torch.index_select(_BYTE_TO_BITS, 0, words.view(torch.uint8).int()).view(-1)[:n].view(shape)
    )


def is_channels_last(x: torch.Tensor) -> bool:
    """True when a 4D tensor is laid out channels-last (and not also plain contiguous)."""
    return (
        x.dim() == 4
        and x.is_contiguous(memory_format=torch.channels_last)
        and not x.is_contiguous()
    )


# Row b holds the 8 bits of byte b as floats.
_BYTE_TO_BITS = ((torch.arange(256)[:, None] >> torch.arange(8)) & 1).float()


class McDropout(nn.Module):
    """Element-wise (inverted) dropout that stays active in MC mode.

    Draws its mask from ``generator`` when one is set (seeded MC sampling), else
    from the global torch RNG, through ``keep_mask``.
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = float(p)
        self.active = False  # set by UNet.train()/eval()/mc_mode()
        self.generator: torch.Generator | None = None
        self.cheap_mask = True  # False: plain F.dropout (the benchmark's baseline)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.active or self.p == 0.0:
            return x
        if not self.cheap_mask:
            return F.dropout(x, self.p, training=True)
        keep = keep_mask(
            tuple(x.shape), self.p, generator=self.generator, channels_last=is_channels_last(x)
        )
        return x * keep.mul_(1.0 / (1.0 - self.p))

    def extra_repr(self) -> str:
        return f"p={self.p}"


class ConvBlock(nn.Sequential):
    """Two (3x3 conv -> batch norm -> ReLU)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__(
            nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
        )


class UNet(nn.Module):
    """2D U-Net, Bayesian when ``config.bayesian``.

    ``forward(x)`` maps (B, in_channels, H, W) float32 to (B, n_classes, H, W) logits;
    ``forward(x, return_features=True)`` also returns the (B, descriptor_size)
    bottleneck features averaged over the slice.
    """

    def __init__(self, config: NetConfig) -> None:
        super().__init__()
        config.validate()
        self.config = config
        p = config.dropout if config.bayesian else 0.0
        widths = [config.width * 2**level for level in range(config.depth)]
        self.down = nn.ModuleList()
        self.down_drop = nn.ModuleList()
        c_in = config.in_channels
        for w in widths[:-1]:
            self.down.append(ConvBlock(c_in, w))
            self.down_drop.append(McDropout(p))
            c_in = w
        self.bottom = ConvBlock(widths[-2] if len(widths) > 1 else config.in_channels, widths[-1])
        self.up = nn.ModuleList()
        self.up_drop = nn.ModuleList()
        self.up_block = nn.ModuleList()
        for w_low, w in zip(reversed(widths[1:]), reversed(widths[:-1]), strict=True):
            self.up.append(nn.ConvTranspose2d(w_low, w, 2, stride=2))
            self.up_drop.append(McDropout(p))
            self.up_block.append(ConvBlock(2 * w, w))
        self.head = nn.Conv2d(widths[0], config.n_classes, 1)
        self._he_init()
        self.train()

    def _he_init(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    @property
    def dropouts(self) -> list[McDropout]:
        return [m for m in self.modules() if isinstance(m, McDropout)]

    def train(self, mode: bool = True) -> UNet:
        """Training mode: BN batch statistics, dropout on. ``train(False)`` = ``mc_mode()``."""
        super().train(mode)
        self._set_dropout(mode or self.config.bayesian)
        return self

    def mc_mode(self) -> UNet:
        """Inference mode of a Bayesian net: BN running statistics, dropout on."""
        super().train(False)
        self._set_dropout(self.config.bayesian)
        return self

    def deterministic_mode(self) -> UNet:
        """BN running statistics, dropout off (invalid for a Bayesian net, see module doc)."""
        super().train(False)
        self._set_dropout(False)
        return self

    def _set_dropout(self, active: bool) -> None:
        for d in self.dropouts:
            d.active = active

    def set_generator(self, generator: torch.Generator | None) -> None:
        """Draw every dropout mask from ``generator`` (None: global RNG)."""
        for d in self.dropouts:
            d.generator = generator

    def check_input(self, x: torch.Tensor) -> None:
        factor = 2 ** (self.config.depth - 1)
        if (
            x.dim() != 4
            or x.shape[1] != self.config.in_channels
            or x.shape[2] % factor
            or x.shape[3] % factor
        ):
            msg = (
                f"input of shape {tuple(x.shape)} does not fit: need (B, {self.config.in_channels}, H, W) "
                f"with H and W divisible by {factor}; resample slices to the network matrix first"
            )
            raise BadNetConfig(msg)

    def forward(self, x: torch.Tensor, *, return_features: bool = False):
        self.check_input(x)
        skips = []
        for block, drop in zip(self.down, self.down_drop, strict=True):
            x = block(x)
            skips.append(x)
            x = F.max_pool2d(drop(x), 2)
        x = self.bottom(x)
        features = x.mean(dim=(2, 3)) if return_features else None
        for up, drop, block in zip(self.up, self.up_drop, self.up_block, strict=True):
            x = drop(up(x))
            x = block(torch.cat([x, skips.pop()], dim=1))
        logits = self.head(x)
        return (logits, features) if return_features else logits

    def descriptor(self, x: torch.Tensor) -> torch.Tensor:
        """(B, descriptor_size) bottleneck features averaged over each slice (one pass)."""
        return self.forward(x, return_features=True)[1]


def conv_flops(config: NetConfig, height: int, width: int) -> float:
    """Floating-point operations (2 per multiply-add) of one forward pass of one slice.

    Counts convolutions, transposed convolutions and the 1x1 head; ignores BN,
    ReLU, pooling and dropout, which are memory-bound and cheap in FLOPs.
    """
    widths = [config.width * 2**level for level in range(config.depth)]
    macs = 0.0
    c_in = config.in_channels
    for level, w in enumerate(widths):
        pixels = height * width / 4**level
        macs += pixels * 9 * (c_in * w + w * w)  # encoder / bottom block
        if level < config.depth - 1:
            macs += pixels * 9 * (2 * w * w + w * w)  # decoder block
            macs += pixels * widths[level + 1] * w  # 2x2 stride-2 transposed conv
        c_in = w
    macs += height * width * widths[0] * config.n_classes
    return 2.0 * macs
