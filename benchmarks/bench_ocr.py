"""OCR accuracy and latency on rendered Chinese, English and mixed text lines.

    python -m benchmarks.bench_ocr [--det-max-side 960 736 ...] [--font-px 24 64] [--use-cls]
                                      [--images-per-lang 14] [--seed 0] [--threads 1] [--keep DIR] [--json OUT]

The set is deterministic (seeded): 1024x768 JPEGs (q90), each with 3-5 lines of one language group
(zh, en or mixed; each phrase below at least once) in the CJK font at 24-64 px (`--font-px`), on real
photos (`synthetic.sample_corpus.real_photos()`, cropped and scaled) or on plain and gradient backgrounds,
in realistic styles: outlined subtitles, text on a banner, coloured text picked for contrast. A few
photos without added text measure false detections. Each image goes through the real decode path
(`decode_for_analysis`) and `OcrSignal.score_image`, once per `--det-max-side`.

Metrics, whitespace ignored and NFKC-normalised on both sides (full-width and half-width punctuation
count as the same):
* character accuracy per language: 1 - sum(edit distance) / sum(reference length); the predicted text
  of a reference line is the text of every predicted box whose centre lies in the line's rendered box
  (grown by a quarter of its height), left to right; a missed line costs its whole length.
* line recall: reference lines with at least one predicted box matched; exact: lines read exactly.
* false lines: predicted boxes that match no reference line (on text images and on the text-free photos);
  an upper bound, since some photos hold real text (YAMAHA on the motorcycle, a name on the astronaut's
  patch).
* latency: wall and CPU seconds of `score_image` per image, after a warm-up image; median and p90.
  Only ONNX runtime's one thread is asked for; CPU time is the fairer figure on a shared machine.
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse
import io
import json
import platform
import shlex
import statistics
import sys
import time
import unicodedata
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

SIZE = (1024, 768)
FONT_PX = (24, 64)
N_BLANK = 6

PHRASES: dict[str, list[str]] = {
    "zh": [
        "限时特卖 全场五折", "新品上市", "欢迎光临", "营业时间 早九点至晚十点", "买一送一", "开业大吉",
        "全场包邮", "清仓大甩卖", "本店招聘服务员", "禁止吸烟", "小心地滑", "安全出口", "请勿停车",
        "老北京炸酱面", "正宗川味火锅", "鲜榨果汁", "会员专享价", "今日特价", "满一百减二十", "扫码点餐",
        "停车场入口", "地铁站出口", "春节快乐 万事如意", "中秋节促销活动", "新年快乐", "我爱北京天安门",
        "好好学习 天天向上", "保护环境 人人有责", "文明出行 安全第一", "他笑着说：明天见", "你今天吃饭了吗",
        "我们终于到家了", "这是我第一次来上海", "请保持安静", "一切皆有可能", "年终大促 低至三折",
        "五星级酒店", "中国人民银行", "人民路步行街", "西湖龙井茶叶店", "出口", "药店", "茶馆", "停车",
    ],
    "en": [
        "Grand Opening Sale", "50% OFF Everything", "Open 24 Hours", "Welcome", "Coffee & Tea",
        "No Parking", "Exit", "Fresh Bakery", "Buy One Get One Free", "Happy New Year", "Just Do It",
        "Think Different", "Summer Collection 2024", "Limited Time Offer", "Free WiFi", "Pizza Delivery",
        "Best Burgers in Town", "Pharmacy", "Hotel California", "Employees Only", "Please Wait Here",
        "Where are you going?", "I will be back soon.", "We need to talk.", "Thank you for coming",
        "Keep calm and carry on", "Shop Now", "Out of Order", "Welcome to New York", "Live Music Tonight",
        "Breaking News", "Subscribe for more", "Made in China", "Closing Down Sale", "Good Morning",
        "The quick brown fox", "Do not disturb", "Private Property", "Fast Food Restaurant", "Back to School",
        "OPEN", "SALE", "Bar", "Go",
    ],
    "mixed": [
        "欢迎光临 Welcome", "新品上市 New Arrival", "扫码关注 Scan to follow", "限时优惠 SALE",
        "咖啡 Coffee", "营业中 OPEN", "出口 EXIT", "洗手间 Toilet", "禁止吸烟 No Smoking",
        "小心地滑 Caution Wet Floor", "免费WiFi 密码12345678", "iPhone 15 Pro 现货", "全场五折 50% OFF",
        "星巴克 STARBUCKS", "麦当劳 McDonald's", "Happy New Year 新年快乐", "Hello 你好", "I love 北京",
        "Made in China 中国制造", "地铁 Metro", "停车场 Parking", "药店 Pharmacy", "酒店 Hotel",
        "LOGO设计 品牌策划", "第1集 Episode 1", "他说 OK 没问题", "NBA总决赛直播", "5G网络全覆盖",
        "VIP会员专享", "Apple 官方授权店", "美食 Food Court", "入口 Entrance", "机场 Airport",
        "早餐 Breakfast 7:00", "书店 Bookstore", "欢迎来到 Shanghai", "Wi-Fi 免费上网", "银行 Bank",
        "花店 Flowers", "出租车 TAXI",
    ],
}


def norm(text: str) -> str:
    return "".join(unicodedata.normalize("NFKC", text).split())


# ---------------------------------------------------------------- rendering

def _background(rng: np.random.Generator, photos: list) -> tuple[Image.Image, str]:
    w, h = SIZE
    if rng.random() < 0.65:
        subject, photo = photos[int(rng.integers(len(photos)))]
        scale = min(photo.width / w, photo.height / h) * rng.uniform(0.6, 1.0)
        cw, ch = max(int(w * scale), 8), max(int(h * scale), 6)
        x0, y0 = int(rng.integers(0, photo.width - cw + 1)), int(rng.integers(0, photo.height - ch + 1))
        return photo.crop((x0, y0, x0 + cw, y0 + ch)).resize(SIZE, Image.Resampling.BICUBIC), f"photo:{subject}"
    c0 = rng.integers(0, 256, 3)
    if rng.random() < 0.5:
        return Image.new("RGB", SIZE, tuple(int(v) for v in c0)), "plain"
    c1 = rng.integers(0, 256, 3)
    t = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
    grad = (c0[None, None, :] * (1 - t) + c1[None, None, :] * t) * np.ones((1, w, 1), np.float32)
    return Image.fromarray(grad.astype(np.uint8)), "gradient"


def _contrasting(rgb: np.ndarray, rng: np.random.Generator) -> tuple[int, int, int]:
    luma = float(rgb @ np.array([0.299, 0.587, 0.114]))
    hue = rng.integers(0, 80, 3)
    return tuple(int(v) for v in (hue if luma > 128 else 255 - hue))


def _place(draw, font, text, taken, rng) -> tuple[int, int, tuple] | None:
    w, h = SIZE
    x0, y0, x1, y1 = draw.textbbox((0, 0), text, font=font)
    tw, th = x1 - x0, y1 - y0
    if tw > w - 40:
        return None
    for _ in range(60):
        x, y = int(rng.integers(20, w - 20 - tw + 1)), int(rng.integers(20, h - 20 - th + 1))
        box = (x, y, x + tw, y + th)
        pad = max(th // 2, 12)
        if all(box[2] + pad < t[0] or t[2] + pad < box[0] or box[3] + pad < t[1] or t[3] + pad < box[1]
               for t in taken):
            return x - x0, y - y0, box
    return None


def render_image(lines: list[str], rng: np.random.Generator, photos: list, font_path: str,
                 font_px: tuple[int, int] = FONT_PX):
    """A 1024x768 RGB image with `lines` drawn on it; returns (image, background kind, [(text, box, px)])."""
    image, kind = _background(rng, photos)
    draw = ImageDraw.Draw(image)
    arr = np.asarray(image, dtype=np.float32)
    placed, taken = [], []
    for text in lines:
        px = int(rng.integers(font_px[0], font_px[1] + 1))
        while True:
            font = ImageFont.truetype(font_path, px, layout_engine=ImageFont.Layout.BASIC)
            spot = _place(draw, font, text, taken, rng)
            if spot or px <= font_px[0]:
                break
            px = max(font_px[0], int(px * 0.8))
        if spot is None:
            continue
        ox, oy, box = spot
        local = arr[box[1]:box[3], box[0]:box[2]].reshape(-1, 3).mean(axis=0)
        style = rng.choice(["outline", "banner", "plain"]) if kind.startswith("photo") else "plain"
        if style == "outline":  # subtitle look
            fill = (255, 255, 255) if rng.random() < 0.7 else (255, 230, 0)
            draw.text((ox, oy), text, font=font, fill=fill, stroke_width=max(2, px // 16), stroke_fill=(0, 0, 0))
        elif style == "banner":  # sign / price tag look
            m = px // 4
            bg = tuple(int(v) for v in rng.integers(0, 256, 3))
            draw.rectangle((box[0] - m, box[1] - m, box[2] + m, box[3] + m), fill=bg)
            draw.text((ox, oy), text, font=font, fill=_contrasting(np.array(bg, np.float32), rng))
        else:
            draw.text((ox, oy), text, font=font, fill=_contrasting(local, rng))
        taken.append(box)
        placed.append((text, box, px))
    return image, kind, placed


def build_set(images_per_lang: int, seed: int, font_px: tuple[int, int] = FONT_PX) -> list[dict]:
    """Deterministic list of {"jpeg": bytes, "lang", "background", "lines": [(text, box px, font px)]}."""
    from synthetic.sample_corpus import cjk_font_path, real_photos

    font_path = cjk_font_path()
    if not font_path:
        raise SystemExit("no CJK font: apt-get install fonts-wqy-microhei (or set SLUICE_CJK_FONT)")
    photos = real_photos()
    items = []
    for li, lang in enumerate(PHRASES):
        rng = np.random.default_rng([seed, li])
        pool = list(rng.permutation(PHRASES[lang]))
        for k in range(images_per_lang):
            n = int(rng.integers(3, 6))
            if len(pool) < n:
                pool += list(rng.permutation(PHRASES[lang]))
            lines, pool = pool[:n], pool[n:]
            image, kind, placed = render_image([str(t) for t in lines], np.random.default_rng([seed, li, k]),
                                               photos, font_path, font_px)
            items.append({"jpeg": _jpeg(image), "lang": lang, "background": kind, "lines": placed})
    rng = np.random.default_rng([seed, 99])
    for k in range(N_BLANK):
        subject, photo = photos[(k * 5 + int(rng.integers(3))) % len(photos)]
        image = photo.resize(SIZE, Image.Resampling.BICUBIC)
        items.append({"jpeg": _jpeg(image), "lang": None, "background": f"photo:{subject}", "lines": []})
    return items


def _jpeg(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=90)
    return buf.getvalue()


# ---------------------------------------------------------------- scoring

def match(lines: list[tuple], boxes: list[dict], width: int, height: int) -> tuple[list[str], list[str]]:
    """Predicted text per reference line (boxes whose centre lies in its grown box) and unmatched boxes."""
    used = set()
    predicted = []
    for _, (x0, y0, x1, y1), _ in lines:
        g = (y1 - y0) / 4
        hits = []
        for i, b in enumerate(boxes):
            cx, cy = (b["x0"] + b["x1"]) / 2 * width, (b["y0"] + b["y1"]) / 2 * height
            if i not in used and x0 - g <= cx <= x1 + g and y0 - g <= cy <= y1 + g:
                hits.append(i)
        used.update(hits)
        predicted.append("".join(boxes[i]["text"] for i in sorted(hits, key=lambda i: boxes[i]["x0"])))
    return predicted, [b["text"] for i, b in enumerate(boxes) if i not in used]


def run_config(items: list[dict], det_max_side: int, use_cls: bool, threads: int) -> dict:
    from curation.signals.analysis import decode_for_analysis
    from curation.signals.ocr import OcrSignal
    from training.rewards.ocr import edit_distance

    signal = OcrSignal(det_max_side=det_max_side, use_cls=use_cls, threads=threads)
    t0 = time.perf_counter()
    signal.load()
    load_s = time.perf_counter() - t0
    signal.score_image(decode_for_analysis(items[0]["jpeg"]))  # warm-up: first-run allocations
    per_lang = {lang: {"ref_chars": 0, "errors": 0, "lines": 0, "found": 0, "exact": 0} for lang in PHRASES}
    walls, cpus, false_text, false_blank, lang_misses = [], [], [], [], []
    misses = []
    for item in items:
        img = decode_for_analysis(item["jpeg"])
        w0, c0 = time.perf_counter(), time.process_time()
        row = signal.score_image(img)
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
        predicted, unmatched = match(item["lines"], row["ocr_boxes"], img.image.width, img.image.height)
        if item["lang"] is None:
            false_blank += [(t, item["background"]) for t in unmatched]
            continue
        false_text += [(t, item["background"]) for t in unmatched]
        if row["ocr_lang"] != item["lang"]:
            lang_misses.append({"lang": item["lang"], "got": row["ocr_lang"], "text": row["ocr_text"]})
        stats = per_lang[item["lang"]]
        for (ref, _, px), pred in zip(item["lines"], predicted):
            r, p = norm(ref), norm(pred)
            err = min(edit_distance(r, p), len(r))
            stats["ref_chars"] += len(r)
            stats["errors"] += err
            stats["lines"] += 1
            stats["found"] += bool(p)
            stats["exact"] += r == p
            if r != p:
                misses.append({"ref": ref, "got": pred, "px": px, "background": item["background"]})
    out = {
        "det_max_side": det_max_side, "use_cls": use_cls, "threads": threads, "load_s": round(load_s, 2),
        "images": len(items), "text_images": sum(1 for i in items if i["lang"]),
        "langs": {}, "false_lines_text_images": len(false_text), "false_lines_blank_images": len(false_blank),
        "false_lines": false_text + false_blank, "lang_misses": lang_misses,
        "image_lang_accuracy": round(1 - len(lang_misses) / sum(1 for i in items if i["lang"]), 3),
        "latency_wall_ms": _dist(walls), "latency_cpu_ms": _dist(cpus), "misses": misses,
    }
    for lang, s in per_lang.items():
        out["langs"][lang] = {
            "lines": s["lines"], "char_accuracy": round(1 - s["errors"] / max(s["ref_chars"], 1), 4),
            "line_recall": round(s["found"] / max(s["lines"], 1), 4), "exact_lines": s["exact"],
        }
    return out


def _dist(seconds: list[float]) -> dict:
    ms = sorted(1000 * s for s in seconds)
    return {"median": round(statistics.median(ms), 1), "p90": round(ms[int(0.9 * (len(ms) - 1))], 1),
            "mean": round(statistics.fmean(ms), 1)}


def markdown(results: list[dict], command: str, env: dict) -> str:
    head = ("| det_max_side | cls | char-acc zh | char-acc en | char-acc mixed | line recall (zh/en/mixed) "
            "| exact lines | false lines (text imgs / blank imgs) | image lang acc "
            "| latency ms, CPU median (p90) | wall median (p90) |")
    rows = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in results:
        L = r["langs"]
        exact = sum(v["exact_lines"] for v in L.values())
        total = sum(v["lines"] for v in L.values())
        rows.append(
            f"| {r['det_max_side']} | {'yes' if r['use_cls'] else 'no'} "
            + "".join(f"| {L[lang]['char_accuracy']:.3f} " for lang in ("zh", "en", "mixed"))
            + f"| {L['zh']['line_recall']:.2f} / {L['en']['line_recall']:.2f} / {L['mixed']['line_recall']:.2f} "
            f"| {exact}/{total} | {r['false_lines_text_images']} / {r['false_lines_blank_images']} "
            f"| {r['image_lang_accuracy']:.2f} "
            f"| {r['latency_cpu_ms']['median']:.0f} ({r['latency_cpu_ms']['p90']:.0f}) "
            f"| {r['latency_wall_ms']['median']:.0f} ({r['latency_wall_ms']['p90']:.0f}) |")
    lines = [f"`{command}`", "",
             f"{results[0]['images']} images 1024x768 ({results[0]['text_images']} with text, "
             f"{results[0]['images'] - results[0]['text_images']} text-free photos); {env['cpu']}, "
             f"load average at start {env['load_start']}, at end {env['load_end']}.", "", *rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--det-max-side", type=int, nargs="+", default=[960])
    p.add_argument("--use-cls", action="store_true", help="also run the text orientation classifier")
    p.add_argument("--images-per-lang", type=int, default=14, help="images per language group (3-5 lines each)")
    p.add_argument("--font-px", type=int, nargs=2, default=list(FONT_PX), metavar=("MIN", "MAX"),
                   help="text height range in pixels on the 1024x768 image")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--keep", type=Path, help="write the JPEGs and their labels here")
    p.add_argument("--json", type=Path, help="write the figures here")
    p.add_argument("--show-misses", type=int, default=10, help="print this many misread lines per config")
    args = p.parse_args(argv)

    command = "python -m benchmarks.bench_ocr " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    items = build_set(args.images_per_lang, args.seed, tuple(args.font_px))
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        labels = []
        for k, item in enumerate(items):
            (args.keep / f"{k:04d}.jpg").write_bytes(item["jpeg"])
            labels.append({"file": f"{k:04d}.jpg", **{key: v for key, v in item.items() if key != "jpeg"}})
        (args.keep / "labels.json").write_text(json.dumps(labels, ensure_ascii=False, indent=1), encoding="utf-8")
    env = {"cpu": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs visible",
           "load_start": round(os.getloadavg()[0], 1)}
    results = [run_config(items, side, args.use_cls, args.threads) for side in args.det_max_side]
    env["load_end"] = round(os.getloadavg()[0], 1)
    print(markdown(results, command, env))
    for r in results:
        if args.show_misses and r["misses"]:
            print(f"\nmisread lines at det_max_side={r['det_max_side']} ({len(r['misses'])}):")
            for m in r["misses"][:args.show_misses]:
                print(f"  {m['ref']!r} -> {m['got']!r}  ({m['px']} px, {m['background']})")
        if args.show_misses and r["false_lines"]:
            print(f"false lines: {r['false_lines'][:args.show_misses]}")
    figures = {"command": command, "env": env, "results": results}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return figures


if __name__ == "__main__":
    main()
