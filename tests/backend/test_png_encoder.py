"""The hand-written PNG encoder of the slice endpoints: any decoder (here Pillow) reads it back exactly."""

import io

import numpy as np
import pytest
from PIL import Image

from backend.imaging.slices import encode_png, label_palette


@pytest.mark.parametrize("level", [0, 1, 9])
@pytest.mark.parametrize("shape", [(512, 512), (3, 7), (1, 1)])
def test_grey_png_decodes_to_the_same_pixels(level, shape):
    pixels = np.random.default_rng(0).integers(0, 256, size=shape, dtype=np.uint8)
    img = Image.open(io.BytesIO(encode_png(pixels, level=level)))
    assert img.mode == "L"
    assert np.array_equal(np.asarray(img), pixels)


def test_palette_png_keeps_indices_colours_and_a_transparent_zero():
    pixels = np.array([[0, 1, 2], [2, 1, 0]], dtype=np.uint8)
    img = Image.open(io.BytesIO(encode_png(pixels, palette=label_palette({1: "#ff0000", 2: "#00ff80"}))))
    assert img.mode == "P"
    assert np.array_equal(np.asarray(img), pixels)
    rgba = np.asarray(img.convert("RGBA"))
    assert rgba[0, 0, 3] == 0  # background transparent
    assert tuple(rgba[0, 1]) == (255, 0, 0, 255)
    assert tuple(rgba[0, 2]) == (0, 255, 128, 255)


def test_stored_png_is_bigger_and_compressed_smaller_than_the_pixels_of_an_image_with_flat_regions():
    pixels = np.zeros((64, 256), np.uint8)  # air around a body, as in a CT slice (deflate runs, Z_RLE)
    pixels[16:48, 32:224] = 200
    assert len(encode_png(pixels, level=0)) > pixels.size > len(encode_png(pixels, level=1))


@pytest.mark.parametrize("bad", [np.zeros((4, 4), np.int16), np.zeros((2, 4, 4), np.uint8)])
def test_it_refuses_what_is_not_a_2d_uint8_image(bad):
    with pytest.raises(ValueError, match="uint8"):
        encode_png(bad)
