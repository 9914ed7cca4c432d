"""A synthetic bilingual dataset for checking that the trainer learns: coloured shapes and rendered words.

Each sample is a small image of one coloured shape (circle, square, triangle) or one rendered word, with
captions in zh and en ("一个红色的圆" / "a red circle"). It is written as export-format shards (see
docs/export-format.md) so the trainer reads it exactly as it reads curated data. Also here:

* `build_tiny_llm`: a randomly initialised Qwen3 decoder with a byte-level BPE tokenizer trained on the toy
  captions, saved as a local model folder. It is NOT a trained language model: it stands in for the LLM text
  encoder in tests and the toy run, where nothing may be downloaded.
* `train_judge` / `judge`: a small CNN trained on the same synthetic images that names the colour and shape
  of an image; it judges the toy model's samples.

    python -m synthetic.toy_shapes --out DIR --n 2000 --size 32 --seed 0
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import random
import tarfile
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

COLOURS = {"red": ((220, 30, 30), "红色"), "green": ((30, 170, 40), "绿色"), "blue": ((30, 60, 220), "蓝色"),
           "yellow": ((235, 200, 20), "黄色")}
SHAPES = {"circle": "圆", "square": "正方形", "triangle": "三角形"}
WORDS = ("CAT", "SUN", "山", "水")
# The toy world's one aesthetic attribute (post-training checks): a soft, warm light falling off towards the
# corners, or the flat white background. Its names are the opposing label pair that VMix learns from.
LIGHTS = {"soft": {"en": "soft light", "zh": "柔光"}, "flat": {"en": "flat light", "zh": "平光"}}


def caption(colour: str, shape: str, lang: str) -> str:
    return f"一个{COLOURS[colour][1]}的{SHAPES[shape]}" if lang == "zh" else f"a {colour} {shape}"


def soft_light(size: int, bg: tuple[int, int, int]) -> Image.Image:
    """The `bg` colour at the centre, falling off quadratically to a dim warm brown in the corners."""
    import numpy as np

    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    r2 = ((xx - size / 2) ** 2 + (yy - size / 2) ** 2) / (size ** 2 / 2)  # 0 at the centre, 1 in the corners
    dim = np.array([120, 85, 50], dtype=np.float32)
    arr = np.asarray(bg, dtype=np.float32)[None, None] * (1 - r2[..., None]) + dim * r2[..., None]
    return Image.fromarray(arr.round().clip(0, 255).astype(np.uint8))


def draw_shape(colour: str, shape: str, size: int, rng: random.Random, light: str = "flat") -> Image.Image:
    bg = tuple(rng.randint(235, 255) for _ in range(3))
    im = Image.new("RGB", (size, size), bg) if light == "flat" else soft_light(size, bg)
    d = ImageDraw.Draw(im)
    r = rng.uniform(0.28, 0.4) * size
    cx, cy = size / 2 + rng.uniform(-0.08, 0.08) * size, size / 2 + rng.uniform(-0.08, 0.08) * size
    fill = tuple(max(0, min(255, c + rng.randint(-15, 15))) for c in COLOURS[colour][0])
    box = (cx - r, cy - r, cx + r, cy + r)
    if shape == "circle":
        d.ellipse(box, fill=fill)
    elif shape == "square":
        d.rectangle((cx - r * 0.85, cy - r * 0.85, cx + r * 0.85, cy + r * 0.85), fill=fill)
    else:
        d.polygon([(cx, cy - r), (cx - r, cy + r * 0.8), (cx + r, cy + r * 0.8)], fill=fill)
    return im


def draw_word(word: str, size: int, rng: random.Random) -> Image.Image:
    from synthetic.sample_corpus import cjk_font_path

    im = Image.new("RGB", (size, size), (250, 250, 250))
    path = cjk_font_path()
    font = ImageFont.truetype(path, int(size * 0.4)) if path else ImageFont.load_default(size=int(size * 0.4))
    d = ImageDraw.Draw(im)
    d.text((size / 2, size / 2), word, fill=(10, 10, 10), font=font, anchor="mm")
    return im


def make_samples(n: int, size: int = 32, seed: int = 0, word_share: float = 0.15, soft_share: float = 0.0,
                 aesthetic_captions: bool = False) -> list[tuple[Image.Image, dict]]:
    """n (image, export-format json) pairs; every choice is a function of the seed.

    `soft_share` of the shapes get the soft light (drawn from its own hash, so that the rest of a seed's
    samples stay as they were); `aesthetic_captions` adds the `aesthetic` caption style naming the light.
    """
    rng = random.Random(seed)
    out = []
    for i in range(n):
        key = hashlib.sha1(f"{seed}:{i}".encode()).hexdigest()[:32]
        light = "soft" if random.Random(f"light:{seed}:{i}").random() < soft_share else "flat"
        if rng.random() < word_share:
            w = rng.choice(WORDS)
            im, caps, label = draw_word(w, size, rng), {"zh": f"写着“{w}”的图片", "en": f'the word "{w}"'}, {"word": w}
            light = "flat"
        else:
            c, s = rng.choice(sorted(COLOURS)), rng.choice(sorted(SHAPES))
            im, caps, label = draw_shape(c, s, size, rng, light), {l: caption(c, s, l) for l in ("zh", "en")}, \
                {"colour": c, "shape": s}
        captions, styles = {"short": caps}, ["short_en", "short_zh"]
        if aesthetic_captions:
            captions["aesthetic"], styles = dict(LIGHTS[light]), sorted(styles + ["aesthetic_en", "aesthetic_zh"])
        meta = {"id": key, "key": key, "source": "toy_shapes", "uri": f"toy://{seed}/{i}", "width": size,
                "height": size, "aspect_bucket": f"{size}x{size}", "captions": captions, "styles": styles,
                "signals": {}, "tags": [], "cluster_path": [], "toy": {**label, "light": light}}
        out.append((im, meta))
    return out


def match_data(n: int, seed: int, soft_share: float = 0.0):
    """(pixels, texts, targets) for a prompt-image match model: toy shapes, each with its own caption (1) or one
    whose colour or shape is changed (0, the hard negatives), in zh or en; every choice a function of the seed."""
    import torch

    from training.rewards.base import to_pixels

    rng = random.Random(seed)
    samples = make_samples(n, 32, seed=seed, word_share=0.0, soft_share=soft_share)
    texts, targets = [], []
    for _, meta in samples:
        c, s, lang = meta["toy"]["colour"], meta["toy"]["shape"], rng.choice(["zh", "en"])
        if rng.random() < 0.5:
            texts.append(caption(c, s, lang))
            targets.append(1.0)
        else:
            wrong = (rng.choice([x for x in COLOURS if x != c]), s) if rng.random() < 0.5 else \
                (c, rng.choice([x for x in SHAPES if x != s]))
            texts.append(caption(*wrong, lang))
            targets.append(0.0)
    return to_pixels([im for im, _ in samples]), texts, torch.tensor(targets)


def write_shards(samples: list[tuple], export_dir: Path, shard_size: int = 500) -> list[Path]:
    """Write samples as export-format shards: shards/<bucket>/shard-NNNNNN.tar, members <key>.jpg + <key>.json.

    A sample is (image, meta) or (image, meta, {member: image}) for more images, e.g. an edit pair's `src.jpg`."""
    by_bucket: dict[str, list] = {}
    for sample in sorted(samples, key=lambda s: s[1]["key"]):
        by_bucket.setdefault(sample[1]["aspect_bucket"], []).append(sample)
    paths = []
    for bucket, items in sorted(by_bucket.items()):
        folder = Path(export_dir) / "shards" / bucket
        folder.mkdir(parents=True, exist_ok=True)
        for s in range(0, len(items), shard_size):
            path = folder / f"shard-{s // shard_size:06d}.tar"
            with tarfile.open(path, "w") as tar:
                for im, meta, *more in items[s:s + shard_size]:
                    images = {"jpg": im, **(more[0] if more else {})}
                    members = []
                    for ext, image in images.items():
                        buf = io.BytesIO()
                        image.save(buf, "JPEG", quality=95)
                        members.append((ext, buf.getvalue()))
                    for ext, data in members + [("json", json.dumps(meta, ensure_ascii=False).encode())]:
                        info = tarfile.TarInfo(f"{meta['key']}.{ext}")
                        info.size = len(data)
                        tar.addfile(info, io.BytesIO(data))
            paths.append(path)
    (Path(export_dir) / "_SUCCESS").write_text("")
    return paths


EDIT_KINDS = ("colour", "shape", "word")


def edit_instruction(kind: str, before: dict, after: dict, lang: str) -> str:
    """The instruction that turns `before` into `after`: "把红色的圆变成蓝色" / "make the red circle blue"."""
    if kind == "word":
        if not before.get("word"):
            return f"加上“{after['word']}”" if lang == "zh" else f'add the word "{after["word"]}"'
        return (f"把“{before['word']}”换成“{after['word']}”" if lang == "zh"
                else f'replace "{before["word"]}" with "{after["word"]}"')
    c, sh = before["colour"], before["shape"]
    if lang == "zh":
        new = COLOURS[after["colour"]][1] if kind == "colour" else SHAPES[after["shape"]]
        return f"把{COLOURS[c][1]}的{SHAPES[sh]}变成{new}"
    return f"make the {c} {sh} {after['colour']}" if kind == "colour" else f"make the {c} {sh} a {after['shape']}"


def blank(size: int, rng: random.Random) -> Image.Image:
    return Image.new("RGB", (size, size), (250, 250, 250))


def make_edit_pairs(n: int, size: int = 32, seed: int = 0, word_share: float = 0.2) -> list[tuple]:
    """n instruction-editing pairs (target image, export json, {"src.jpg": source image}): change a shape's colour,
    change its shape, or add/replace a rendered word. Source and target are drawn from the same random state, so
    only the asked-for attribute differs; the json's `edit` says what changed, and the caption (style short) is
    the instruction in zh and en. Every choice is a hash of (seed, i)."""
    out = []
    for i in range(n):
        rng = random.Random(f"edit:{seed}:{i}")
        key = hashlib.sha1(f"edit:{seed}:{i}".encode()).hexdigest()[:32]
        state = rng.getstate()
        if rng.random() < word_share:
            kind = "word"
            w2 = rng.choice(WORDS)
            w1 = rng.choice([None, *[w for w in WORDS if w != w2]])  # None: add a word to a blank picture
            before, after = {"word": w1}, {"word": w2}
            src = draw_word(w1, size, rng) if w1 else blank(size, rng)
            tgt = draw_word(w2, size, rng)
        else:
            kind = "colour" if rng.random() < 0.5 else "shape"
            c, sh = rng.choice(sorted(COLOURS)), rng.choice(sorted(SHAPES))
            before = {"colour": c, "shape": sh}
            pool = sorted(COLOURS) if kind == "colour" else sorted(SHAPES)
            new = rng.choice([v for v in pool if v != before[kind]])
            after = {**before, kind: new}
            state = rng.getstate()  # both pictures from here: same background, place, size and jitter
            src = draw_shape(before["colour"], before["shape"], size, rng)
            rng.setstate(state)
            tgt = draw_shape(after["colour"], after["shape"], size, rng)
        caps = {lang: edit_instruction(kind, before, after, lang) for lang in ("zh", "en")}
        meta = {"id": key, "key": key, "source": "toy_edits", "uri": f"toy-edit://{seed}/{i}", "width": size,
                "height": size, "aspect_bucket": f"{size}x{size}", "captions": {"short": caps},
                "styles": ["short_en", "short_zh"], "signals": {}, "tags": [], "cluster_path": [],
                "edit": {"kind": kind, "before": before, "after": after}}
        out.append((tgt, meta, {"src.jpg": src}))
    return out


def toy_corpus() -> list[str]:
    caps = [caption(c, s, l) for c in COLOURS for s in SHAPES for l in ("zh", "en")]
    return caps + [f"写着“{w}”的图片" for w in WORDS] + [f'the word "{w}"' for w in WORDS]


def build_tiny_llm(out: Path, corpus: list[str] | None = None, hidden: int = 64, layers: int = 2, seed: int = 0,
                   split_cjk: bool = False, vocab_size: int = 400, max_positions: int = 256) -> Path:
    """A random-init Qwen3 decoder + a byte-level BPE trained on `corpus`, saved to `out` (not a trained LLM).

    split_cjk: every CJK character is its own pre-token and no NFKC normaliser runs, so text round-trips exactly.
    BPE trained on a few dozen captions otherwise merges each whole Chinese caption into one token; a model that
    must compose or emit captions (the prompt rewriter) needs characters, as real LLM tokenizers give. The
    default keeps the encoder the toy bases were trained with."""
    import torch
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen3Config, Qwen3ForCausalLM

    tk = Tokenizer(models.BPE(unk_token=None))
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False)
    if split_cjk:
        tk.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(r"[\u3000-\u303f\u3400-\u9fff\uff00-\uffef]"), behavior="isolated"), byte_level])
    else:
        tk.normalizer = normalizers.NFKC()
        tk.pre_tokenizer = byte_level
    tk.decoder = decoders.ByteLevel()
    tk.train_from_iterator(corpus or toy_corpus(), trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<pad>", "<eos>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", eos_token="<eos>")
    torch.manual_seed(seed)
    cfg = Qwen3Config(vocab_size=len(tok), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                      num_attention_heads=4, num_key_value_heads=2, head_dim=hidden // 4,
                      max_position_embeddings=max_positions, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    Qwen3ForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return Path(out)


def _judge_net(size: int, outputs: int = len(COLOURS) + len(SHAPES)):
    from torch import nn

    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(16, 32, 3, padding=1),
                         nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32 * (size // 4) ** 2, 64), nn.ReLU(),
                         nn.Linear(64, outputs))


def to_tensor(images: list[Image.Image]):
    import numpy as np
    import torch

    return torch.from_numpy(np.stack([np.asarray(im.convert("RGB"), dtype=np.float32) / 127.5 - 1 for im in images])
                            ).permute(0, 3, 1, 2)


def train_judge(n: int = 3000, size: int = 32, seed: int = 123, epochs: int = 4):
    """Train the colour+shape classifier on fresh synthetic shapes (a seed unused by the training data)."""
    import torch

    torch.manual_seed(seed)
    data = [(im, m["toy"]) for im, m in make_samples(n, size, seed, word_share=0.0)]
    x = to_tensor([im for im, _ in data])
    yc = torch.tensor([sorted(COLOURS).index(lab["colour"]) for _, lab in data])
    ys = torch.tensor([sorted(SHAPES).index(lab["shape"]) for _, lab in data])
    net = _judge_net(size)
    opt = torch.optim.Adam(net.parameters(), 2e-3)
    for _ in range(epochs):
        for idx in torch.randperm(n).split(64):
            out = net(x[idx] + 0.1 * torch.randn_like(x[idx]))  # noise: generated samples are not clean JPEGs
            loss = torch.nn.functional.cross_entropy(out[:, :len(COLOURS)], yc[idx]) + \
                torch.nn.functional.cross_entropy(out[:, len(COLOURS):], ys[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net.eval()


def judge(net, images: list[Image.Image]) -> list[tuple[str, str]]:
    """(colour, shape) the judge sees in each image."""
    import torch

    with torch.no_grad():
        out = net(to_tensor(images))
    return [(sorted(COLOURS)[c], sorted(SHAPES)[s]) for c, s in
            zip(out[:, :len(COLOURS)].argmax(1).tolist(), out[:, len(COLOURS):].argmax(1).tolist())]


def train_light_reward(n: int = 2000, size: int = 32, seed: int = 321, epochs: int = 3):
    """A learned reward model for the light (P(soft)), trained on fresh shapes: it labels generated images good
    or bad in the SFT loop, where Label Studio annotators would. The analytic `judge_light` grades the result."""
    import torch

    torch.manual_seed(seed)
    data = make_samples(n, size, seed, word_share=0.0, soft_share=0.5)
    x = to_tensor([im for im, _ in data])
    y = torch.tensor([float(m["toy"]["light"] == "soft") for _, m in data])
    net = _judge_net(size, 1)
    opt = torch.optim.Adam(net.parameters(), 2e-3)
    for _ in range(epochs):
        for idx in torch.randperm(n).split(64):
            out = net(x[idx] + 0.1 * torch.randn_like(x[idx]))[:, 0]
            loss = torch.nn.functional.binary_cross_entropy_with_logits(out, y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net.eval()


def light_reward(net, images: list[Image.Image]) -> list[float]:
    """P(soft light) per image from `train_light_reward`'s model."""
    import torch

    with torch.no_grad():
        return torch.sigmoid(net(to_tensor(images))[:, 0]).tolist()


def corner_luminance(image: Image.Image) -> float:
    """Median over the four corners of the mean luminance of a 3x3 patch (the median: a shape may reach one)."""
    import numpy as np

    a = np.asarray(image.convert("L"), dtype=np.float32)
    return float(np.median([a[:3, :3].mean(), a[:3, -3:].mean(), a[-3:, :3].mean(), a[-3:, -3:].mean()]))


def judge_light(images: list[Image.Image], threshold: float = 195.0) -> list[str]:
    """"soft" or "flat" per image, from how dark its corners are (flat backgrounds are >= 235, soft ones ~100)."""
    return ["soft" if corner_luminance(im) < threshold else "flat" for im in images]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    print(len(write_shards(make_samples(a.n, a.size, a.seed), a.out)), "shards")


if __name__ == "__main__":
    main()
