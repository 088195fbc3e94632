"""Can the ASR zip memorise N training utterances? A check that the zip learns to use the speech.

    python recipes/diagnostics/asr_overfit.py N STEPS LR INPUT_PROJ [GATE_LR_MULT [PROJECTION_LAYERS]]
    e.g. python recipes/diagnostics/asr_overfit.py 32 150 1e-3 text 30 1

Trains the ASR zip (SmolLM2 + runs/speech-tower-small, default codec, data/corpus-small) on the first
N train utterances and reports the loss curve and greedy WER on 16 of those same utterances.
INPUT_PROJ: "all" or the one tower that gets the input projection ("text").
"""
import sys, time, json
import torch
from towers import load_tower
from towers.codec import load_codec
from zipper.recipe import RecipeConfig, build_zip
from zipper.data import load_split, batches, make_segments
from zipper.tasks import asr_metrics
from zipper.train import TrainConfig, fit

torch.set_num_threads(1)
n, steps, lr = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
proj = sys.argv[4] if len(sys.argv) > 4 else "all"
gmult = float(sys.argv[5]) if len(sys.argv) > 5 else 1.0
players = int(sys.argv[6]) if len(sys.argv) > 6 else 3
cfg = RecipeConfig(task="asr", speech_tower="runs/speech-tower-small", text_prefix="", cross_attention_interval_speech=1,
                   cross_attention_interval_text=4, projection_layers=players, input_projection_towers=[] if proj == "all" else [proj])
codec = load_codec("default")
train = load_split("data/corpus-small", "train", codec, keep=lambda rows: rows[:n])
model = build_zip(cfg, load_tower(cfg.speech_tower, modality="speech"), load_tower("smollm2-135m", modality="text"))
def loss_fn(m, b): return m(make_segments(getattr(m, "module", m), b, "asr")).loss
t0 = time.time()
res = fit(model, loss_fn, lambda s: batches(train, 8, 0, s), TrainConfig(steps=steps, lr=lr, warmup_steps=20, log_every=10, gate_lr_mult=gmult),
          f"runs/overfit/run-{n}-{steps}-{lr}-{proj}-{gmult}-{players}", eval_fn=lambda: {"train_wer": asr_metrics(model, train[:16])["wer"]}, desc="overfit")
h = res["history"]
print(json.dumps({"n": n, "steps": steps, "lr": lr, "proj": proj, "gate_lr_mult": gmult, "projection_layers": players, "loss_curve": [round(sum(h[i:i+20]) / len(h[i:i+20]), 3) for i in range(0, len(h), 20)],
                  "evals": res["evals"], "wall": round(time.time() - t0), "examples": asr_metrics(model, train[:4], show=4)["examples"]}, indent=1))
