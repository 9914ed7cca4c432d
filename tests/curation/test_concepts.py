"""Concept vocabularies (shipped bilingual one, user ones) and zero-shot tags."""

import numpy as np
import pandas as pd
import pytest

from curation.signals.concepts import EN_PROMPTS, ZH_PROMPTS, concept_matrix, load_vocabulary, top_tags


def _has_cjk(s: str) -> bool:
    return any("\u4e00" <= ch <= "\u9fff" for ch in s)


def test_shipped_vocabulary_is_bilingual_and_covers_chinese_culture():
    concepts = load_vocabulary(("default",))
    assert len(concepts) >= 100 and len({c.id for c in concepts}) == len(concepts)
    assert all(_has_cjk(c.zh) and c.en.isascii() for c in concepts)
    chinese = [c for c in concepts if c.parent.startswith("chinese_")]
    assert len(chinese) >= 40
    ids = {c.id for c in concepts}
    for must in ("calligraphy", "ink_painting", "hanfu", "spring_festival", "mid_autumn_festival",
                 "forbidden_city", "pagoda", "dumplings", "mooncake", "hot_pot"):
        assert must in ids, must


def test_user_vocabulary_adds_concepts_and_bad_ones_are_named(tmp_path):
    mine = tmp_path / "mine.yaml"
    mine.write_text("categories: {craft: {en: crafts, zh: 手工艺}}\n"
                    "concepts:\n  - {id: cloisonne, en: cloisonne enamel, zh: 景泰蓝, parent: craft}\n",
                    encoding="utf-8")
    concepts = load_vocabulary(("default", str(mine)))
    assert concepts[-1].id == "cloisonne" and concepts[-1].zh == "景泰蓝"
    dup = tmp_path / "dup.yaml"
    dup.write_text("concepts:\n  - {id: cat, en: cat, zh: 猫, parent: animal}\n", encoding="utf-8")
    with pytest.raises(ValueError, match="'cat' is defined twice"):
        load_vocabulary(("default", str(dup)))
    bad = tmp_path / "bad.yaml"
    bad.write_text("concepts:\n  - {id: kite, en: a kite, parent: object}\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"lacks \['zh'\]"):
        load_vocabulary((str(bad),))
    orphan = tmp_path / "orphan.yaml"
    orphan.write_text("categories: {a: {en: a, zh: 甲}}\nconcepts:\n  - {id: k, en: k, zh: 风筝, parent: b}\n",
                      encoding="utf-8")
    with pytest.raises(ValueError, match="parent 'b' is not a category"):
        load_vocabulary((str(orphan),))
    with pytest.raises(FileNotFoundError, match="neither a .yaml path nor shipped"):
        load_vocabulary(("nope",))


class _RecordingEmbedder:
    """Test tool: remembers the prompts and gives each a fixed random vector."""

    has_text = True

    def __init__(self):
        self.seen: list[str] = []

    def encode_texts(self, texts):
        self.seen += texts
        rng = np.random.default_rng(0)
        v = rng.normal(size=(len(texts), 8))
        return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_concepts_are_the_mean_of_english_and_chinese_prompts():
    concepts = load_vocabulary(("default",))[:3]
    emb = _RecordingEmbedder()
    m = concept_matrix(emb, concepts)
    assert m.shape == (3, 8) and np.allclose(np.linalg.norm(m, axis=1), 1)
    assert EN_PROMPTS[0].format(concepts[0].en) in emb.seen and ZH_PROMPTS[0].format(concepts[0].zh) in emb.seen
    assert len(emb.seen) == 3 * (len(EN_PROMPTS) + len(ZH_PROMPTS))


def test_top_tags_rank_by_probability():
    m = np.eye(4, dtype=np.float32)
    img = np.array([[0.1, 0.9, 0.3, 0.0], [1.0, 0.0, 0.0, 0.0]], dtype=np.float32)
    tags = top_tags(img, m, ["a", "b", "c", "d"], top_k=2, scale=10.0, min_score=0.0)
    assert [t["concept"] for t in tags[0]] == ["b", "c"] and [t["concept"] for t in tags[1]][0] == "a"
    assert tags[0][0]["score"] > tags[0][1]["score"] and sum(t["score"] for t in tags[0]) <= 1
    assert top_tags(img, m, list("abcd"), top_k=4, scale=10.0, min_score=0.5)[1] == [tags[1][0]]


def test_concept_signal_with_a_tiny_bilingual_model(tmp_path):
    pytest.importorskip("transformers")
    from curation.signals import embedding_codec as codec
    from curation.signals.concepts import ConceptSignal
    from curation.signals.embed import get_embedder
    from tests.fixtures.tiny_clip import write_tiny_hf_clip

    spec = write_tiny_hf_clip(tmp_path / "zh", "chinese_clip")
    img = get_embedder(spec, "cpu").encode_texts(["书法", "a cat"])  # any vectors of the right size
    batch = pd.DataFrame({"img_emb": codec.encode(img) + [None], "emb_model": [spec, "other", None]})
    s = ConceptSignal(model=spec, top_k=3, device="cpu")
    s.load()
    out = s(batch)
    assert len(out.loc[0, "tags"]) == 3 and out.loc[1, "tags"] is None and out.loc[2, "tags"] is None
    scores = [t["score"] for t in out.loc[0, "tags"]]
    assert scores == sorted(scores, reverse=True)
    with pytest.raises(ValueError, match="need a model with a text tower"):
        ConceptSignal(model="descriptor-v1").load()
