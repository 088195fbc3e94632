"""Is a trained zip's character CTC head limited by its shape? Refit heads of other shapes on its frozen input.

The head (zipper/ctc.py) is linear on the last zip block's memory projection of the speech tower's
states, and the speech tower is causal: frame t sees units <= t only. This script runs the zip's own
speech tower once over N training, 200 dev and the first 100 test utterances (the rows `zipper eval`
tests), keeps the states the head reads, and fits on them, all else frozen:

    linear   the head's own shape (mem_norm -> mem_proj -> Linear -> 28 chars + blank), refitted
    mlp      per frame: states -> 512 -> GELU -> 512 -> chars (no context)
    conv     non-causal, local: a 9-frame convolution (80 ms either side) -> 384 -> GELU -> 384 -> chars
    context  non-causal, global: 2 bidirectional transformer layers (d 192, 4 heads) over the states -> chars

A head named HEAD@L reads the output of speech layer L (0-based) instead of the layer the zip's head
reads (the last); ``linear`` reads that one only (its memory projection is the last zip block's).
It prints greedy CTC WER/CER on dev and test for the zip's head (and on test by voice) and each refit.

    python recipes/diagnostics/ctc_head_refit.py MODEL_DIR N_TRAIN EPOCHS [HEAD[@LAYER] ...]
    e.g. python recipes/diagnostics/ctc_head_refit.py runs/asr-base-whisper-proj-chars-guided-all-gpu/model-step2492 \
             4000 4 linear mlp conv context
"""
import sys
import time

import torch
from torch import nn

from ctc_fit import best_paths, context_encoder, fit, score  # recipes/diagnostics/ctc_fit.py, beside this script
from towers.speech_lm import pad_rows
from zipper.cli import _load_model, _load_model_codec
from zipper.ctc import CTC_CHARS
from zipper.data import load_split, speech_ids
from zipper.model import Segment
from zipper.recipe import RecipeConfig
from towers.scoring import by_voice

torch.manual_seed(0)
cfg = RecipeConfig.from_json("recipes/configs/asr_base_whisper_proj_chars_guided_all_gpu.json")
model_dir, n_train, epochs, heads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
model, codec = _load_model(model_dir), _load_model_codec(model_dir)
model.eval()
sp = model.tower("speech")
block = model.blocks["speech_to_text"][-1]
layer = model._aligned_layer("speech", "text", len(model.zip_layers["text"]) - 1)


@torch.no_grad()
def states_of(examples, batch=32):
    """Per speech layer, per utterance, its (M, 256) states, float16, in length-sorted batches."""
    start, out = model.start_ids("speech"), {i: [None] * len(examples) for i in model.zip_layers["speech"]}
    order = sorted(range(len(examples)), key=lambda i: len(examples[i]["units"]))
    for i in range(0, len(order), batch):
        idx = order[i:i + batch]
        ids, mask = pad_rows([speech_ids(sp, examples[j]["units"], start=start) for j in idx], sp.pad_token_id)
        _, history, _ = model.run_segments([Segment("speech", ids, mask)])
        for at, states in history[0].states.items():
            for row, j in enumerate(idx):
                out[at][j] = states[row, mask[row].bool()].half()
    return out


t0 = time.time()
data = {}
for split, n in (("train", n_train), ("dev", 200), ("test", 100)):
    ex = load_split(cfg.corpus, split, codec, keep=lambda rows, n=n: rows[:n])
    data[split] = (states_of(ex), [e["text"] for e in ex], [e["voice"] for e in ex])
    print(f"{split}: {len(ex)} utterances, {sum(len(s) for s in data[split][0][layer])} frames "
          f"({time.time() - t0:.0f} s)", flush=True)


class Refit(nn.Module):
    def __init__(self, kind):
        super().__init__()
        self.kind, d, n = kind, block.mem_norm.weight.shape[0], len(CTC_CHARS) + 1
        if kind == "linear":
            self.out = nn.Linear(model.tower("text").hidden_size, n)
        elif kind == "mlp":
            self.out = nn.Sequential(nn.Linear(d, 512), nn.GELU(), nn.Linear(512, 512), nn.GELU(), nn.Linear(512, n))
        elif kind == "conv":  # non-causal: each frame sees 4 frames (80 ms) either side
            self.inp = nn.Conv1d(d, 384, 9, padding=4)
            self.out = nn.Sequential(nn.GELU(), nn.Linear(384, 384), nn.GELU(), nn.Linear(384, n))
        elif kind == "context":
            self.inp, self.enc, self.out = nn.Linear(d, 192), context_encoder(192), nn.Linear(192, n)
        else:
            raise SystemExit(f"unknown head {kind!r}: linear, mlp, conv or context")

    def forward(self, x, mask):  # x (B, M, D) float, mask (B, M) bool -> log-probs (B, M, 29), blank last
        if self.kind == "linear":
            with torch.no_grad():
                x = block.mem_proj(block.mem_norm(x))
            return self.out(x).log_softmax(-1)
        if self.kind == "mlp":
            return self.out(x).log_softmax(-1)
        if self.kind == "conv":
            x = x * mask[..., None]  # padding frames must not leak into real ones
            return self.out(self.inp(x.transpose(1, 2)).transpose(1, 2)).log_softmax(-1)
        return self.out(self.enc(self.inp(x), src_key_padding_mask=~mask)).log_softmax(-1)


def decode(head, split, at=layer):
    """``head``'s best paths on a split (the zip's own head when None) -> (texts, hypotheses)."""
    own = lambda x, mask: model.ctc_heads["speech_to_text"](block.mem_proj(block.mem_norm(x)))  # noqa: E731
    return data[split][1], best_paths(own if head is None else head, data[split][0][at])


def report(head, split, at=layer):
    return score(split, *decode(head, split, at))


print(f"the zip's own head: {report(None, 'dev')}, {report(None, 'test')}", flush=True)
test_by_voice = by_voice(*decode(None, "test"), data["test"][2])
print("    test by voice: " + ", ".join(f"{v} WER {m['wer']:.1f} CER {m['cer']:.1f}" for v, m in test_by_voice.items()),
      flush=True)
for spec in heads:
    kind, at = spec.split("@") if "@" in spec else (spec, layer)
    at = int(at)
    head, t0 = Refit(kind), time.time()
    for epoch, loss in enumerate(fit(head, data["train"][0][at], data["train"][1], epochs, 64)):
        print(f"{spec} epoch {epoch + 1}: train CTC/char {loss:.3f}, {report(head, 'dev', at)} "
              f"({time.time() - t0:.0f} s)", flush=True)
    print(f"{spec}: {sum(p.numel() for p in head.parameters() if p.requires_grad)} parameters, "
          f"{report(head, 'dev', at)}, {report(head, 'test', at)}", flush=True)
