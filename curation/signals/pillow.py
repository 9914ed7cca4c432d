"""Opening images with Sluice's own pixel limit instead of Pillow's process-wide one."""

from __future__ import annotations

import io
import warnings


def open_unlimited(data: bytes):
    """`Image.open` without Pillow's bomb check, which would apply its own limit, not the configured one.

    The caller checks the size against its limit before decoding. Pillow's limit is a module global, so it
    is lifted only for the call and put back, never left changed for other code in the process.
    """
    from PIL import Image

    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data))
    finally:
        Image.MAX_IMAGE_PIXELS = saved
