"""Does a forced text prefix let the zip steer the first word? (the position-0 attention-sink check)

    python recipes/diagnostics/asr_prefix_probe.py --prefix ""        # text segment: BOS, words, EOS
    python recipes/diagnostics/asr_prefix_probe.py --prefix "Text:"   # BOS, "Text", ":", words, EOS

Trains the ASR zip on the first N train utterances of data/corpus-small (SmolLM2 + runs/speech-tower-small,
text-only input projection, gate lr x30, 1-layer memory projection), then reports, teacher-forced on
those utterances, the NLL and argmax accuracy of the *first word's first token* with the matching
speech and with another utterance's speech. If the zip reads the speech for the first word, matched
NLL is far below shuffled NLL and accuracy is high.
"""
import argparse
import json

import torch

import zipper.data as data
from towers import load_tower
from towers.codec import load_codec
from zipper.recipe import RecipeConfig, build_zip, text_prefix_ids
from zipper.train import TrainConfig, fit

p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
p.add_argument("--prefix", default="", help="text forced after BOS in every text segment ('' = none)")
p.add_argument("--n", type=int, default=32, help="training utterances")
p.add_argument("--steps", type=int, default=150, help="training steps (batch 8)")
p.add_argument("--lr", type=float, default=1e-3, help="learning rate")
p.add_argument("--threads", type=int, default=1, help="torch threads")
a = p.parse_args()
torch.set_num_threads(a.threads)

text = load_tower("smollm2-135m", modality="text")
cfg = RecipeConfig(task="asr", speech_tower="runs/speech-tower-small", cross_attention_interval_speech=1,
                   cross_attention_interval_text=4, projection_layers=1, input_projection_towers=["text"],
                   text_prefix=a.prefix)  # the library's forced prefix (ZipperConfig.prefix_ids)
prefix = text_prefix_ids(cfg, text)
codec = load_codec("default")
train = data.load_split("data/corpus-small", "train", codec, progress=False, keep=lambda rows: rows[: a.n])
model = build_zip(cfg, load_tower(cfg.speech_tower, modality="speech"), text)
res = fit(model, lambda m, b: m(data.make_segments(getattr(m, "module", m), b, "asr")).loss,
          lambda s: data.batches(train, 8, 0, s),
          TrainConfig(steps=a.steps, lr=a.lr, warmup_steps=20, log_every=10, gate_lr_mult=30.0),
          f"runs/diagnostics/prefix-{a.prefix or 'none'}-{a.n}-{a.steps}", desc="probe")
model.eval()
k = 1 + len(prefix)  # the first word's first token sits at index k; it is predicted at index k - 1


@torch.no_grad()
def first_word(speech_from):
    nll, hits = [], []
    for i in range(0, len(train), 8):
        b, s = train[i:i + 8], speech_from[i:i + 8]
        segs = data.make_segments(model, b, "asr")
        segs[0] = data.make_segments(model, s, "asr")[0]
        logits = model(segs).logits[1][:, k - 1]  # (B, V)
        target = segs[1].input_ids[:, k]
        nll += torch.nn.functional.cross_entropy(logits, target, reduction="none").tolist()
        hits += (logits.argmax(-1) == target).tolist()
    return round(sum(nll) / len(nll), 3), round(sum(hits) / len(hits), 3)


shuffled = train[1:] + train[:1]
print(json.dumps({"prefix": a.prefix, "prefix_tokens": len(prefix), "n": a.n, "steps": a.steps,
                  "final_loss_last10": round(sum(res["history"][-10:]) / 10, 3),
                  "first_word_nll_acc_matched": first_word(train), "first_word_nll_acc_shuffled": first_word(shuffled),
                  "gates_attn_tanh": [round(float(torch.tanh(p.detach())), 3) for n, p in model.named_parameters()
                                      if n.endswith("attn_gate")]}))
