"""Signals of stage 1 (general quality, general structure, OCR) and the stage-1 table.

Names carry their family (`q_` quality, `s_` structure, `ocr_` text) and units where they have one.
Every signal is computed on a reduced decode at a fixed analysis scale, so values do not depend on the
size of the file.
"""

import pyarrow as pa

from schemas.stages import stage_schema

QUALITY = [
    pa.field("q_aspect", pa.float32(), metadata={"doc": "long side / short side (>= 1)"}),
    pa.field("q_sharpness", pa.float32(), metadata={"doc": "variance of the Laplacian of Gaussian (sigma 0.7) of luma at long side 512"}),
    pa.field("q_motion_blur", pa.float32(), metadata={"doc": "0..1, how much gradient energy lies along one direction"}),
    pa.field("q_brightness", pa.float32(), metadata={"doc": "mean luma, 0..255"}),
    pa.field("q_dark_frac", pa.float32(), metadata={"doc": "fraction of pixels with luma <= 16"}),
    pa.field("q_bright_frac", pa.float32(), metadata={"doc": "fraction of pixels with luma >= 240"}),
    pa.field("q_clipped_frac", pa.float32(), metadata={"doc": "fraction of pixels at 0 or 255 in any channel"}),
    pa.field("q_contrast", pa.float32(), metadata={"doc": "standard deviation of luma, 0..128"}),
    pa.field("q_colorfulness", pa.float32(), metadata={"doc": "Hasler-Suesstrunk colourfulness"}),
    pa.field("q_entropy", pa.float32(), metadata={"doc": "entropy of the luma histogram, bits (0..8)"}),
    pa.field("q_flat_frac", pa.float32(), metadata={"doc": "fraction of 8x8 blocks with almost no variation"}),
    pa.field("q_jpeg_quality", pa.int16(), metadata={"doc": "JPEG quality estimated from the quantisation tables; null if not JPEG"}),
]

STRUCTURE = [
    pa.field("s_border_frac", pa.float32(), metadata={"doc": "fraction of the image area in flat border bars"}),
    pa.field("s_collage", pa.float32(), metadata={"doc": "0..1, strength of a grid of straight seams (collage)"}),
    pa.field("s_watermark", pa.float32(), metadata={"doc": "P(watermark) from the structure detector"}),
    pa.field("s_logo", pa.float32(), metadata={"doc": "P(logo or corner mark) from the structure detector"}),
    pa.field("s_text_overlay", pa.float32(), metadata={"doc": "P(text added on top: caption bar, subtitle, sticker)"}),
    pa.field("s_detector", pa.string(), metadata={"doc": "name and version of the structure detector"}),
]

OCR_BOX = pa.struct([
    pa.field("x0", pa.float32()), pa.field("y0", pa.float32()),
    pa.field("x1", pa.float32()), pa.field("y1", pa.float32()),
    pa.field("text", pa.string()), pa.field("conf", pa.float32()),
])

OCR = [
    pa.field("ocr_boxes", pa.list_(OCR_BOX), metadata={"doc": "text boxes, coordinates as fractions of width/height"}),
    pa.field("ocr_text", pa.string(), metadata={"doc": "recognised lines joined by newlines, reading order"}),
    pa.field("ocr_conf", pa.float32(), metadata={"doc": "mean recognition confidence; null without text"}),
    pa.field("ocr_lang", pa.string(), metadata={"doc": "zh, en, mixed or other; null without text"}),
    pa.field("ocr_area_frac", pa.float32(), metadata={"doc": "fraction of the image covered by text boxes"}),
    pa.field("ocr_n_chars", pa.int32(), metadata={"doc": "recognised characters, whitespace excluded"}),
    pa.field("ocr_n_lines", pa.int32(), metadata={"doc": "recognised lines"}),
]

STAGE1_SIGNALS = QUALITY + STRUCTURE + OCR
STAGE1 = stage_schema(STAGE1_SIGNALS)
