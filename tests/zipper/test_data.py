"""zipper.data: unit caches follow what the units depend on (codec_id), and hold only what a run reads;
the training batch stream resumes exactly and draws every example."""

import itertools
import json
import types

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from towers.codec_train import synthetic_babble, train_mel_unit_codec, train_tiny_codec
from zipper.data import batches, codec_id


def test_codec_id_ignores_the_decoder_but_not_the_unit_encoder():
    base = train_tiny_codec(seed=0)
    waves = synthetic_babble(seconds=1.0, n=2, seed=3)
    redecoded = train_mel_unit_codec(waves, 16_000, base.config, dec_steps=2, batch_size=2, crop_units=8, seed=5,
                                     progress=False, units_from=base)
    assert not torch.equal(redecoded.decoder.out[-1].weight, base.decoder.out[-1].weight)
    assert torch.equal(redecoded.encode(waves[0], 16_000), base.encode(waves[0], 16_000))
    assert codec_id(redecoded) == codec_id(base)  # same units -> same cache

    other = train_tiny_codec(seed=1)  # other k-means centroids
    assert codec_id(other) != codec_id(base)
    nudged = train_tiny_codec(seed=0)
    nudged.centroids[-1, -1] += 1e-3  # a change in the last centroid value is seen too
    assert codec_id(nudged) != codec_id(base)


class _CountingCodec:
    """A codec stand-in whose units are the clip's length in 10 ms steps; counts what it encodes."""

    codec_type, sample_rate = "counting", 16_000

    def __init__(self):
        self.encoded = 0

    def unit_encoder_state(self):
        return {"hop": 160}, {}

    def encode(self, wave, sr):
        self.encoded += 1
        return torch.arange(len(wave) // 160) % 7


def _corpus(tmp_path, n=10):
    import json

    import numpy as np
    import soundfile as sf

    rows = []
    for i in range(n):
        sf.write(tmp_path / f"{i}.wav", np.zeros(1600 * (i + 1), dtype="float32"), 16_000)
        rows.append({"id": f"u{i}", "audio_filepath": f"{i}.wav", "text": f"sentence {i}"})
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return tmp_path


def test_load_split_encodes_only_the_kept_rows_and_caches_them_apart(tmp_path):
    from towers.corpus import read_manifest
    from zipper.data import load_split, subset

    corpus, codec = _corpus(tmp_path), _CountingCodec()
    keep = lambda rows: subset(rows, 0.3, seed=0)  # noqa: E731
    kept = load_split(corpus, "train", codec, progress=False, keep=keep)
    assert codec.encoded == 3
    assert [r["id"] for r in kept] == [r["id"] for r in keep(read_manifest(corpus / "train.jsonl"))]
    again = load_split(corpus, "train", codec, progress=False, keep=keep)  # read from its own cache
    assert codec.encoded == 3
    assert [(r["id"], r["units"].tolist()) for r in again] == [(r["id"], r["units"].tolist()) for r in kept]
    full = load_split(corpus, "train", codec, progress=False)  # the subset's 3 rows are read, the other 7 encoded
    assert codec.encoded == 10 and len(full) == 10
    by_id = {r["id"]: r["units"].tolist() for r in full}
    assert all(r["units"].tolist() == by_id[r["id"]] for r in kept)
    # with the whole split cached, a subset is cut from it: nothing is encoded
    first = load_split(corpus, "train", codec, progress=False, keep=lambda rows: rows[:4])
    assert codec.encoded == 10 and [r["id"] for r in first] == ["u0", "u1", "u2", "u3"]


def test_load_split_keeping_every_row_in_another_order_caches_the_whole_split(tmp_path):
    from zipper.data import load_split, subset

    corpus, codec = _corpus(tmp_path), _CountingCodec()
    shuffled = load_split(corpus, "train", codec, progress=False, keep=lambda rows: subset(rows, 1.0, seed=0))
    assert codec.encoded == 10 and [r["id"] for r in shuffled] != [f"u{i}" for i in range(10)]
    assert sorted(r["id"] for r in shuffled) == sorted(f"u{i}" for i in range(10))
    whole = load_split(corpus, "train", codec, progress=False)  # the split's own cache, in manifest order
    assert codec.encoded == 10 and [r["id"] for r in whole] == [f"u{i}" for i in range(10)]


def test_a_new_slice_reads_the_rows_other_caches_hold_and_encodes_only_the_rest(tmp_path, capsys):
    """Slices of one split overlap (the first N test utterances, another seed's 10%, the whole split after a
    subset): each cache file names its rows, so a new slice encodes only the rows no file holds (with unchanged
    audio), and every row gets the units its own encoding gives."""
    import numpy as np
    import soundfile as sf

    from zipper.data import load_split

    corpus, codec = _corpus(tmp_path), _CountingCodec()
    expected = {f"u{i}": (torch.arange(10 * (i + 1)) % 7).tolist() for i in range(10)}

    def check(rows):
        assert all(r["units"].tolist() == expected[r["id"]] for r in rows)

    check(load_split(corpus, "train", codec, progress=False, keep=lambda rows: rows[:4]))
    check(load_split(corpus, "train", codec, progress=True, keep=lambda rows: rows[2:7]))
    assert codec.encoded == 4 + 3 and "units of 2 of 5 train utterances read from other caches" in \
        capsys.readouterr().out
    both = load_split(corpus, "train", codec, progress=False, keep=lambda rows: rows[6:0:-1])  # from both files
    assert codec.encoded == 7 and [r["id"] for r in both] == ["u6", "u5", "u4", "u3", "u2", "u1"]
    check(both)
    cache_dir = next(tmp_path.glob(f"units-{codec_id(codec)}"))
    (cache_dir / "junk.safetensors").write_bytes(b"not a safetensors file")  # passed over
    sf.write(tmp_path / "3.wav", np.zeros(16_000, dtype="float32"), 16_000)  # rewritten: its cached units are stale
    expected["u3"] = (torch.arange(100) % 7).tolist()
    check(load_split(corpus, "train", codec, progress=False, keep=lambda rows: rows[3:5]))
    assert codec.encoded == 8
    check(load_split(corpus, "train", codec, progress=False))  # the whole split: u7, u8, u9 are new
    assert codec.encoded == 11


def test_a_row_whose_audio_is_gone_is_read_from_the_cache_of_its_newest_audio(tmp_path):
    """Two caches may hold a row from two versions of its audio (re-synthesised in between); once the audio is
    gone (a corpus moved without it) the copy made from the newer version serves, whichever file sorts first;
    a row that comes twice in a slice is read twice, not encoded."""
    import time

    import numpy as np
    import soundfile as sf

    from zipper.data import load_split

    corpus, codec = _corpus(tmp_path, n=4), _CountingCodec()
    folder = corpus / f"units-{codec_id(codec)}"
    load_split(corpus, "train", codec, progress=False, keep=lambda rows: rows[:2])  # u1: 20 units
    (old,) = folder.glob("*.safetensors")
    time.sleep(0.01)
    sf.write(tmp_path / "1.wav", np.zeros(16_000, dtype="float32"), 16_000)  # re-synthesised: 100 units
    assert len(load_split(corpus, "train", codec, progress=False, keep=lambda rows: rows[1:3])[0]["units"]) == 100
    (new,) = set(folder.glob("*.safetensors")) - {old}
    assert old.name < new.name  # the stale copy is met first
    (tmp_path / "1.wav").unlink()
    assert codec.encoded == 4
    for cut in (slice(1, 2), slice(1, 4)):
        first = load_split(corpus, "train", codec, progress=False, keep=lambda rows, cut=cut: rows[cut])[0]
        assert first["id"] == "u1" and len(first["units"]) == 100
    assert codec.encoded == 5  # u3 alone, which no cache held
    twice = load_split(corpus, "train", codec, progress=False, keep=lambda rows: [rows[2], rows[0], rows[0], rows[3]])
    assert codec.encoded == 5 and [len(r["units"]) for r in twice] == [30, 10, 10, 40]
    assert twice[1]["units"] is not twice[2]["units"]


@pytest.mark.parametrize("tamper", ["rows not a list", "rows not strings", "offsets short", "offsets past the end",
                                    "offsets backwards", "stamps short", "units short", "no units"])
@pytest.mark.parametrize("whole", [True, False])
def test_a_tampered_cache_file_is_passed_over_not_read_short(tmp_path, tamper, whole, capsys):
    """A cache file whose header names rows its tensors do not hold (hand-edited, another tool's) gives none of
    them, to a slice reading other files' rows or to the same rows read whole: a slice past a field's end would come
    back short rather than fail, so the layout is checked first."""
    from safetensors.torch import load_file, save_file

    from zipper.data import load_split

    corpus, codec = _corpus(tmp_path, n=4), _CountingCodec()
    load_split(corpus, "train", codec, progress=False, keep=lambda rows: rows[:3])
    (path,) = (corpus / f"units-{codec_id(codec)}").glob("*.safetensors")
    t, rows = load_file(str(path)), json.dumps([f"u{i}\t{i}.wav" for i in range(3)])
    if tamper == "rows not a list":
        rows = json.dumps({"u0\t0.wav": 0})
    elif tamper == "rows not strings":
        rows = json.dumps([["u0", "0.wav"], ["u1", "1.wav"], ["u2", "2.wav"]])
    elif tamper == "offsets short":
        t["offsets"] = t["offsets"][:-1]
    elif tamper == "offsets past the end":
        t["offsets"][-1] += 5
    elif tamper == "offsets backwards":
        t["offsets"][1], t["offsets"][2] = t["offsets"][2].item(), t["offsets"][1].item()
    elif tamper == "stamps short":
        t["stamps"] = t["stamps"][:2]
    elif tamper == "units short":
        t["units"] = t["units"][:-3]
    else:
        del t["units"]
    save_file(t, str(path), metadata={"rows": rows})
    if whole:  # another file, of all four rows: nothing of this one is read
        out, encoded = load_split(corpus, "train", codec, progress=False), 4
    else:  # the file's own rows, read by its key; a header naming its rows wrongly still leaves them whole
        out = load_split(corpus, "train", codec, progress=False, keep=lambda rows: rows[:3])
        encoded = 0 if tamper.startswith("rows") else 3
        assert ("does not hold whole rows" in capsys.readouterr().out) == (encoded > 0 and tamper != "no units")
    assert codec.encoded == 3 + encoded
    assert [r["units"].tolist() for r in out] == [(torch.arange(10 * (i + 1)) % 7).tolist() for i in range(len(out))]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(held=st.lists(st.integers(0, 3), max_size=4), lens=st.lists(st.integers(0, 40), min_size=4, max_size=4),
       extra_offsets=st.integers(-1, 1), extra_stamps=st.integers(-1, 1), spare_units=st.integers(-15, 15),
       dtype=st.sampled_from([torch.long, torch.int32]), junk_rows=st.sampled_from([None, {"u0\t0.wav": 0}, [[0]]]))
def test_reuse_never_gives_a_row_units_but_its_own_whatever_the_file_claims(tmp_path, held, lens, extra_offsets,
                                                                            extra_stamps, spare_units, dtype,
                                                                            junk_rows):
    """Any header and layout a cache file may carry (hand-made, half-written by another tool): `_reuse` never
    raises, and gives a row only a whole piece of the file, the one the file's offsets name for that row (a
    safetensors slice past the end would come back short instead)."""
    from safetensors.torch import save_file

    from zipper.data import _audio_stamps, _reuse

    corpus = tmp_path / "c"
    if not corpus.exists():
        corpus.mkdir()
        _corpus(corpus, n=3)
    folder = corpus / "units-x"
    folder.mkdir(exist_ok=True)
    want = [{"id": f"u{i}", "audio_filepath": str(corpus / f"{i}.wav")} for i in range(3)]
    rows = [f"u{i}\t{i}.wav" for i in held]  # u3 is no row of the slice
    offsets = [0, *torch.tensor(lens[:len(held)], dtype=torch.long).cumsum(0).tolist()]
    offsets = offsets[:len(offsets) + extra_offsets] if extra_offsets < 0 else offsets + [offsets[-1]] * extra_offsets
    stamps = _audio_stamps([want[i % 3] for i in held] + [want[0]] * max(extra_stamps, 0))
    stamps = stamps[:len(stamps) + extra_stamps] if extra_stamps < 0 else stamps
    units_len = max(0, offsets[-1] + spare_units) if offsets else spare_units % 7
    save_file({"units": torch.arange(units_len, dtype=torch.long) % 7, "offsets": torch.tensor(offsets, dtype=dtype),
               "stamps": stamps, "key": torch.zeros(1, dtype=torch.uint8)},
              str(folder / "a.safetensors"), metadata={"rows": json.dumps(rows if junk_rows is None else junk_rows)})
    got = _reuse(folder, want, corpus.resolve(), ["units"])
    assert set(got) <= {0, 1, 2}
    units = (torch.arange(units_len) % 7).tolist()
    for i, fields in got.items():
        pieces = [units[offsets[j]:offsets[j + 1]] for j, k in enumerate(rows) if k == f"u{i}\t{i}.wav"
                  and j + 1 < len(offsets) and 0 <= offsets[j] <= offsets[j + 1] <= units_len]
        assert fields["units"].tolist() in pieces


def test_batches_resume_at_any_step_gives_the_same_stream():
    ex = [{"id": i, "units": torch.zeros(5 + (i * 7) % 13)} for i in range(37)]
    full = [[e["id"] for e in b] for b in itertools.islice(batches(ex, 5, seed=3), 40)]
    for k in range(30):
        assert full[k:k + 10] == [[e["id"] for e in b] for b in itertools.islice(batches(ex, 5, seed=3, start_step=k), 10)]


def test_batches_draw_every_example_at_the_same_rate_the_longest_too():
    """20 examples in batches of 8: 4 are left over each epoch. They are random ones, so over many epochs
    every example is drawn in about 16 epochs of 20, whatever its length (example i is the i-th shortest)."""
    ex = [{"id": i, "units": torch.zeros(10 + i)} for i in range(20)]
    epochs = 300
    drawn = [0] * 20
    for batch in itertools.islice(batches(ex, 8, seed=0), 2 * epochs):
        assert len(batch) == 8 and len({e["id"] for e in batch}) == 8
        for e in batch:
            drawn[e["id"]] += 1
    assert all(0.7 < d / epochs < 0.9 for d in drawn), drawn  # uniform: 16 / 20 = 0.8


def test_batches_of_nothing_is_an_error_not_a_hang():
    from zipper.data import batches

    with pytest.raises(ValueError, match="no examples"):
        next(batches([], 4, 0))


def test_a_rewritten_audio_file_is_encoded_again_and_a_deleted_one_keeps_its_units(tmp_path):
    import numpy as np
    import soundfile as sf

    from zipper.data import load_split

    corpus, codec = _corpus(tmp_path, n=3), _CountingCodec()
    before = {r["id"]: len(r["units"]) for r in load_split(corpus, "train", codec, progress=False)}
    assert before == {"u0": 10, "u1": 20, "u2": 30} and codec.encoded == 3
    sf.write(tmp_path / "1.wav", np.zeros(16_000, dtype="float32"), 16_000)  # re-synthesised in place
    after = {r["id"]: len(r["units"]) for r in load_split(corpus, "train", codec, progress=False)}
    assert after == {"u0": 10, "u1": 100, "u2": 30} and codec.encoded == 4  # that file alone is encoded again
    (tmp_path / "2.wav").unlink()  # audio removed after encoding: the cache still serves it
    again = {r["id"]: len(r["units"]) for r in load_split(corpus, "train", codec, progress=False)}
    assert again == after and codec.encoded == 4


def test_an_encoding_error_names_the_row_and_its_file(tmp_path):
    import traceback

    from zipper.data import load_split

    corpus = _corpus(tmp_path, n=2)
    (tmp_path / "1.wav").write_bytes(b"RIFF, but not a wave file")
    with pytest.raises(Exception) as info:
        load_split(corpus, "train", _CountingCodec(), progress=False)
    assert f"while encoding train row 'u1' ({tmp_path / '1.wav'})" in "".join(traceback.format_exception(info.value))


def test_a_stopped_encoding_goes_on_where_it_stopped(tmp_path, monkeypatch):
    """Encoding a split takes minutes to hours: Ctrl-C, a failing row or a kill keeps the rows encoded (partial
    cache files, written on the way and at the stop), the same call again encodes only the rest and gives every
    row its own units, and the complete cache then replaces the partial files."""
    import zipper.data
    from zipper.data import PARTIAL, load_split

    corpus = _corpus(tmp_path, n=10)
    expected = {f"u{i}": (torch.arange(10 * (i + 1)) % 7).tolist() for i in range(10)}
    cache_dir = tmp_path / f"units-{codec_id(_CountingCodec())}"

    class Stopped(_CountingCodec):
        def __init__(self, after: int, stop: type[BaseException] = KeyboardInterrupt):
            super().__init__()
            self.after, self.stop, self.partials = after, stop, []

        def encode(self, wave, sr):
            self.partials.append(len(list(cache_dir.glob(f"{PARTIAL}*.safetensors"))))
            if self.encoded == self.after:
                raise self.stop
            return super().encode(wave, sr)

    with pytest.raises(KeyboardInterrupt):  # Ctrl-C at the 5th row: the 4 before it are written at the stop
        load_split(corpus, "train", Stopped(4), progress=False)
    assert len(list(cache_dir.glob(f"{PARTIAL}*"))) == 1
    monkeypatch.setattr(zipper.data, "PARTIAL_SECONDS", 0.0)  # now written after every row, as a kill would find
    with pytest.raises(ZeroDivisionError):  # stands in for a row that cannot be encoded
        load_split(corpus, "train", stopped := Stopped(3, ZeroDivisionError), progress=False)
    assert stopped.partials == [1, 2, 3, 4] and len(list(cache_dir.glob(f"{PARTIAL}*"))) == 4
    rest = _CountingCodec()
    rows = load_split(corpus, "train", rest, progress=False)
    assert rest.encoded == 10 - 4 - 3 and all(r["units"].tolist() == expected[r["id"]] for r in rows)
    assert [f.name for f in cache_dir.iterdir()] == ["train.safetensors"]  # the partial files are gone
    again = _CountingCodec()
    assert [r["units"].tolist() for r in load_split(corpus, "train", again, progress=False)] == \
        [r["units"].tolist() for r in rows] and again.encoded == 0


def test_a_copied_or_moved_corpus_keeps_its_unit_caches(tmp_path):
    """Cache keys name the audio files relative to the corpus, so a corpus copied to another machine or folder
    (a GPU box, say) reads its caches instead of encoding everything again (20+ minutes for the base corpus)."""
    import shutil

    from zipper.data import load_split

    codec = _CountingCodec()
    (tmp_path / "here").mkdir()
    here = _corpus(tmp_path / "here", n=4)
    whole = load_split(here, "train", codec, progress=False)
    first = load_split(here, "train", codec, progress=False, keep=lambda rows: rows[:2])  # cut from the whole
    assert codec.encoded == 4
    shutil.rmtree(here / f"units-{codec_id(codec)}")
    part = load_split(here, "train", codec, progress=False, keep=lambda rows: rows[:2])  # a subset cache
    whole = load_split(here, "train", codec, progress=False)  # reads the subset's rows, encodes the other two
    assert codec.encoded == 8
    there = tmp_path / "elsewhere" / "corpus"
    shutil.copytree(here, there)
    for moved in (there, tmp_path / "moved"):
        if moved != there:
            there.rename(moved)
        assert [r["units"].tolist() for r in load_split(moved, "train", codec, progress=False)] == \
            [r["units"].tolist() for r in whole]
        assert [r["units"].tolist() for r in load_split(moved, "train", codec, progress=False, keep=lambda r: r[:2])] \
            == [r["units"].tolist() for r in part] == [r["units"].tolist() for r in first]
        for wav in moved.glob("*.wav"):  # no audio beside the caches at all: they still serve
            wav.unlink()
        assert len(load_split(moved, "train", codec, progress=False)) == 4
    assert codec.encoded == 8


def test_caches_keyed_by_absolute_paths_before_are_still_read(tmp_path):
    from safetensors.torch import load_file, save_file

    from zipper.data import _ids_key, load_split

    corpus, codec = _corpus(tmp_path, n=3), _CountingCodec()
    rows = load_split(corpus, "train", codec, progress=False)
    cache = corpus / f"units-{codec_id(codec)}" / "train.safetensors"
    stored = load_file(str(cache))
    assert bytes(stored["key"].tolist()).decode() == _ids_key(rows, corpus.resolve()) != _ids_key(rows)
    stored["key"] = torch.tensor(list(_ids_key(rows).encode()), dtype=torch.uint8)  # the old, absolute key
    save_file(stored, str(cache))
    assert [r["units"].tolist() for r in load_split(corpus, "train", codec, progress=False)] == \
        [r["units"].tolist() for r in rows]
    assert codec.encoded == 3


def test_attach_states_gives_the_states_and_the_units_of_one_encoder_run(tmp_path):
    """A zip with feature input reads Whisper states beside the units; one encoder run gives both, aligned."""
    from towers.audio import load_audio, save_audio
    from towers.whisper_units import WhisperUnitCodec, WhisperUnitCodecConfig
    from zipper.data import attach_states

    cfg = WhisperUnitCodecConfig(vocab_size=16, n_mels=20, dec_channels=8, dec_unit_dilations=[1], dec_kernel=3,
                                 gl_iters=2)
    codec = WhisperUnitCodec(cfg, torch.randn(16, 512, generator=torch.Generator().manual_seed(0)))
    waves = synthetic_babble(seconds=1.3, n=2, seed=5)
    examples = []
    for i, w in enumerate(waves):
        save_audio(tmp_path / f"{i}.wav", w, 16_000)
        examples.append({"id": str(i), "text": "hi", "audio_filepath": str(tmp_path / f"{i}.wav"), "units": None})
    out = attach_states(examples, codec, progress=False)
    for ex in out:
        wave, sr = load_audio(ex["audio_filepath"], target_sr=16_000)  # the file's samples (16-bit), not `waves`
        assert ex["states"].dtype == torch.float16 and ex["states"].shape == (len(ex["units"]), 512)
        assert torch.equal(ex["units"], codec.encode(wave, sr).long())
    assert examples[0]["units"] is None  # the caller's examples are left as they were
    with pytest.raises(ValueError, match="needs a codec over them"):
        attach_states(examples, types.SimpleNamespace(sample_rate=16_000))  # a codec without encoder states


def test_attach_states_caches_the_states_beside_the_corpus(tmp_path, monkeypatch, capsys):
    """With ``corpus``, a second call reads the very states and units of the first without the encoder; other
    examples read the rows a cache holds; a corrupt cache or a rewritten audio file runs the encoder again on the
    rows no other cache holds as they are now; nothing is lost."""
    from towers.audio import save_audio
    from towers.whisper_units import WhisperUnitCodec, WhisperUnitCodecConfig
    import zipper.data
    from zipper.data import _ids_key, attach_states

    cfg = WhisperUnitCodecConfig(vocab_size=16, n_mels=20, dec_channels=8, dec_unit_dilations=[1], dec_kernel=3,
                                 gl_iters=2)
    codec = WhisperUnitCodec(cfg, torch.randn(16, 512, generator=torch.Generator().manual_seed(0)))
    examples = []
    for i, w in enumerate(synthetic_babble(seconds=1.1, n=3, seed=7)):
        save_audio(tmp_path / f"{i}.wav", w, 16_000)
        examples.append({"id": str(i), "text": "hi", "audio_filepath": str(tmp_path / f"{i}.wav")})
    runs = []
    real_states = WhisperUnitCodec.states_batch
    monkeypatch.setattr(WhisperUnitCodec, "states_batch", lambda self, *a: runs.append(1) or real_states(self, *a))
    first = attach_states(examples, codec, progress=False, corpus=tmp_path)
    assert len(runs) == 3 and len(list((tmp_path / f"states-{codec_id(codec)}").glob("*.safetensors"))) == 1
    again = attach_states(examples, codec, progress=False, corpus=tmp_path)
    assert len(runs) == 3  # read, not encoded
    for a, b in zip(first, again):
        assert torch.equal(a["states"], b["states"]) and b["states"].dtype == torch.float16
        assert torch.equal(a["units"], b["units"]) and b["units"].dtype == torch.long
    shuffled = attach_states(examples[::-1], codec, progress=False, corpus=tmp_path)  # another seed's order
    assert len(runs) == 3  # the same cache, each row given its own states
    assert [ex["id"] for ex in shuffled] == ["2", "1", "0"]
    assert all(torch.equal(a["states"], b["states"]) for a, b in zip(first[::-1], shuffled))
    two = attach_states(examples[:2], codec, progress=False, corpus=tmp_path)  # other examples: their own cache,
    assert len(runs) == 3 and len(list((tmp_path / f"states-{codec_id(codec)}").glob("*.safetensors"))) == 2
    assert all(torch.equal(a["states"], b["states"]) for a, b in zip(first, two))  # its rows read from the first
    cache = tmp_path / f"states-{codec_id(codec)}" / f"{_ids_key(examples, tmp_path.resolve())}.safetensors"
    cache.write_bytes(b"not a safetensors file")
    fixed = attach_states(examples, codec, progress=False, corpus=tmp_path)  # the third row encoded again
    assert len(runs) == 4 and "unreadable cache" in capsys.readouterr().out
    assert all(torch.equal(a["states"], b["states"]) for a, b in zip(first, fixed))
    save_audio(tmp_path / "1.wav", synthetic_babble(seconds=0.7, n=1, seed=9)[0], 16_000,
               overwrite=True)  # rewritten audio: that row alone is encoded again, from neither cache
    changed = attach_states(examples, codec, progress=False, corpus=tmp_path)
    assert len(runs) == 5 and changed[1]["states"].shape[0] < first[1]["states"].shape[0]
    assert all(torch.equal(changed[i]["states"], first[i]["states"]) for i in (0, 2))

    # a cache keyed in the examples' own order (written before keys ignored it) is still read
    folder, reordered = tmp_path / f"states-{codec_id(codec)}", [examples[2], examples[0], examples[1]]
    for f in folder.iterdir():
        f.unlink()
    zipper.data._write_cache(folder / f"{_ids_key(reordered, tmp_path.resolve())}.safetensors", reordered,
                             tmp_path.resolve(), states=[changed[i]["states"] for i in (2, 0, 1)],
                             units=[changed[i]["units"] for i in (2, 0, 1)])
    old = attach_states(reordered, codec, progress=False, corpus=tmp_path)
    assert len(runs) == 5 and all(torch.equal(a["states"], changed[i]["states"]) for a, i in zip(old, (2, 0, 1)))

    # a stop keeps the encoded rows' states: the next call encodes only the rest, then drops the partial file
    for f in folder.iterdir():
        f.unlink()
    stop_at = len(runs) + 1

    def stopping(self, *a):
        if len(runs) == stop_at:
            raise KeyboardInterrupt
        return runs.append(1) or real_states(self, *a)
    monkeypatch.setattr(WhisperUnitCodec, "states_batch", stopping)
    with pytest.raises(KeyboardInterrupt):
        attach_states(examples, codec, progress=False, corpus=tmp_path)
    assert len(runs) == 6 and [f.name[:8] for f in folder.iterdir()] == ["partial-"]
    monkeypatch.setattr(WhisperUnitCodec, "states_batch", lambda self, *a: runs.append(1) or real_states(self, *a))
    resumed = attach_states(examples, codec, progress=False, corpus=tmp_path)
    assert len(runs) == 8 and all(torch.equal(a["states"], b["states"]) for a, b in zip(changed, resumed))
    assert [f.name[:8] for f in folder.iterdir()] != ["partial-"] and len(list(folder.iterdir())) == 1

    def read_only(*a, **k):
        raise PermissionError("read-only file system")

    monkeypatch.setattr(zipper.data, "_write_cache", read_only)
    kept = attach_states(examples[1:], codec, progress=False, corpus=tmp_path)  # not cached, not lost
    assert len(kept) == 2 and "could not cache the encoder states" in capsys.readouterr().out


def test_corpus_words_are_the_training_text_normalised_never_dev_or_test(tmp_path):
    from zipper.data import corpus_words

    def write(name, texts):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps({"text": t, "audio_filepath": "a.wav"}) + "\n"
                                                        for t in texts))
    write("train", ["Mr. Smith's belly-ache.", "A starship"])
    write("dev", ["dev only"])
    write("test", ["test only"])
    assert corpus_words(tmp_path) == {"mister", "smith's", "belly", "ache", "a", "starship"}
    write("unpaired_text", ["Ninety-nine luftballons"])
    assert corpus_words(tmp_path) >= {"ninety", "nine", "luftballons", "starship"}
    assert not corpus_words(tmp_path) & {"dev", "test", "only"}
    (tmp_path / "train.jsonl").write_text('{"audio_filepath": "a.wav"}\n')
    with pytest.raises(ValueError, match="train.jsonl:1"):
        corpus_words(tmp_path)


def test_two_runs_caching_the_same_rows_at_once_each_write_a_whole_file(tmp_path, monkeypatch):
    """Two runs started together on one corpus (two seeds of a chain) encode the same rows and cache them at the
    same moment: each writes a temporary of its own and renames it. With one fixed temporary name the second wrote
    into the first's, and the first found it renamed away (FileNotFoundError) or renamed half a file."""
    from pathlib import Path

    import safetensors.torch

    from zipper.data import _read_cache, _write_cache

    rows = [{"id": f"u{i}", "audio_filepath": str(tmp_path / f"{i}.wav")} for i in range(3)]
    path, real_save, nested = tmp_path / "states" / "key.safetensors", safetensors.torch.save_file, []

    def save_then_let_the_other_run_write(tensors, filename, *a, **k):
        real_save(tensors, filename, *a, **k)
        if not nested:  # the other run writes the same cache between this run's write and its rename
            nested.append(filename)
            _write_cache(path, rows, tmp_path, units=[torch.full((2,), 7)] * 3)

    monkeypatch.setattr(safetensors.torch, "save_file", save_then_let_the_other_run_write)
    _write_cache(path, rows, tmp_path, units=[torch.arange(i + 1) for i in range(3)])
    got = _read_cache(path, rows, tmp_path)
    assert [u.tolist() for u in got["units"]] == [[0], [0, 1], [0, 1, 2]]  # the last rename wins, whole
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temporary left behind
    assert Path(nested[0]).parent == path.parent  # beside the cache: a rename, not a copy


def test_speaking_voice_is_one_the_model_was_taught(tmp_path):
    """`zipper speak --voice`: a model's voices.json names the voices it knows and the tested one (the default);
    without the file the voice is taken as given, with a warning; a broken file is a clear error."""
    import warnings

    from zipper.data import VOICES_FILE, speaking_voice

    assert speaking_voice(tmp_path) == ""
    with pytest.warns(UserWarning, match="not checked"):
        assert speaking_voice(tmp_path, "anyone") == "anyone"
    (tmp_path / VOICES_FILE).write_text(json.dumps({"voice_prompt": "b", "voices": ["a", "b"]}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert speaking_voice(tmp_path) == "b" and speaking_voice(tmp_path, "a") == "a"
    with pytest.raises(ValueError, match="not trained to speak in voice 'c'; its voices: a, b"):
        speaking_voice(tmp_path, "c")
    for broken in ("{", "[]", '{"voices": ["a"]}', '{"voice_prompt": "a", "voices": "a"}'):
        (tmp_path / VOICES_FILE).write_text(broken)
        with pytest.raises(ValueError, match="is not a voices file"):
            speaking_voice(tmp_path, "a")
