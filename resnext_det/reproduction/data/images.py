"""Image files as Detectron2 will read them, judged from their headers.

Detectron2's ``read_image`` opens a file with PIL, turns it by its EXIF orientation and
converts it to the model's format. Three kinds of file go wrong there, and each is
caught here from the header alone (no pixel data is decoded):

- **EXIF-rotated photos** are read at their displayed size: a 4000x3000 JPEG with
  orientation 6 becomes a 3000x4000 image. Sizes are compared after that turn, so such a
  photo is neither refused nor skipped when its annotations give the displayed size.
- **16- and 32-bit images** (PIL modes ``I;16``, ``I``, ``F``: 16-bit grayscale PNGs,
  float TIFFs) are clipped to 255 by the conversion to RGB: Detectron2 and torchvision
  read them as white images. How to bring them to 8 bits depends on the data (full-range
  16 bit or a 12-bit sensor, a fixed window or each image's own range), so they are
  refused, naming the file and its mode, rather than scaled one way silently. 16-bit RGB
  PNGs are fine: PIL reads them as 8-bit RGB.
- **Decompression bombs**: a header claiming more than twice ``PIL.Image.MAX_IMAGE_PIXELS``
  (178 million pixels by default) makes PIL raise ``DecompressionBombError``, an exception
  that is no ``OSError``; it becomes one line naming the file and the claimed size.
"""

import os
import re
from typing import Optional

import numpy as np
from detectron2.data import detection_utils
from PIL import Image

from ...utils.errors import DataError, MissingFileError

__all__ = [
    "DecompressionBomb",
    "bomb_text",
    "displayed_size",
    "header_problem",
    "open_image",
    "read_image_checked",
    "unsupported_mode",
]

EXIF_ORIENTATION = 274
TRANSPOSING_ORIENTATIONS = (5, 6, 7, 8)  # these swap width and height

DecompressionBomb = Image.DecompressionBombError


def unsupported_mode(mode: str) -> Optional[str]:
    """Why PIL mode ``mode`` cannot be read as an 8-bit image, or None if it can."""
    if mode.startswith("I;16"):
        return f"a 16-bit image (PIL mode {mode})"
    if mode == "I":
        return "a 32-bit integer image (PIL mode I)"
    if mode == "F":
        return "a 32-bit float image (PIL mode F)"
    return None


def _orientation(image: Image.Image) -> Optional[int]:
    """The EXIF orientation in ``image``'s header, or None.

    A PNG whose EXIF block is not in its header (``eXIf`` after the pixel data) would need
    the whole image decoded to find it; such a PNG is taken as it is stored.
    """
    if image.format == "PNG" and "exif" not in image.info:
        return None
    try:
        return image.getexif().get(EXIF_ORIENTATION)
    except Exception:  # as Detectron2 does: an unreadable EXIF block is no orientation
        return None


def displayed_size(image: Image.Image) -> tuple[int, int]:
    """(width, height) of ``image`` as Detectron2's ``read_image`` returns it."""
    width, height = image.size
    if _orientation(image) in TRANSPOSING_ORIENTATIONS:
        return height, width
    return width, height


def bomb_text(error: Exception) -> str:
    """A ``DecompressionBombError`` in words: the pixels claimed and PIL's limit."""
    counts = re.findall(r"\d+", str(error))
    if len(counts) >= 2:
        return (
            f"its header claims {int(counts[0]):,} pixels, more than PIL's limit of "
            f"{int(counts[1]):,} (a decompression bomb?)"
        )
    return f"a decompression bomb? ({error})"


def _is_integer_like(value: object) -> bool:
    # Detectron2 compares sizes with ==, so 400.0 passes where 400 would; "400" never does.
    return isinstance(value, (int, float, np.integer)) and not isinstance(value, bool)


def header_problem(path: os.PathLike, width: object = None, height: object = None) -> Optional[str]:
    """Why the image at ``path`` cannot be used, from its header; None if it can.

    Args:
        path: the image file.
        width, height: the size its annotations give (None: not checked).

    Returns:
        One phrase ending in the path, e.g. ``"missing: a.jpg"``, or None.
    """
    for name, value in (("width", width), ("height", height)):
        if value is not None and not _is_integer_like(value):
            kind = type(value).__name__
            return f"{name}={value!r} in the annotations is a {kind}, not a number: {path}"
    try:
        with Image.open(path) as image:
            size, mode = displayed_size(image), image.mode
            stored = image.size
    except FileNotFoundError:
        return f"missing: {path}"
    except DecompressionBomb as e:
        return f"{bomb_text(e)}: {path}"
    except (OSError, ValueError, SyntaxError) as e:  # not an image, unreadable header
        return f"unreadable ({e.__class__.__name__}): {path}"
    kind = unsupported_mode(mode)
    if kind:
        return f"{kind}, which Detectron2 reads as a white image: {path}"
    if width is not None and height is not None and (width, height) != size:
        turned = f" (EXIF-rotated from the stored {stored[0]}x{stored[1]})"
        return (
            f"size {size[0]}x{size[1]}{turned if size != stored else ''} where the annotations "
            f"say {width}x{height}: {path}"
        )
    return None


def open_image(path: os.PathLike) -> Image.Image:
    """Open ``path`` with PIL, turned by its EXIF orientation, as an 8-bit image.

    Raises:
        MissingFileError: no such file.
        DataError: not an image, a decompression bomb, or a 16/32-bit image (named).
    """
    try:
        image = Image.open(path)
        image.load()
    except FileNotFoundError as e:
        raise MissingFileError(f"{path} does not exist; expected an image file") from e
    except DecompressionBomb as e:
        raise DataError(f"{path}: {bomb_text(e)}; expected a smaller image") from e
    except (OSError, ValueError, SyntaxError) as e:
        # PIL's message may name the file too ("cannot identify image file 'x.png'").
        detail = re.sub(rf"\s*'?{re.escape(str(path))}'?", "", str(e))
        raise DataError(
            f"{path} cannot be read as an image ({e.__class__.__name__}: {detail}); expected "
            "an image file PIL reads (JPEG, PNG, ...)"
        ) from e
    kind = unsupported_mode(image.mode)
    if kind:
        raise DataError(
            f"{path} is {kind}, which Detectron2 reads as a white image; expected an 8-bit "
            "image (convert it first, scaling its values as its data needs)"
        )
    # Detectron2's own turn (its read_image's), so that sizes agree with training's.
    return detection_utils._apply_exif_orientation(image)


def read_image_checked(path: os.PathLike, format: Optional[str] = None) -> np.ndarray:
    """Detectron2's ``read_image`` (EXIF orientation applied, then ``format``), with every
    file problem as one line naming the file instead of a PIL traceback."""
    return detection_utils.convert_PIL_to_numpy(open_image(path), format)
