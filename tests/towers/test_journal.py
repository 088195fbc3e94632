"""towers.journal: a stopped job's journal is read back for the same key only, up to its first bad line."""
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from towers.journal import read_journal, start_journal, write_entry


def test_a_journal_is_read_back_for_its_key_up_to_its_first_bad_or_refused_line(tmp_path):
    path = tmp_path / "sub" / "job.jsonl"
    assert read_journal(path, "k") is None  # no journal yet
    with start_journal(path, "k") as f:
        for i in range(4):
            write_entry(f, {"i": i, "text": f"é\u2028\x85 {i}"})  # line separators other than \n are text
        assert read_journal(path, "k") == [{"i": i, "text": f"é\u2028\x85 {i}"} for i in range(4)]  # there at once
    assert read_journal(path, "other") is None
    assert [e["i"] for e in read_journal(path, "k", lambda i, e: e["i"] < 2)] == [0, 1]
    assert read_journal(path, "k", lambda i, e: e["missing"]) == []  # a check that raises refuses the line
    with path.open("ab") as f:
        f.write('{"i": 4, "text": "é'.encode()[:-1])  # a kill mid-line, mid-character
    kept = read_journal(path, "k")
    assert len(kept) == 4
    start_journal(path, "k", kept[:1]).close()  # rewritten to what was kept
    assert path.read_text().split("\n") == [json.dumps({"key": "k"}), json.dumps(kept[0], ensure_ascii=False), ""]


@settings(max_examples=50, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_in_a_journal_give_entries_or_none_never_an_error(tmp_path_factory, junk):
    path = tmp_path_factory.mktemp("j") / "job.jsonl"
    with start_journal(path, "k") as f:
        write_entry(f, {"i": 0})
    with path.open("ab") as f:
        f.write(junk)
    kept = read_journal(path, "k")  # what a kill or a disk error may leave after the last whole line
    assert kept[:1] == [{"i": 0}] and all(isinstance(e, dict) for e in kept)
    path.write_bytes(junk)
    assert read_journal(path, "k") in (None, [])
