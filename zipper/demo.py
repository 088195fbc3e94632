"""`zipper demo`: the whole product, end to end, on a CPU, in about 15 minutes.

1. builds a small offline corpus (synthetic voices; test voices and sentences held out),
2. loads the real SmolLM2-135M text tower (frozen) and the shipped speech codec,
3. pretrains a tiny speech tower on unpaired speech units (cached for the next run),
4. zips them in both directions and trains the zip on ASR and TTS for a few minutes,
5. reports ASR WER on held-out voices, transcribes real human read speech (LibriVox),
6. speaks a held-out sentence to a WAV file and prints what an independent judge (Whisper base) hears.

Every number printed is measured in this run; a few CPU minutes buy a working pipeline, not a
good model (see recipes/RESULTS.md for the full-size runs and the commands that made them).
"""
from __future__ import annotations

import json
import shutil
import math
import time
from pathlib import Path


def _say(step: int, text: str) -> None:
    print(f"\n[{step}/6] {text}", flush=True)


def run_demo(out: str = "runs/demo", minutes: float = 5.0, corpus_hours: float = 0.25, *,
             text_tower: str = "smollm2-135m", codec_name: str = "default", tower_minutes: float = 2.0,
             eval_utts: int = 40) -> int:
    """The six steps above. The keyword options exist for the smoke test (tests/zipper/test_demo.py), which
    runs the same code on a tiny text tower, codec and corpus; the defaults are the built-in ones."""
    if not (math.isfinite(minutes) and minutes >= 0):  # before the slow corpus and tower stages
        raise ValueError(f"--minutes must be a number >= 0, got {minutes}")

    from towers import load_tower
    from towers.audio import save_audio
    from towers.corpus import build_corpus
    from towers.judges import WhisperJudge
    from towers.scoring import wer
    from zipper.data import librivox_examples, load_split
    from towers.codec import load_codec
    from zipper.recipe import RecipeConfig, run
    from zipper.tasks import asr_metrics, speak_units, transcribe_units

    t0 = time.time()
    root = Path(out)
    corpus, tower_dir = root / "corpus", root / "speech-tower"

    _say(1, f"corpus: {corpus_hours} h of offline synthetic speech in {corpus} (cached after the first run)")
    if not (corpus / "test.jsonl").exists():
        build_corpus(corpus, hours=corpus_hours)
    info = json.loads((corpus / "corpus.json").read_text())
    print(f"  utterances per split: {info['count_by_split']}; hours: {info['hours_by_split']}")
    print(f"  held-out test voices (never trained on): {', '.join(info['voices']['test'])}")

    _say(2, "towers: the real SmolLM2-135M text tower (frozen) and the shipped speech codec")
    codec = load_codec(codec_name)
    text = load_tower(text_tower, modality="text")
    print(f"  text tower: {text}")
    print(f"  codec: {codec.vocab_size} units, {codec.units_per_second:g} units/s")

    base = dict(corpus=str(corpus), codec=codec_name, text_tower=text_tower, speech_tower=str(tower_dir), seed=0,
                eval_utts=eval_utts)
    _say(3, f"speech tower: a tiny Llama over speech units, pretrained by next-unit prediction ({tower_dir})")
    if not (tower_dir / "config.json").exists():
        res = run(RecipeConfig(task="pretrain_speech", out=str(root / "pretrain"), speech_tower_size="tiny",
                               steps=400, batch_size=16, lr=1e-3, warmup_steps=20, max_minutes=tower_minutes,
                               command="zipper demo", **base), results_md=None)
        print(f"  held-out unit perplexity: {res['metrics']['heldout_unit_ppl_init']} at init -> "
              f"{res['metrics']['heldout_unit_ppl']} after {res['steps']} steps")
    else:
        print("  cached from an earlier run")

    _say(4, f"zip: both directions (ASR and TTS batches in turn), {minutes:g} minutes of training")
    # about one step per second on 2 cores: size the schedule to the budget, and let the budget cap it
    zip_dir = root / "zip"
    if (zip_dir / "model").exists():  # an earlier demo finished: train anew (an interrupted one resumes)
        shutil.rmtree(zip_dir)
    res = run(RecipeConfig(task="joint", out=str(zip_dir), directions=["speech->text", "text->speech"],
                           cross_attention_interval_text=6, cross_attention_interval_speech=1, ffn_mult=2,
                           steps=max(20, int(60 * minutes)), max_minutes=minutes, batch_size=8, lr=5e-4, warmup_steps=30,
                           eval_beams=[1], command="zipper demo", **base), results_md=None)
    model_dir = zip_dir / "model"
    print(f"  trained {res['steps']} steps in {res['wall_s']} s; trainable {res['params']['trainable']:,} / "
          f"frozen {res['params']['frozen']:,} parameters")

    from zipper.model import ZipperModel

    model = ZipperModel.from_pretrained(model_dir, towers=[load_tower(tower_dir), text])
    test = load_split(corpus, "test", codec, keep=lambda rows: rows[:eval_utts])  # the rows the recipe cached
    _say(5, "ASR on held-out voices and sentences, and on real human read speech")
    m = res["metrics"].get("test_asr_beam1") or asr_metrics(model, test)
    print(f"  held-out synthetic voices: WER {m['wer']}%  CER {m['cer']}%  ({m['n_utts']} utterances)")
    print("  (WER = (substitutions + deletions + insertions) / reference words: above 100% means the model still\n"
          "   writes fluent text of its own rather than the transcript; it falls with training, see recipes/)")
    tts = res["metrics"].get("test_tts")
    if tts and tts["n_utts"] == m["n_utts"]:  # the TTS test's reference audio: these very recordings
        print(f"  for scale: Whisper-base (trained on 680,000 h of speech) transcribes the same recordings at WER "
              f"{tts['reference_audio_judge_wer']}%")
    real = librivox_examples(codec)
    if real:
        hyp = transcribe_units(model, [real[0]["units"]])[0]
        w = wer([real[0]["text"]], [hyp]).wer
        print(f"  LibriVox clip {real[0]['id']}:\n    reference:  {real[0]['text']}\n    zipper:     {hyp}\n"
              f"    WER {100 * w:.1f}%")

    _say(6, "TTS: speak a held-out sentence and let an independent judge (Whisper base) listen")
    sentence = test[0]["text"]
    units = speak_units(model, [sentence], units_per_second=codec.units_per_second)[0]
    wav = root / "demo_tts.wav"
    if len(units):
        wave, sr = codec.decode(units)
        save_audio(wav, wave.numpy(), sr, overwrite=True)
        heard = WhisperJudge().transcribe([wave.numpy()])[0]
        print(f"  text:        {sentence}\n  wrote:       {wav} ({len(units)} units, {len(wave) / sr:.1f} s)\n"
              f"  judge hears: {heard}\n  judge WER:   {100 * wer([sentence], [heard]).wer:.1f}%")
    else:
        print("  the model produced no speech units yet (train longer)")
    if tts:
        print(f"  over {tts['n_utts']} held-out sentences: judge WER {tts['judge_wer_vs_gold']}% vs gold text "
              f"(the reference recordings score {tts['reference_audio_judge_wer']}%)")

    print(f"\nDone in {(time.time() - t0) / 60:.1f} min. These are minutes-of-CPU numbers. Full-size recipes and "
          "their measured results:\n  recipes/README.md, recipes/RESULTS.md  (e.g. `zipper train recipes/configs/asr_small.json`)\n"
          f"  try it: zipper transcribe /usr/share/pocketsphinx/test/data/librivox/*.wav --model {model_dir}")
    return 0
