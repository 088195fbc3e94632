"""ASR and TTS with a zipped speech+text model: inference and evaluation on held-out examples.

ASR: [speech units] -> text, scored by WER/CER against the gold text (towers.scoring, jiwer 4).
TTS: [text] -> speech units -> audio (codec), scored by an independent judge (Whisper base) against
the gold text and against the judge's transcript of the reference recording (the paper's two references).
Under several processes the metrics shard their utterances across ranks and gather the outputs
(`zipper.distributed`), so every rank returns the same numbers a single process would.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import torch

from towers.chunking import CHUNK_CHARS, CHUNK_SECONDS, speech_chunks, text_chunks
from towers.speech_lm import pad_rows
from zipper.ctc_beam import FUSION_ALPHA, FUSION_BEAM, FUSION_BETA
from zipper.data import reads_states, speech_segment, text_ids
from zipper.distributed import map_sharded
from zipper.model import Segment


def _chunks(items: Sequence, n: int):
    for i in range(0, len(items), n):
        yield items[i:i + n]


@torch.no_grad()
def transcribe_units(model, units: Sequence[torch.Tensor], num_beams: int = 1, batch_size: int = 8,
                     max_new_tokens: int = 96, progress: bool = False, ctc_weight: float = 0.0,
                     states: Sequence[torch.Tensor] | None = None) -> list[str]:
    """Speech units (one LongTensor per utterance; with a zip that reads them, ``states``: each utterance's
    encoder states, zipper/features.py) -> transcripts. Generation stops at the text tower's EOS
    or after ``len(units) // 3 + 10`` tokens (at most ``max_new_tokens``), each utterance by its own length,
    so a batch gives what one utterance at a time does (greedy). ``ctc_weight`` > 0: joint CTC/attention
    beam search with the zip's CTC head (zipper/ctc_prefix.py)."""
    from tqdm.auto import tqdm

    tx = model.tower("text")
    out: list[str] = []
    step = 1 if num_beams > 1 or ctc_weight else batch_size
    for chunk, chunk_states in tqdm(list(_state_chunks(units, states, step)), desc="transcribing",
                                    disable=not progress):
        # ~25 units/s of speech carry ~3 words/s (~4 tokens): a budget of units/3 + 10 tokens is ample
        budgets = [min(max_new_tokens, len(u) // 3 + 10) for u in chunk]
        gen = model.generate([speech_segment(model, chunk, chunk_states)], ["text"], max_new_tokens=max(budgets),
                             num_beams=num_beams, ctc_weight=ctc_weight)[0]
        for row, m, budget in zip(gen.input_ids, gen.attention_mask, budgets):  # each row cut at its own budget
            out.append(tx.tokenizer.decode(row[m.bool()][:budget].tolist(), skip_special_tokens=True).strip())
    return out


@torch.no_grad()
def ctc_transcribe_units(model, units: Sequence[torch.Tensor], batch_size: int = 8,
                         states: Sequence[torch.Tensor] | None = None) -> list[str]:
    """Speech units (and ``states``, as for `transcribe_units`) -> transcripts by the zip's auxiliary CTC head
    alone (best path; zipper/ctc.py).

    A diagnostic beside the attention decoder: it shows what the speech memory itself encodes."""
    from zipper.ctc import chars_text, ctc_greedy

    tx = model.tower("text")
    if model.config.ctc_units == "chars":
        decode = chars_text
    else:
        def decode(row):
            return tx.tokenizer.decode(row, skip_special_tokens=True).strip()
    out: list[str] = []
    for chunk, chunk_states in _state_chunks(units, states, batch_size):
        _, history, _ = model.run_segments([speech_segment(model, chunk, chunk_states)])
        for row in ctc_greedy(model.ctc_log_probs("speech", "text", history[0]), history[0].mask):
            out.append(decode(row))
    return out


@torch.no_grad()
def fused_transcribe_units(model, units: Sequence[torch.Tensor], beam: int = FUSION_BEAM,
                           alpha: float = FUSION_ALPHA, beta: float = FUSION_BETA, unk_penalty: float = -10.0,
                           unk_letter_penalty: float = -2.0, progress=False,
                           states: Sequence[torch.Tensor] | None = None, words: Iterable[str] = (),
                           batch_size: int = 8) -> list[str]:
    """Speech units (and ``states``, as for `transcribe_units`) -> transcripts by CTC prefix beam search over the
    character head, every completed word scored by the zipped text decoder on the same speech (zipper/ctc_beam.py).
    A word is known (no ``unk_penalty``) if it is a whole-word token of the text tower or one of ``words``
    (`zipper.data.corpus_words`, `zipper.ctc_beam.read_word_list`). ``batch_size`` utterances are searched at once,
    their decoder requests scored together (`zipper.text_scorer.score_together`); each search is the one it would
    be alone, its scores equal up to float rounding. ``progress``: a progress bar, or one to tick (a tqdm)."""
    from tqdm.auto import tqdm

    from zipper.ctc import CTC_CHARS
    from zipper.ctc_beam import Lexicon, prefix_beam_search
    from zipper.text_scorer import score_together

    if not has_ctc(model) or model.config.ctc_units != "chars":
        raise ValueError("fused CTC decoding needs a character CTC head on speech->text (ctc_units: 'chars')")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    lexicon = Lexicon.from_tokenizer(model.tower("text").tokenizer, CTC_CHARS, words) if unk_penalty else None
    inputs = enumerate(fused_search_inputs(model, units, states))
    out: list[str] = [""] * len(units)
    active: dict[int, tuple] = {}  # utterance -> (its search, its scorer, the texts it asks for)
    bar = progress if hasattr(progress, "update") else tqdm(total=len(units), desc="transcribing (CTC + decoder)",
                                                             disable=not progress)

    def answer(i: int, search, scorer, scores) -> None:
        try:
            texts, ended, exact = search.send(scores)
            while not exact:  # upper bounds cost no forward: answered at once, so every search waits on scores
                texts, ended, exact = search.send(scorer.bounds(texts, ended))
            active[i] = (search, scorer, (texts, ended))
        except StopIteration as done:
            active.pop(i, None)
            out[i] = done.value
            bar.update()

    def fill() -> None:
        while len(active) < batch_size and (nxt := next(inputs, None)) is not None:
            i, (log_probs, scorer) = nxt
            answer(i, prefix_beam_search(log_probs, CTC_CHARS, beam=beam, alpha=alpha, beta=beta, lexicon=lexicon,
                                         unk_penalty=unk_penalty, unk_letter_penalty=unk_letter_penalty, bounds=True),
                   scorer, None)

    fill()
    while active:
        asking = list(active.items())
        scores = score_together([(scorer, *request) for _, (_, scorer, request) in asking])
        for (i, (search, scorer, _)), s in zip(asking, scores):
            answer(i, search, scorer, s)
        fill()
    if bar is not progress:  # a bar given is its caller's to close
        bar.close()
    return out


@torch.no_grad()
def fused_search_inputs(model, units: Sequence[torch.Tensor], states: Sequence[torch.Tensor] | None = None):
    """Per utterance, what the fused search reads: the CTC head's log-probs, (M, 29) float64 numpy over the frames
    that hold speech, and the decoder's `TextScorer` over that speech (its keys/values computed once)."""
    from zipper.text_scorer import TextScorer

    for u, s in _state_chunks(units, states, 1):
        _, history, _ = model.run_segments([speech_segment(model, u, s)])
        log_probs = model.ctc_log_probs("speech", "text", history[0])[0][history[0].mask[0].bool()]  # (M, 29)
        yield log_probs.double().cpu().numpy(), TextScorer(model, model.memory_for("text", history))


def _state_chunks(units: Sequence, states: Sequence | None, n: int):
    """Chunks of ``n`` utterances: (units, their states or None)."""
    if states is not None and len(states) != len(units):
        raise ValueError(f"give one states tensor per utterance: {len(states)} for {len(units)} utterances")
    for i in range(0, len(units), n):
        yield units[i:i + n], None if states is None else states[i:i + n]


def speech_inputs(model, codec, waves: Sequence[tuple]) -> tuple[list[torch.Tensor], list[torch.Tensor] | None]:
    """Clips ``[(wave, sample_rate), ...]`` -> what a zip reads of them: their units, and for a zip that reads
    encoder states their states (else None), the units then those of the states, from one encoder run."""
    from zipper.data import states_and_units

    if not reads_states(model):
        return [codec.encode(w, sr) for w, sr in waves], None
    states, units = map(list, zip(*(states_and_units(codec, w, sr) for w, sr in waves))) if waves else ([], [])
    return units, states


def transcribe_pieces(model, codec, waves: Sequence[tuple], chunk_seconds: float = CHUNK_SECONDS,
                      fusion: dict | None = None, num_beams: int = 1, progress: bool = False) -> list[list[dict]]:
    """Recordings ``[(wave, sample_rate), ...]`` -> for each, its pieces ``{"start", "end", "text"}`` (seconds).
    A recording longer than ``chunk_seconds`` is cut at its pauses (towers.chunking.speech_chunks; 0: whole, however
    long) and each piece transcribed alone. ``fusion``: keyword arguments of `fused_transcribe_units` (beam, alpha,
    beta, words) to decode by the fused CTC search; else the attention decoder with ``num_beams``. A zip that reads
    encoder states gets each piece's."""
    spans = [speech_chunks(w, sr, chunk_seconds) if chunk_seconds else [(0, len(w))] for w, sr in waves]
    units, states = speech_inputs(model, codec, [(w[a:b], sr) for (w, sr), ss in zip(waves, spans) for a, b in ss])
    if fusion is not None:
        texts = iter(fused_transcribe_units(model, units, progress=progress, states=states, **fusion))
    else:
        texts = iter(transcribe_units(model, units, num_beams=num_beams, states=states, progress=progress))
    return [[{"start": round(a / sr, 2), "end": round(b / sr, 2), "text": next(texts)} for a, b in ss]
            for (_, sr), ss in zip(waves, spans)]


def transcribe_audio(model, codec, waves: Sequence[tuple], **kwargs) -> list[str]:
    """Recordings ``[(wave, sample_rate), ...]`` -> one transcript each: the texts of its pieces
    (`transcribe_pieces`, which takes the same keyword arguments), joined."""
    return [" ".join(p["text"] for p in ps if p["text"]) for ps in transcribe_pieces(model, codec, waves, **kwargs)]


def has_ctc(model) -> bool:
    return "speech->text" in getattr(getattr(model, "config", None), "ctc_directions", [])


@torch.no_grad()
def speak_units(model, texts: Sequence[str], batch_size: int = 8, units_per_second: float = 25.0,
                seconds_per_word: float = 0.64, do_sample: bool = False, temperature: float = 1.0, top_k: int = 0,
                generator: torch.Generator | None = None, guidance: float = 0.0,
                prompts: Sequence[str] | None = None, repeat_ngram: int = 0) -> list[torch.Tensor]:
    """Texts -> generated speech units (unit ids, specials removed). Generation stops at the speech
    tower's EOS or after ``seconds_per_word`` x words (+ 25 units) at the codec's ``units_per_second``, each
    text by its own word count, so a batch gives what one text at a time does (greedy).
    ``prompts``: read before each text (a voice name, e.g. ``"piper-joe: "``) and not counted in its budget.
    ``guidance``: classifier-free guidance against the speech tower alone (zipper/generation.py).
    ``repeat_ngram`` n > 0: each output is cut where it starts repeating itself (`cut_repeat`)."""
    if not (isinstance(repeat_ngram, int) and repeat_ngram >= 0) or repeat_ngram == 1:
        raise ValueError(f"repeat_ngram must be 0 (off) or an integer >= 2, got {repeat_ngram!r}")
    sp, tx = model.tower("speech"), model.tower("text")
    texts = list(texts)
    prompts = [""] * len(texts) if prompts is None else list(prompts)
    if len(prompts) != len(texts):
        raise ValueError(f"give one prompt per text: {len(prompts)} prompts for {len(texts)} texts")
    out: list[torch.Tensor] = []
    start = model.start_ids("text")
    for chunk in _chunks(list(zip(prompts, texts)), batch_size):
        ids, mask = pad_rows([text_ids(tx, p + t, start=start) for p, t in chunk], tx.pad_token_id)
        budgets = [int(len(t.split()) * seconds_per_word * units_per_second + 25) for _, t in chunk]
        gen = model.generate([Segment("text", ids, mask)], ["speech"], max_new_tokens=max(budgets), do_sample=do_sample,
                             temperature=temperature, top_k=top_k, generator=generator, guidance=guidance)[0]
        for row, m, budget in zip(gen.input_ids, gen.attention_mask, budgets):  # a row past its budget is cut there
            units = sp.tokenizer.decode(torch.cat([torch.tensor([sp.bos_token_id]), row[m.bool()][:budget].cpu()]))
            out.append(cut_repeat(units, repeat_ngram) if repeat_ngram else units)
    return out


def speak_text(model, codec, text: str, chunk_chars: int = CHUNK_CHARS, prompt: str = "",
               pause_seconds: float = 0.25, **kwargs) -> tuple[torch.Tensor, int, list[torch.Tensor]]:
    """Text -> (wave, sample rate, the units of each piece). Text longer than ``chunk_chars`` is spoken in pieces
    (towers.chunking.text_chunks: whole sentences while they fit), each decoded alone and the waves joined with
    ``pause_seconds`` of silence (``chunk_chars`` 0: whole, however long). ``prompt``: read before each piece (a voice
    name); ``kwargs``: `speak_units`'. Pieces that give no units are left out; with none at all, the wave is empty."""
    pieces = text_chunks(text, chunk_chars) if chunk_chars else [" ".join(text.split())]
    units = speak_units(model, pieces, units_per_second=codec.units_per_second, prompts=[prompt] * len(pieces),
                        **kwargs)
    waves, sr = [], codec.sample_rate
    for u in units:
        if len(u):
            wave, sr = codec.decode(u)
            if waves:
                waves.append(torch.zeros(int(pause_seconds * sr)))
            waves.append(torch.as_tensor(wave).float())
    return (torch.cat(waves) if waves else torch.zeros(0)), sr, units


def cut_repeat(units: torch.Tensor, n: int) -> torch.Tensor:
    """(L,) unit ids -> the prefix before the first ``n``-gram that already occurred earlier in them, or
    ``units`` unchanged. A greedy decoder that fails to stop falls into a loop that repeats a phrase exactly
    ("for it is for it is ..."), and the judge then hears the phrase over and over; cutting at the second
    occurrence keeps one copy. A token never depends on later ones, so cutting after decoding gives what
    stopping during it would. An n-gram of one unit repeated (a held sound or a pause) does not count."""
    seen: set[tuple[int, ...]] = set()
    u = units.tolist()
    for p in range(len(u) - n + 1):
        gram = tuple(u[p:p + n])
        if gram in seen and len(set(gram)) > 1:
            return units[:p]
        seen.add(gram)
    return units


@torch.no_grad()
def nll_per_example(model, examples: Sequence[dict], task: str = "asr", batch_size: int = 8) -> list[tuple[float, int]]:
    """Teacher forcing, per example: (target NLL summed over its loss tokens, number of loss tokens). The
    target is the text for ``task="asr"`` and the speech units for ``task="tts"``."""
    from zipper.data import make_segments

    out = []
    for chunk in _chunks(list(examples), batch_size):
        o = model(make_segments(model, chunk, task))
        out += [(float(s), int(n)) for s, n in zip(o.row_nll, o.row_loss_tokens)]
    return out


# task -> (the source field swapped between examples, the target's name, the source's name)
_SOURCE = {"asr": ("units", "text", "speech"), "tts": ("text", "unit", "text")}


def source_use(model, examples: Sequence[dict], task: str = "asr", batch_size: int = 8) -> dict:
    """How much the zip reads its source: the target's NLL (nats per token, teacher-forced) with each
    example's own source, and with the next example's source (the list rotated by one); the difference is
    ``speech_info`` (ASR: text given speech) or ``text_info`` (TTS: units given text). Near 0 means the
    target is predicted from its own tower alone; a far more sensitive sign of a zip starting to listen
    (or to read) than a WER near 100%. Keys for ASR: text_nll, text_nll_other_speech, speech_info; for TTS:
    unit_nll, unit_nll_other_text, text_info."""
    if task not in _SOURCE:
        raise ValueError(f"task must be one of {sorted(_SOURCE)}, got {task!r}")
    if len(examples) < 2:
        return {}
    field, target, source = _SOURCE[task]
    swapped = [field, "states"] if task == "asr" and "states" in examples[0] else [field]  # a source's states go with it
    other = [{**ex, **{k: examples[(i + 1) % len(examples)][k] for k in swapped}} for i, ex in enumerate(examples)]
    own, wrong = (map_sharded(lambda exs: nll_per_example(model, exs, task, batch_size), list(x))
                  for x in (examples, other))
    n = sum(c for _, c in own)  # the same targets in both, so the same token count
    nll_own, nll_wrong = sum(s for s, _ in own) / n, sum(s for s, _ in wrong) / n
    return {f"{target}_nll": round(nll_own, 4), f"{target}_nll_other_{source}": round(nll_wrong, 4),
            f"{source}_info": round(nll_wrong - nll_own, 4)}


JOURNAL_CHUNK = 32  # utterances a journaled search writes at a time (`journaled`): a stop loses at most these


def decode_key(model, settings: dict, examples: Sequence[dict]) -> str:
    """What a search's hypotheses depend on: the model's weights, the search's settings and the utterances (their
    ids, references, units and states), as one sha256."""
    import hashlib
    import json

    h = hashlib.sha256(json.dumps(settings, sort_keys=True, default=sorted).encode())
    for name, t in [*model.named_parameters(), *model.named_buffers()]:
        h.update(name.encode())
        h.update(_bytes(t))
    for ex in examples:
        h.update(json.dumps([ex.get("id"), ex.get("text")]).encode())
        for field in ("units", "states"):
            if ex.get(field) is not None:
                h.update(_bytes(torch.as_tensor(ex[field])))
    return h.hexdigest()


def _bytes(t: torch.Tensor):
    """A tensor's bytes as they are (no copy for a contiguous CPU tensor), for a hash."""
    return t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy()


def journaled(decode, examples: list[dict], path: Path, key: str, desc: str) -> list[str]:
    """``decode(examples, bar)`` over ``examples``, `JOURNAL_CHUNK` at a time (it ticks the progress bar ``bar``
    once an example), each chunk's hypotheses appended to the journal ``path`` (`towers.journal`) as it ends; the
    same call after a stop decodes only what the journal lacks, one of another ``key`` (other weights, settings or
    utterances) is started again."""
    from tqdm.auto import tqdm

    from towers.journal import read_journal, start_journal, write_entry

    kept = read_journal(path, key, lambda i, e: 0 <= e["i"] < len(examples) and isinstance(e["hyp"], str)) or []
    done = {e["i"]: e["hyp"] for e in kept}
    if done:
        print(f"[zipper] {len(done)} of {len(examples)} hypotheses read from {path} (an interrupted search)",
              flush=True)
    todo = [i for i in range(len(examples)) if i not in done]
    try:
        with start_journal(path, key, kept) as f, tqdm(total=len(examples), initial=len(done), desc=desc) as bar:
            for at in range(0, len(todo), JOURNAL_CHUNK):
                chunk = todo[at:at + JOURNAL_CHUNK]
                for i, h in zip(chunk, decode([examples[i] for i in chunk], bar)):
                    done[i] = h
                    write_entry(f, {"i": i, "hyp": h})
    except BaseException as e:  # Ctrl-C above all: say what is kept
        e.add_note(f"{len(done)} of {len(examples)} hypotheses are kept in {path}: the same command resumes there")
        raise
    return [done[i] for i in range(len(examples))]


def asr_metrics(model, examples: Sequence[dict], num_beams: int = 1, batch_size: int = 8, show: int = 0,
                fusion: dict | None = None, utts: bool = False, journal: Path | None = None) -> dict:
    """WER/CER of the attention decoder (``num_beams``), or with ``fusion`` (fused_transcribe_units'
    beam/alpha/beta) of CTC prefix beam search + decoder word scores, overall and, when the examples
    name several voices, ``by_voice``. Greedy attention decoding also reports the CTC head's own WER/CER
    and the teacher-forced speech_info. ``utts``: also every utterance's ``{"id", "voice", "ref", "hyp"}``
    (and ``ctc_hyp``) under ``"utts"``, in the examples' order. ``journal`` (a path; one process): the fused
    search, seconds an utterance, keeps its hypotheses there as it goes and resumes from them (`journaled`)."""
    from towers.scoring import by_voice, cer, rates, wer
    from zipper.distributed import rank_and_world

    def inputs(exs: list[dict]) -> dict:  # units, and encoder states for a zip that reads them
        return {"units": [ex["units"] for ex in exs], "states": [ex.get("states") for ex in exs]
                if reads_states(model) else None}

    if fusion is not None:
        def decode(exs, bar=None):  # bar: the journal's progress bar, ticked once an utterance
            return fused_transcribe_units(model, **inputs(exs), **{**fusion, **({} if bar is None else {"progress": bar})})
    else:
        def decode(exs):
            return transcribe_units(model, **inputs(exs), num_beams=num_beams, batch_size=batch_size)
    if fusion is not None and journal is not None and rank_and_world()[1] == 1:
        settings = {k: v for k, v in fusion.items() if k != "progress"}
        hyps = journaled(decode, list(examples), journal, decode_key(model, settings, examples),
                         "transcribing (CTC + decoder)")
    else:
        hyps = map_sharded(decode, list(examples))
    refs = [ex["text"] for ex in examples]
    metrics = rates(refs, hyps)
    voices = [ex.get("voice") for ex in examples]
    if None not in voices and len(set(voices)) > 1:
        metrics["by_voice"] = by_voice(refs, hyps, voices)
    extras = fusion is None and num_beams == 1  # independent of the decoder's search
    ctc_hyps = None
    if extras and has_ctc(model):
        ctc_hyps = map_sharded(lambda exs: ctc_transcribe_units(model, **inputs(exs), batch_size=batch_size),
                               list(examples))
        metrics["ctc_wer"] = round(100 * wer(refs, ctc_hyps).wer, 2)
        metrics["ctc_cer"] = round(100 * cer(refs, ctc_hyps).cer, 2)  # a character head's natural measure
    if extras:  # teacher-forced
        metrics.update(source_use(model, examples, "asr", batch_size))
    rows = [{"ref": r, "hyp": h} for r, h in zip(refs, hyps)]  # each utterance's texts: shown, and kept
    if ctc_hyps is not None:
        for row, h in zip(rows, ctc_hyps):
            row["ctc_hyp"] = h
    if show:
        metrics["examples"] = rows[:show]
    if utts:
        metrics["utts"] = [{"id": ex.get("id"), "voice": ex.get("voice"), **row} for ex, row in zip(examples, rows)]
    return metrics


def tts_metrics(model, examples: Sequence[dict], codec, judge, batch_size: int = 8, show: int = 0,
                mos_judge=None, utts: bool = False, **speak) -> dict:
    """Judge-WER of generated speech vs gold text, and vs the judge's transcript of the reference audio.

    With ``mos_judge`` (`towers.judges.MosJudge`), also DNSMOS of the generated and the reference audio
    (naturalness, 1..5; empty generations are left out of the MOS mean and counted in ``empty_outputs``).
    An example's ``text_prompt`` (a voice name, `zipper.data.make_segments`) is spoken before its text and
    is not part of what the judge is scored against. ``utts``: also every sentence's ``{"id", "text",
    "judge_heard", "reference_heard"}`` under ``"utts"``.
    ``speak``: decoding settings for `speak_units` (guidance, do_sample, temperature, top_k, generator).
    """
    from towers.audio import load_audio
    from towers.scoring import wer
    def speak_and_hear(exs: list[dict]) -> list[tuple[torch.Tensor, str, float | None]]:
        units = speak_units(model, [ex["text"] for ex in exs], batch_size=batch_size,
                            units_per_second=codec.units_per_second, prompts=[ex.get("text_prompt", "") for ex in exs],
                            **speak)
        waves = [codec.decode(u)[0].numpy() if len(u) else torch.zeros(1600).numpy() for u in units]
        mos = [mos_judge.score_one((w, codec.sample_rate))["ovrl"] if mos_judge is not None and len(u) else None
               for u, w in zip(units, waves)]
        return list(zip(units, judge.transcribe(waves), mos))

    def hear_reference(exs: list[dict]) -> list[tuple[str, float | None]]:
        waves = [load_audio(ex["audio_filepath"], target_sr=16000)[0] for ex in exs]
        mos = [mos_judge.score_one((w, 16000))["ovrl"] if mos_judge is not None else None for w in waves]
        return list(zip(judge.transcribe(waves), mos))

    texts = [ex["text"] for ex in examples]
    units, heard, mos = map(list, zip(*map_sharded(speak_and_hear, examples))) if texts else ([], [], [])
    heard_ref, mos_ref = map(list, zip(*map_sharded(hear_reference, examples))) if texts else ([], [])
    metrics = {
        "judge_wer_vs_gold": round(100 * wer(texts, heard).wer, 2),
        "judge_wer_vs_reference_transcript": round(100 * wer(heard_ref, heard).wer, 2),
        "reference_audio_judge_wer": round(100 * wer(texts, heard_ref).wer, 2),
        "mean_units": round(sum(len(u) for u in units) / max(1, len(units)), 1),
        "n_utts": len(texts),
    }
    if all("units" in ex for ex in examples):  # teacher-forced: does it read the text at all?
        metrics.update(source_use(model, examples, "tts", batch_size))
    if mos_judge is not None and texts:
        scored = [m for m in mos if m is not None]
        metrics.update(dnsmos_ovrl=round(sum(scored) / len(scored), 3) if scored else None,
                       reference_audio_dnsmos_ovrl=round(sum(mos_ref) / len(mos_ref), 3),
                       empty_outputs=len(mos) - len(scored))
    rows = [{"text": t, "judge_heard": h} for t, h in zip(texts, heard)]
    if show:
        metrics["examples"] = rows[:show]
    if utts:
        metrics["utts"] = [{"id": ex.get("id"), **row, "reference_heard": r}
                           for ex, row, r in zip(examples, rows, heard_ref)]
    return metrics
