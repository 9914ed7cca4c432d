"""Rebuild the folder of extra photos the shipped watermark map and fusion heads were trained with (`--extra-photos`).

40 photographs (foliage, flowers, rock, forest, water, boats, a wine cellar, a clock, a bridge) from the
wallpapers of Debian packages, a registry this kind of machine can reach. Their long side is shrunk to 1024 px.
Needs `apt-get` and `dpkg` (run `apt-get update` first).

    python tools/scripts/debian_photos.py --out /tmp/photos_sel
    python tools/scripts/train_watermark_map.py --extra-photos /tmp/photos_sel ...
    python tools/scripts/train_structure_fusion.py --extra-photos /tmp/photos_sel ...
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

PACKAGES = ("mate-backgrounds", "ukui-wallpapers", "lomiri-wallpapers", "lomiri-wallpapers-16.04",
            "lomiri-wallpapers-20.04", "plasma-workspace-wallpapers")
# photographs only: abstract art, renders with logos or lettering were left out by eye
PHOTOS = (
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
LONG_SIDE = 1024


def main(argv: list[str] | None = None) -> None:
    from PIL import Image

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        debs, root = Path(tmp) / "debs", Path(tmp) / "root"
        debs.mkdir()
        try:
            subprocess.run(["apt-get", "download", *PACKAGES], cwd=debs, check=True)
        except (OSError, subprocess.CalledProcessError) as e:
            sys.exit(f"could not download {', '.join(PACKAGES)} ({e}): this needs apt-get and a Debian mirror; "
                     "run `apt-get update` first")
        for deb in sorted(debs.glob("*.deb")):
            subprocess.run(["dpkg", "-x", str(deb), str(root)], check=True)
        missing = [rel for rel in PHOTOS if not (root / rel).is_file()]
        if missing:
            sys.exit(f"{len(missing)} photos are not in these package versions (first: {missing[0]}); "
                     "the packages changed since the map was trained")
        for rel in PHOTOS:
            parts = Path(rel).parts
            name = (parts[-4] + "_" + parts[-1]) if "wallpapers" in parts else Path(rel).name
            with Image.open(root / rel) as im:
                im = im.convert("RGB")
                im.thumbnail((LONG_SIDE, LONG_SIDE), Image.LANCZOS)
                im.save(a.out / (Path(name).stem + ".jpg"), quality=93)
    print(f"{len(PHOTOS)} photos in {a.out}")


if __name__ == "__main__":
    main()
