"""Procedural hip-and-thigh CT phantoms with exact labels of the default label set.

``generate_phantom(seed, ...)`` returns a ``Phantom`` (CT in HU, labels, body
mask, geometry); ``phantom_dataset(n, ...)`` writes or reuses NIfTI files in a
cache folder. See docs/phantom.md for the design and its measured difficulty.
"""

from mltasks.phantom.dataset import phantom_dataset, write_phantom
from mltasks.phantom.generate import Phantom, generate_phantom

__all__ = ["Phantom", "generate_phantom", "phantom_dataset", "write_phantom"]
