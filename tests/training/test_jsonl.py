import pytest


def test_every_non_blank_line_comes_back_with_its_number_and_bad_ones_with_the_reason(tmp_path):
    from training.data.jsonl import jsonl_lines

    path = tmp_path / "x.jsonl"
    path.write_text('{"a": 1}\n\n[1, 2]\n{not json\n"s"\n', encoding="utf-8")
    got = list(jsonl_lines(path, "give X"))
    assert [(n, v) for n, v, _ in got] == [(1, {"a": 1}), (3, [1, 2]), (4, None), (5, "s")]
    assert [e is None for _, _, e in got] == [True, True, False, True] and got[2][2].startswith("not JSON (")
    with pytest.raises(FileNotFoundError, match="does not exist; give X"):
        list(jsonl_lines(tmp_path / "missing.jsonl", "give X"))


def test_a_pairs_line_that_is_json_but_not_an_object_is_refused_with_its_line(tmp_path):
    from training.pe.data import read_pairs

    path = tmp_path / "pairs.jsonl"
    path.write_text('{"u": "a", "r": "b"}\n["u", "r"]\n', encoding="utf-8")
    with pytest.raises(ValueError, match="line 2 is not an object"):
        read_pairs(path, keys=("u", "r"))
