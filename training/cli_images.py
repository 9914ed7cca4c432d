"""Reading the input images and saving the outputs of the image-to-image commands (`sluice refine`,
`sluice edit`), so both read, name and report their files the same way."""

from __future__ import annotations

from pathlib import Path


def read_images(paths: list[Path]) -> list:
    """RGB PIL images, or ValueError naming the file that cannot be read and what to give instead."""
    from PIL import Image, UnidentifiedImageError

    images = []
    for p in paths:
        try:
            with Image.open(p) as im:
                images.append(im.convert("RGB"))
        except (OSError, UnidentifiedImageError) as e:  # truncated, not an image, missing
            raise ValueError(f"cannot read input image {p} ({e}); give a readable PNG or JPEG file") from None
    return images


def save_images(images: list, inputs: list[Path], out: Path, verb: str) -> str:
    """Save one output per input: to `out` itself when it names one file (it has a suffix), else as
    `<input stem>.<verb>.png` in the folder `out`. Returns the line that tells the user where they went."""
    if len(images) == 1 and out.suffix:
        out.parent.mkdir(parents=True, exist_ok=True)
        images[0].save(out)
        return f"{verb} image ({images[0].width}x{images[0].height}) in {out}"
    out.mkdir(parents=True, exist_ok=True)
    for path, im in zip(inputs, images):
        im.save(out / f"{path.stem}.{verb}.png")
    return f"{len(images)} {verb} images in {out}"
