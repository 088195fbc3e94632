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
import torch.nn.functional as F
from torch import nn

from towers.judges import cer, wer
from towers.speech_lm import pad_rows
from zipper.cli import _load_model, _load_model_codec
from zipper.ctc import CTC_CHARS, char_targets, chars_text, ctc_greedy
from zipper.data import load_split, speech_ids
from zipper.model import Segment
from zipper.recipe import RecipeConfig

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
        for i, states in history[0].states.items():
            for row, j in enumerate(idx):
                out[i][j] = states[row, mask[row].bool()].half()
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
            self.inp = nn.Linear(d, 192)
            self.enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(192, 4, 768, 0.1, batch_first=True,
                                                                        norm_first=True), 2,
                                             enable_nested_tensor=False)
            self.out = nn.Linear(192, n)
        else:
            raise SystemExit(f"unknown head {kind!r}: linear, mlp or context")

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


def batches(states, texts, size, shuffle):
    order = sorted(range(len(states)), key=lambda i: len(states[i]))
    chunks = [order[i:i + size] for i in range(0, len(order), size)]
    if shuffle:
        chunks = [chunks[i] for i in torch.randperm(len(chunks)).tolist()]
    for idx in chunks:
        x = nn.utils.rnn.pad_sequence([states[i].float() for i in idx], batch_first=True)  # (B, M, D)
        lengths = torch.tensor([len(states[i]) for i in idx])
        mask = torch.arange(x.shape[1])[None] < lengths[:, None]  # (B, M)
        yield idx, x, mask, [texts[i] for i in idx]


def decode(head, split, at=layer, by_voice=False):
    states, texts = data[split][0][at], data[split][1]
    hyps = [None] * len(states)
    if head is not None:
        head.eval()
    with torch.no_grad():
        for idx, x, mask, _ in batches(states, texts, 50, False):
            lp = head(x, mask) if head is not None else model.ctc_heads["speech_to_text"](
                block.mem_proj(block.mem_norm(x)))
            for j, row in zip(idx, ctc_greedy(lp, mask)):
                hyps[j] = chars_text(row)
    if by_voice:
        voices = data[split][2]
        return ", ".join(f"{v} WER {100 * wer(*pick(texts, hyps, voices, v)).wer:.1f} CER "
                         f"{100 * cer(*pick(texts, hyps, voices, v)).cer:.1f}" for v in sorted(set(voices)))
    return f"{split} WER {100 * wer(texts, hyps).wer:.1f} CER {100 * cer(texts, hyps).cer:.1f}"


def pick(refs, hyps, voices, voice):
    return [r for r, v in zip(refs, voices) if v == voice], [h for h, v in zip(hyps, voices) if v == voice]


print(f"the zip's own head: {decode(None, 'dev')}, {decode(None, 'test')}", flush=True)
print(f"    test by voice: {decode(None, 'test', by_voice=True)}", flush=True)
for spec in heads:
    kind, at = spec.split("@") if "@" in spec else (spec, layer)
    at = int(at)
    head, t0 = Refit(kind), time.time()
    opt = torch.optim.AdamW([p for p in head.parameters() if p.requires_grad], lr=1e-3, weight_decay=0.01)
    states, texts = data["train"][0][at], data["train"][1]
    for epoch in range(epochs):
        head.train()
        total = n = 0
        for _, x, mask, txt in batches(states, texts, 64, True):
            lp = head(x, mask)  # (B, M, 29)
            targets = char_targets(txt)
            loss = F.ctc_loss(lp.transpose(0, 1), torch.cat(targets), mask.sum(-1),
                              torch.tensor([len(t) for t in targets]), blank=len(CTC_CHARS),
                              reduction="sum", zero_infinity=True) / sum(len(t) for t in targets)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total, n = total + loss.item(), n + 1
        print(f"{spec} epoch {epoch + 1}: train CTC/char {total / n:.3f}, {decode(head, 'dev', at)} "
              f"({time.time() - t0:.0f} s)", flush=True)
    print(f"{spec}: {sum(p.numel() for p in head.parameters() if p.requires_grad)} parameters, "
          f"{decode(head, 'dev', at)}, {decode(head, 'test', at)}", flush=True)
