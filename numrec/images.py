"""Turning a picture of a handwritten digit into an MNIST-style 28 × 28 image.

MNIST's digits were made this way (LeCun, Cortes and Burges): each digit was scaled to fit
a 20 × 20 box keeping its aspect ratio, with anti-aliasing, and pasted into a 28 × 28 field
so that its centre of mass sits at the field's centre; the digit is light on a black
background.  :func:`load_digit` repeats those steps for any picture Pillow can read (PNG,
BMP, PGM, JPEG, ...), of any size, in colour or grey, dark on light or light on dark.
"""
import math
import os
import warnings

import numpy as np

from numrec._limits import how_to_raise, limit

#: Side of the square the digit is scaled into, in pixels.
BOX = 20
#: Side of the output image, in pixels.
SIZE = 28
#: Where MNIST puts a digit's centre of mass, as (row, column) pixel indices.
CENTRE = (14.0, 14.0)
#: Pixels brighter than this fraction of the digit's brightest pixel count as ink when the
#: digit's bounding box is found (after the background level is removed).
INK_THRESHOLD = 0.25
#: Images whose grey levels span less than this fraction of full scale hold no digit.
MIN_CONTRAST = 0.05
#: Pictures wider or taller than this are first reduced (by averaging blocks of pixels)
#: below it, before any float conversion: the digit ends up 20 pixels tall anyway.
WORK_SIDE = 1024


class ImageError(ValueError):
    """A picture could not be read, or holds no digit."""


def load_digit(path, *, max_pixels=None):
    """Read a picture of one digit and return it in MNIST's form.

    Parameters
    ----------
    path : str or os.PathLike
        Any file Pillow can decode.
    max_pixels : int, optional
        The largest picture read, in pixels, checked before it is decoded (default: the
        environment variable ``NUMREC_MAX_IMAGE_PIXELS``, else 50 million).  Pictures
        larger than :data:`WORK_SIDE` on a side are reduced below it once decoded.

    Returns
    -------
    ndarray, shape (28, 28), float32
        Intensities in [0, 1], light digit on a black background, scaled to fit 20 × 20
        and centred by centre of mass.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ImageError
        If the file is not a picture Pillow can read, has more than ``max_pixels``
        pixels, holds NaN or infinite values (a float TIFF), or the picture is blank.
    """
    grey = read_grey(path, max_pixels=max_pixels)
    return to_mnist(grey, name=os.fspath(path))


def read_grey(path, *, max_pixels=None):
    """Decode a picture and return its grey levels as a float array in [0, 1].

    Transparent parts are laid over a background that contrasts with the opaque parts, so
    a digit drawn on a transparent canvas keeps its strokes.  Pictures of more than
    ``max_pixels`` pixels are refused before they are decoded (see :func:`load_digit`);
    pictures larger than :data:`WORK_SIDE` on a side are reduced below it.
    """
    from PIL import Image, UnidentifiedImageError

    max_pixels = limit("MAX_IMAGE_PIXELS", max_pixels)
    name = os.fspath(path)
    if not os.path.exists(name):
        raise FileNotFoundError(f"image not found: {name}")
    if os.path.isdir(name):
        raise ImageError(f"{name} is a directory, not an image")
    try:
        with warnings.catch_warnings():
            # Pillow warns of damaged metadata it skips: the picture is read or refused.
            warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(name) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise ImageError(
                        f"{name} is {width} x {height} pixels, more than the limit of "
                        f"{max_pixels} ({how_to_raise('MAX_IMAGE_PIXELS', 'max_pixels')})"
                    )
                image.draft(image.mode, (WORK_SIDE, WORK_SIDE))  # JPEG: decode smaller
                image.load()
                return _grey_levels(_reduced(image), name)
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(f"{name} is not an image file Pillow can read") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(f"{name} is too large an image to read safely") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        # Pillow reports truncated or corrupt files with any of these.
        raise ImageError(f"cannot read image {name}: {exc}") from None


def _reduced(image):
    """``image``, reduced by averaging blocks of pixels if a side exceeds WORK_SIDE."""
    factor = math.ceil(max(image.size) / WORK_SIDE)
    if factor <= 1:
        return image
    if image.mode not in ("L", "LA", "RGB", "RGBA", "I", "F"):
        image = image.convert("I" if image.mode.startswith("I;16") else
                              "RGBA" if _has_alpha(image) else "RGB")
    return image.reduce(factor)


def _has_alpha(image):
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        image.mode == "P" and "transparency" in image.info
    )


def _grey_levels(image, name):
    """Return the grey levels of a decoded Pillow image, float64 in [0, 1]."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        # 16-bit or float grey (PGM with maxval > 255, TIFF, ...): scale by the file's range.
        with np.errstate(all="ignore"):  # NaN and infinity are reported below
            grey = np.asarray(image, dtype=np.float64)
        if not np.isfinite(grey).all():
            raise ImageError(f"{name} holds NaN or infinite values")
        top = 65535.0 if image.mode.startswith("I;16") else max(float(grey.max()), 1.0)
        if image.mode == "I" and grey.max() <= 255:
            top = 255.0
        return np.clip(grey / top, 0.0, 1.0)
    if _has_alpha(image):
        rgba = np.asarray(image.convert("RGBA"), dtype=np.float64) / 255
        grey = np.asarray(image.convert("RGBA").convert("L"), dtype=np.float64) / 255
        alpha = rgba[..., 3]
        if alpha.min() < 1.0:
            weight = alpha.sum()
            ink = (grey * alpha).sum() / weight if weight > 0 else 0.0
            background = 1.0 if ink < 0.5 else 0.0
            grey = grey * alpha + background * (1.0 - alpha)
        return grey
    return np.asarray(image.convert("L"), dtype=np.float64) / 255


def to_mnist(grey, *, name="image"):
    """Convert grey levels of a digit picture to MNIST's 28 × 28 form.

    Parameters
    ----------
    grey : ndarray, shape (height, width)
        Grey levels in [0, 1], the digit either dark on light or light on dark.
    name : str
        How error messages name the picture.

    Returns
    -------
    ndarray, shape (28, 28), float32

    Notes
    -----
    The steps: stretch the grey levels to [0, 1]; invert if the border (the background) is
    light; subtract the background level; crop to the bounding box of the pixels brighter
    than :data:`INK_THRESHOLD` of the brightest; scale that box so its longer side is 20
    pixels (Lanczos, anti-aliased); paste it into 28 × 28 so that the centre of mass falls
    on pixel (14, 14), as in MNIST.
    """
    from PIL import Image

    grey = np.asarray(grey, dtype=np.float64)
    if grey.ndim != 2 or grey.size == 0:
        raise ImageError(f"{name}: expected a 2-D grey image, got shape {grey.shape}")
    low, high = float(grey.min()), float(grey.max())
    if high - low < MIN_CONTRAST:
        raise ImageError(f"no digit found in {name}: the image is blank")
    grey = (grey - low) / (high - low)

    border = np.concatenate([grey[0], grey[-1], grey[1:-1, 0], grey[1:-1, -1]])
    if np.median(border) > 0.5:
        grey = 1.0 - grey
        border = 1.0 - border
    background = float(np.median(border))
    grey = np.clip((grey - background) / (1.0 - background), 0.0, 1.0)

    ink = grey > INK_THRESHOLD * grey.max()
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    if not len(rows) or grey.max() <= 0:
        raise ImageError(f"no digit found in {name}: the image is blank")
    box = grey[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]

    height, width = box.shape
    scale = BOX / max(height, width)
    new_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    resized = Image.fromarray(box.astype(np.float32)).resize(
        new_size, Image.Resampling.LANCZOS
    )
    digit = np.clip(np.asarray(resized, dtype=np.float64), 0.0, 1.0)
    if digit.max() <= 0:
        raise ImageError(f"no digit found in {name}: the image is blank")
    digit /= digit.max()

    mass = digit.sum()
    ys, xs = np.indices(digit.shape)
    com_y, com_x = (digit * ys).sum() / mass, (digit * xs).sum() / mass
    top = _offset(CENTRE[0] - com_y, digit.shape[0])
    left = _offset(CENTRE[1] - com_x, digit.shape[1])
    out = np.zeros((SIZE, SIZE), dtype=np.float32)
    out[top:top + digit.shape[0], left:left + digit.shape[1]] = digit
    return out


def _offset(shift, extent):
    """Round a placement offset and keep the pasted box inside the 28 × 28 field."""
    return int(min(max(round(shift), 0), SIZE - extent))
