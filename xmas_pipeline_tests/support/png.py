"""The charts' images as the UI gets them: one PNG in a Markdown `data:` URI, checked."""

from __future__ import annotations

import base64
import io
import re
import struct

from matplotlib import image as mpimg

from xmas_pipeline.dagster_defs.charts import HEIGHT_PX, WIDTH_PX

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_BYTES = 100_000
DATA_URI = re.compile(r"!\[([^\]]+)\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)")


def decode_png(markdown: str) -> bytes:
    """The one image of a Markdown metadata value, checked to be a PNG of the set size."""
    [(alt, encoded)] = DATA_URI.findall(markdown)
    assert alt.strip()
    png = base64.b64decode(encoded, validate=True)
    assert png.startswith(PNG_SIGNATURE)
    # The first chunk is IHDR: length, type, then width and height (big-endian).
    length, kind, width, height = struct.unpack(">I4sII", png[8:24])
    assert (length, kind) == (13, b"IHDR")
    assert (width, height) == (WIDTH_PX, HEIGHT_PX)
    assert len(png) < MAX_BYTES
    pixels = mpimg.imread(io.BytesIO(png), format="png")
    assert pixels.shape[:2] == (HEIGHT_PX, WIDTH_PX)
    return png
