"""Fuzz target: the picture loader of ``numrec predict``, :func:`numrec.images.load_digit`.

Every input must give a 28 x 28 float32 image in [0, 1] or an
:class:`~numrec.images.ImageError`.  Pictures are limited to 4 million pixels here (the
default limit is 50 million) to keep each input quick.
"""
import io
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import instrumented_imports, main, workfile  # noqa: E402

with instrumented_imports():
    import numpy as np
    from PIL import Image
    from numrec.images import ImageError, load_digit

MAX_PIXELS = 4_000_000


def _encoded(image, fmt, **options):
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def seeds():
    """A digit-like stroke in the formats people send: PNG (grey, RGBA), BMP, PGM,
    GIF with transparency, JPEG and float TIFF."""
    grey = np.zeros((16, 12), dtype=np.uint8)
    grey[3:13, 5:7] = 255
    image = Image.fromarray(grey)
    rgba = Image.fromarray(np.dstack([255 - grey] * 3 + [grey]))
    floats = Image.fromarray(grey.astype(np.float32) / 255, mode="F")
    return [_encoded(image, "PNG"), _encoded(rgba, "PNG"), _encoded(image, "BMP"),
            _encoded(image, "PPM"), _encoded(image.convert("P"), "GIF", transparency=0),
            _encoded(image, "JPEG"), _encoded(floats, "TIFF")]


def check(data):
    path = workfile(data, "picture")
    try:
        digit = load_digit(path, max_pixels=MAX_PIXELS)
    except ImageError as error:
        assert "\n" not in str(error), str(error)
        return
    assert digit.shape == (28, 28) and digit.dtype == np.float32
    assert np.isfinite(digit).all() and digit.min() >= 0 and digit.max() <= 1


if __name__ == "__main__":
    main(check, seeds, "picture loader")
