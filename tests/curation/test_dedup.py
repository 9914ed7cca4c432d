"""Dedup at three levels on real local Spark: near-dup benchmark from real photos, planted semantic groups,
exact hashes; one kept member per group, dropped rows point at it, nothing else is touched."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from curation.steps.dedup import DEFAULT_MAX_HAMMING, exact_dedup, near_dedup, semantic_dedup

pytestmark = pytest.mark.spark

SCHEMA = ("id string, content_hash string, phash bigint, phash_flip bigint, img_emb binary, cluster_leaf int, "
          "q_sharpness float, error string, drop_reason string")


def _frame(spark, rows: list[dict], partitions: int = 4):
    cols = [c.split()[0] for c in SCHEMA.split(", ")]
    # object columns: a None among 64-bit hashes must not turn the column into float64 (and round them)
    pdf = pd.DataFrame({c: pd.Series([r.get(c) for r in rows], dtype=object) for c in cols})
    return spark.createDataFrame(pdf, SCHEMA).repartition(partitions)


def _marks(df) -> dict[str, tuple]:
    return {r["id"]: (r["dup_level"], r["dup_group"], r["dup_of"]) for r in df.collect()}


def check_groups(marks: dict[str, tuple]) -> None:
    """Exactly one kept member per group, named by the group; every other member points at it."""
    groups: dict[str, list[str]] = {}
    for i, (_, group, of) in marks.items():
        if group is not None:
            groups.setdefault(group, []).append(i)
        else:
            assert of is None, f"{i} points at {of} without a group"
    for group, members in groups.items():
        kept = [m for m in members if marks[m][2] is None]
        assert kept == [group], f"group {group}: kept {kept}"
        assert all(marks[m][2] == group for m in members if m != group)
        assert len(members) > 1


# ---------------------------------------------------------------- near: the benchmark from real photos


@pytest.fixture(scope="module")
def near_rows():
    """~200 images: 30 groups of an original and 4 edited copies, 50 originals alone, hashed as stage 2 does."""
    from curation.signals.analysis import decode_for_analysis
    from curation.signals.phash import PHashSignal
    from synthetic.near_dup_data import jpeg_bytes, make_benchmark

    signal, rows = PHashSignal(), []
    for n, item in enumerate(make_benchmark(n_groups=30, copies=4, n_singletons=50, seed=7)):
        hashes = signal.score_image(decode_for_analysis(jpeg_bytes(item.image)))
        rows.append({"id": item.id, "group": item.group, "edit": item.edit, "content_hash": f"c{n}",
                     "q_sharpness": float((n * 37) % 101), **hashes})
    # Rows that must never be grouped: a failed row, a row dropped by stage 1 (both copies of an
    # original's hashes) and a row without a hash.
    twin = rows[0]
    rows += [{**twin, "id": "zz_error", "error": "decode_error: truncated"},
             {**twin, "id": "zz_dropped", "drop_reason": "blurry"},
             {**twin, "id": "zz_nohash", "phash": None, "phash_flip": None}]
    return rows


def near_scores(rows, marks) -> tuple[float, float]:
    """Precision and recall of the dropped rows: a drop is right when it points into its own group."""
    group = {r["id"]: r["group"] for r in rows}
    dropped = [(i, m[2]) for i, m in marks.items() if m[2] is not None]
    right = sum(group[i] == group[of] for i, of in dropped)
    sizes = pd.Series([r["group"] for r in rows if not r["id"].startswith("zz_")]).value_counts()
    return right / max(len(dropped), 1), right / int((sizes - 1).sum())


@pytest.mark.parametrize("candidates", ["lsh", "exact"])
def test_near_dup_benchmark_meets_the_bar_and_groups_are_sound(spark, near_rows, candidates):
    marks = _marks(near_dedup(_frame(spark, near_rows, partitions=4), max_hamming=DEFAULT_MAX_HAMMING,
                              candidates=candidates))
    precision, recall = near_scores(near_rows, marks)
    assert precision >= 0.99 and recall >= 0.95, (precision, recall)
    check_groups(marks)
    for i in ("zz_error", "zz_dropped", "zz_nohash"):
        assert marks[i] == (None, None, None), i
    assert {m[0] for m in marks.values()} <= {None, "near"}


def test_kept_member_follows_order_and_chains_are_cut(spark):
    """a-b and b-c are within the threshold, a-c is not. Keeping a (set 1) leaves c apart: no chaining
    through b. Keeping b (set 2, the same geometry elsewhere in hash space) takes both."""
    k, rows = 4, []
    for s, base, best in ((1, 0x0F0F_0F0F_0F0F_0F0F, "a"), (2, 0x3C3C_3C3C_3C3C_3C3C << 0, "b")):
        for name, flip in (("a", 0), ("b", 0b1111 << 20), ("c", 0b1111_1111 << 20)):
            rows.append({"id": f"{name}{s}", "phash": base ^ flip, "q_sharpness": 9.0 if name == best else 1.0})
    marks = _marks(near_dedup(_frame(spark, rows), hash_cols=("phash",), max_hamming=k))
    assert marks == {"a1": ("near", "a1", None), "b1": ("near", "a1", "a1"), "c1": (None, None, None),
                     "a2": ("near", "b2", "b2"), "b2": ("near", "b2", None), "c2": ("near", "b2", "b2")}
    # one partition instead of four: the same groups
    assert _marks(near_dedup(_frame(spark, rows, partitions=1), hash_cols=("phash",), max_hamming=k)) == marks


# ---------------------------------------------------------------- near: LSH candidates


def _flip(h: np.ndarray, d: int, rng) -> np.ndarray:
    """Each hash with exactly `d` distinct random bits flipped."""
    out = h.view(np.uint64).copy()
    for r in range(len(out)):
        for p in rng.choice(64, size=d, replace=False):
            out[r] ^= np.uint64(1) << np.uint64(p)
    return out.view(np.int64)


def _shares_bucket(a: np.ndarray, b: np.ndarray, positions) -> np.ndarray:
    from curation.steps.lsh import table_keys

    return (table_keys(a, positions) == table_keys(b, positions)).any(axis=1)


def test_lsh_recall_by_distance_meets_the_closed_form_and_random_pairs_rarely_meet():
    """Default tables/bits: the share of pairs d bits apart that meet in a bucket is within noise of
    1-(1-C(64-d,bits)/C(64,bits))^tables (>= 0.99 up to d=5), and unrelated hashes meet about tables/2^bits."""
    from curation.steps.lsh import DEFAULT_BITS, DEFAULT_TABLES, collision_probability, sample_positions

    rng = np.random.default_rng(5)
    pos = sample_positions(DEFAULT_TABLES, DEFAULT_BITS)
    n = 3000
    for d in range(0, DEFAULT_MAX_HAMMING + 1):
        a = rng.integers(np.iinfo(np.int64).min, np.iinfo(np.int64).max, size=n, dtype=np.int64)
        got, p = _shares_bucket(a, _flip(a, d, rng), pos).mean(), float(collision_probability(d))
        assert got >= p - 4 * np.sqrt(p * (1 - p) / n) - 1e-9, (d, got, p)
        if d <= 5:
            assert p >= 0.99 and got >= 0.98, (d, got, p)
    a, b = (rng.integers(np.iinfo(np.int64).min, np.iinfo(np.int64).max, size=20000, dtype=np.int64) for _ in "ab")
    assert _shares_bucket(a, b, pos).mean() < 4 * DEFAULT_TABLES / 2**DEFAULT_BITS


def test_lsh_bucket_pairs_are_exactly_the_pairs_of_equal_keys():
    from curation.steps.lsh import bucket_pairs

    keys = np.sort(np.r_[np.random.default_rng(1).integers(0, 40, 600), np.full(150, 7)])  # one skewed bucket
    got = {p for i, j in bucket_pairs(keys) for p in zip(i.tolist(), j.tolist())}
    assert got == {(i, j) for i in range(len(keys)) for j in range(i + 1, len(keys)) if keys[i] == keys[j]}
    assert list(bucket_pairs(np.array([3]))) == []


def test_lsh_positions_are_a_function_of_the_seed_and_bad_parameters_say_so():
    from curation.steps.lsh import sample_positions

    a = sample_positions(24, 16, seed=0)
    assert a.shape == (24, 16) and all(len(set(r.tolist())) == 16 for r in a)
    assert (a == sample_positions(24, 16, seed=0)).all() and not (a == sample_positions(24, 16, seed=1)).all()
    with pytest.raises(ValueError, match="bits"):
        sample_positions(4, 0)
    with pytest.raises(ValueError, match="tables"):
        sample_positions(0, 8)


def test_lsh_edges_find_planted_pairs_and_mirrors_the_same_on_any_partitioning(spark):
    """Pairs 1..10 bits apart (some through the mirrored hash), among unrelated hashes: every edge
    found is within the threshold, the share found per distance meets the closed form, and 7 partitions
    in 8 groups or 1 partition in 3 groups give the same edges."""
    from curation.steps.lsh import collision_probability, lsh_edges

    rng = np.random.default_rng(9)
    n, k = 400, DEFAULT_MAX_HAMMING
    base = rng.integers(np.iinfo(np.int64).min, np.iinfo(np.int64).max, size=(n, 2), dtype=np.int64)
    dist = np.arange(n) % k + 1
    mirror = np.arange(n) % 3 == 0  # b's hash is a's mirrored hash, d bits off
    rows, want = [], set()
    for i in range(n):
        src = base[i, 1] if mirror[i] else base[i, 0]
        copy = _flip(np.array([src]), int(dist[i]), rng)[0]
        rows += [{"id": f"a{i:03d}", "phash": int(base[i, 0]), "phash_flip": int(base[i, 1])},
                 {"id": f"b{i:03d}", "phash": int(copy), "phash_flip": None}]
        want.add((f"a{i:03d}", f"b{i:03d}"))

    def edges(parts: int, groups: int) -> set:
        cand = _frame(spark, rows, parts).select("id", "phash", "phash_flip")
        return {(r["a"], r["b"]) for r in lsh_edges(cand, ["phash", "phash_flip"], k, groups=groups).collect()}

    got = edges(7, 8)
    assert got <= want, sorted(got - want)[:5]  # unrelated uniform hashes are ~32 bits apart
    for d in range(1, k + 1):
        pairs = {p for p in want if dist[int(p[0][1:])] == d}
        share, p = len(got & pairs) / len(pairs), float(collision_probability(d))
        assert share >= p - 4 * np.sqrt(p * (1 - p) / len(pairs)) - 1e-9, (d, share, p)
    assert any(mirror[int(a[1:])] for a, _ in got)
    assert edges(1, 3) == got


def test_unknown_candidate_mode_names_the_choices(spark):
    df = _frame(spark, [{"id": "a", "phash": 1}])
    with pytest.raises(ValueError, match="'exact' or 'lsh'"):
        near_dedup(df, hash_cols=("phash",), candidates="all")


# ---------------------------------------------------------------- exact


def test_exact_groups_equal_hashes_and_skips_failed_and_dropped(spark):
    rows = [{"id": "a", "content_hash": "h1", "q_sharpness": 1.0},
            {"id": "b", "content_hash": "h1", "q_sharpness": 9.0},
            {"id": "c", "content_hash": "h1", "q_sharpness": 9.0},  # tie with b: the smaller id wins
            {"id": "d", "content_hash": "h1", "q_sharpness": 99.0, "error": "decode_error"},
            {"id": "e", "content_hash": "h1", "q_sharpness": 99.0, "drop_reason": "blurry"},
            {"id": "f", "content_hash": "h2"}, {"id": "g", "content_hash": None}, {"id": "h", "content_hash": None}]
    marks = _marks(exact_dedup(_frame(spark, rows), hash_col="content_hash", order="q_sharpness DESC"))
    assert marks == {"a": ("exact", "b", "b"), "b": ("exact", "b", None), "c": ("exact", "b", "b"),
                     **{i: (None, None, None) for i in "defgh"}}


def test_empty_input(spark):
    empty = _frame(spark, [])
    for step in (exact_dedup, near_dedup, semantic_dedup):
        assert step(empty).count() == 0


def test_missing_column_names_the_fix(spark):
    df = spark.createDataFrame([("a",)], "id string")
    with pytest.raises(ValueError, match="phash"):
        near_dedup(df)


# ---------------------------------------------------------------- semantic


def planted(seed: int = 3, clusters: int = 4, per_cluster: int = 30, groups: int = 6, size: int = 3, dim: int = 32):
    """Unit vectors around `clusters` centres; `groups` duplicate groups of `size` members (cosine > 0.99)
    planted among them. Returns rows and the true group of each row (its own id when unique)."""
    from curation.signals.embedding_codec import encode

    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim))
    rows, truth = [], {}
    for c in range(clusters):
        for m in range(per_cluster):
            v = centres[c] + rng.normal(size=dim) * 0.8
            n_copies = size - 1 if m < groups // clusters + 1 else 0
            members = [v] + [v + rng.normal(size=dim) * 0.02 for _ in range(n_copies)]
            ids = [f"c{c}m{m:02d}d{j}" for j in range(len(members))]
            for i, e in zip(ids, members):
                rows.append({"id": i, "img_emb": encode((e / np.linalg.norm(e))[None])[0], "cluster_leaf": c,
                             "q_sharpness": float(rng.uniform(0, 100))})
                truth[i] = ids[0]
    return rows, truth


def test_semantic_finds_planted_groups_exactly(spark):
    rows, truth = planted()
    quality = {r["id"]: r["q_sharpness"] for r in rows}
    rows.append({**rows[0], "id": "zz_error", "error": "embed failed"})
    rows.append({**rows[0], "id": "zz_noemb", "img_emb": None})
    marks = _marks(semantic_dedup(_frame(spark, rows, 4), threshold=0.95, order="q_sharpness DESC"))
    check_groups(marks)
    assert marks["zz_error"] == marks["zz_noemb"] == (None, None, None)
    found: dict[str, set] = {}
    for i, (level, group, _) in marks.items():
        if group is not None:
            assert level == "semantic"
            found.setdefault(group, set()).add(i)
    want: dict[str, set] = {}
    for i, t in truth.items():
        want.setdefault(t, set()).add(i)
    assert sorted(map(sorted, found.values())) == sorted(sorted(s) for s in want.values() if len(s) > 1)
    for group, members in found.items():
        assert group == max(members, key=lambda i: (quality[i], [-ord(ch) for ch in i]))
    assert _marks(semantic_dedup(_frame(spark, rows, 1), threshold=0.95, order="q_sharpness DESC")) == marks


def test_decide_rules_drop_duplicates_with_their_reason_and_nothing_else(spark):
    from types import SimpleNamespace as Rule

    from pyspark.sql import functions as F

    from curation.steps.decide import decide
    from curation.steps.dedup import DEDUP_RULES

    rows = [{"id": "a", "content_hash": "h", "phash": 1, "q_sharpness": 2.0},
            {"id": "b", "content_hash": "h", "phash": 1, "q_sharpness": 1.0},
            {"id": "c", "content_hash": "x", "phash": 3, "q_sharpness": 1.0},
            {"id": "d", "content_hash": "y", "phash": 0xFFFF << 20, "q_sharpness": 1.0}]
    df = near_dedup(exact_dedup(_frame(spark, rows)), hash_cols=("phash",), max_hamming=2)
    df = df.withColumn("drop_stage", F.lit(None).cast("string")).withColumn("drop_reasons", F.lit(None).cast("array<string>"))
    out = decide(df, [Rule(**r) for r in DEDUP_RULES], "stage2")
    got = {r["id"]: r["drop_reason"] for r in out.collect()}
    assert got == {"a": None, "b": "duplicate", "c": "near_duplicate", "d": None}
