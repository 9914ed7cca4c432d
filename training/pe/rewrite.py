"""The saved prompt rewriter: a causal LM that continues `template.format(prompt=u)` with the rewrite r.

A PE folder holds `pe.json` (template, generation length, guard mode, what it was trained from) and either a
whole model (config + weights + tokenizer) or, when it was trained with LoRA, a peft adapter whose base model
`pe.json` names. `sluice generate --pe DIR` loads one; SFT writes one, DPO reads one and writes the next.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from training.pe.guard import Guarded, guard

log = logging.getLogger(__name__)

META = "pe.json"


def is_pe_folder(path: str | Path) -> bool:
    return (Path(path) / META).is_file()


def read_meta(folder: str | Path) -> dict:
    return json.loads((Path(folder) / META).read_text(encoding="utf-8"))


def _tokenizer(path: str):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    if tok.eos_token is None:
        raise ValueError(f"the tokenizer of {path} has no eos token: the rewriter could never end a rewrite; "
                         "give a causal LM whose tokenizer defines eos_token")
    if tok.pad_token is None:  # batches need padding; eos is the usual stand-in for decoder-only models
        tok.pad_token = tok.eos_token
    return tok


def load_lm(path: str | Path, trainable: bool = False, merge: bool = False):
    """(model, tokenizer, meta) of a PE folder or of a plain causal LM (path or hub id; meta {} then).

    An adapter folder loads over its base: trainable (to go on training the same adapter), or merged into it
    (a plain model, e.g. a frozen reference)."""
    from transformers import AutoModelForCausalLM

    path = str(path)
    meta = read_meta(path) if is_pe_folder(path) else {}
    try:
        if meta.get("base"):
            from peft import PeftModel

            model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(meta["base"]), path,
                                              is_trainable=trainable)
            if merge:
                model = model.merge_and_unload()
        else:
            model = AutoModelForCausalLM.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot load the rewriter's language model {path} ({type(e).__name__}: {e}); give a "
                         "local folder of a transformers causal LM (or a hub id already in the cache) or a PE "
                         "folder written by training/pe (pe.json beside the weights)") from None
    return model, _tokenizer(path), meta


class Rewriter:
    """u -> r with a causal LM; `rewrite` checks every rewrite's quoted text (training/pe/guard.py)."""

    def __init__(self, model, tokenizer, template: str, max_new_tokens: int = 96, guard_mode: str = "repair"):
        if "{prompt}" not in template:
            raise ValueError(f"template {template!r} must hold {{prompt}}")
        self.model, self.tok = model.eval(), tokenizer
        self.template, self.max_new_tokens, self.guard_mode = template, max_new_tokens, guard_mode

    @classmethod
    def load(cls, folder: str | Path, device: str = "cpu") -> "Rewriter":
        if not is_pe_folder(folder):
            raise FileNotFoundError(f"{folder} is not a PE folder (no {META}); give a folder that "
                                    "training/pe/sft.py or dpo.py wrote (e.g. benchmarks/train_toy_pe.py)")
        model, tok, meta = load_lm(folder, merge=True)
        return cls(model.to(device), tok, meta["template"], meta.get("max_new_tokens", 96), meta.get("guard", "repair"))

    def format(self, prompt: str) -> str:
        return self.template.format(prompt=prompt)

    def generate(self, prompts: list[str], k: int = 1, sample: bool = False, temperature: float = 1.0,
                 top_p: float = 1.0, seed: int = 0) -> list[list[str]]:
        """k raw continuations per prompt (greedy when not `sample`), cut at the first line break."""
        import torch

        if not prompts:
            return []
        self.tok.padding_side = "left"  # decoder-only batches: the continuation must follow the prompt directly
        enc = self.tok([self.format(p) for p in prompts], return_tensors="pt", padding=True)
        enc = {k_: v.to(self.model.device) for k_, v in enc.items() if k_ in ("input_ids", "attention_mask")}
        torch.manual_seed(seed)
        with torch.no_grad():
            out = self.model.generate(**enc, max_new_tokens=self.max_new_tokens, do_sample=sample,
                                      temperature=temperature if sample else None, top_p=top_p if sample else None,
                                      top_k=None, num_return_sequences=k, pad_token_id=self.tok.pad_token_id,
                                      eos_token_id=self.tok.eos_token_id)
        texts = self.tok.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
        texts = [t.strip().split("\n", 1)[0].strip() for t in texts]
        return [texts[i * k:(i + 1) * k] for i in range(len(prompts))]

    def rewrite(self, prompts: list[str], use_guard: bool = True) -> list[Guarded]:
        """One greedy rewrite per prompt; with the guard, a rewrite that loses quoted text is repaired or
        replaced by the prompt itself, and an empty rewrite is replaced by the prompt."""
        out = []
        for u, (r,) in zip(prompts, self.generate(prompts)):
            if not r:
                out.append(Guarded(u, "fallback", r))
            else:
                out.append(guard(u, r, self.guard_mode) if use_guard else Guarded(r, "ok", r))
        return out

    def sample(self, prompts: list[str], k: int, temperature: float = 1.0, top_p: float = 0.95,
               seed: int = 0) -> list[list[str]]:
        """k sampled rewrites per prompt, unguarded (candidates; the caller filters them)."""
        return self.generate(prompts, k, sample=True, temperature=temperature, top_p=top_p, seed=seed)

    def save(self, folder: str | Path, meta: dict | None = None) -> Path:
        """The model (or, for a peft model, its adapter; `meta["base"]` must then name the base) + tokenizer +
        pe.json."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        meta = dict(meta or {})
        if hasattr(self.model, "peft_config") and not meta.get("base"):
            raise ValueError("a LoRA rewriter is saved as an adapter: give meta['base'], the base model it loads over")
        self.model.save_pretrained(folder)
        self.tok.save_pretrained(folder)
        meta.update(template=self.template, max_new_tokens=self.max_new_tokens, guard=self.guard_mode)
        (folder / META).write_text(json.dumps(meta, indent=1, ensure_ascii=False), encoding="utf-8")
        return folder


def write_rewrites(folder: str | Path, records: list[dict], rewrites: list[Guarded], users: list[str],
                   pe: str) -> Path:
    """`rewrites.jsonl` beside a generated folder's `generated.jsonl`: per record id, the user's prompt u, the
    rewriter's output and what the guard did. generated.jsonl's `prompt` is the prompt the DiT saw (r); its
    contract (annotation/generated.py) has no room for u, so u lives here."""
    path = Path(folder) / "rewrites.jsonl"
    with open(path, "a", encoding="utf-8") as f:
        for rec, g, u in zip(records, rewrites, users, strict=True):
            f.write(json.dumps({"id": rec["id"], "user_prompt": u, "prompt": g.text, "rewrite": g.rewrite,
                                "guard": g.status, "pe": pe}, ensure_ascii=False) + "\n")
    return path


def read_rewrites(folder: str | Path) -> dict[str, dict]:
    """record id -> its rewrites.jsonl row (empty when the folder was generated without --pe)."""
    path = Path(folder) / "rewrites.jsonl"
    if not path.is_file():
        return {}
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return {r["id"]: r for r in rows}
