"""Give a trained ASR zip the Whisper encoder states beside its speech units, and train what reads them.

The units quantise Whisper-base states to 1,024 ids and lose much of what ASR needs (recipes/diagnostics/
README.md, "What limits the character CTC head?"). This script extends a trained ASR zip (unit input) with
a feature input on its speech tower (zipper/features.py: LayerNorm + a projection into the unit embeddings,
zero-initialised, so the extended zip starts exactly as the trained one) and trains that projection alone,
by the zip's character CTC loss on the speech tower (the text tower is not run: about 1 s a batch of 32 on
two CPU cores). Everything else stays as trained. Each pass over the data ends with the CTC head's greedy
WER/CER on the first ``--dev-utts`` dev utterances (and the trained zip's before any); the best pass is saved as
a zip (with the codec) that `zipper eval` and `zipper transcribe` run like any other:

    python recipes/asr_states.py --model runs/asr-base-whisper-proj-chars-guided-all-gpu/model-step2492 \\
        --config recipes/configs/asr_base_whisper_proj_chars_guided_all_gpu.json --train-utts 6000 --epochs 2 \\
        --out runs/asr-base-states
    zipper eval recipes/configs/asr_base_whisper_proj_chars_guided_all_gpu.json --model runs/asr-base-states/model

Given a zip that reads the states already (one this script made, or a ``"speech_states": true`` recipe's), it
trains that zip's feature input further (``--skip-utts`` moves on to training utterances it has not seen;
``--voices`` keeps some voices' utterances only, e.g. ``--voices flite festival``). Results (and this command) are
in ``OUT/results.json``, in the form `zipper train` writes, so that ``zipper eval CONFIG --model OUT/model --fusion
--results-md`` tests the model and appends its row to recipes/RESULTS.md. The Whisper encoder runs once per
utterance (8 to 19 utterances a second on two cores: 19 measured when this was written, 8.0 on the base corpus's
8,013 flite, festival and piper training utterances, 17 minutes, in 2026-12-07's `--voices` pass) and the states
are kept in memory (~175 kB an utterance) and cached beside the corpus (`zipper.data.attach_states`;
``--no-states-cache``: not), so that the next run on the same utterances reads them in seconds.

A pass checkpoints every ``--save-every`` steps and at each pass's end (``OUT/checkpoints``: the trained weights, the
optimizer state, the dev scores so far; safetensors + JSON); Ctrl-C or SIGTERM finishes the step and checkpoints.
The same command then resumes where it stopped and trains what an uninterrupted run would (the batch stream is
resumed at its step); other arguments are refused. ``OUT/results.json`` is written at the end and marks a finished
pass; the checkpoints are then removed.

``--train decoder`` (on a zip this script made) trains the zip's cross-attention blocks instead, by the zip's own
ASR loss (attention NLL, CTC and guidance weights as configured; the speech tower, its feature input and the CTC
head's own layer stay, but that head reads the last block's memory projection, which all three terms train): the
decoder was trained on the unit-only memory and has never read the states. It runs the text tower too (~5 s a
batch of 32 on two cores) and each pass ends with the greedy attention WER/CER on the dev utterances, which
chooses the pass to keep.

``--train tower`` trains the feature input, the speech tower itself (8.7M parameters in the base zips) and the CTC
head's own layer, by the CTC loss as ``input`` does (~2 s a batch of 32 on two cores): the states then reach the
tower's every layer, not only its input. The blocks read that tower's states too, so the attention decoder hears a
changed memory (``--train decoder`` afterwards adapts it). A zip whose speech tower was frozen is unfrozen in its
config, so that the saved zip holds the trained tower.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import shutil
import signal
import sys
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as `python recipes/asr_states.py`

from towers.corpus import read_manifest  # noqa: E402
from towers.scoring import cer, wer  # noqa: E402
from zipper.cli import _load_model_codec  # noqa: E402
from zipper.ctc import char_targets, ctc_loss  # noqa: E402
from zipper.data import attach_states, batches, make_segments, speech_segment  # noqa: E402
from zipper.features import WHISPER_STATE_DIM  # noqa: E402
from zipper.model import ZipperModel  # noqa: E402
from zipper.recipe import RecipeConfig, save_model_dir  # noqa: E402
from zipper.results import git_hash, machine  # noqa: E402
from zipper.tasks import ctc_transcribe_units, transcribe_units  # noqa: E402
from zipper.train import (StopRequest, TrainingInterrupted, latest_checkpoint, load_checkpoint,  # noqa: E402
                          model_signature, save_checkpoint)

FEATURE_DIM = WHISPER_STATE_DIM  # the states a zip reads (zipper/features.py)


def extend(model_dir: str, train: str = "input") -> ZipperModel:
    """The trained zip with a (zero) feature input on its speech tower: the same function as before. A zip that
    reads the states already (an earlier run's) is returned as it is, to train further; ``train`` "decoder" needs
    one; "tower" unfreezes the speech tower (in the config, so that the zip saves it) if the zip had it frozen."""
    old = ZipperModel.from_pretrained(model_dir)
    reads = old.config.feature_towers == ["speech"] and old.config.feature_dim == FEATURE_DIM
    frozen = dict(zip(old.config.modalities, old.config.frozen))["speech"]
    if reads and not (train == "tower" and frozen):
        return old
    if train == "decoder":
        raise SystemExit(f"{model_dir} does not read the states yet: train its feature input first (--train input)")
    if old.config.feature_towers and not reads:
        raise SystemExit(f"{model_dir} reads features on {old.config.feature_towers} (dim {old.config.feature_dim}), "
                         f"not the {FEATURE_DIM}-d Whisper states on its speech tower alone")
    if old.config.ctc_units != "chars" or "speech->text" not in old.config.ctc_directions:
        raise SystemExit(f"{model_dir} has no character CTC head on speech->text, which this training reads")
    if train == "tower" and "speech" in old.config.lora_towers:
        raise SystemExit(f"{model_dir} has LoRA on its speech tower: --train tower trains the whole tower instead")
    towers, state = [old.tower(m) for m in old.config.modalities], old.zip_state_dict()
    still_frozen = [f and not (m == "speech" and train == "tower")
                    for m, f in zip(old.config.modalities, old.config.frozen)]
    old.unzip()
    new = ZipperModel(dataclasses.replace(old.config, feature_towers=["speech"], feature_dim=FEATURE_DIM,
                                          frozen=still_frozen), towers)
    new.load_zip_state_dict({**new.zip_state_dict(), **state})
    return new


def ctc_scores(model, examples) -> dict:
    refs = [ex["text"] for ex in examples]
    hyps = ctc_transcribe_units(model, [ex["units"] for ex in examples], 32, [ex["states"] for ex in examples])
    return {"ctc_wer": round(100 * wer(refs, hyps).wer, 2), "ctc_cer": round(100 * cer(refs, hyps).cer, 2)}


@torch.no_grad()
def greedy_scores(model, examples) -> dict:
    refs = [ex["text"] for ex in examples]
    hyps = transcribe_units(model, [ex["units"] for ex in examples], batch_size=32,
                            states=[ex["states"] for ex in examples])
    return {"wer": round(100 * wer(refs, hyps).wer, 2), "cer": round(100 * cer(refs, hyps).cer, 2)}


# what each --train choice trains (parameter name prefixes; its loss: step_loss), the dev score that picks
# the pass to keep (function, key, name in results.json) and the default learning rate
TRAINED = {"input": ("feature_inputs",), "tower": ("feature_inputs", "towers.speech", "ctc_heads"),
           "decoder": ("blocks", "input_projections")}
DEV = {"input": (ctc_scores, "ctc_cer", "dev_ctc"), "tower": (ctc_scores, "ctc_cer", "dev_ctc"),
       "decoder": (greedy_scores, "wer", "dev_greedy")}
LR = {"input": 1e-3, "tower": 1e-4, "decoder": 1e-4}


def step_loss(model, batch: list[dict], train: str) -> torch.Tensor:
    if train == "decoder":  # the zip's own ASR loss over [speech + states, text]
        return model(make_segments(model, batch, "asr")).loss
    seg = speech_segment(model, [ex["units"] for ex in batch], [ex["states"] for ex in batch])
    _, hist, _ = model.run_segments([seg])  # the speech tower alone (the text tower is not run)
    return ctc_loss(model.ctc_log_probs("speech", "text", hist[0]), hist[0].mask,
                    char_targets([ex["text"] for ex in batch]))


def of_voices(rows: list[dict], voices: list[str] | None) -> list[dict]:
    """The rows spoken by ``voices`` (names, or engines: "flite" is every "flite-..." voice), in their order; all
    rows if None."""
    if voices is None:
        return rows
    kept = [r for r in rows if any(r["voice"] == v or r["voice"].startswith(v + "-") for v in voices)]
    if not kept:
        raise SystemExit(f"--voices {' '.join(voices)}: no training utterance is spoken by these; the split's voices: "
                         f"{', '.join(sorted({r['voice'] for r in rows}))}")
    return kept


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="a trained ASR zip (unit input, character CTC head)")
    p.add_argument("--config", required=True, help="the recipe config it was trained with (corpus, codec)")
    p.add_argument("--out", required=True, help="output folder: model/ (the extended zip + codec) and results.json")
    p.add_argument("--train", choices=sorted(TRAINED), default="input",
                   help="input: the feature input, by the CTC loss (extends a unit zip); tower: the feature input, "
                        "the speech tower and the CTC head's layer, by the CTC loss; decoder: the cross-attention "
                        "blocks, by the zip's ASR loss (a zip this script made)")
    p.add_argument("--train-utts", type=int, default=6000, help="N training utterances (after --skip-utts)")
    p.add_argument("--skip-utts", type=int, default=0,
                   help="start after the first K training utterances (to continue a run of this script on new ones)")
    p.add_argument("--voices", nargs="+", default=None, metavar="VOICE",
                   help="train only on these voices' utterances, chosen before --skip-utts and --train-utts count: "
                        "voice names (flite-slt) or engines (flite: every voice named flite-...)")
    p.add_argument("--dev-utts", type=int, default=200, help="the first N dev utterances (choose the best pass)")
    p.add_argument("--epochs", type=int, default=2, help="passes over the training utterances (>= 1)")
    p.add_argument("--batch-size", type=int, default=32, help="utterances a step")
    p.add_argument("--lr", type=float, default=None,
                   help="AdamW learning rate (weight decay 0.01); default 1e-3 for --train input, 1e-4 for tower "
                        "and decoder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save-every", type=int, default=50,
                   help="checkpoint every N steps (and at each pass's end) in OUT/checkpoints, which the same command "
                        "resumes from")
    p.add_argument("--no-states-cache", action="store_true",
                   help="do not cache the encoder states beside the corpus (by default they are, ~175 kB an "
                        "utterance, and read again by the next run on the same utterances)")
    return p


# the arguments that fix what a pass trains: a resume must give the same ones (--no-states-cache may change)
SAME_ON_RESUME = ("model", "config", "train", "train_utts", "skip_utts", "voices", "dev_utts", "epochs", "batch_size",
                  "lr", "seed")


def main(argv=None) -> int:
    p = build_parser()
    a = p.parse_args(argv)
    if min(a.epochs, a.train_utts, a.dev_utts, a.batch_size, a.save_every) < 1 or a.skip_utts < 0:
        p.error("--epochs, --train-utts, --dev-utts, --batch-size and --save-every must be >= 1, --skip-utts >= 0")
    out, ckpt_dir = Path(a.out), Path(a.out) / "checkpoints"
    if (out / "results.json").exists():
        raise SystemExit(f"{out} holds a finished pass ({out / 'results.json'}): choose another --out")
    last = latest_checkpoint(ckpt_dir)
    if last is None and (out / "model").exists():
        raise SystemExit(f"{out / 'model'} exists and {ckpt_dir} has no checkpoint to resume: choose another --out")
    a.lr = a.lr if a.lr is not None else LR[a.train]
    args = {k: getattr(a, k) for k in SAME_ON_RESUME}
    torch.manual_seed(a.seed)
    cfg = RecipeConfig.from_json(a.config)
    t0, commit = time.time(), git_hash()
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    model = extend(a.model, a.train)
    codec = _load_model_codec(a.model, default=cfg.codec)  # the model's own codec/, else the config's
    kept = slice(a.skip_utts, a.skip_utts + a.train_utts)
    cache = None if a.no_states_cache else cfg.corpus
    # the rows alone: attach_states gives each its states and the units of those states from one encoder run (or
    # its cache), so a split's unit cache (`zipper.data.load_split`), which it would replace, is not read or written
    # (as `zipper.recipe.read_split` reads a speech_states recipe's rows, which has no --no-states-cache)
    rows = {name: read_manifest(Path(cfg.corpus) / f"{name}.jsonl") for name in ("train", "dev")}
    train = attach_states(of_voices(rows["train"], a.voices)[kept], codec, corpus=cache)
    dev = attach_states(rows["dev"][:a.dev_utts], codec, corpus=cache)
    model.eval()  # the zip as trained (no dropout); only what --train names learns
    params = []
    for name, p_ in model.named_parameters():
        p_.requires_grad_(name.startswith(tuple(f"{prefix}." for prefix in TRAINED[a.train])))
        params += [p_] if p_.requires_grad else []
    print(f"[asr_states] training {sum(p_.numel() for p_ in params):,} parameters ({', '.join(TRAINED[a.train])}) on "
          f"{len(train)} utterances; everything else stays as trained", flush=True)
    opt = torch.optim.AdamW(params, lr=a.lr, weight_decay=0.01)
    constant = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)  # what a checkpoint records (no schedule)
    score, key, name = DEV[a.train]
    spe = max(1, len(train) // a.batch_size)  # steps per epoch
    if last is not None:  # a pass stopped part-way: its weights, optimizer state and dev history go on from there
        was = json.loads((last / "trainer_state.json").read_text())["args"]
        diff = [f"--{k.replace('_', '-')} {was.get(k)}" for k in args if was.get(k) != args[k]]
        if diff:
            raise SystemExit(f"{last} was trained with other arguments ({', '.join(diff)}): give the same ones to "
                             f"resume it, or choose another --out")
        state = load_checkpoint(last, model, opt, constant)  # refuses a checkpoint of another model config
        step, history, best, wall_before = state["step"], state["history"], state["best"], state["wall_s"]
        started = state["started"]  # the pass's first start
        print(f"[asr_states] resuming {out} at step {step} of {spe * a.epochs} ({last})", flush=True)
    else:
        step, history, best, wall_before = 0, [{"epoch": 0, **score(model, dev)}], None, 0.0
        print(f"[asr_states] the zip as given: dev {history[0]}", flush=True)

    def checkpoint() -> None:
        save_checkpoint(ckpt_dir, model, opt, constant, step, {
            "args": args, "model_config": model_signature(model), "history": history, "best": best,
            "started": started, "wall_s": round(wall_before + time.time() - t0, 1)})

    if last is None:
        checkpoint()  # the given zip's dev score is not computed again on a resume
    stream = batches(train, a.batch_size, a.seed, start_step=step)  # the stream an uninterrupted run would read
    with StopRequest() as stop:
        for epoch in range(step // spe + 1, a.epochs + 1):
            bar = tqdm(initial=step - (epoch - 1) * spe, total=spe, desc=f"epoch {epoch}", mininterval=10)
            while step < epoch * spe:
                loss = step_loss(model, next(stream), a.train)
                opt.zero_grad()
                loss.backward()
                opt.step()
                step += 1
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
                if step == epoch * spe:  # the pass's end: its dev score, and the zip if it is the best so far
                    bar.close()
                    history.append({"epoch": epoch, **score(model, dev)})
                    print(f"[asr_states] epoch {epoch}: dev {history[-1]} ({time.time() - t0:.0f} s)", flush=True)
                    if best is None or history[-1][key] < best[key]:
                        best = history[-1]
                        save_model_dir(model, codec, out / "model", cfg.corpus)  # as `zipper train` leaves it
                if step == epoch * spe or step % a.save_every == 0 or stop.signum is not None:
                    checkpoint()
                if stop.signum is not None and step < spe * a.epochs:
                    raise TrainingInterrupted(f"{signal.Signals(stop.signum).name} at step {step}: checkpoint "
                                              f"written to {ckpt_dir}; run the same command again to resume")
    hours = sum(float(ex.get("duration", 0)) for ex in train) / 3600
    results = {"task": "asr", "command": "python " + " ".join(["recipes/asr_states.py", *(argv or sys.argv[1:])]),
               "started": started, "from_model": a.model,
               "trained": a.train, "lr": a.lr,
               "metrics": {f"{name}_before": history[0], name: best}, "train_utts": len(train),
               "train_hours": round(hours, 3), "steps": spe * a.epochs, "dev_utts": len(dev),
               "history": history, "best_epoch": best["epoch"],
               "beats_the_given_zip": best[key] < history[0][key], "wall_s": round(wall_before + time.time() - t0, 1),
               "machine": machine(), "git": commit}
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    shutil.rmtree(ckpt_dir)  # the pass is finished: results.json marks it, model/ holds its best weights
    print(f"[asr_states] best {name} {key} {best[key]} (epoch {best['epoch']}; the given zip's: "
          f"{history[0][key]}); saved {out / 'model'} and {out / 'results.json'}")
    if not results["beats_the_given_zip"]:
        print(f"[asr_states] no pass beat the given zip on the dev {key}: {out / 'model'} is worse there than "
              f"{a.model} (results.json: beats_the_given_zip false)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
