"""Three rounds of the loop against a real Label Studio, labelled by the simulated annotator through the API.

The tests in this module share one loop and run in file order: the rounds, then checks of the labels
table, the probe, a repeated round, the token, and last a server stopped and restarted mid-round.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from annotation import loop_config, rounds, server
from annotation.client import LabelStudioUnavailable
from annotation.simulate import Behaviour, label_round

BEHAVIOUR = Behaviour(annotators=2, overlap=0.3, noise=0.05, skip=0.04, unknown=0.03, seed=1)


@pytest.fixture(scope="module")
def loop(tmp_path_factory, ls_server, ls_client, run_cli, pool_maker):
    """Pool, loop settings, round 1 through the CLI, rounds 2 and 3 through the library."""
    base = tmp_path_factory.mktemp("al")
    truth = pool_maker(base / "pool")
    pq.write_table(pa.table({"id": list(truth), "valuable": list(truth.values())}),
                   base / "truth.parquet")
    loop_dir = base / "loop"
    out = run_cli("annotate", "init", str(loop_dir), "--pool", str(base / "pool"), "--batch", "15",
                  "--eval-size", "30", "--strategy", "hybrid", "--lang", "zh", "--project", "test loop",
                  "--files-root", ls_server.files_root)
    assert out.returncode == 0, out.stderr
    outputs = [out]
    first = run_cli("annotate", "round", str(loop_dir))
    assert first.returncode == 3 and "0 of 45 tasks" in first.stderr, first.stderr  # pushed, waiting for labels
    sim = run_cli("annotate", "simulate", str(loop_dir), "--truth", str(base / "truth.parquet"), "--column",
                  "valuable", "--annotators", "2", "--overlap", "0.3", "--noise", "0.05", "--skip", "0.04",
                  "--unknown", "0.03", "--seed", "1")
    assert sim.returncode == 0, sim.stderr
    done = run_cli("annotate", "round", str(loop_dir))
    assert done.returncode == 0, done.stderr
    outputs += [first, sim, done]
    for _ in range(2):
        with pytest.raises(rounds.NotLabelledYet):
            rounds.run_round(loop_dir, ls_client)
        label_round(loop_dir, ls_client, truth, BEHAVIOUR)
        rounds.run_round(loop_dir, ls_client)
    return {"dir": loop_dir, "truth": truth, "base": base, "outputs": outputs}


def _project_tasks(ls_client, loop_dir):
    return ls_client.tasks(rounds.rounds(loop_dir)[0].state()["project"])


def test_three_rounds_complete_with_growing_training_sets(loop):
    hist = rounds.history(loop["dir"])
    assert [h["round"] for h in hist] == [1, 2, 3]
    assert all(set(h["done"]) == set(rounds.STEPS) for h in hist)
    n_train = [h["n_train"] for h in hist]
    assert n_train[0] < n_train[1] < n_train[2]
    assert hist[0]["n_selected"] == 45 and hist[1]["n_selected"] == 15  # round 1 adds the held-out 30
    selected = [set(r.selected()["train"]) | set(r.selected()["eval"]) for r in rounds.rounds(loop["dir"])]
    assert not (selected[0] & selected[1]) and not (selected[1] & selected[2])  # never the same sample twice
    assert all(not sid.startswith(("s0000", "s0001", "s0002", "s0003")) for s in selected for sid in s)  # error rows


def test_labels_table_has_every_annotation_with_flags_agreement_and_rounds(loop, ls_client):
    from plumbing.tables import open_table

    df = open_table(loop["dir"] / "labels", expected="labels").to_table().to_pandas()
    tasks = _project_tasks(ls_client, loop["dir"])
    n_annotations = sum(len(t["annotations"]) for t in tasks)
    assert df.groupby(["ls_task_id", "annotator"]).ngroups == n_annotations
    assert set(df["round"]) == {1, 2, 3}
    assert set(df["annotator"]) == {"sim-1@sluice.local", "sim-2@sluice.local"}
    flags = set(df["flag"].dropna())
    assert {"skipped", "unknown_label"} <= flags
    two = df[df.duplicated(["id", "task"], keep=False) & df["flag"].isin([None, "conflict"]) | df["flag"].isna()]
    assert df.loc[df["flag"].isna(), "agreement"].notna().all() and (two["agreement"] > 0).all()
    clean = df[df["flag"].isna() & (df["task"] == "valuable")]
    truth = loop["truth"]
    assert (clean["label"] == clean["id"].map(truth)).mean() > 0.9  # what the annotators said, kept as said


def test_probe_is_exported_with_held_out_metrics_and_scores_the_pool(loop):
    from curation.signals.probe import Probe

    card = json.loads((loop["dir"] / "probe" / "probe.json").read_text())
    assert card["round"] == 3 and card["output_column"] == "p_valuable"
    assert card["metrics"]["n"] >= 25 and card["metrics"]["accuracy"] > 0.75, card["metrics"]
    pool = pq.read_table(loop["base"] / "pool").to_pandas()
    p = Probe(loop["dir"] / "probe")(pool)["p_valuable"].astype(float)
    truth = loop["truth"]
    ok = pool["id"].isin(list(truth))
    agree = ((p[ok] >= 0.5) == (pool.loc[ok, "id"].map(truth) == "keep")).mean()
    assert agree > 0.75


def test_images_are_served_from_local_storage(loop, ls_client, ls_server):
    task = _project_tasks(ls_client, loop["dir"])[0]
    assert task["data"]["image"].startswith("/data/local-files/?d=")
    r = httpx.get(ls_server.url + task["data"]["image"],
                  headers={"Authorization": f"Token {os.environ['LABEL_STUDIO_API_KEY']}"})
    assert r.status_code == 200 and r.content[:2] == b"\xff\xd8"


def test_server_listens_on_loopback_only(ls_server):
    port = f"{ls_server.port:04X}"
    listening = [line.split()[1] for name in ("/proc/net/tcp", "/proc/net/tcp6") if Path(name).exists()
                 for line in Path(name).read_text().splitlines()[1:]
                 if line.split()[1].endswith(":" + port) and line.split()[3] == "0A"]
    assert listening and all(a.startswith(("0100007F:", "00000000000000000000000001000000:")) for a in listening)


def test_repeating_a_round_creates_no_duplicates(loop, ls_client):
    before = _project_tasks(ls_client, loop["dir"])
    labels_before = pq.read_table(loop["dir"] / "labels").num_rows
    rnd = rounds.run_round(loop["dir"], ls_client, redo=2)
    state = rnd.state()
    assert set(state["done"]) == set(rounds.STEPS)
    assert state["n_created"] == 0 and state["n_existing"] == 15
    after = _project_tasks(ls_client, loop["dir"])
    assert len(after) == len(before)
    sids = [t["data"]["sample_id"] for t in after]
    assert len(sids) == len(set(sids))
    assert pq.read_table(loop["dir"] / "labels").num_rows == labels_before
    # and the simulated annotator, run again on a labelled round, adds nothing
    counts = label_round(loop["dir"], ls_client, loop["truth"], BEHAVIOUR, round_number=3)
    assert counts["annotated"] == 0 and counts["skipped"] == 0 and counts["already"] > 0


def test_token_is_in_no_log_manifest_or_exported_file(loop, ls_server):
    token = os.environ["LABEL_STUDIO_API_KEY"].encode()
    places = [loop["dir"], Path(ls_server.files_root)]
    files = [p for d in places for p in Path(d).rglob("*") if p.is_file()] + [Path(ls_server.data_dir) / "server.log"]
    assert len(files) > 20
    leaked = [str(p) for p in files if token in p.read_bytes()]
    assert not leaked
    for out in loop["outputs"]:
        assert token.decode() not in out.stdout + out.stderr


def test_server_down_mid_round_is_a_clear_error_and_the_round_resumes(loop, ls_client, ls_server, run_cli):
    loop_dir = loop["dir"]
    labels_before = pq.read_table(loop_dir / "labels").num_rows
    rnd = rounds.run_round(loop_dir, ls_client, stop_after="push")
    assert rnd.number == 4 and rnd.state()["done"] == ["select", "push"]
    assert server.stop(Path(ls_server.data_dir))
    with pytest.raises(LabelStudioUnavailable, match="did not answer"):
        rounds.run_round(loop_dir, ls_client)
    out = run_cli("annotate", "round", str(loop_dir), "--url", ls_server.url)
    assert out.returncode == 2 and "did not answer" in out.stderr and "Traceback" not in out.stderr
    assert rnd.state()["done"] == ["select", "push"]  # nothing advanced while the server was away
    server.start(Path(ls_server.data_dir), port=ls_server.port, files_root=Path(ls_server.files_root))
    label_round(loop_dir, ls_client, loop["truth"], BEHAVIOUR)
    rnd = rounds.run_round(loop_dir, ls_client)
    assert set(rnd.state()["done"]) == set(rounds.STEPS)
    df = pq.read_table(loop_dir / "labels").to_pandas()
    assert len(df) > labels_before and set(df["round"]) == {1, 2, 3, 4}
