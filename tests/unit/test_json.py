"""The one strict JSON reader and canonical writer (modelreg._json), and its callers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modelreg._json import MAX_DEPTH, JsonReadError, canonical_json, load_json_object, read_json
from modelreg.errors import IntegrityError, InvalidInput
from modelreg.lineage import from_annotations, load_params_file, parse_key_values


@pytest.mark.parametrize(
    ("data", "problem", "says"),
    [
        (b'{"a":1,"a":2}', "duplicate", "duplicate key 'a'"),
        (b'{"a":{"b":1,"b":1}}', "duplicate", "duplicate key 'b'"),
        (b'{"a":NaN}', "number", "NaN is not valid JSON"),
        (b"[-Infinity]", "number", "-Infinity is not valid JSON"),
        (b"[1e400]", "number", "inf, which JSON cannot represent"),
        (b'{"k":"\\ud800"}', "unicode", "the text under key 'k' is not valid Unicode"),
        (b'{"\\udc80":1}', "unicode", "a key is not valid Unicode"),
        (b'["\\ud800"]', "unicode", "a text is not valid Unicode"),
        (b"[" * (MAX_DEPTH + 2) + b"]" * (MAX_DEPTH + 2), "depth", "deeper than 64"),
        (b"[" * 100_000 + b"]" * 100_000, "depth", "deeper than 64"),
        (b"\xff{}", "syntax", "utf-8"),
        (b'{"a":', "syntax", "line 1, column 6"),
        (b"1" * 5000, "syntax", "digits"),
    ],
)
def test_the_reader_refuses_what_parsers_could_read_differently(
    data: bytes, problem: str, says: str
) -> None:
    with pytest.raises(JsonReadError) as raised:
        read_json(data)
    assert raised.value.problem == problem
    assert says in str(raised.value)


def test_the_reader_accepts_what_it_should() -> None:
    # a surrogate pair is one character; the deepest allowed nesting; an empty container at it
    assert read_json(b'{"e":"\\ud83d\\ude00"}') == {"e": "\U0001f600"}
    deepest = b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1)
    assert read_json(deepest) is not None
    assert read_json('{"é": [1.5, true, null]}') == {"é": [1.5, True, None]}


def test_writer_and_reader_agree_on_the_depth_limit() -> None:
    deepest = json.loads("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1))
    assert read_json(canonical_json(deepest)) == deepest
    too_deep = [deepest]
    with pytest.raises(InvalidInput, match="nested deeper"):
        canonical_json(too_deep)


def test_store_documents_name_what_is_wrong() -> None:
    with pytest.raises(IntegrityError, match="manifest x is not valid JSON: duplicate key"):
        load_json_object(b'{"a":1,"a":2}', "manifest x", limit=100)
    with pytest.raises(IntegrityError, match="manifest x: the text under key 'a' is not valid"):
        load_json_object(b'{"a":"\\ud800"}', "manifest x", limit=100)


def test_lineage_annotations_with_duplicate_keys_are_refused() -> None:
    annotations = {"dev.modelreg.lineage": "1", "dev.modelreg.params": '{"lr":1,"lr":2}'}
    with pytest.raises(IntegrityError, match=r"dev\.modelreg\.params is not valid JSON: duplicate"):
        from_annotations(annotations)


def test_params_files_with_duplicate_keys_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text('{"lr": 0.1, "lr": 0.2}')
    with pytest.raises(InvalidInput, match="is not valid JSON: duplicate key 'lr'"):
        load_params_file(path)


def test_a_param_value_that_is_not_unicode_is_refused_at_once() -> None:
    assert parse_key_values(["x=NaN", "y=1e400", 'z="ok"']) == {"x": "NaN", "y": "1e400", "z": "ok"}
    with pytest.raises(InvalidInput, match="not valid Unicode"):
        parse_key_values(['s="\\ud800"'])
