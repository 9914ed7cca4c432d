"""Shards -> bucketed batches: purity, exact resume, rank split, source mixing, caption choice, bad samples."""

import io
import tarfile

import pytest

torch = pytest.importorskip("torch")


def _export(tmp_path, n=60, seed=0, shard_size=10, name="exp"):
    """An export-format folder with two aspect buckets (32x32 and 48x32)."""
    from synthetic.toy_shapes import make_samples, write_shards

    samples = []
    for i, (im, meta) in enumerate(make_samples(n, 32, seed)):
        if i % 3 == 0:
            im, meta = im.resize((48, 32)), {**meta, "width": 48, "aspect_bucket": "48x32"}
        samples.append((im, meta))
    d = tmp_path / name
    write_shards(samples, d, shard_size=shard_size)
    return d


def _take(it, k):
    return [next(it) for _ in range(k)]


def test_every_batch_is_one_bucket_at_its_size(tmp_path):
    from training.data.buckets import BucketBatches
    from training.data.shards import list_shards

    bb = BucketBatches({"toy": (list_shards(_export(tmp_path)), 1.0)}, batch_size=4)
    batches = _take(iter(bb), 12)
    assert {b["bucket"] for b in batches} == {"32x32", "48x32"}
    for b in batches:
        w, h = b["size"]
        assert b["pixels"].shape == (4, 3, h, w) and (w, h) == tuple(int(v) for v in b["bucket"].split("x"))
        assert b["pixels"].min() >= -1 and b["pixels"].max() <= 1


def test_resume_from_state_gives_the_same_next_batches(tmp_path):
    from training.data.buckets import BucketBatches
    from training.data.shards import list_shards

    shards = list_shards(_export(tmp_path))
    ref = iter(BucketBatches({"toy": (shards, 1.0)}, batch_size=4, seed=3))
    expected = _take(ref, 25)  # > one epoch of 60 samples: crosses epoch and shard boundaries
    a = BucketBatches({"toy": (shards, 1.0)}, batch_size=4, seed=3)
    it, k = iter(a), 0
    while k < 6 or not a.state_dict()["pending"]:  # stop where a partly filled bucket must survive the resume
        next(it)
        k += 1
    b = BucketBatches({"toy": (shards, 1.0)}, batch_size=4, seed=3)
    b.load_state_dict(a.state_dict())
    for want, got in zip(expected[k:], _take(iter(b), 25 - k)):
        assert want["ids"] == got["ids"] and want["captions"] == got["captions"]
        torch.testing.assert_close(want["pixels"], got["pixels"])


def test_ranks_and_workers_get_disjoint_even_shares(tmp_path):
    from training.data.shards import split_shards

    shards = [f"s{i}" for i in range(10)]
    parts = [split_shards(shards, r, 2, w, 2) for r in range(2) for w in range(2)]
    assert sorted(sum(parts, [])) == sorted(shards) and {len(p) for p in parts} <= {2, 3}
    with pytest.raises(ValueError, match="smaller export.shard_size"):
        split_shards(shards[:3], 0, 2, 0, 2)


def test_sources_mix_by_weight_and_languages_by_weight(tmp_path):
    from training.data.buckets import BucketBatches
    from training.data.shards import list_shards

    a, b = list_shards(_export(tmp_path, name="a")), list_shards(_export(tmp_path, seed=1, name="b"))
    bb = BucketBatches({"a": (a, 3.0), "b": (b, 1.0)}, batch_size=8, langs={"zh": 1.0, "en": 0.0})
    batches = _take(iter(bb), 40)
    src = [s for x in batches for s in x["sources"]]
    assert src.count("a") / len(src) == pytest.approx(0.75, abs=0.06)
    assert {l for x in batches for l in x["langs"]} == {"zh"}


def test_corrupt_members_are_skipped_and_counted(tmp_path):
    from training.data.buckets import BucketBatches
    from training.data.shards import iter_shard, list_shards

    d = _export(tmp_path, n=20, shard_size=20)
    shard = list_shards(d)[0]
    before = len(list(iter_shard(shard)))
    with tarfile.open(shard, "a") as tar:
        for name, data in (("f" * 32 + ".jpg", b"not a jpeg"), ("f" * 32 + ".json", b'{"id": "ff", "aspect_bucket":'
                           b' "32x32", "captions": {"short": {"en": "x"}}}'), ("e" * 32 + ".json", b"{broken")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    assert len(list(iter_shard(shard))) == before + 1  # the broken json is dropped, the bad jpeg reaches decode
    bb = BucketBatches({"t": ([shard], 1.0)}, batch_size=5)
    _take(iter(bb), 4)
    assert bb.skipped["bad_image"] >= 1
    with pytest.raises(FileNotFoundError, match="_SUCCESS"):
        (d / "_SUCCESS").unlink()
        list_shards(d)


def test_a_stream_with_no_usable_caption_fails_instead_of_spinning(tmp_path):
    from training.data.buckets import BucketBatches
    from training.data.shards import list_shards

    bb = BucketBatches({"toy": (list_shards(_export(tmp_path, n=12)), 1.0)}, batch_size=2, styles={"long": 1.0})
    with pytest.raises(RuntimeError, match="no batch"):
        next(iter(bb))
