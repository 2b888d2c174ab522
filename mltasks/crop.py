"""Training batches cropped to what the slices hold (``TrainConfig.crop_to_content``).

A network slice is padded with air to the field of view (``mltasks.netgrid``): on a
real hip CT at 2 mm the body, table and arms fill about 65 % of the rows, and the
rows above and below are air that every training pass convolves for nothing. A
batch is cut, after augmentation, to the rows and columns where any of its slices
has tissue or a label, plus a margin of air so the network still learns the body's
edge; the size is rounded up to the U-Net's multiple. Inference keeps whole slices:
the network is convolutional, and air outside the margin is what it learnt as air.
docs/learning.md measures the time and the Dice with and without.
"""

from __future__ import annotations

import torch

from mltasks.losses import IGNORE

# Air on each side of the content, in network pixels (32 mm at 2 mm pixels; more than
# the reach of zero padding into a 4-level U-Net's first levels).
CROP_MARGIN = 16
# Normalised intensity above which a pixel holds tissue (normalise_hu maps HU <= -150 to 0).
TISSUE_LEVEL = 1e-3


def content_window(present: torch.Tensor, size: int, *, multiple: int, margin: int) -> slice:
    """Rows (or columns) to keep along one axis of ``size`` pixels.

    Args:
        present: (size,) bool, whether any slice has content at that row (column).
        multiple: the kept length is a multiple of this (the U-Net's 2 ** (depth - 1)).
        margin: pixels kept on each side of the content.
    Returns:
        A slice of length a multiple of ``multiple`` (at most ``size``), centred on the
        content and moved inside [0, size); the whole axis when nothing is present.
    """
    where = torch.nonzero(present).flatten()
    if where.numel() == 0:
        return slice(0, size)
    low, high = max(int(where[0]) - margin, 0), min(int(where[-1]) + 1 + margin, size)
    length = min(size, -(-(high - low) // multiple) * multiple)
    start = min(max((low + high - length) // 2, 0), size - length)
    return slice(start, start + length)


def crop_to_content(
    images: torch.Tensor, labels: torch.Tensor, *, multiple: int, margin: int = CROP_MARGIN
) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch cut to its slices' content (module doc).

    Args:
        images: (B, H, W) float in [0, 1]; H and W multiples of ``multiple``.
        labels: (B, H, W) uint8; 0 background, ``IGNORE`` unlabelled.
    Returns:
        (images (B, h, w), labels (B, h, w)): views of the inputs, h and w multiples of
        ``multiple``, holding every pixel with tissue or a structure label.
    """
    content = (images > TISSUE_LEVEL) | ((labels != 0) & (labels != IGNORE))
    rows = content_window(content.any(dim=2).any(dim=0), images.shape[1], multiple=multiple, margin=margin)
    cols = content_window(content.any(dim=1).any(dim=0), images.shape[2], multiple=multiple, margin=margin)
    return images[:, rows, cols], labels[:, rows, cols]
