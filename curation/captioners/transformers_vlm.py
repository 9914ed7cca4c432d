"""An in-process vision-language model from transformers (Qwen2.5-VL, Florence-2, BLIP, ...).

The model loads once per worker from a local path or a hub id, on the GPU when there is one. A model
whose processor has a chat template gets the prompt as a user message with the image; one without
(BLIP) gets it as the text prefix it continues, and the prefix is cut from the answer.
"""

from __future__ import annotations

import logging

from curation.captioners.base import MODEL_STYLES, CaptionerBase, Request
from schemas.captions import CAPTION_LANGS
from plumbing.deps import require

log = logging.getLogger(__name__)


class TransformersCaptioner(CaptionerBase):
    name = "transformers_vlm"

    def __init__(self, model: str, styles=MODEL_STYLES, langs=CAPTION_LANGS, batch_size: int = 8,
                 max_new_tokens: int = 256, device: str = "auto", dtype: str = "auto",
                 image_max_side: int = 768, prompt_versions: dict[str, int] | None = None):
        super().__init__(model, styles, langs, image_max_side, prompt_versions)
        if batch_size < 1 or max_new_tokens < 1:
            raise ValueError("transformers captioner needs batch_size >= 1 and max_new_tokens >= 1")
        self.batch_size, self.max_new_tokens, self.device, self.dtype = batch_size, max_new_tokens, device, dtype

    def load(self) -> None:
        torch = require("torch", extra="caption")
        tf = require("transformers", extra="caption")
        from curation.signals.gpu import pick_device

        device = pick_device(self.device)  # the GPU Spark assigned this task wins over cuda:0
        dtype = {"auto": torch.bfloat16 if device.startswith("cuda") else torch.float32,
                 "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[self.dtype]
        try:
            processor = tf.AutoProcessor.from_pretrained(self.model)
            model = tf.AutoModelForImageTextToText.from_pretrained(self.model, dtype=dtype)
        except (OSError, ValueError) as e:
            raise ValueError(f"cannot load captioner model {self.model!r} (a local folder or hub id of an "
                             f"image-text-to-text model, e.g. Qwen/Qwen2.5-VL-7B-Instruct): {e}") from None
        self._torch, self._processor, self._model = torch, processor, model.to(device).eval()
        self._device = device
        self._chat = bool(getattr(processor, "chat_template", None))
        tokenizer = getattr(processor, "tokenizer", None)
        if self._chat and tokenizer is not None:
            tokenizer.padding_side = "left"  # batched generation continues every row from its last token
        log.info("captioner %s on %s (%s)", self.model, device, "chat" if self._chat else "prefix prompts")

    def _run(self, images: dict, reqs: list[Request]) -> list[tuple[str | None, str | None]]:
        out: list[tuple[str | None, str | None]] = []
        for i in range(0, len(reqs), self.batch_size):
            chunk = reqs[i : i + self.batch_size]
            try:
                out += [(t, None) for t in self._generate([images[r.id] for r in chunk], [r.prompt for r in chunk])]
            except Exception as e:  # one bad batch must not lose the others: retry its rows one by one
                if len(chunk) == 1:
                    out.append((None, f"generation failed: {type(e).__name__}: {e}"))
                    continue
                log.warning("captioner batch failed (%s); retrying its %d rows one by one", e, len(chunk))
                out += self._one_by_one(images, chunk)
        return out

    def _one_by_one(self, images: dict, chunk: list[Request]):
        out = []
        for r in chunk:
            try:
                out.append((self._generate([images[r.id]], [r.prompt])[0], None))
            except Exception as e:
                out.append((None, f"generation failed: {type(e).__name__}: {e}"))
        return out

    def _generate(self, images: list, prompts: list[str]) -> list[str]:
        torch, proc = self._torch, self._processor
        if self._chat:
            texts = [proc.apply_chat_template(
                [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": p}]}],
                add_generation_prompt=True) for p in prompts]
        else:
            texts = prompts
        inputs = proc(images=images, text=texts, return_tensors="pt", padding=True).to(self._device)
        with torch.inference_mode():
            ids = self._model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
        prompt_ids = inputs["input_ids"]
        n = prompt_ids.shape[1]
        if ids.shape[1] >= n and torch.equal(ids[:, :n].cpu(), prompt_ids.cpu()):
            ids = ids[:, n:]  # decoder-only models echo the prompt tokens first
        texts_out = proc.batch_decode(ids, skip_special_tokens=True)
        return [_without_prefix(t, p) for t, p in zip(texts_out, prompts)]


def _without_prefix(text: str, prompt: str) -> str:
    """Prefix-prompted models (BLIP) repeat the prefix, possibly lower-cased and re-spaced."""
    norm = lambda s: "".join(s.lower().split())  # noqa: E731
    if norm(text).startswith(norm(prompt)):
        kept, target = 0, len(norm(prompt))
        for n, ch in enumerate(text):
            if not ch.isspace():
                kept += 1
            if kept == target:
                return text[n + 1 :].strip()
    return text.strip()
