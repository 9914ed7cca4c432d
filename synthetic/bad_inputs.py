"""Every hostile or unusual input the ingest job must survive, with the outcome ingest should report.

Each case is a small file (real photo content, <= 256 px) and an optional raw caption. Writers put the
same cases in each source layout ingest reads: an image folder, a webdataset tar as img2dataset writes
it (with a truncated last member), and a parquet table with image bytes (with a null image row).
"""

from __future__ import annotations

import functools
import io
import json
import logging
import struct
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image

from synthetic.sample_corpus import non_image_bytes, real_photos

log = logging.getLogger(__name__)

# Error kinds ingest reports; tests compare against these exact strings.
EMPTY_FILE = "empty_file"
TRUNCATED = "truncated"
NOT_AN_IMAGE = "not_an_image"
DECOMPRESSION_BOMB = "decompression_bomb"
CAPTION_NOT_UTF8 = "caption_not_utf8"

# Ingest's default pixel limit: twice PIL's MAX_IMAGE_PIXELS, where PIL itself refuses to open a file.
INGEST_PIXEL_LIMIT = 178_956_970
BOMB_SIDE = 30_000

TRUNCATED_TAR_KEY = "truncated_tar_member"  # the extra record write_webdataset_tar cuts in half
NULL_ROW_KEY = "null_bytes_row"  # the extra row write_parquet gives image=None

GB18030_CAPTION = "一只虎斑猫趴在地上"
INVALID_CAPTION = b"\xff\xfe\xfa bad"  # fails in UTF-8/16/32, GB18030, Big5, Shift-JIS, EUC-KR


@dataclass(frozen=True)
class BadCase:
    """One input file, its raw sidecar caption, and what ingest should make of it."""

    name: str
    filename: str
    data: bytes
    caption: bytes | None
    expect_error: str | None
    expect: dict = field(default_factory=dict)


@functools.cache
def _photos_by_subject() -> dict[str, Image.Image]:
    return dict(real_photos())


def _photo(subject: str, size: tuple[int, int]) -> Image.Image:
    """A centre crop of a real photo at exactly `size`."""
    photo = _photos_by_subject()[subject]
    width, height = size
    scale = min(photo.width / width, photo.height / height)
    crop_w, crop_h = max(1, int(width * scale)), max(1, int(height * scale))
    left, top = (photo.width - crop_w) // 2, (photo.height - crop_h) // 2
    return photo.crop((left, top, left + crop_w, top + crop_h)).resize(size, Image.Resampling.LANCZOS)


def _save(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


@functools.cache
def decompression_bomb_png(side: int = BOMB_SIDE) -> bytes:
    """A valid 1-bit greyscale PNG of side x side pixels, all black: ~110 kB on disk, 900 Mpx decoded.

    Written chunk by chunk because making the image in PIL first would need the memory the bomb is about.
    """
    row = bytes(1 + (side + 7) // 8)  # filter byte + packed bits
    compressor = zlib.compressobj(9)
    rows_per_chunk = 500
    idat = b"".join(compressor.compress(row * min(rows_per_chunk, side - start))
                    for start in range(0, side, rows_per_chunk)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # bit depth 1, greyscale
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", idat)
            + _png_chunk(b"IEND", b""))


def _exif_rotated_jpeg() -> bytes:
    """Stored 200x100 with orientation 6 (rotate 90 degrees clockwise to view): displays upright at 100x200."""
    upright = _photo("astronaut", (100, 200))
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    return _save(upright.transpose(Image.Transpose.ROTATE_90), "JPEG", quality=90, exif=exif)


def _animated_gif() -> bytes:
    rocket = _photo("rocket", (192, 144))
    frames = [rocket.crop((x, 0, x + 128, 96)) for x in (0, 32, 64)]
    return _save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def _palette_png() -> bytes:
    palette = _photo("chelsea", (160, 120)).quantize(colors=64, dither=Image.Dither.NONE)
    return _save(palette, "PNG", transparency=0)


def _png_16bit() -> bytes:
    grey = np.asarray(_photo("coffee", (160, 120)).convert("L"), dtype=np.uint16) * 257  # full 16-bit range
    return _save(Image.fromarray(grey), "PNG")


def _usable(name: str, ext: str, data: bytes, fmt: str, size: tuple[int, int], caption: bytes | None,
            **expect) -> BadCase:
    width, height = size
    return BadCase(name, f"{name}.{ext}", data, caption, None,
                   {"format": fmt, "width": width, "height": height, **expect})


def bad_cases() -> list[BadCase]:
    """All cases, in a fixed order; bytes are identical on every call and every run."""
    jpeg = _save(_photo("coffee", (256, 192)), "JPEG", quality=90)
    rng = np.random.default_rng(0)
    return [
        BadCase("zero_byte", "zero_byte.jpg", b"", b"an empty file", EMPTY_FILE, {}),
        BadCase("truncated_jpeg", "truncated_jpeg.jpg", jpeg[: int(len(jpeg) * 0.4)], b"a cup of coffee",
                TRUNCATED, {}),
        BadCase("random_bytes", "random_bytes.jpg", non_image_bytes(rng, 4096), None, NOT_AN_IMAGE, {}),
        BadCase("decompression_bomb", "decompression_bomb.png", decompression_bomb_png(), b"a black square",
                DECOMPRESSION_BOMB, {}),
        _usable("cmyk_jpeg", "jpg", _save(_photo("astronaut", (192, 192)).convert("CMYK"), "JPEG", quality=90),
                "JPEG", (192, 192), "portrait of an astronaut".encode(), mode="CMYK"),
        _usable("png_16bit", "png", _png_16bit(), "PNG", (160, 120), b"a cup of coffee, 16-bit greyscale",
                mode="I;16"),
        _usable("palette_png_transparent", "png", _palette_png(), "PNG", (160, 120), b"a tabby cat", mode="P"),
        _usable("animated_gif", "gif", _animated_gif(), "GIF", (128, 96), b"a rocket on the launch pad",
                n_frames=3),
        _usable("webp", "webp", _save(_photo("flower", (200, 150)), "WEBP", quality=80), "WEBP", (200, 150),
                "一朵橙色的大丽花".encode()),
        _usable("exif_rotated_jpeg", "jpg", _exif_rotated_jpeg(), "JPEG", (100, 200),
                b"portrait of an astronaut, phone photo", exif_orientation=6),
        _usable("extreme_aspect_png", "png", _save(_photo("china", (1, 10000)), "PNG"), "PNG", (1, 10000),
                b"a one pixel wide strip"),
        _usable("gb18030_caption", "jpg", _save(_photo("chelsea", (192, 144)), "JPEG", quality=90), "JPEG",
                (192, 144), GB18030_CAPTION.encode("gb18030"), alt_text=GB18030_CAPTION),
        _usable("invalid_caption", "jpg", jpeg, "JPEG", (256, 192), INVALID_CAPTION,
                alt_text_warning=CAPTION_NOT_UTF8),
    ]


def write_folder(cases: list[BadCase], out_dir: Path) -> None:
    """Write NAME.EXT, plus NAME.txt with the raw caption bytes where there is a caption."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for case in cases:
        (out_dir / case.filename).write_bytes(case.data)
        if case.caption is not None:
            (out_dir / f"{case.name}.txt").write_bytes(case.caption)


def _text_caption(case: BadCase) -> str | None:
    return None if case.caption is None else case.caption.decode("utf-8", errors="replace")


def _add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)  # fixed metadata: the same cases give the same bytes
    info.size, info.mtime, info.mode = len(data), 0, 0o644
    tar.addfile(info, io.BytesIO(data))


def _sample_members(case: BadCase) -> list[tuple[str, bytes]]:
    meta = {"key": case.name, "caption": _text_caption(case), "url": f"https://example.com/bad/{case.filename}",
            "status": "success"}
    members = [(case.filename, case.data), (f"{case.name}.json", json.dumps(meta, ensure_ascii=False).encode())]
    if case.caption is not None:
        members.append((f"{case.name}.txt", case.caption))
    return members


def write_webdataset_tar(cases: list[BadCase], tar_path: Path, broken_member: bool = True) -> None:
    """Write the cases as an img2dataset shard; with broken_member, end it inside an extra record's image."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for case in cases:
            for name, data in _sample_members(case):
                _add_member(tar, name, data)
        cut_at = None
        if broken_member:
            image = _save(_photo("coffee", (128, 96)), "JPEG", quality=90)
            extra = BadCase(TRUNCATED_TAR_KEY, f"{TRUNCATED_TAR_KEY}.jpg", image, b"a cup of coffee", TRUNCATED)
            for name, data in reversed(_sample_members(extra)):  # the image goes last, to be cut
                if name == extra.filename:
                    # The header says len(image) bytes follow; the file will end half way through them.
                    cut_at = tar.offset + tarfile.BLOCKSIZE + len(image) // 2
                _add_member(tar, name, data)
    content = buffer.getvalue()
    Path(tar_path).parent.mkdir(parents=True, exist_ok=True)
    Path(tar_path).write_bytes(content if cut_at is None else content[:cut_at])


def write_parquet(cases: list[BadCase], path: Path) -> None:
    """Write key, caption (decoded, errors replaced) and image bytes, plus a row whose image is null."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    keys = [case.name for case in cases] + [NULL_ROW_KEY]
    captions = [_text_caption(case) for case in cases] + ["a row whose image bytes are null"]
    images = [case.data for case in cases] + [None]
    schema = pa.schema([("key", pa.string()), ("caption", pa.string()), ("image", pa.binary())])
    table = pa.Table.from_arrays([pa.array(keys, pa.string()), pa.array(captions, pa.string()),
                                  pa.array(images, pa.binary())], schema=schema)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
