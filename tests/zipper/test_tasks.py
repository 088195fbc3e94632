"""zipper.tasks.source_use: how much a zip reads its source (teacher-forced target NLL, own vs another example's source)."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import open_gates, tiny_text_tower, tiny_tower
from towers.scoring import wer
from zipper import ZipperModel
from zipper.tasks import nll_per_example, source_use


@pytest.fixture(scope="module")
def parts(smollm2_tokenizer):
    from towers.units import UnitTokenizer

    text = tiny_text_tower(smollm2_tokenizer)

    speech = tiny_tower("llama", "speech", vocab=40, hidden=32, layers=2, seed=1, init_std=0.4)
    speech.tokenizer = UnitTokenizer(30)  # units 0..29 -> ids 3..32
    g = torch.Generator().manual_seed(0)
    examples = [{"units": torch.randint(0, 30, (int(n),), generator=g), "text": t}
                for n, t in zip(torch.randint(6, 20, (5,), generator=g), ["hello there", "a cat sat", "on the mat",
                                                                         "one two three four", "ok"])]
    return speech, text, examples


def _zip(speech, text):
    return ZipperModel.from_towers([speech, text], directions=["speech->text"], cross_attention_interval=[1, 1],
                                   prefix_ids=[[], [12, 13]])


def test_a_zip_at_init_reads_no_speech(parts):
    speech, text, examples = parts
    m = source_use(_zip(speech, text), examples, "asr", batch_size=2)
    assert m["speech_info"] == 0 and m["text_nll"] == m["text_nll_other_speech"] > 0


def test_an_open_zip_reads_speech_and_batching_does_not_change_the_nll(parts):
    speech, text, examples = parts
    model = _zip(speech, text)
    open_gates(model, 1.0, block_scale=30.0)
    assert source_use(model, examples, "asr", batch_size=3)["speech_info"] != 0
    batched, single = nll_per_example(model, examples, "asr", 5), nll_per_example(model, examples, "asr", 1)
    assert [c for _, c in batched] == [c for _, c in single]
    assert torch.allclose(torch.tensor([s for s, _ in batched]), torch.tensor([s for s, _ in single]), rtol=1e-4)
    assert source_use(model, examples[:1]) == {}  # nothing to swap with


def _tts_zip(speech, text):
    return ZipperModel.from_towers([text, speech], directions=["text->speech"], cross_attention_interval=[1, 1],
                                   prefix_ids=[[12, 13], []])


def test_tts_text_info_is_zero_at_init_and_not_once_the_zip_reads_the_text(parts):
    speech, text, examples = parts
    model = _tts_zip(speech, text)
    m = source_use(model, examples, "tts", batch_size=2)
    assert set(m) == {"unit_nll", "unit_nll_other_text", "text_info"}
    assert m["text_info"] == 0 and m["unit_nll"] == m["unit_nll_other_text"] > 0
    open_gates(model, 1.0, block_scale=30.0)
    assert source_use(model, examples, "tts", batch_size=3)["text_info"] != 0
    # the unit targets are the same with either text, so are the token counts
    own = nll_per_example(model, examples, "tts", 2)
    assert [c for _, c in own] == [len(ex["units"]) + 1 for ex in examples]  # units + EOS
    with pytest.raises(ValueError, match="task must be one of"):
        source_use(model, examples, "joint")


def test_forward_row_nll_is_the_loss_split_by_row(parts):
    import torch.nn.functional as F

    from zipper.data import make_segments

    speech, text, examples = parts
    model = _zip(speech, text)
    open_gates(model, 1.0, block_scale=30.0)
    segs = make_segments(model, examples, "asr")
    out = model(segs)
    assert out.row_nll.shape == out.row_loss_tokens.shape == (len(examples),)
    assert int(out.row_loss_tokens.sum()) == out.num_loss_tokens
    assert torch.allclose(out.row_nll.sum() / out.num_loss_tokens, out.loss)
    # row 0 by hand: its real text tokens after the forced BOS + prefix (ids 12, 13)
    ids = segs[1].input_ids[0][segs[1].mask()[0]]  # (n,)
    nll = F.cross_entropy(out.logits[1][0, : len(ids) - 1].float(), ids[1:], reduction="none")[2:]
    assert int(out.row_loss_tokens[0]) == len(nll)
    assert torch.allclose(out.row_nll[0], nll.sum(), rtol=1e-5)


def test_speak_units_budget_follows_the_codec_rate(parts):
    """Without an EOS, generation runs to its budget: seconds_per_word x words at the codec's unit rate
    (+ 25), so a 50 units/s codec gets twice the units of a 25/s one for the same text; in a batch, each
    text's budget is its own."""
    from zipper.tasks import speak_units

    speech, text, _ = parts
    model = _tts_zip(speech, text)
    never_special = speech.model.lm_head.register_forward_hook(
        lambda mod, inp, out: out.index_fill(-1, torch.tensor([0, 1, 2]), -1e9))  # no pad/BOS/EOS
    texts = ["hello there", "a much longer sentence than the first one"]
    try:
        n25, n50 = (len(speak_units(model, texts[:1], units_per_second=r)[0]) for r in (25.0, 50.0))
        batched, alone = speak_units(model, texts), [speak_units(model, [t])[0] for t in texts]
        prompted = speak_units(model, texts, prompts=["piper-joe: ", ""])
        with pytest.raises(ValueError, match="one prompt per text"):
            speak_units(model, texts, prompts=["piper-joe: "])
    finally:
        never_special.remove()
    assert (n25, n50) == (int(2 * 0.64 * 25 + 25), int(2 * 0.64 * 50 + 25))
    # each text's budget is its own, not its batch's longest: batched greedy == one text at a time
    assert [len(u) for u in batched] == [n25, int(8 * 0.64 * 25 + 25)]
    assert all(torch.equal(b, a) for b, a in zip(batched, alone))
    # a voice name is read, but its words do not lengthen the budget
    assert [len(u) for u in prompted] == [len(u) for u in batched]


def test_speak_units_repeat_ngram_cuts_each_output(parts):
    """repeat_ngram n: each output is what cut_repeat makes of the output without it; 1 and negatives are refused."""
    from zipper.tasks import cut_repeat, speak_units

    speech, text, _ = parts
    model = _tts_zip(speech, text)
    texts = ["hello there", "a much longer sentence than the first one, and it goes on and on"]
    plain, cut = speak_units(model, texts), speak_units(model, texts, repeat_ngram=2)
    assert all(torch.equal(c, cut_repeat(p, 2)) for c, p in zip(cut, plain))
    assert any(len(c) < len(p) for c, p in zip(cut, plain))  # the tiny random tower repeats itself
    for bad in (1, -2, 2.5):
        with pytest.raises(ValueError, match="repeat_ngram"):
            speak_units(model, texts, repeat_ngram=bad)


def test_cut_repeat_keeps_one_cycle_of_a_loop():
    from zipper.tasks import cut_repeat

    speech = torch.tensor([9, 8, 7, 6, 5])
    loop = torch.tensor([1, 2, 3, 4])
    out = cut_repeat(torch.cat([speech, loop, loop, loop, loop[:2]]), 3)
    assert out.tolist() == speech.tolist() + loop.tolist()
    held = torch.tensor([9, 8, 4, 4, 4, 4, 4, 4, 4, 7, 6])  # a held unit is no loop
    assert torch.equal(cut_repeat(held, 3), held)


@given(st.lists(st.integers(0, 5), max_size=60), st.integers(2, 6))
@settings(max_examples=200, deadline=None)
def test_cut_repeat_is_the_longest_prefix_without_a_repeated_ngram(seq, n):
    from zipper.tasks import cut_repeat

    out = cut_repeat(torch.tensor(seq, dtype=torch.long), n).tolist()
    assert out == seq[:len(out)]

    def grams(u):
        return [tuple(u[i:i + n]) for i in range(len(u) - n + 1) if len(set(u[i:i + n])) > 1]

    assert len(set(grams(out))) == len(grams(out))  # no loop left
    if len(out) < len(seq):  # cut exactly where an earlier n-gram comes again
        assert tuple(seq[len(out):len(out) + n]) in set(grams(seq[:len(out) + n - 1]))


def test_transcribe_units_budget_is_each_utterances_own(parts, monkeypatch):
    """Without an EOS, greedy ASR runs to its budget, len(units) // 3 + 10 tokens (at most max_new_tokens),
    each utterance by its own length: a short utterance batched with a long one gets what it gets alone."""
    from zipper.tasks import transcribe_units

    speech, text, _ = parts
    model = _zip(speech, text)
    open_gates(model, 1.0, block_scale=30.0)
    g = torch.Generator().manual_seed(3)
    units = [torch.randint(0, 30, (n,), generator=g) for n in (6, 60, 33)]
    specials = torch.tensor(sorted({text.eos_token_id, text.pad_token_id}))
    never_special = text.model.lm_head.register_forward_hook(lambda mod, inp, out: out.index_fill(-1, specials, -1e9))
    lengths, decode = [], text.tokenizer.decode
    monkeypatch.setattr(text.tokenizer, "decode", lambda ids, **kw: lengths.append(len(ids)) or decode(ids, **kw))
    try:
        batched = transcribe_units(model, units, batch_size=3)
        batched_lengths = lengths[:]
        alone = [transcribe_units(model, [u])[0] for u in units]
        capped = transcribe_units(model, units[1:2], max_new_tokens=7)
    finally:
        never_special.remove()
    assert batched_lengths == [6 // 3 + 10, 60 // 3 + 10, 33 // 3 + 10] == lengths[3:6]
    assert lengths[6] == 7
    assert batched == alone and capped[0] != alone[1]


def test_a_voice_prompt_is_read_before_the_tts_text_and_never_scored(parts, monkeypatch, tmp_path):
    """``text_prompt`` (a recipe's voice_prompt) precedes the text that TTS reads, is ignored when the text
    is an ASR target, is spoken by tts_metrics, and is not part of what the judge is scored against."""
    import numpy as np
    import soundfile as sf

    import zipper.tasks as tasks
    from zipper.data import make_segments, text_ids

    speech, text, examples = parts
    model = _tts_zip(speech, text)
    ex = {**examples[0], "text_prompt": "piper-joe: "}
    start = model.start_ids("text")
    tts_text = make_segments(model, [ex], "tts")[0].input_ids[0]
    assert torch.equal(tts_text, text_ids(text, "piper-joe: " + ex["text"], start=start))
    asr_text = make_segments(model, [ex], "asr")[1].input_ids[0]
    assert torch.equal(asr_text, text_ids(text, ex["text"], start=start))

    spoken = []
    monkeypatch.setattr(tasks, "speak_units", lambda m, texts, prompts, **kw: spoken.extend(
        p + t for p, t in zip(prompts, texts)) or [torch.arange(5) for _ in texts])
    wav = tmp_path / "ref.wav"
    sf.write(wav, np.zeros(1600, dtype=np.float32), 16000)

    class Codec:
        units_per_second, sample_rate = 25.0, 16000

        def decode(self, units):
            return torch.zeros(1, 1600), 16000

    class EchoJudge:  # hears exactly the gold sentence of each clip, in order
        def __init__(self, texts):
            self.texts = texts

        def transcribe(self, waves):
            return [self.texts[i % len(self.texts)] for i in range(len(waves))]

    rows = [{"text": t, "text_prompt": "piper-joe: ", "audio_filepath": str(wav)} for t in ("a cat sat", "on the mat")]
    m = tasks.tts_metrics(model, rows, Codec(), EchoJudge([r["text"] for r in rows]))
    assert spoken == ["piper-joe: a cat sat", "piper-joe: on the mat"]
    assert m["judge_wer_vs_gold"] == 0.0


def test_ctc_transcribe_units_batched_equals_one_at_a_time(parts):
    """The CTC head's best path reads only each utterance's own frames: padding a short utterance beside a
    long one changes nothing."""
    from zipper.tasks import ctc_transcribe_units

    speech, text, _ = parts
    torch.manual_seed(3)
    model = ZipperModel.from_towers([speech, text], directions=["speech->text"], cross_attention_interval=[1, 1],
                                    prefix_ids=[[], [12, 13]], ctc_directions=["speech->text"], ctc_weight=0.3,
                                    ctc_units="chars")
    open_gates(model, 1.0, block_scale=30.0)
    g = torch.Generator().manual_seed(4)
    units = [torch.randint(0, 30, (n,), generator=g) for n in (5, 40, 17)]
    batched = ctc_transcribe_units(model, units, batch_size=3)
    assert batched == [ctc_transcribe_units(model, [u])[0] for u in units]
    assert all(batched)  # not all blanks: the comparison sees real output


def test_asr_metrics_by_voice_splits_the_errors_of_the_whole(parts):
    """Each voice's WER is over its own utterances: word-weighted, the voices add up to the overall WER.
    One voice (or none named) gets no breakdown."""
    from zipper.tasks import asr_metrics

    speech, text, examples = parts
    model = _zip(speech, text)
    open_gates(model, 1.0, block_scale=30.0)
    named = [dict(ex, voice=v) for ex, v in zip(examples, ["b", "a", "b", "a", "b"])]
    m = asr_metrics(model, named)
    assert sorted(m["by_voice"]) == ["a", "b"]
    assert [m["by_voice"][v]["n_utts"] for v in "ab"] == [2, 3]
    assert sum(v["n_words"] for v in m["by_voice"].values()) == m["n_words"]
    errors = sum(v["wer"] * v["n_words"] for v in m["by_voice"].values())
    assert errors == pytest.approx(m["wer"] * m["n_words"], abs=0.01 * m["n_words"])
    assert m["wer"] > 0  # the tiny zip's output is not the text: the sum is over real errors
    alone = asr_metrics(model, named[1::2])  # voice "a" alone
    assert (alone["wer"], alone["cer"]) == (m["by_voice"]["a"]["wer"], m["by_voice"]["a"]["cer"])
    assert "by_voice" not in alone and "by_voice" not in asr_metrics(model, examples)
    kept = asr_metrics(model, named, utts=True)  # every utterance, in order, for paired comparisons
    rows = kept.pop("utts")
    assert kept == m  # keeping them changes no number
    assert [(r["voice"], r["ref"]) for r in rows] == [(ex["voice"], ex["text"]) for ex in named]
    assert round(100 * wer([r["ref"] for r in rows], [r["hyp"] for r in rows]).wer, 2) == m["wer"]


def test_a_zip_that_reads_states_transcribes_batched_as_one_by_one_and_asks_for_them(parts):
    from zipper.tasks import asr_metrics, ctc_transcribe_units, transcribe_units

    speech, text, examples = parts
    model = ZipperModel.from_towers([speech, text], directions=["speech->text"], cross_attention_interval=[1, 1],
                                    prefix_ids=[[], [12, 13]], feature_towers=["speech"], feature_dim=6,
                                    ctc_directions=["speech->text"], ctc_weight=0.3, ctc_units="chars")
    open_gates(model, 1.0, block_scale=30.0)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        model.feature_inputs["speech"].proj.weight.normal_(0, 2.0, generator=g)
    exs = [{**ex, "states": torch.randn(len(ex["units"]), 6, generator=g)} for ex in examples]
    units, states = [ex["units"] for ex in exs], [ex["states"] for ex in exs]
    batched = transcribe_units(model, units, batch_size=5, max_new_tokens=6, states=states)
    assert batched == [transcribe_units(model, [u], max_new_tokens=6, states=[s])[0] for u, s in zip(units, states)]
    assert ctc_transcribe_units(model, units, 5, states) == [ctc_transcribe_units(model, [u], 1, [s])[0]
                                                             for u, s in zip(units, states)]
    # the states are read: other states, another teacher-forced NLL (a source's states travel with its units)
    flipped = [{**ex, "states": ex["states"].flip(0)} for ex in exs]
    assert nll_per_example(model, exs) != nll_per_example(model, flipped)
    assert source_use(model, exs, "asr")["speech_info"] != 0
    with pytest.raises(ValueError, match="reads encoder states beside the speech units"):
        transcribe_units(model, units)
    with pytest.raises(ValueError, match="reads encoder states"):
        asr_metrics(model, examples)  # examples without "states"
    with pytest.raises(ValueError, match="one states tensor per utterance"):
        transcribe_units(model, units, states=states[:2])


def test_a_journaled_search_resumes_where_it_stopped_and_only_for_the_same_key(tmp_path, monkeypatch):
    """`journaled` (the fused test's resume): hypotheses written a chunk at a time; the same key reads them and
    decodes only the rest, a line a kill cut short is decoded again, another key starts afresh."""
    from zipper import tasks
    from zipper.tasks import journaled

    examples = [{"id": str(i)} for i in range(7)]
    decoded = []

    def decode(exs, bar, stop_at=None):
        if stop_at is not None and len(decoded) >= stop_at:
            raise KeyboardInterrupt
        decoded.extend(ex["id"] for ex in exs)
        bar.update(len(exs))
        return [f"hyp {ex['id']}" for ex in exs]

    journal = tmp_path / "hyps" / ".test_asr_fusion.partial.jsonl"
    monkeypatch.setattr(tasks, "JOURNAL_CHUNK", 2)
    with pytest.raises(KeyboardInterrupt):
        journaled(lambda exs, bar: decode(exs, bar, stop_at=4), examples, journal, "k1", "test")
    assert decoded == ["0", "1", "2", "3"] and len(journal.read_text().splitlines()) == 5
    with journal.open("a") as f:
        f.write('{"i": 4, "hy')  # cut short by a kill
    assert journaled(decode, examples, journal, "k1", "test") == [f"hyp {i}" for i in range(7)]
    assert decoded == ["0", "1", "2", "3", "4", "5", "6"]
    assert journaled(decode, examples, journal, "k1", "test") == [f"hyp {i}" for i in range(7)]
    assert len(decoded) == 7  # all read back
    assert journaled(decode, examples, journal, "k2", "test") == [f"hyp {i}" for i in range(7)]
    assert len(decoded) == 14  # other weights or settings: decoded again
