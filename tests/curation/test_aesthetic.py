"""Aesthetic head: LAION layouts load and score like torch; our trainer learns a known taste."""

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curation.signals import embedding_codec as codec

torch = pytest.importorskip("torch")
DIM = 24


def _emb(n: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _batch(x: np.ndarray, model: str) -> pd.DataFrame:
    return pd.DataFrame({"img_emb": codec.encode(x), "emb_model": [model] * len(x)})


def test_laion_mlp_and_linear_layouts_score_as_torch(tmp_path):
    from curation.aesthetic_train import build_head
    from curation.signals.aesthetic import AestheticSignal

    torch.manual_seed(0)
    head = build_head(DIM).eval()
    torch.save(head.state_dict(), tmp_path / "mlp.pth")  # keys layers.0/2/4/6/7, as LAION's file
    assert {k.split(".")[1] for k in head.state_dict()} == {"0", "2", "4", "6", "7"}
    x = _emb(5)
    s = AestheticSignal(head=str(tmp_path / "mlp.pth"), model="m")
    s.load()
    got = s(_batch(x, "m"))["aesthetic"].astype(float).to_numpy()
    xq = codec.decode(codec.encode(x))  # what the table holds: float16
    want = head(torch.from_numpy(xq / np.linalg.norm(xq, axis=1, keepdims=True))).detach().numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    lin = torch.nn.Linear(DIM, 1)
    torch.save(lin.state_dict(), tmp_path / "linear.pth")  # the v1 linear head: keys weight, bias
    s = AestheticSignal(head=str(tmp_path / "linear.pth"), model="m")
    s.load()
    assert s(_batch(x, "m"))["aesthetic"].notna().all()


def test_head_refuses_other_models_and_sizes(tmp_path):
    from curation.signals.aesthetic import AestheticSignal

    lin = torch.nn.Linear(DIM, 1)
    torch.save(lin.state_dict(), tmp_path / "h.pth")
    (tmp_path / "h.json").write_text(json.dumps({"emb_model": "open_clip:ViT-L-14"}))
    with pytest.raises(ValueError, match="trained on open_clip:ViT-L-14"):
        AestheticSignal(head=str(tmp_path / "h.pth"), model="descriptor-v1").load()
    s = AestheticSignal(head=str(tmp_path / "h.pth"), model="open_clip:ViT-L-14")
    s.load()
    with pytest.raises(ValueError, match="takes 24-d embeddings"):
        s(_batch(np.ones((1, 8), np.float32), "open_clip:ViT-L-14"))
    assert s(_batch(_emb(2), "other-model"))["aesthetic"].isna().all()  # rows of another model: no score
    with pytest.raises(FileNotFoundError, match="does not exist"):
        AestheticSignal(head=str(tmp_path / "missing.pth"), model="m").load()


def _tables(tmp_path, n=240, pairs=200):
    """Embeddings whose true taste is a hidden direction; ratings 1..5 and preferences from it."""
    x = _emb(n, seed=1)
    w = np.random.default_rng(2).normal(size=DIM)
    taste = x @ w
    ids = [f"id{i:04d}" for i in range(n)]
    emb_dir = tmp_path / "stage2"
    emb_dir.mkdir()
    pq.write_table(pa.table({"id": ids, "img_emb": codec.encode(x), "emb_model": ["tiny"] * n}),
                   emb_dir / "part-0.parquet")
    q = np.quantile(taste, [0.2, 0.4, 0.6, 0.8])
    rows = [{"id": i, "task": "aesthetic", "label": str(1 + int(np.searchsorted(q, t)))}
            for i, t in zip(ids[: n // 2], taste[: n // 2])]
    rng = np.random.default_rng(3)
    for _ in range(pairs):
        a, b = rng.choice(np.arange(n // 2, n), size=2, replace=False)
        rows.append({"id": ids[a], "task": "aesthetic_pair",
                     "label": f"{'better_than' if taste[a] > taste[b] else 'worse_than'}:{ids[b]}"})
    rows.append({"id": "not-embedded", "task": "aesthetic", "label": "3"})
    labels = tmp_path / "labels.parquet"
    pq.write_table(pa.Table.from_pylist(rows), labels)
    return labels, emb_dir, x, taste


def test_trained_head_learns_the_taste_and_writes_its_card(tmp_path):
    from curation.aesthetic_train import run
    from curation.signals.aesthetic import AestheticSignal

    labels, emb_dir, x, taste = _tables(tmp_path)
    path, m = run(labels, emb_dir, tmp_path / "head", epochs=150)
    assert m["val_mae"] < m["val_mae_predict_mean"]
    assert m["val_spearman"] > 0.8 and m["val_pair_accuracy"] > 0.75
    card = json.loads(path.with_suffix(".json").read_text())
    assert card["emb_model"] == "tiny" and card["dim"] == DIM
    assert "val_mae" in (tmp_path / "head" / "MODEL_CARD.md").read_text()
    s = AestheticSignal(head=str(path), model="tiny")  # safetensors: loads without torch.load
    s.load()
    got = s(_batch(x, "tiny"))["aesthetic"].astype(float).to_numpy()
    assert np.corrcoef(got, taste)[0, 1] > 0.8


def test_bad_labels_are_refused(tmp_path):
    from curation.aesthetic_train import load_data

    labels, emb_dir, _, _ = _tables(tmp_path, n=40, pairs=0)
    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.Table.from_pylist([{"id": "id0001", "task": "aesthetic", "label": "7"}]), bad)
    with pytest.raises(ValueError, match="outside 1..5"):
        load_data(bad, emb_dir, "aesthetic", "aesthetic_pair")
    few = tmp_path / "few.parquet"
    pq.write_table(pa.Table.from_pylist([{"id": "id0001", "task": "aesthetic", "label": "3"}]), few)
    with pytest.raises(ValueError, match="label more"):
        load_data(few, emb_dir, "aesthetic", "aesthetic_pair")
    pair = tmp_path / "pair.parquet"
    pq.write_table(pa.Table.from_pylist([{"id": "id0001", "task": "aesthetic_pair", "label": "id0002"}]), pair)
    with pytest.raises(ValueError, match="better_than:<id>"):
        load_data(pair, emb_dir, "aesthetic", "aesthetic_pair")


def test_train_aesthetic_command(tmp_path, run_cli):
    labels, emb_dir, _, _ = _tables(tmp_path, n=80, pairs=20)
    out = run_cli("curate", "train-aesthetic", "--labels", str(labels), "--embeddings", str(emb_dir),
                  "--out", str(tmp_path / "h"), "--epochs", "30")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "stage2.aesthetic.head=" in out.stdout and (tmp_path / "h" / "aesthetic_head.safetensors").is_file()
    bad = run_cli("curate", "train-aesthetic", "--labels", str(tmp_path / "nope"), "--embeddings", str(emb_dir),
                  "--out", str(tmp_path / "h2"))
    assert bad.returncode == 2 and "does not exist" in bad.stderr
