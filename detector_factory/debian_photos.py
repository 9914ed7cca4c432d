"""Rebuild the folders of extra photos the shipped watermark map and fusion heads were trained with.

Two sets, from Debian packages (a registry this kind of machine can reach); long sides shrunk to 1024 px.
Needs `apt-get` and `dpkg` (run `apt-get update` first).

- `--set wallpapers` (the default): 40 photographs (foliage, flowers, rock, forest, water, boats, a wine
  cellar, a clock, a bridge) from desktop wallpaper packages. The map and the heads train over them
  (`--extra-photos`).
- `--set unseen`: 173 photographs `watermark_map_v3` never saw: OpenCV's sample and tutorial photos (a street of
  cobbles, a circuit board, aerial views, fruit, faces, buildings), two more wallpapers, and the photos of seven
  GCompris activities (animals, monuments, paintings, underwater scenes, musicians), carved out of its Qt
  resource files. `watermark_map_v4` was fine-tuned over them and the 40 wallpapers (its card says how): what
  fixed the map's false alarms on new texture. For v3 they were the fusion heads' `--unseen-photos` (samples
  over photos the map did not learn, which taught the heads nothing that found more marks); for v4 they are
  not unseen.

    python -m detector_factory.debian_photos --out /tmp/photos_sel
    python -m detector_factory.debian_photos --set unseen --out /tmp/photos_unseen
    # the map: both folders in one (WATERMARK_MAP_CARD.md); the heads: the wallpapers
    python -m detector_factory.train_watermark_map --extra-photos /tmp/photos_map ...
    python -m detector_factory.train_structure_fusion --extra-photos /tmp/photos_sel ...
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

WALLPAPER_PACKAGES = ("mate-backgrounds", "ukui-wallpapers", "lomiri-wallpapers", "lomiri-wallpapers-16.04",
            "lomiri-wallpapers-20.04", "plasma-workspace-wallpapers")
# photographs only: abstract art, renders with logos or lettering were left out by eye
WALLPAPERS = (
    "usr/share/backgrounds/Bridge_by_Sander_Klootwijk.jpg",
    "usr/share/backgrounds/Dragonfly_by_Bolly.jpg",
    "usr/share/backgrounds/Kleiber_by_Lukas_Baubkus.jpg",
    "usr/share/backgrounds/Picture_0B_by_freespace.jpg",
    "usr/share/backgrounds/Picture_1A_by_freespace.jpg",
    "usr/share/backgrounds/Wine_by_Jakkub_Mede.jpg",
    "usr/share/backgrounds/aitzgorri_by_Aitzol_Berasategi.jpg",
    "usr/share/backgrounds/analogpattern_by_Peter_Nerlich.jpg",
    "usr/share/backgrounds/free_by_Peter_Nerlich.jpg",
    "usr/share/backgrounds/friends_by_Aitzol_Berasategi.jpg",
    "usr/share/backgrounds/greentock_by_Peter_Nerlich.jpg",
    "usr/share/backgrounds/life_by_Aitzol_Berasategi.jpg",
    "usr/share/backgrounds/mate/desktop/Ubuntu-Mate-Cold-no-logo.png",
    "usr/share/backgrounds/mate/desktop/Ubuntu-Mate-Radioactive-no-logo.png",
    "usr/share/backgrounds/mate/desktop/Ubuntu-Mate-Warm-no-logo.png",
    "usr/share/backgrounds/mate/nature/Aqua.jpg",
    "usr/share/backgrounds/mate/nature/Blinds.jpg",
    "usr/share/backgrounds/mate/nature/Dune.jpg",
    "usr/share/backgrounds/mate/nature/Garden.jpg",
    "usr/share/backgrounds/mate/nature/GreenMeadow.jpg",
    "usr/share/backgrounds/mate/nature/LadyBird.jpg",
    "usr/share/backgrounds/mate/nature/RainDrops.jpg",
    "usr/share/backgrounds/mate/nature/Storm.jpg",
    "usr/share/backgrounds/mate/nature/TwoWings.jpg",
    "usr/share/backgrounds/mate/nature/Wood.jpg",
    "usr/share/backgrounds/mate/nature/YellowFlower.jpg",
    "usr/share/backgrounds/picosdeeuropa_by_Aitzol_Berasategi.jpg",
    "usr/share/backgrounds/seeding_by_Clements_Engelhardt.jpg",
    "usr/share/backgrounds/sunset_by_Aitzol_Berasategi.jpg",
    "usr/share/wallpapers/BytheWater/contents/images/2560x1600.jpg",
    "usr/share/wallpapers/ColdRipple/contents/images/2560x1600.jpg",
    "usr/share/wallpapers/DarkestHour/contents/images/2560x1600.jpg",
    "usr/share/wallpapers/EveningGlow/contents/images/2560x1600.jpg",
    "usr/share/wallpapers/FallenLeaf/contents/images/2560x1600.jpg",
    "usr/share/wallpapers/Grey/contents/images/2560x1600.jpg",
    "usr/share/wallpapers/Kite/contents/images/2560x1600.jpg",
    "usr/share/wallpapers/OneStandsOut/contents/images/2560x1600.jpg",
    "usr/share/wallpapers/Path/contents/images/2560x1600.jpg",
    "usr/share/wallpapers/Volna/contents/images/5120x2880.jpg",
    "usr/share/wallpapers/summer_1am/contents/images/2560x1600.jpg",
)
_OPENCV = "usr/share/doc/opencv-doc/"
# clean photographs only (no boxes, plots or side-by-side results drawn on them), picked by eye; lettering
# that is part of the scene (a bus, a chip, a shop sign) stays: the heads must not call it a mark
UNSEEN = tuple(_OPENCV + p for p in (
    "examples/alphamat/input_images/plant.jpg", "examples/data/aero1.jpg", "examples/data/aero3.jpg",
    "examples/data/aloeL.jpg", "examples/data/apple.jpg", "examples/data/baboon.jpg", "examples/data/board.jpg",
    "examples/data/building.jpg", "examples/data/butterfly.jpg", "examples/data/ela_original.jpg",
    "examples/data/fruits.jpg", "examples/data/home.jpg", "examples/data/leuvenA.jpg", "examples/data/messi5.jpg",
    "examples/data/orange.jpg", "examples/data/squirrel_cls.jpg", "examples/data/stuff.jpg",
    "examples/data/starry_night.jpg", "examples/data/rubberwhale1.png", "examples/data/smarties.png",
    "examples/data/graf1.png", "examples/hfs/data/000.jpg", "examples/hfs/data/001.jpg",
    "examples/hfs/data/002.jpg", "opencv4/html/handSrc.jpg", "opencv4/html/ldr_debevec.jpg",
    "opencv4/html/pexels_double_decker_bus.jpg", "opencv4/html/retina_TreeHdr_small.jpg",
    "opencv4/html/studentsSample_input.jpg", "opencv4/html/227943776_1.jpg", "opencv4/html/230501201_1.jpg",
)) + ("usr/share/backgrounds/mate/nature/FreshFlower.jpg",
      "usr/share/wallpapers/ColorfulCups/contents/images/2560x1600.jpg")
# GCompris keeps its pictures in Qt resource files; these activities' WebP pictures of at least MIN_CARVED px
# on the short side are photographs (the others are drawings, planets, letters)
GCOMPRIS_RCC = "usr/share/gcompris-qt/rcc/"
GCOMPRIS_ACTIVITIES = ("clickgame", "details", "erase", "explore_farm_animals", "explore_monuments",
                       "explore_world_animals", "explore_world_music")
GCOMPRIS_PHOTOS = 140  # what gcompris-qt-data 3.1 holds; another count means the package changed
MIN_CARVED = 300
SETS = {"wallpapers": (WALLPAPER_PACKAGES, WALLPAPERS),
        "unseen": (("opencv-doc", "mate-backgrounds", "plasma-workspace-wallpapers", "gcompris-qt-data"), UNSEEN)}
LONG_SIDE = 1024


def _name(rel: str) -> str:
    """A flat file name: the wallpaper's folder for plasma's contents/images/WxH files, else the file's."""
    parts = Path(rel).parts
    return (parts[-4] + "_" + parts[-1]) if "wallpapers" in parts else Path(rel).name


def carve_webp(data: bytes, min_side: int = MIN_CARVED) -> list:
    """The WebP pictures stored in a Qt resource file (RIFF chunks, uncompressed: a WebP does not shrink under
    zlib, so rcc stores it as is) with a short side of at least `min_side`, in file order."""
    import io
    import re
    import struct

    found = []
    for m in re.finditer(rb"RIFF....WEBP", data, re.S):
        size = struct.unpack("<I", data[m.start() + 4:m.start() + 8])[0] + 8
        try:
            with Image.open(io.BytesIO(data[m.start():m.start() + size])) as im:
                im.load()
                if min(im.size) >= min_side:
                    found.append(im.convert("RGB"))
        except (OSError, ValueError):
            continue  # the bytes "RIFF....WEBP" inside something else
    return found


def _save_gcompris_photos(root: Path, out: Path) -> int:
    """Write the GCompris activities' photographs to `out`, one activity at a time (all 140 decoded at once
    would hold about a gigabyte); how many."""
    n = 0
    for activity in GCOMPRIS_ACTIVITIES:
        for k, im in enumerate(carve_webp((root / GCOMPRIS_RCC / f"{activity}.rcc").read_bytes())):
            _save(im, out / f"gcompris_{activity}_{k:03d}.jpg")
            n += 1
    if n != GCOMPRIS_PHOTOS:
        sys.exit(f"{n} GCompris photos, not {GCOMPRIS_PHOTOS}: the package changed since the heads were trained")
    return n


def _save(im, path: Path) -> None:
    im = im.convert("RGB")
    im.thumbnail((LONG_SIDE, LONG_SIDE), Image.LANCZOS)
    im.save(path, quality=93)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--set", choices=sorted(SETS), default="wallpapers",
                   help="wallpapers: the map's and heads' extra photos; unseen: 173 more, the rest of the map's")
    a = p.parse_args(argv)
    packages, photos = SETS[a.set]
    a.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        debs, root = Path(tmp) / "debs", Path(tmp) / "root"
        debs.mkdir()
        try:
            subprocess.run(["apt-get", "download", *packages], cwd=debs, check=True)
        except (OSError, subprocess.CalledProcessError) as e:
            sys.exit(f"could not download {', '.join(packages)} ({e}): this needs apt-get and a Debian mirror; "
                     "run `apt-get update` first")
        for deb in sorted(debs.glob("*.deb")):
            subprocess.run(["dpkg", "-x", str(deb), str(root)], check=True)
        missing = [rel for rel in photos if not (root / rel).is_file()]
        if missing:
            sys.exit(f"{len(missing)} photos are not in these package versions (first: {missing[0]}); "
                     "the packages changed since the map was trained")
        names = [_name(rel) for rel in photos]
        assert len(set(names)) == len(names), "two photos of the set would share a file name"
        for rel, name in zip(photos, names):
            with Image.open(root / rel) as im:
                _save(im, a.out / (Path(name).stem + ".jpg"))
        carved = _save_gcompris_photos(root, a.out) if "gcompris-qt-data" in packages else 0
    print(f"{len(photos) + carved} photos in {a.out}")


if __name__ == "__main__":
    main()
