"""DataLoader workers and the shuffle buffer: exact resume, every sample once per epoch, clear errors."""

from functools import partial

import pytest

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def two_bucket_shards(tmp_path_factory):
    """8 shards: 40 samples at 32x32 in 5 shards and 20 at 48x32 in 3 (the export writes one bucket per shard)."""
    from synthetic.toy_shapes import make_samples, write_shards
    from training.data.shards import list_shards

    samples = []
    for i, (im, meta) in enumerate(make_samples(60, 32, seed=5)):
        if i % 3 == 0:
            im, meta = im.resize((48, 32)), {**meta, "width": 48, "aspect_bucket": "48x32"}
        samples.append((im, meta))
    d = tmp_path_factory.mktemp("loader_export")
    write_shards(samples, d, shard_size=8)
    return list_shards(d)


def _make(shards, rank=0, world=1, shuffle=0, batch=3):
    from training.data.buckets import BucketBatches

    return partial(BucketBatches, {"toy": (shards, 1.0)}, batch, 7, rank=rank, world=world, shuffle_buffer=shuffle)


def _loader(shards, workers=2, **kw):
    from training.data.loader import WorkerBatches

    return WorkerBatches(_make(shards, **kw), workers)


def _ids(it, k):
    return [next(it)["ids"] for _ in range(k)]


@pytest.mark.parametrize("shuffle", [0, 16])
def test_worker_resume_gives_the_same_next_batches(two_bucket_shards, shuffle):
    ref = _loader(two_bucket_shards, shuffle=shuffle)
    expected = _ids(iter(ref), 24)  # > one epoch of each worker's share: crosses shards and epochs
    ref.close()
    first = _loader(two_bucket_shards, shuffle=shuffle)
    it = iter(first)
    got = _ids(it, 9)  # odd: worker 1's batch is due next, so the resumed loader must not start with worker 0
    state = first.state_dict()
    _ids(it, 3)  # read on after the save: must not leak into the saved position
    first.close()
    assert state["next"] == 1 and all(s is not None for s in state["states"].values())
    if shuffle:
        assert all(len(s["shuffled"]) == shuffle - 1 for s in state["states"].values())
    resumed = _loader(two_bucket_shards, shuffle=shuffle)
    resumed.load_state_dict(state)
    got += _ids(iter(resumed), 15)
    resumed.close()
    assert got == expected


def test_every_sample_is_read_once_per_epoch_across_ranks_and_workers(tmp_path):
    from synthetic.toy_shapes import make_samples, write_shards
    from training.data.shards import list_shards

    write_shards(make_samples(48, 32, seed=2), tmp_path, shard_size=6)  # 8 shards of one bucket
    shards = list_shards(tmp_path)
    seen = []
    for rank in range(2):  # world = 2, simulated by two loaders; each (rank, worker) owns 2 shards = 4 batches
        loader = _loader(shards, rank=rank, world=2)
        seen += [k for ids in _ids(iter(loader), 8) for k in ids]
        loader.close()
    assert len(seen) == 48 and len(set(seen)) == 48


def test_worker_batches_match_in_process_streams(two_bucket_shards):
    """Worker w's batches are its own BucketBatches' batches, taken in turn."""
    loader = _loader(two_bucket_shards, shuffle=4)
    got = _ids(iter(loader), 6)
    loader.close()
    own = [iter(_make(two_bucket_shards, shuffle=4)(worker=w, workers=2)) for w in range(2)]
    assert got == [next(own[k % 2])["ids"] for k in range(6)]


def test_too_few_shards_and_a_changed_worker_count_fail_with_the_fix(two_bucket_shards):
    with pytest.raises(ValueError, match="smaller export.shard_size"):
        _loader(two_bucket_shards[:3], world=2)
    loader = _loader(two_bucket_shards)
    with pytest.raises(ValueError, match="data.workers=2"):
        _loader(two_bucket_shards, workers=4).load_state_dict(loader.state_dict())
    with pytest.raises(ValueError, match="data.workers=2"):
        _make(two_bucket_shards)().load_state_dict(loader.state_dict())


def test_shuffle_buffer_changes_batches_per_epoch_and_resumes(two_bucket_shards):
    """Without it an epoch repeats the same batches (one-bucket, key-ordered shards); with it they differ."""
    from training.data.buckets import BucketBatches

    def epochs(shuffle):
        bb = BucketBatches({"toy": (two_bucket_shards, 1.0)}, 4, 3, shuffle_buffer=shuffle)
        batches = [frozenset(b["ids"]) for b, _ in zip(iter(bb), range(45))]  # 3 epochs of 60 samples
        return set(batches[:15]), set(batches[30:])

    plain, shuffled = epochs(0), epochs(8)
    assert len(plain[0] & plain[1]) >= 12  # the same groups again
    assert len(shuffled[0] & shuffled[1]) <= 3
    ref = [b["ids"] for b, _ in zip(iter(BucketBatches({"toy": (two_bucket_shards, 1.0)}, 4, 3, shuffle_buffer=8)),
                                     range(20))]
    a = BucketBatches({"toy": (two_bucket_shards, 1.0)}, 4, 3, shuffle_buffer=8)
    it = iter(a)
    head = [next(it)["ids"] for _ in range(7)]
    assert len(a.state_dict()["shuffled"]) == 7
    b = BucketBatches({"toy": (two_bucket_shards, 1.0)}, 4, 3, shuffle_buffer=8)
    b.load_state_dict(a.state_dict())
    assert head + [x["ids"] for x, _ in zip(iter(b), range(13))] == ref
    c = BucketBatches({"toy": (two_bucket_shards, 1.0)}, 4, 3, shuffle_buffer=2)  # a smaller buffer drains first
    c.load_state_dict(a.state_dict())
    rest = [k for x, _ in zip(iter(c), range(10)) for k in x["ids"]]
    assert {k for _, _, k in a.state_dict()["shuffled"]} <= set(rest)


def test_trainer_with_workers_resumes_exactly_from_its_checkpoint(train_config, tmp_path):
    from training.config import TrainConfig
    from training.engine import checkpoint
    from training.engine.loop import Trainer

    train_config["data"].update(workers=2, shuffle_buffer=6)
    train_config["run"]["out_dir"] = str(tmp_path / "straight")
    straight = Trainer(TrainConfig.model_validate(train_config))
    losses = straight.run(steps=5)
    straight.data.close()
    train_config["run"]["out_dir"] = str(tmp_path / "split")
    first = Trainer(TrainConfig.model_validate(train_config))
    head = first.run(steps=3)  # worker 1's batch is due next; both workers have read ahead
    first.data.close()
    saved = torch.load(checkpoint.latest(tmp_path / "split" / "checkpoints") / "state.pt", weights_only=False)["data"]
    assert saved["workers"] == 2 and saved["next"] == 1 and len(saved["states"][0]["shuffled"]) == 5
    resumed = Trainer(TrainConfig.model_validate(train_config))
    assert head + resumed.run(steps=5) == losses
    resumed.data.close()


def test_a_shuffle_buffer_larger_than_the_data_warns(two_bucket_shards, caplog):
    from training.data.buckets import BucketBatches

    for k, warns in ((40, False), (100, True)):  # 60 samples
        caplog.clear()
        next(iter(BucketBatches({"toy": (two_bucket_shards, 1.0)}, 4, shuffle_buffer=k)))
        assert ("lower data.shuffle_buffer" in caplog.text) is warns


def test_a_stale_export_trains_with_a_warning(tmp_path, caplog):
    from plumbing.runs import mark_stale
    from synthetic.toy_shapes import make_samples, write_shards
    from training.data.shards import list_shards

    write_shards(make_samples(4, 32, seed=1), tmp_path, shard_size=4)
    assert list_shards(tmp_path) and "stale" not in caplog.text
    mark_stale(tmp_path, "stage2 was re-decided")
    assert list_shards(tmp_path)
    assert "stage2 was re-decided" in caplog.text and "--until export" in caplog.text
