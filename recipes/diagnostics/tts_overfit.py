"""Can the TTS zip memorise N training sentences, and then say them so that the judge hears them?

    python recipes/diagnostics/tts_overfit.py --config recipes/configs/tts_medium_whisper_proj_guided.json \
        --n 16 --steps 500 --out runs/overfit-tts/n16-frozen

Trains the config's TTS zip on the first N training utterances only, with the speech tower frozen by
default (``--train-speech-tower`` unfreezes it, as the config does). With the tower frozen, only the zip's
blocks learn. Their gated feed-forward layers can memorise a sentence's continuation from the unit history,
but telling the N sentences apart takes reading the text through the cross-attention. A trained tower
can memorise the units without the text at all (recipes/diagnostics/README.md, "Can the TTS zip speak at all?").
At the end it speaks the same N sentences, decodes them with the codec and reports what the judge hears
(judge-WER against the gold text, with the reference recordings' own judge-WER beside it) and
``text_info`` (teacher-forced nats a unit that the matched text saves, `zipper.tasks.source_use`), then
the same on N held-out test sentences. A zip that memorises its N sentences (judge-WER far below 100%)
shows that the TTS path (training, generation, unit decoding) can speak; one that cannot even do that
points at the path, not at the data or the budget.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch

from towers import load_tower
from towers.codec import load_codec
from towers.judges import WhisperJudge
from zipper.data import batches, load_split, make_segments
from zipper.recipe import RecipeConfig, build_zip
from zipper.tasks import source_use, tts_metrics
from zipper.train import TrainConfig, fit


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True, help="a TTS recipe config (corpus, codec, towers, zip shape)")
    p.add_argument("--n", type=int, default=16, help="training sentences to memorise (also held-out ones scored)")
    p.add_argument("--steps", type=int, default=400, help="optimizer steps")
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate")
    p.add_argument("--batch-size", type=int, default=8, help="utterances a step")
    p.add_argument("--eval-every", type=int, default=100, help="teacher-forced text_info on the N every this many steps")
    p.add_argument("--train-speech-tower", action="store_true", help="unfreeze the speech tower (default: frozen)")
    p.add_argument("--guided-attention", type=float, help="override the config's guided-attention weight (0: off)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--out", required=True, help="output folder (checkpoints, results.json)")
    a = p.parse_args(argv)
    if a.n < 2 or a.steps < 1:  # text_info compares each sentence with another's text: it needs two
        p.error(f"--n must be >= 2 and --steps >= 1, got --n {a.n} --steps {a.steps}")
    torch.set_num_threads(a.threads)
    cfg = dataclasses.replace(RecipeConfig.from_json(a.config), train_speech_tower=a.train_speech_tower)
    if a.guided_attention is not None:
        cfg = dataclasses.replace(cfg, guided_attention=a.guided_attention)
    if cfg.task != "tts":
        raise SystemExit(f"{a.config}: task is {cfg.task!r}, this probe needs a 'tts' config")
    codec = load_codec(cfg.codec)
    train = load_split(cfg.corpus, "train", codec, keep=lambda rows: rows[: a.n])
    test = load_split(cfg.corpus, "test", codec, keep=lambda rows: rows[: a.n])
    for ex in train:
        ex["units"] = ex["units"][: cfg.max_units]  # as the recipe trains
    model = build_zip(cfg, load_tower(cfg.speech_tower, modality="speech"), load_tower(cfg.text_tower, modality="text"))
    counts = model.parameter_counts()
    print(f"[tts_overfit] trainable {counts['trainable']:,} / frozen {counts['frozen']:,} parameters")

    def loss_fn(m, b):
        return m(make_segments(getattr(m, "module", m), b, "tts")).loss

    t0 = time.time()
    res = fit(model, loss_fn, lambda s: batches(train, a.batch_size, 0, s),
              TrainConfig(steps=a.steps, batch_size=a.batch_size, lr=a.lr, warmup_steps=min(50, a.steps // 10),
                          eval_every=a.eval_every, gate_lr_mult=cfg.gate_lr_mult),
              Path(a.out), eval_fn=lambda: {"train_text_info": source_use(model, train, "tts")["text_info"]},
              desc="tts overfit", end_training=False)
    train_s = time.time() - t0
    judge = WhisperJudge()
    h = res["history"]
    out = {
        "config": a.config, "n": a.n, "steps": res["steps"], "lr": a.lr, "train_speech_tower": a.train_speech_tower,
        "guided_attention": cfg.guided_attention,
        "trainable": counts["trainable"], "train_s": round(train_s),
        "loss_curve": [round(sum(h[i:i + 25]) / len(h[i:i + 25]), 3) for i in range(0, len(h), 25)],
        "evals": res["evals"],
        "train_sentences": tts_metrics(model, train, codec, judge, show=a.n),
        "test_sentences": tts_metrics(model, test, codec, judge, show=4),
    }
    Path(a.out).mkdir(parents=True, exist_ok=True)
    (Path(a.out) / "results.json").write_text(json.dumps(out, indent=1))
    print(json.dumps({k: v for k, v in out.items() if k not in ("train_sentences", "test_sentences")}, indent=1))
    for split in ("train_sentences", "test_sentences"):
        print(split, json.dumps({k: v for k, v in out[split].items() if k != "examples"}))
        for ex in out[split]["examples"][:6]:
            print("   ", ex)
    return out


if __name__ == "__main__":
    main()
