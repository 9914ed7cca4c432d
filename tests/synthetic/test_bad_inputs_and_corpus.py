"""The demo corpus and the hostile inputs are deterministic and really are what they claim to be."""

from __future__ import annotations

import hashlib
import io
import json
import struct
import tarfile
import zlib
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image, ImageOps, UnidentifiedImageError

from synthetic import bad_inputs
from synthetic.sample_corpus import BROKEN_KINDS, DEFECTS, write_bench_jpegs, write_demo_corpus

N_DEMO = 60  # enough for every kind to appear once; the full 240 is the CLI default


def _digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("corpus")
    return out, write_demo_corpus(out, n_images=N_DEMO, seed=3)


@pytest.fixture(scope="module")
def cases() -> list[bad_inputs.BadCase]:
    return bad_inputs.bad_cases()


def _manifest(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text(encoding="utf-8").splitlines()]


def test_demo_corpus_is_byte_identical_for_the_same_seed(corpus, tmp_path):
    out, summary = corpus
    assert write_demo_corpus(tmp_path, n_images=N_DEMO, seed=3) == summary
    assert _digests(tmp_path) == _digests(out)


def test_demo_corpus_rerun_in_place_replaces_it(corpus, tmp_path):
    write_demo_corpus(tmp_path, n_images=N_DEMO + 5, seed=3)
    write_demo_corpus(tmp_path, n_images=N_DEMO, seed=3)
    assert _digests(tmp_path) == _digests(corpus[0])


def test_demo_corpus_refuses_a_folder_it_did_not_write(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "mine.jpg").write_bytes(b"keep me")
    with pytest.raises(FileExistsError, match="empty --out"):
        write_demo_corpus(tmp_path, n_images=5)
    assert (tmp_path / "images" / "mine.jpg").read_bytes() == b"keep me"


def test_demo_corpus_manifest_matches_the_files(corpus):
    out, summary = corpus
    records = _manifest(out)
    assert summary["n_records"] == len(records) == N_DEMO
    assert set(summary["kinds"]) == {"clean", *DEFECTS, *BROKEN_KINDS}
    assert summary["kinds"]["clean"] > N_DEMO // 2
    assert {"zh", "en", "mixed"} <= set(summary["languages"])
    for record in records:
        path = out / record["path"]
        data = path.read_bytes()
        if record["kind"] == "zero_byte":
            assert data == b""
        elif record["kind"] == "random_bytes":
            with pytest.raises(UnidentifiedImageError):
                Image.open(path)
        elif record["kind"] == "truncated_jpeg":
            with Image.open(path) as image, pytest.raises(OSError):
                image.load()
        else:
            with Image.open(path) as image:
                assert (image.format, image.width, image.height) == (record["format"], record["width"],
                                                                       record["height"])
        if "txt" in record["sidecars"]:
            assert path.with_suffix(".txt").read_text(encoding="utf-8") == record["caption"]
        if "json" in record["sidecars"]:
            assert json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))["caption"] == record["caption"]
        if not record["sidecars"]:
            assert not path.with_suffix(".txt").exists() and not path.with_suffix(".json").exists()


def test_demo_corpus_defects_have_their_signature(corpus):
    out, _ = corpus
    for record in _manifest(out):
        kind = record["kind"]
        if kind == "tiny":
            assert max(record["width"], record["height"]) < 128
        elif kind == "extreme_aspect":
            assert max(record["width"], record["height"]) / min(record["width"], record["height"]) >= 5
        elif kind == "too_dark":
            assert record["mean_luma"] < 30
        elif kind == "overexposed":
            assert record["mean_luma"] > 170


def test_bench_jpegs_are_deterministic_and_sized(tmp_path):
    first = write_bench_jpegs(tmp_path / "a", 3, size=(320, 240), seed=1)
    second = write_bench_jpegs(tmp_path / "b", 3, size=(320, 240), seed=1)
    assert [p.name for p in first] == ["000000.jpg", "000001.jpg", "000002.jpg"]
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]
    with Image.open(first[0]) as image:
        assert (image.format, image.size) == ("JPEG", (320, 240))


def test_bad_cases_are_deterministic_and_small(cases, tmp_path):
    again = bad_inputs.bad_cases()
    assert [(c.name, c.data, c.caption) for c in cases] == [(c.name, c.data, c.caption) for c in again]
    assert sum(len(c.data) for c in cases) < 1_000_000
    assert all(Path(c.filename).stem == c.name for c in cases)
    for writer, name in [(bad_inputs.write_webdataset_tar, "x.tar"), (bad_inputs.write_parquet, "x.parquet")]:
        writer(cases, tmp_path / "one" / name)
        writer(again, tmp_path / "two" / name)
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()


def _by_name(cases) -> dict[str, bad_inputs.BadCase]:
    return {case.name: case for case in cases}


def test_usable_cases_open_with_expected_properties(cases):
    usable = [case for case in cases if case.expect_error is None]
    assert len(usable) == 9
    for case in usable:
        with Image.open(io.BytesIO(case.data)) as image:
            image.load()
            shown = ImageOps.exif_transpose(image)
            assert image.format == case.expect["format"], case.name
            assert shown.size == (case.expect["width"], case.expect["height"]), case.name
            if "mode" in case.expect:
                assert image.mode == case.expect["mode"], case.name
            if "n_frames" in case.expect:
                assert image.n_frames == case.expect["n_frames"]
            if "exif_orientation" in case.expect:
                assert image.getexif()[0x0112] == case.expect["exif_orientation"]
                assert image.size == (200, 100)  # stored landscape, displayed portrait
    assert "transparency" in Image.open(io.BytesIO(_by_name(cases)["palette_png_transparent"].data)).info


def test_caption_encodings(cases):
    gb = _by_name(cases)["gb18030_caption"]
    with pytest.raises(UnicodeDecodeError):
        gb.caption.decode("utf-8")
    assert gb.caption.decode("gb18030") == gb.expect["alt_text"]
    bad = _by_name(cases)["invalid_caption"]
    assert bad.expect["alt_text_warning"] == bad_inputs.CAPTION_NOT_UTF8
    for encoding in ["utf-8", "utf-16", "utf-32", "gb18030", "big5", "shift_jis", "euc_kr"]:
        with pytest.raises(UnicodeDecodeError):
            bad.caption.decode(encoding)


def test_error_cases_fail_in_pillow_as_expected(cases):
    by_name = _by_name(cases)
    assert {c.name: c.expect_error for c in cases if c.expect_error} == {
        "zero_byte": "empty_file", "truncated_jpeg": "truncated", "random_bytes": "not_an_image",
        "decompression_bomb": "decompression_bomb"}
    assert by_name["zero_byte"].data == b""
    with Image.open(io.BytesIO(by_name["truncated_jpeg"].data)) as image:
        with pytest.raises(OSError, match="truncated"):
            image.load()
    with pytest.raises(UnidentifiedImageError):
        Image.open(io.BytesIO(by_name["random_bytes"].data))
    bomb = by_name["decompression_bomb"].data
    width, height = struct.unpack(">II", bomb[16:24])  # IHDR right after the 8-byte signature and chunk head
    assert width * height > bad_inputs.INGEST_PIXEL_LIMIT
    assert len(bomb) < 200_000
    with pytest.raises(Image.DecompressionBombError):
        Image.open(io.BytesIO(bomb))


def test_bomb_really_inflates_to_its_header_size(cases):
    bomb = _by_name(cases)["decompression_bomb"].data
    idat_len = struct.unpack(">I", bomb[33:37])[0]
    assert bomb[37:41] == b"IDAT"
    inflater, inflated, chunk = zlib.decompressobj(), 0, bomb[41:41 + idat_len]
    while chunk:  # counted in pieces, so the test never holds the 112 MB it decodes to
        inflated += len(inflater.decompress(chunk, 1 << 20))
        chunk = inflater.unconsumed_tail
    side = bad_inputs.BOMB_SIDE
    assert inflated == side * (1 + (side + 7) // 8)


def test_folder_writes_raw_caption_sidecars(cases, tmp_path):
    bad_inputs.write_folder(cases, tmp_path)
    for case in cases:
        assert (tmp_path / case.filename).read_bytes() == case.data
        sidecar = tmp_path / f"{case.name}.txt"
        assert (sidecar.read_bytes() if sidecar.exists() else None) == case.caption


def test_tar_is_cut_inside_the_last_member(cases, tmp_path):
    path = tmp_path / "shard.tar"
    bad_inputs.write_webdataset_tar(cases, path)
    read = {}
    with tarfile.open(path, mode="r|") as tar, pytest.raises(tarfile.ReadError):
        for member in tar:
            read[member.name] = tar.extractfile(member).read()
    for case in cases:
        assert read[case.filename] == case.data
        meta = json.loads(read[f"{case.name}.json"])
        assert meta["key"] == case.name and meta["status"] == "success"
    assert f"{bad_inputs.TRUNCATED_TAR_KEY}.json" in read
    assert f"{bad_inputs.TRUNCATED_TAR_KEY}.jpg" not in read

    whole = tmp_path / "whole.tar"
    bad_inputs.write_webdataset_tar(cases, whole, broken_member=False)
    with tarfile.open(whole) as tar:
        assert len(tar.getmembers()) == sum(3 if c.caption is not None else 2 for c in cases)


def test_parquet_has_every_case_and_a_null_image_row(cases, tmp_path):
    path = tmp_path / "bad.parquet"
    bad_inputs.write_parquet(cases, path)
    rows = pq.read_table(path).to_pylist()
    assert [r["key"] for r in rows] == [c.name for c in cases] + [bad_inputs.NULL_ROW_KEY]
    assert rows[-1]["image"] is None
    assert [r["image"] for r in rows[:-1]] == [c.data for c in cases]
    assert "\ufffd" in next(r["caption"] for r in rows if r["key"] == "invalid_caption")
