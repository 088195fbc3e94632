"""Tests for towers.text_sources: the sentence cleaning rules and FOLDOC's paragraphs."""

from __future__ import annotations

from towers.text_sources import clean_sentences, foldoc_texts


def test_clean_sentences_rules():
    raw = [
        "Hello there, my good friend.  Short one.",
        "Call 555-1234 now for your free prize.",
        'He said "wait -- stop" to the whole assembled crowd.',
        "Mr. Smith went to Washington again today.",
        "The NASA probe landed on the moon today.",
        "hello there, my good friend.",  # duplicate after normalisation
        "An unfinished sentence without an end",
        "In politics I hear you 're stanch and true.",
        "Sam: How the hell do they know him here?",
    ]
    assert clean_sentences(raw) == [
        "Hello there, my good friend.",
        "He said wait, stop to the whole assembled crowd.",
        "In politics I hear you're stanch and true.",
    ]


_FOLDOC = """\
abstract data type
ADT

   <programming> (ADT) A kind of {data abstraction} where a
   type's internal form is hidden behind a set of {access
   functions|access function}.  Values of the type are created
   and inspected only by calls to the access functions.

   {Reynolds paper
   (http://example.org/taoop94.html)}.

   (2003-07-03)

stack
   <data> A last in, first out list.
"""


def test_foldoc_paragraphs_lose_their_tags_links_urls_and_dates(tmp_path):
    """FOLDOC's definitions (Debian's dict-foldoc, the domain corpus's text) as plain paragraphs: headwords
    dropped, category tags, {link} braces, URLs, dates and parentheticals removed, the last paragraph kept."""
    path = tmp_path / "foldoc.dict"
    path.write_text(_FOLDOC)
    paragraphs = list(foldoc_texts(path))
    assert paragraphs == ["A kind of data abstraction where a type's internal form is hidden behind a set of access "
                          "functions. Values of the type are created and inspected only by calls to the access "
                          "functions.", "Reynolds paper.", "A last in, first out list."]
    assert clean_sentences(paragraphs) == [
        "A kind of data abstraction where a type's internal form is hidden behind a set of access functions.",
        "Values of the type are created and inspected only by calls to the access functions.",
        "A last in, first out list."]
    assert list(foldoc_texts(tmp_path / "missing.dict.dz")) == []  # not installed: no text (load_sentences says so)
