"""The change-set boundary (exports/changes.py): incremental lines become item lines and change
columns, line for line, in both formats and with every accepted WriteTimestampMicros form."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from ddb_assets.exports.changes import DELETE, UPSERT, ChangeColumns, incremental_to_items
from ddb_assets.exports.errors import ExportFormatError

pytestmark = pytest.mark.fast

KEYS = {"pk": {"S": "a"}, "sk": {"N": "1"}}
NEW = {**KEYS, "v": {"S": "new"}}
OLD = {**KEYS, "v": {"S": "old"}}


def _line(**fields: object) -> bytes:
    return json.dumps(fields).encode()


@pytest.mark.parametrize("micros", [{"N": "1715671204387215"}, "1715671204387215", 1715671204387215,
                                    {"N": "0001715671204387215"}, {"N": " 1715671204387215"}, "1715671204387215.0"])
def test_every_write_time_form_is_accepted(micros: object) -> None:
    text, changes = incremental_to_items(_line(Metadata={"WriteTimestampMicros": micros}, Keys=KEYS, NewImage=NEW),
                                         obj="f.json")
    assert changes.write_micros.to_pylist() == [1715671204387215]


@pytest.mark.parametrize("micros, accepted", [("253402300799999999", True), ("253402300800000000", False),
                                              ("999999999999999999", False)])
def test_write_times_up_to_the_last_microsecond_of_9999(micros: str, accepted: bool) -> None:
    line = b'{"Metadata": {"WriteTimestampMicros": {"N": "%s"}}, "Keys": {"pk": {"S": "a"}}}' % micros.encode()
    if accepted:
        assert incremental_to_items(line, obj="f")[1].write_micros.to_pylist() == [int(micros)]
    else:
        with pytest.raises(ExportFormatError, match="must be microseconds since the epoch"):
            incremental_to_items(line, obj="f")


def test_lines_become_items_line_for_line_with_their_operation() -> None:
    lines = [
        _line(Metadata={"WriteTimestampMicros": {"N": "1"}}, Keys=KEYS, NewImage=NEW),  # insert
        b"",
        _line(Metadata={"WriteTimestampMicros": {"N": "2"}}, Keys=KEYS, OldImage=OLD, NewImage=NEW),  # update
        _line(Metadata={"WriteTimestampMicros": {"N": "3"}}, Keys=KEYS, OldImage=OLD),  # delete, both images view
        _line(Metadata={"WriteTimestampMicros": {"N": "4"}}, Keys=KEYS),  # delete, NEW_IMAGE view
    ]
    text, changes = incremental_to_items(b"\n".join(lines) + b"\n", obj="f.json")
    out = text.split(b"\n")
    assert len(out) == len(lines) + 1 and out[1] == b""  # blank lines stay: line numbers are the file's
    assert [json.loads(line)["Item"] for line in out if line] == [NEW, NEW, KEYS, KEYS]
    assert changes.operation.to_pylist() == [UPSERT, UPSERT, DELETE, DELETE]
    assert changes.write_micros.to_pylist() == [1, 2, 3, 4] and changes.key_names == ("pk", "sk")


@pytest.mark.parametrize("fields, problem", [
    ({"Item": NEW}, "a full export's line"),
    ({"Metadata": {"WriteTimestampMicros": {"N": "1"}}, "NewImage": NEW}, "'Keys' must be an object"),
    ({"Keys": KEYS, "NewImage": NEW}, "'Metadata.WriteTimestampMicros' is missing"),
    ({"Metadata": {"WriteTimestampMicros": "soon"}, "Keys": KEYS}, "must be microseconds since the epoch"),
    ({"Metadata": {"WriteTimestampMicros": {"N": "-5"}}, "Keys": KEYS}, "must be microseconds since the epoch"),
    ({"Metadata": {"WriteTimestampMicros": {"N": "1"}}, "Keys": KEYS, "NewImage": {"pk": {"S": "b"}}},
     "NewImage's key attribute 'pk'"),
    ({"Metadata": {"WriteTimestampMicros": {"N": "1"}}, "Keys": KEYS, "NewImage": "x"}, "'NewImage' must be an object"),
])
def test_a_line_that_is_not_a_change_is_named_with_its_line(fields: dict, problem: str) -> None:
    good = _line(Metadata={"WriteTimestampMicros": {"N": "1"}}, Keys=KEYS, NewImage=NEW)
    with pytest.raises(ExportFormatError) as raised:
        incremental_to_items(good + b"\n" + _line(**fields), obj="data/x.json.gz")
    assert raised.value.line == 2 and raised.value.obj == "data/x.json.gz" and problem in str(raised.value)


def test_keys_must_name_the_same_attributes_on_every_line() -> None:
    lines = [_line(Metadata={"WriteTimestampMicros": "1"}, Keys=KEYS),
             _line(Metadata={"WriteTimestampMicros": "2"}, Keys={"pk": {"S": "z"}})]
    with pytest.raises(ExportFormatError, match="Keys holds pk; earlier lines hold pk, sk"):
        incremental_to_items(b"\n".join(lines), obj="f")


def test_ion_lines_at_the_top_level_or_under_record_both_decode() -> None:
    top = b'$ion_1_0 {Metadata:{WriteTimestampMicros:1715671204387215.},Keys:{pk:"a",sk:1.},NewImage:{pk:"a",sk:1.,v:"new"}}'
    record = b'$ion_1_0 {Record:{Metadata:{WriteTimestampMicros:7.},Keys:{pk:"a",sk:1.},OldImage:{pk:"a",sk:1.}}}'
    text, changes = incremental_to_items(top + b"\n" + record + b"\n", obj="f.ion", ion=True)
    items = [json.loads(line)["Item"] for line in text.split(b"\n") if line]
    assert items == [NEW, KEYS]
    assert changes.operation.to_pylist() == [UPSERT, DELETE] and changes.write_micros.to_pylist() == [1715671204387215, 7]


@pytest.mark.parametrize("line, attribute", [
    (b'$ion_1_0 {Item:{pk:"a",price:4.x}}', "price"),
    (b"$ion_1_0 {Item:{pk:\"a\",m:{'odd name':[1., 2.x]}}}", "m.odd name[]"),
    (b'$ion_1_0 {Record:{Keys:{pk:"a"},NewImage:{pk:"a",n:3.y}}}', "n"),
])
def test_an_ion_syntax_error_names_file_line_and_attribute(line: bytes, attribute: str) -> None:
    """A syntax error names the attribute being read, as Ion's other errors do (full and
    incremental lines alike)."""
    from ddb_assets.exports.decode import ion_to_json_lines

    with pytest.raises(ExportFormatError) as raised:
        if b"Record" in line:
            good = b'$ion_1_0 {Metadata:{WriteTimestampMicros:7.},Keys:{pk:"ok"},NewImage:{pk:"ok"}}'
            incremental_to_items(good + b"\n" + line + b"\n", obj="f.ion", ion=True)
        else:
            ion_to_json_lines(b'$ion_1_0 {Item:{pk:"ok"}}\n' + line + b"\n", obj="f.ion")
    assert str(raised.value).startswith(f"f.ion:2: attribute {attribute!r}: not valid Ion text (Illegal character ")


def test_a_full_exports_pieces_are_all_upserts() -> None:
    changes = ChangeColumns.upserts(3)
    assert changes.operation.to_pylist() == [UPSERT] * 3 and changes.write_micros.null_count == 3
    assert changes.table().schema == pa.schema([("op", pa.int8()), ("write_micros", pa.int64())])
