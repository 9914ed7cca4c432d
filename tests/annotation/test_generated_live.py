"""Generated images (SFT negatives) and showcase picks (CT) against a real Label Studio.

Annotations are posted through the API as the simulated annotators post them (users sim-1, sim-2), then
pulled into the labels table.
"""

from __future__ import annotations

import hashlib
import json
import os

import httpx
import pytest

from annotation import loop_config, rounds
from annotation.simulate import _user_ids, label_round
from plumbing.tables import open_table

PROJECT = "generated live test"


def _annotate(client, task_id: int, user: int, said: str | None) -> None:
    result = [] if said is None else [{"from_name": "generated", "to_name": "image", "type": "choices",
                                       "value": {"choices": [said]}}]
    client.call("creating an annotation", client.sdk.annotations.create, id=task_id, result=result,
                was_cancelled=said is None, completed_by=user, lead_time=1.0)


@pytest.fixture(scope="module")
def generated(tmp_path_factory, ls_server, ls_client, run_cli, generated_maker):
    folder = tmp_path_factory.mktemp("generated") / "gen_step200"
    missing = {"id": "f" * 32, "file": "never_written.png", "prompt": "p", "aesthetic": "", "seed": 1, "model": "m"}
    records = generated_maker(folder, n=6, extra_lines=['{"id": "broken', json.dumps(missing)])
    push = run_cli("annotate", "generated", "push", "--images", str(folder), "--project", PROJECT, "--lang", "zh",
                   "--files-root", ls_server.files_root)
    assert push.returncode == 0, push.stderr
    again = run_cli("annotate", "generated", "push", "--images", str(folder), "--project", PROJECT,
                    "--files-root", ls_server.files_root)
    assert again.returncode == 0, again.stderr
    project = ls_client.find_project(PROJECT)
    tasks = {t["data"]["sample_id"]: t for t in ls_client.tasks(project)}
    u1, u2 = _user_ids(ls_client, 2)
    ids = [r["id"] for r in records]
    plan = [(0, u1, "good"), (1, u1, "bad"), (2, u1, "good"), (2, u2, "good"), (3, u1, "good"), (3, u2, "bad"),
            (4, u1, None), (5, u1, "great")]  # 5: an answer outside the template; 4: skipped
    for i, user, said in plan:
        _annotate(ls_client, tasks[ids[i]]["id"], user, said)
    pull = run_cli("annotate", "generated", "pull", "--images", str(folder), "--project", PROJECT)
    assert pull.returncode == 0, pull.stderr
    return {"folder": folder, "records": records, "tasks": tasks, "push": push, "again": again, "pull": pull,
            "project": project}


def test_push_makes_one_task_per_good_line_and_says_what_to_fix(generated):
    assert "6 images, 6 new tasks, 0 already there, 2 lines not pushed" in generated["push"].stdout
    err = generated["push"].stderr
    assert "generated.jsonl line 7: not a JSON object" in err and "never_written.png does not exist" in err
    assert "0 new tasks, 6 already there" in generated["again"].stdout  # a second push adds nothing
    assert len(generated["tasks"]) == 6


def test_generated_images_are_served_from_local_storage(generated, ls_server):
    task = generated["tasks"][generated["records"][0]["id"]]
    assert task["data"]["image"].startswith("/data/local-files/?d=")
    assert task["data"]["prompt"] == generated["records"][0]["prompt"]
    r = httpx.get(ls_server.url + task["data"]["image"],
                  headers={"Authorization": f"Token {os.environ['LABEL_STUDIO_API_KEY']}"})
    assert r.status_code == 200 and r.content[:8] == b"\x89PNG\r\n\x1a\n"


def test_pulled_labels_keep_every_annotation_and_every_bad_line(generated):
    df = open_table(generated["folder"] / "labels", expected="labels").to_table().to_pandas()
    ids = [r["id"] for r in generated["records"]]
    assert "8 lines, 6 labelled, 0 waiting" in generated["pull"].stdout
    assert len(df) == 8 + 2 and (df["task"] == "generated").all()
    row = df.set_index("id")
    assert row.loc[ids[0], "label"] == "good" and row.loc[ids[1], "label"] == "bad"
    assert row.loc[ids[0], "uri"] == str(generated["folder"] / "img_000.png")
    assert row.loc[ids[0], "annotator"] == "sim-1@sluice.local"
    two = df[df["id"] == ids[2]]
    assert two["label"].tolist() == ["good", "good"] and two["flag"].isna().all() and (two["agreement"] == 1).all()
    assert (df.loc[df["id"] == ids[3], "flag"] == "conflict").all()
    assert row.loc[ids[4], "flag"] == "skipped" and row.loc[ids[4], "label"] is None
    assert row.loc[ids[5], "flag"] == "unknown_label" and row.loc[ids[5], "label"] == "great"
    assert row.loc["f" * 32, "flag"] == "missing_image" and row.loc["generated.jsonl:7", "flag"] == "bad_record"
    clean = df[df["flag"].isna()]
    assert set(clean["label"]) == {"good", "bad"} and clean["ls_task_id"].notna().all()


def test_showcase_round_pulls_its_choices_and_trains_a_showcase_probe(tmp_path, ls_client, ls_server, pool_maker):
    keep_drop = pool_maker(tmp_path / "pool", n=160, seed=3)
    kinds = ("art", "photography", "design")
    truth = {sid: kinds[hashlib.sha1(sid.encode()).digest()[0] % 3] if v == "keep" else "none"
             for sid, v in keep_drop.items()}
    loop = tmp_path / "loop"
    loop_config.save(loop_config.LoopConfig(pool=str(tmp_path / "pool"), template="showcase", batch=20,
                                            eval_size=20, project="showcase live test",
                                            files_root=ls_server.files_root), loop)
    with pytest.raises(rounds.NotLabelledYet):
        rounds.run_round(loop, ls_client)
    counts = label_round(loop, ls_client, truth)
    assert counts["annotated"] == 40
    rnd = rounds.run_round(loop, ls_client)
    assert set(rnd.state()["done"]) == set(rounds.STEPS)
    df = open_table(loop / "labels", expected="labels").to_table().to_pandas()
    assert len(df) == 40 and (df["task"] == "showcase").all() and df["flag"].isna().all()
    assert (df["label"] == df["id"].map(truth)).all() and set(df["label"]) == {*kinds, "none"}
    card = json.loads((loop / "probe" / "probe.json").read_text())
    assert card["positive_label"] == "art|photography|design" and card["output_column"] == "p_showcase"
