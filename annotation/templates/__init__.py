"""Labelling configs as templates, with Chinese and English UI text.

A choice shows text in the annotator's language but stores a fixed English `alias` (keep/drop, yes/no), so
labels do not depend on the UI language. `questions` says, per control, which answers are valid: anything
else that comes back is flagged `unknown_label` in the labels table.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).parent

TEXT = {
    "en": {
        "valuable_title": "Is this image-text pair worth training on?", "keep": "Keep", "drop": "Drop",
        "reason_title": "If dropped, why?", "blurry": "Blurry", "watermark": "Watermark",
        "text_overlay": "Text overlay", "low_aesthetic": "Low aesthetic", "caption_mismatch": "Caption mismatch",
        "unsafe": "Unsafe", "other": "Other", "note": "Note (optional)",
        "structure_title": "Which of these are drawn on the image?", "logo": "Logo", "yes": "Yes", "no": "No",
        "aesthetic_title": "How beautiful is this image? (1 = poor, 5 = excellent)",
        "pairwise_title": "Which image is better for this caption?", "free_title": "Tick every label that applies",
        "showcase_title": "Is this a showcase image for continue training? If so, of which kind?", "art": "Art",
        "photography": "Photography", "design": "Design", "none": "None of these",
        "generated_title": "Is this generated image good for its prompt?", "prompt_title": "Prompt",
        "aesthetic_part": "Aesthetic part of the prompt", "good": "Good", "bad": "Bad",
    },
    "zh": {
        "valuable_title": "这对图文值得用于训练吗？", "keep": "保留", "drop": "丢弃",
        "reason_title": "如果丢弃，原因是？", "blurry": "模糊", "watermark": "水印", "text_overlay": "叠加文字",
        "low_aesthetic": "美感差", "caption_mismatch": "图文不符", "unsafe": "不安全", "other": "其他",
        "note": "备注（可选）", "structure_title": "图片上有以下哪些内容？", "logo": "标志/台标", "yes": "有", "no": "无",
        "aesthetic_title": "这张图片有多美？（1 = 差，5 = 极好）", "pairwise_title": "哪张图片更符合这段描述？",
        "free_title": "勾选所有适用的标签",
        "showcase_title": "这是可用于继续训练的精选图片吗？如果是，属于哪一类？", "art": "艺术", "photography": "摄影",
        "design": "设计", "none": "都不是", "generated_title": "对照提示词，这张生成的图片好不好？",
        "prompt_title": "提示词", "aesthetic_part": "提示词的美学部分", "good": "好", "bad": "差",
    },
}

YES_NO = ("yes", "no")
QUESTIONS: dict[str, dict[str, tuple[str, ...] | None]] = {
    "valuable": {"valuable": ("keep", "drop"),
                 "drop_reason": ("blurry", "watermark", "text_overlay", "low_aesthetic", "caption_mismatch",
                                 "unsafe", "other"),
                 "note": None},
    "structure": {"watermark": YES_NO, "logo": YES_NO, "text_overlay": YES_NO},
    "aesthetic": {"aesthetic": ("1", "2", "3", "4", "5")},
    "pairwise": {"preference": ("left", "right")},
    "free_labels": {"tags": ()},  # filled from the labels given
    # human-selected high-aesthetic images for continue training (CT); `none` is the negative class
    "showcase": {"showcase": ("art", "photography", "design", "none")},
    # model-generated images judged against their prompt: SFT positives and negatives (annotation/generated.py)
    "generated": {"generated": ("good", "bad")},
}
# The answers counted as the positive class when a loop is not told (default: the question's first answer).
DEFAULT_POSITIVE: dict[str, tuple[str, ...]] = {"showcase": ("art", "photography", "design")}


@dataclass(frozen=True)
class LabelConfig:
    name: str
    lang: str
    xml: str
    questions: dict[str, tuple[str, ...] | None] = field(default_factory=dict)


def render(name: str, lang: str = "en", labels: list[str] | None = None) -> LabelConfig:
    """The Label Studio XML of template `name` in `lang` (zh or en); `labels` only for free_labels."""
    if name not in QUESTIONS:
        raise ValueError(f"unknown labelling template {name!r}; known: {', '.join(QUESTIONS)}")
    if lang not in TEXT:
        raise ValueError(f"unknown UI language {lang!r}; use one of: {', '.join(TEXT)}")
    xml = (HERE / f"{name}.xml").read_text(encoding="utf-8")
    questions = dict(QUESTIONS[name])
    if name == "free_labels":
        if not labels:
            raise ValueError("the free_labels template needs its labels (e.g. --labels cat,dog,food)")
        questions["tags"] = tuple(labels)
        choices = "\n".join(f'    <Choice value="{html.escape(v)}"/>' for v in labels)
        xml = xml.replace("{{choices}}", choices)
    for key, text in TEXT[lang].items():
        xml = xml.replace("{{" + key + "}}", html.escape(text))
    return LabelConfig(name=name, lang=lang, xml=xml, questions=questions)
