"""A journal: what a long job has done so far, one JSON line an item, so that the same job run again after a stop
(Ctrl-C, a kill, a full disk) goes on from there instead of starting again (``zipper data import``; the fused
search of ``zipper eval``).

Its first line names the job (``{"key": ...}``, a hash of its inputs and settings): a journal of another key is
another job's, and is started again. A kill can cut the last line short, so reading stops at the first line that
does not parse or that the job's own check refuses (a changed source, a missing output), and the journal is
rewritten to hold the entries before it.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TextIO


def read_journal(path: Path, key: str, accept: Callable[[int, dict], bool] | None = None) -> list[dict] | None:
    """The entries of the journal at ``path`` in order, up to the first that does not parse or that
    ``accept(index, entry)`` refuses (or raises KeyError / TypeError / ValueError on); None if there is no journal
    there or it is another key's."""
    try:  # a kill may cut a character short too: that line fails to parse, the lines before it stand
        lines = path.read_bytes().decode("utf-8", errors="replace").split("\n")  # not splitlines: U+2028 is text
    except FileNotFoundError:
        return None
    if lines[:1] != [json.dumps({"key": key})]:
        return None
    entries: list[dict] = []
    for i, line in enumerate(lines[1:]):
        if not line:  # the end (or a line cut to nothing)
            break
        try:
            entry = json.loads(line)
            if not isinstance(entry, dict) or (accept is not None and not accept(i, entry)):
                break
        except (ValueError, KeyError, TypeError):
            break
        entries.append(entry)
    return entries


def start_journal(path: Path, key: str, entries: list[dict] = ()) -> TextIO:
    """Writes the journal at ``path`` anew with ``key`` and ``entries`` (those `read_journal` kept); returns it open
    for appending, line-buffered: each entry written (`write_entry`) is in the file at once, so a kill loses at most
    the line being written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in [{"key": key}, *entries]),
                    encoding="utf-8")
    return path.open("a", encoding="utf-8", buffering=1)


def write_entry(journal: TextIO, entry: dict) -> None:
    journal.write(json.dumps(entry, ensure_ascii=False) + "\n")


def file_stamp(path: str | os.PathLike | None) -> list[int] | None:
    """A file's size and modification time (ns), or None if there is none: what a resumed job compares to tell a
    source changed since it was read (a journal's entries, the unit and state caches of `zipper.data`)."""
    try:
        st = os.stat(path) if path else None
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns] if st else None
