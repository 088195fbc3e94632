"""Tune the fused CTC search (zipper/ctc_beam.py): WER/CER of the CTC best path, then of each setting, on
the first N utterances of a split.

    python recipes/diagnostics/fused_tune.py MODEL_DIR SPLIT N BEAM,ALPHA,BETA,UNK_WORD,UNK_LETTER ...
    e.g. python recipes/diagnostics/fused_tune.py runs/asr-base-whisper-proj-chars-guided-model-step2400 \
             dev 20 8,0.5,3,-10,-2 32,0.7,3,-10,-2

The corpus is the one of recipes/configs/asr_base_whisper_proj_chars_guided.json (data/corpus-base), or of the
config ``FUSED_TUNE_CONFIG`` names (e.g. recipes/configs/asr_medium_whisper_proj_chars_guided_states.json). A zip that
reads encoder states (recipes/asr_states.py) gets them, as `zipper eval` gives them. Each utterance's speech runs
once, and the decoder's score of a text is computed once and shared by all the settings (a setting's search is
what `fused_transcribe_units` runs; the decoder scores texts in batches whose make-up depends on the other
settings, so scores may differ from a single run's in the last float bits). Known words: the text tower's whole-word
tokens and the corpus's training text, as `zipper eval` takes them (``FUSED_TUNE_CORPUS_WORDS=0``: the tokens
only, as before 2026-12-05's session 34); ``FUSED_TUNE_WORDS=FILE`` adds a word list's (zipper.ctc_beam.read_word_list,
as `zipper transcribe --fusion-words`). ``FUSED_TUNE_SEARCH_ERRORS=1``: for the first setting, which wrong answers are
search errors (the reference, as the CTC head spells it, scores above the answer under the search's own objective,
zipper.ctc_beam.fused_text_score) and which are the model's (the answer scores above the reference), with how
much the CTC head's and the decoder's log-probs (before alpha) of the answer exceed the reference's.
Threads: ``FUSED_TUNE_THREADS`` (default 1). The tables of
recipes/diagnostics/README.md, "Decoding with the CTC head", "Fusion weights for the states zip" and "Known words",
came from this.
"""
import os
import sys
import time

import torch

from towers.scoring import cer, wer
from zipper.cli import _load_model, _load_model_codec
from zipper.ctc import CTC_CHARS, ctc_text
from zipper.ctc_beam import Lexicon, ctc_prefix_beam_search, ctc_text_log_prob, fused_text_score, read_word_list
from zipper.data import attach_states, corpus_words, load_split, reads_states
from zipper.recipe import RecipeConfig
from zipper.tasks import ctc_transcribe_units, fused_search_inputs

torch.set_num_threads(int(os.environ.get("FUSED_TUNE_THREADS", "1")))
cfg = RecipeConfig.from_json(os.environ.get("FUSED_TUNE_CONFIG", "recipes/configs/asr_base_whisper_proj_chars_guided.json"))
model_dir, split, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
specs = [tuple(float(v) for v in spec.split(",")) for spec in sys.argv[4:]]
model, codec = _load_model(model_dir), _load_model_codec(model_dir)
examples = load_split(cfg.corpus, split, codec, keep=lambda rows: rows[:n])
states = [e["states"] for e in attach_states(examples, codec, corpus=cfg.corpus)] if reads_states(model) else None
refs, units = [e["text"] for e in examples], [e["units"] for e in examples]
hyps = ctc_transcribe_units(model, units, states=states)
print(f"CTC best path: WER {100 * wer(refs, hyps).wer:.1f} CER {100 * cer(refs, hyps).cer:.1f}", flush=True)
words = corpus_words(cfg.corpus) if os.environ.get("FUSED_TUNE_CORPUS_WORDS", "1") != "0" else set()
words |= set(read_word_list(os.environ["FUSED_TUNE_WORDS"])) if os.environ.get("FUSED_TUNE_WORDS") else set()
lexicon = Lexicon.from_tokenizer(model.tower("text").tokenizer, CTC_CHARS, words)
found: dict[tuple, list[str]] = {spec: [] for spec in specs}
search_errors = os.environ.get("FUSED_TUNE_SEARCH_ERRORS", "0") != "0"
errors = {"search": 0, "model": 0}
model_gaps = []  # per model error, answer - reference: (CTC, alpha x decoder, word bonus + unknown-word penalties)
t0 = time.time()
for i, (log_probs, scorer) in enumerate(fused_search_inputs(model, units, states)):
    memo: dict[tuple[str, bool], float] = {}

    def score_texts(texts, ended, scorer=scorer, memo=memo):  # one decoder score per text, for all settings
        todo = [t for t in dict.fromkeys(texts) if (t, ended) not in memo]
        memo.update({(t, ended): v for t, v in zip(todo, scorer(todo, ended) if todo else [])})
        return [memo[(t, ended)] for t in texts]

    for spec in specs:  # each as fused_transcribe_units runs it
        beam, alpha, beta, unk_word, unk_letter = spec
        found[spec].append(ctc_prefix_beam_search(log_probs, CTC_CHARS, score_texts, scorer.bounds, beam=int(beam),
                                                  alpha=alpha, beta=beta, lexicon=lexicon if unk_word else None,
                                                  unk_penalty=unk_word, unk_letter_penalty=unk_letter))
    if search_errors and found[specs[0]][-1] != ctc_text(refs[i]):
        beam, alpha, beta, unk_word, unk_letter = specs[0]
        kw = dict(alpha=alpha, beta=beta, lexicon=lexicon if unk_word else None, unk_penalty=unk_word,
                  unk_letter_penalty=unk_letter)
        texts = (found[specs[0]][-1], ctc_text(refs[i]))
        got, ref = (fused_text_score(log_probs, CTC_CHARS, t, score_texts, **kw) for t in texts)
        (ctc_got, ctc_ref), (dec_got, dec_ref) = ([ctc_text_log_prob(log_probs, CTC_CHARS, t) for t in texts],
                                                  score_texts(list(texts), True))
        kind = "search" if ref > got else "model"
        errors[kind] += 1
        if kind == "model":
            ctc_gap, dec_gap = ctc_got - ctc_ref, alpha * (dec_got - dec_ref)
            model_gaps.append((ctc_gap, dec_gap, got - ref - ctc_gap - dec_gap))
        print(f"  {kind} error ({got:.1f} answer, {ref:.1f} reference; of which CTC {ctc_got - ctc_ref:+.1f}, "
              f"decoder {dec_got - dec_ref:+.1f}): {texts[0]} | {refs[i]}")
    print(f"  {i + 1}/{len(units)} utterances ({(time.time() - t0) / (i + 1):.1f} s each)", flush=True)
if search_errors:
    print(f"wrong answers of {','.join(f'{v:g}' for v in specs[0])}: {errors['search']} search errors (the reference "
          f"scores higher), {errors['model']} model errors, {len(refs) - sum(errors.values())} right")
    if model_gaps:
        parts = zip(("CTC", "alpha x decoder", "word bonus + unknown-word penalties"), zip(*model_gaps))
        print("model errors, answer minus reference, summed (utterances where it favours the answer): "
              + "; ".join(f"{name} {sum(v):+.0f} ({sum(x > 0 for x in v)})" for name, v in parts))
for spec, hyps in found.items():
    print(f"{','.join(f'{v:g}' for v in spec)}: WER {100 * wer(refs, hyps).wer:.1f} CER {100 * cer(refs, hyps).cer:.1f}")
    for ref, hyp in list(zip(refs, hyps))[:3]:
        print(f"    {ref} | {hyp}")
