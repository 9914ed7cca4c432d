"""Generated images (SFT negatives) and showcase picks (CT) without a server: records, tasks, labels, errors."""

from __future__ import annotations

import hashlib
import json

import pandas as pd
import pytest

from annotation import generated as gen_mod
from annotation.generated import (MANIFEST, build_tasks, check_push, pull_generated, push_generated,
                                  read_generated)
from annotation.labels import labels_frame, training_labels
from annotation.templates import render


def record_id(i: int) -> str:
    return hashlib.md5(f"bad-{i}".encode()).hexdigest()


def _ann(user, choice=None, cancelled=False, question="generated"):
    result = [] if choice is None else [{"from_name": question, "to_name": "image", "type": "choices",
                                        "value": {"choices": [choice]}}]
    return {"completed_by": user, "result": result, "was_cancelled": cancelled,
            "created_at": "2026-11-26T10:00:00.000Z"}


class FakeClient:
    """The part of annotation.client.Client the generated push and pull use, over an in-memory project."""

    url = "http://fake"

    def __init__(self, config_name="generated"):
        self.projects: dict[str, int] = {}
        self.configs: dict[int, str] = {}
        self.task_list: list[dict] = []
        self.storages: list[str] = []
        self.config_name = config_name

    def find_project(self, title):
        return self.projects.get(title)

    def project(self, title, label_config, description=""):
        if title not in self.projects:
            self.projects[title] = len(self.projects) + 1
            self.configs[self.projects[title]] = label_config
        return self.projects[title]

    def label_config(self, project):
        return self.configs[project]

    def tasks(self, project):
        return self.task_list

    def import_tasks(self, project, tasks):
        start = len(self.task_list) + 1
        for k, t in enumerate(tasks):
            self.task_list.append({"id": start + k, **t, "annotations": []})
        return list(range(start, start + len(tasks)))

    def local_storage(self, project, path):
        self.storages.append(path)

    def users(self):
        return {1: "a@x", 2: "b@x"}


def test_a_good_folder_gives_one_task_per_record_keyed_by_its_id(tmp_path, generated_maker):
    records = generated_maker(tmp_path / "gen", n=3)
    gen = read_generated(tmp_path / "gen")
    assert [r.id for r in gen.records] == [r["id"] for r in records] and not gen.problems
    tasks = build_tasks(gen, {records[0]["id"]: "/data/local-files/?d=x.png"})
    assert tasks[0]["data"] == {"sample_id": records[0]["id"], "image": "/data/local-files/?d=x.png",
                                "prompt": records[0]["prompt"], "aesthetic": "", "uri": str(tmp_path / "gen" /
                                                                                           "img_000.png"),
                                "seed": 1000, "model": "toy-dit@step200"}
    assert tasks[1]["data"]["aesthetic"] == "soft light" and tasks[2]["data"]["image"] == ""
    # the generated.jsonl itself may be given instead of its folder
    assert len(read_generated(tmp_path / "gen" / MANIFEST).records) == 3


def test_bad_lines_become_problems_that_say_what_to_fix(tmp_path, generated_maker):
    folder = tmp_path / "gen"
    good = generated_maker(folder, n=2)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (tmp_path / "outside.png").write_bytes((folder / "img_000.png").read_bytes())
    base = {"prompt": "p", "aesthetic": "", "seed": 1, "model": "m"}
    lines = [
        '{"id": "' + record_id(10) + '", "file": ',  # truncated JSON
        json.dumps({**base, "id": record_id(11), "file": "nowhere.png"}),  # file missing
        json.dumps({**base, "id": good[0]["id"], "file": good[0]["file"]}),  # the same id again
        json.dumps({**base, "id": "not-hex", "file": "img_000.png"}),
        json.dumps({**base, "id": record_id(12), "file": "img_000.png", "seed": "7"}),  # seed as text
        json.dumps({**base, "id": record_id(13), "file": "img_000.png", "steps": 20}),  # not in the contract
        json.dumps({**base, "id": record_id(14), "file": "../outside.png"}),
        json.dumps({**base, "id": record_id(15), "file": "broken.png"}),
        "[1, 2]",
        "",  # blank lines are nothing
    ]
    generated_maker(folder, n=2, extra_lines=lines)
    gen = read_generated(folder)
    assert [r.id for r in gen.records] == [g["id"] for g in good]
    by_line = {p.line: p for p in gen.problems}
    assert sorted(by_line) == [3, 4, 5, 6, 7, 8, 9, 10, 11]
    assert by_line[3].flag == "bad_record" and "not a JSON object" in by_line[3].reason and by_line[3].id is None
    assert by_line[4].flag == "missing_image" and "nowhere.png does not exist" in by_line[4].reason
    assert by_line[5].flag == "duplicate_id" and by_line[5].id == good[0]["id"]
    assert by_line[6].flag == "bad_record" and "id" in by_line[6].reason and "32 hex" in by_line[6].reason
    assert by_line[7].flag == "bad_record" and "seed" in by_line[7].reason
    assert by_line[8].flag == "bad_record" and "steps" in by_line[8].reason
    assert by_line[9].flag == "missing_image" and "outside" in by_line[9].reason
    assert by_line[10].flag == "missing_image" and "cannot be decoded" in by_line[10].reason
    assert by_line[11].flag == "bad_record"
    assert by_line[4].message().startswith(f"{MANIFEST} line 4 (id {record_id(11)}): ")


def test_a_folder_without_its_manifest_or_records_is_refused_with_the_fix(tmp_path, generated_maker):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="has no generated.jsonl.*id, file, prompt"):
        read_generated(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="not a folder"):
        read_generated(tmp_path / "nope")
    (tmp_path / "empty" / MANIFEST).write_text("\n\n")
    with pytest.raises(ValueError, match="no records"):
        read_generated(tmp_path / "empty")


def test_push_settings_are_checked_before_the_server_is_asked(tmp_path, generated_maker):
    generated_maker(tmp_path / "gen", n=1)
    with pytest.raises(ValueError, match="--files-root"):
        check_push(tmp_path / "gen", "en", "local", None)
    with pytest.raises(ValueError, match="local, inline"):
        check_push(tmp_path / "gen", "en", "uri", None)
    with pytest.raises(ValueError, match="zh"):
        check_push(tmp_path / "gen", "fr", "inline", None)


def test_generated_labels_flag_skips_unknown_answers_and_conflicts():
    q = render("generated").questions
    assert q == {"generated": ("good", "bad")}

    def task(tid, sid, *anns):
        return {"id": tid, "data": {"sample_id": sid, "uri": f"/g/{sid}.png"}, "annotations": list(anns)}

    tasks = [task(1, "good", _ann(1, "good")), task(2, "bad", _ann(1, "bad"), _ann(2, "bad")),
             task(3, "skip", _ann(1, cancelled=True)), task(4, "odd", _ann(1, "great")),
             task(5, "split", _ann(1, "good"), _ann(2, "bad")), task(6, "empty", _ann(1)), task(7, "waiting")]
    df = labels_frame(tasks, q, "generated", {1: "a@x", 2: "b@x"})
    flags = df.groupby("id")["flag"].apply(lambda s: set(s.dropna())).to_dict()
    assert flags == {"good": set(), "bad": set(), "skip": {"skipped"}, "odd": {"unknown_label"},
                     "split": {"conflict"}, "empty": {"empty"}}
    assert (df["task"] == "generated").all() and df.loc[df["id"] == "good", "uri"].item() == "/g/good.png"
    assert df["round"].isna().all()
    assert training_labels(df, "generated") == {"good": "good", "bad": "bad"}  # a 1-1 split has no majority


def test_push_then_pull_with_a_stand_in_server_keeps_every_line(tmp_path, generated_maker):
    from plumbing.tables import open_table

    folder = tmp_path / "gen"
    records = generated_maker(folder, n=4, extra_lines=["not json"])
    client = FakeClient()
    r = push_generated(folder, client, image_mode="local", files_root=tmp_path / "files")
    assert (r.n_records, r.n_created, r.n_existing, len(r.problems)) == (4, 4, 0, 1)
    assert client.storages == [str(tmp_path / "files" / "sluice" / "1")]
    image = client.task_list[0]["data"]["image"]
    assert image.startswith("/data/local-files/?d=sluice/1/") and (tmp_path / "files" / image.split("?d=")[1]).exists()
    again = push_generated(folder, client, image_mode="inline")
    assert (again.n_created, again.n_existing) == (0, 4) and len(client.task_list) == 4
    client.task_list[0]["annotations"] = [_ann(1, "good")]
    client.task_list[1]["annotations"] = [_ann(1, "bad"), _ann(2, "bad")]
    client.task_list[2]["annotations"] = [_ann(1, cancelled=True)]
    (folder / records[3]["file"]).unlink()  # pushed, then its image went missing: its task stays, not flagged twice
    pulled = pull_generated(folder, client)
    assert pulled.path == folder / "labels"
    assert (pulled.n_lines, pulled.n_labelled, pulled.n_waiting, pulled.n_not_pushed) == (5, 3, 1, 0)
    df = open_table(folder / "labels", expected="labels").to_table().to_pandas()
    assert len(df) == 5 and (df["task"] == "generated").all()
    assert df.loc[df["id"] == records[0]["id"], "label"].tolist() == ["good"]
    assert df.loc[df["id"] == records[1]["id"], "label"].tolist() == ["bad", "bad"]
    assert df.loc[df["id"] == records[2]["id"], "flag"].tolist() == ["skipped"]
    line = df[df["id"] == f"{MANIFEST}:5"]
    assert line["flag"].tolist() == ["bad_record"] and line["uri"].item().endswith(f"{MANIFEST}#L5")
    assert pulled.counts == {"good": 1, "bad": 2, "skipped": 1, "bad_record": 1}


def test_a_missing_image_not_yet_pushed_is_a_flagged_row(tmp_path, generated_maker):
    folder = tmp_path / "gen"
    records = generated_maker(folder, n=2)
    (folder / records[1]["file"]).unlink()
    client = FakeClient()
    r = push_generated(folder, client, image_mode="inline")
    assert r.n_created == 1 and [p.flag for p in r.problems] == ["missing_image"]
    assert client.task_list[0]["data"]["image"].startswith("data:image/jpeg;base64,")
    pull_generated(folder, client)
    df = pd.read_parquet(folder / "labels")
    assert df[["id", "flag", "uri"]].values.tolist() == [[records[1]["id"], "missing_image",
                                                           str(folder / records[1]["file"])]]


def test_pull_and_push_refuse_a_project_that_is_not_for_generated_images(tmp_path, generated_maker):
    generated_maker(tmp_path / "gen", n=1)
    client = FakeClient()
    with pytest.raises(ValueError, match="no project titled 'sluice generated'.*generated push --images"):
        pull_generated(tmp_path / "gen", client)
    client.project("mine", render("valuable").xml)
    with pytest.raises(ValueError, match="another labelling template"):
        push_generated(tmp_path / "gen", client, project="mine", image_mode="inline")


def test_cli_errors_for_a_bad_folder_name_the_fix_without_a_traceback(tmp_path, run_cli):
    (tmp_path / "gen").mkdir()
    for cmd in ("push", "pull"):
        extra = ["--image-mode", "inline"] if cmd == "push" else []
        out = run_cli("annotate", "generated", cmd, "--images", str(tmp_path / "gen"), "--url", "http://127.0.0.1:9",
                      *extra)
        assert out.returncode == 2 and "has no generated.jsonl" in out.stderr and "Traceback" not in out.stderr


def test_showcase_template_and_loop_defaults():
    from annotation.loop_config import LoopConfig

    cfg = render("showcase", "zh")
    assert cfg.questions == {"showcase": ("art", "photography", "design", "none")} and "摄影" in cfg.xml
    loop = LoopConfig(pool="p", image_mode="inline", template="showcase")
    assert loop.primary_question() == "showcase"
    assert loop.positive_labels() == ["art", "photography", "design"] and loop.negative_label() == "none"
    assert LoopConfig(pool="p", image_mode="inline", template="showcase", positive=["art"]).negative_label() is None
    tasks = [{"id": 1, "data": {"sample_id": "s1", "uri": "u", "round": 1},
              "annotations": [_ann(1, "photography", question="showcase")]},
             {"id": 2, "data": {"sample_id": "s2", "uri": "u", "round": 1},
              "annotations": [_ann(1, "painting", question="showcase")]}]
    df = labels_frame(tasks, cfg.questions, "showcase", {1: "a@x"})
    assert df[["id", "task", "label", "flag"]].values.tolist() == [["s1", "showcase", "photography", None],
                                                                   ["s2", "showcase", "painting", "unknown_label"]]


def test_a_probe_of_several_positive_answers_pre_annotates_nothing(tmp_path, monkeypatch):
    from annotation import rounds
    from annotation.loop_config import LoopConfig

    cfg = LoopConfig(pool="p", image_mode="inline", template="showcase")
    monkeypatch.setattr(rounds, "latest_probe", lambda *a: (object(), {"input": {}}))
    assert rounds._predictions(rounds.Round(tmp_path, 2), cfg, None, ["s1"]) == {}


def test_generated_module_keeps_the_sdk_out(tmp_path):
    import subprocess
    import sys

    code = "import sys, annotation.generated, annotation.cli; print('label_studio_sdk' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    assert gen_mod.ANSWERS == render("generated").questions["generated"]
