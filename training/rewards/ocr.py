"""Text rendering reward: real OCR (rapidocr) reads the image; the reward is the character match with the
prompt's quoted text, in zh and en.

match = 1 - edit distance / max(length read, length wanted), over the characters of all quoted spans joined,
whitespace dropped and case folded (OCR keeps or drops spaces at will; case is the glyph model's job but the
toy does not care). 1.0 is an exact rendering; NaN a prompt that quotes nothing. Not differentiable: it ranks
images into preference pairs (Diffusion-DPO), and judges; the differentiable stand-in is a `match` model
trained to predict it (`text_input: quoted`).
"""

from __future__ import annotations

import os

import numpy as np
import torch

from training.rewards.base import Reward


def squash(text: str) -> str:
    return "".join(text.split()).casefold()


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insertions, deletions, substitutions), O(len(a) len(b))."""
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def char_match(read: str, wanted: str) -> float:
    """1 - edit distance / the longer length, whitespace and case ignored; 1.0 when both are empty."""
    r, w = squash(read), squash(wanted)
    if not r and not w:
        return 1.0
    return 1.0 - edit_distance(r, w) / max(len(r), len(w))


def pad_for_ocr(rgb: np.ndarray, margin: float = 0.5, min_side: int = 64) -> np.ndarray:
    """A light border (and an upscale of small images): the detector misses text that touches the edge."""
    from PIL import Image

    h, w = rgb.shape[:2]
    up = max(1, int(np.ceil(min_side / min(h, w))))
    im = Image.fromarray(rgb).resize((w * up, h * up), Image.BICUBIC) if up > 1 else Image.fromarray(rgb)
    pw, ph = int(im.width * margin), int(im.height * margin)
    bg = tuple(int(v) for v in np.median(np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]]), axis=0))
    canvas = Image.new("RGB", (im.width + 2 * pw, im.height + 2 * ph), bg)
    canvas.paste(im, (pw, ph))
    return np.asarray(canvas)


class OCRReward(Reward):
    """rapidocr 3 with its shipped PP-OCRv6 models (or local ONNX files: options det_model, rec_model)."""

    differentiable = False

    def load(self) -> None:
        from training.rewards import RewardLoadError

        try:
            import rapidocr  # noqa: F401
            import onnxruntime  # noqa: F401
        except ImportError as e:
            raise RewardLoadError(f"reward {self.name} (ocr) needs rapidocr and onnxruntime ({e}); install them "
                                  "with: pip install 'sluice[ocr]'") from None
        o = dict(self.spec.options)
        unknown = sorted(set(o) - {"det_model", "rec_model", "threads", "min_conf"})
        if unknown:
            raise RewardLoadError(f"reward {self.name}: unknown options {unknown}; ocr takes det_model, rec_model "
                                  "(local ONNX files), threads, min_conf")
        params = {"Global.log_level": "error", "Global.text_score": float(o.get("min_conf", 0.3)),
                  "EngineConfig.onnxruntime.intra_op_num_threads": min(int(o.get("threads", 1)), os.cpu_count() or 1),
                  "EngineConfig.onnxruntime.inter_op_num_threads": 1}
        for key, opt in (("Det", "det_model"), ("Rec", "rec_model")):
            if opt in o:
                if not os.path.isfile(str(o[opt])):
                    raise RewardLoadError(f"reward {self.name}: {opt} {o[opt]} does not exist; give a local ONNX "
                                          "file or leave it out for rapidocr's shipped model")
                params[f"{key}.model_path"] = str(o[opt])
        from rapidocr import RapidOCR

        self.engine = RapidOCR(params=params)

    def read(self, rgb: np.ndarray) -> str:
        """All the text rapidocr finds in an (H, W, 3) uint8 RGB image, lines in reading order joined."""
        out = self.engine(np.ascontiguousarray(pad_for_ocr(rgb)[:, :, ::-1]))  # rapidocr takes BGR
        if out.txts is None or out.boxes is None or not len(out.txts):
            return ""
        boxes = np.asarray(out.boxes, dtype=np.float32)
        order = np.lexsort((boxes[:, :, 0].min(1), np.round(boxes[:, :, 1].mean(1) / 8)))  # rows, then left first
        return "".join(out.txts[i] for i in order)

    @torch.no_grad()
    def __call__(self, pixels: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        from training.models.text_encoder import quoted_spans

        arr = ((pixels.detach().float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()
        out = []
        for rgb, prompt in zip(arr, prompts):
            wanted = "".join(quoted_spans(prompt))
            out.append(char_match(self.read(rgb), wanted) if wanted else float("nan"))
        return torch.tensor(out, dtype=torch.float32, device=pixels.device)
