"""How much of what a character CTC head needs do the speech units keep? Units against the states they quantise.

The ASR zips' CTC heads stop at ~25% CER on held-out voices (~20% on their own training
utterances), whatever the head's shape (recipes/diagnostics/ctc_head_refit.py). This script asks
whether the k-means units are the limit: on the same N training, 200 dev and the first 100 test
utterances it fits the same non-causal head (2 bidirectional transformer layers, d 192, 4 heads,
trained from scratch) on

    units    the codec's unit ids, through a learned embedding (what the speech tower reads)
    space    the points k-means clusters (Whisper-base encoder states through the codec's projection)
    states   the Whisper-base encoder states themselves (512-d, 50 per second)

and prints greedy CTC WER/CER on dev and test after each epoch (one line each).

    python recipes/diagnostics/units_ceiling.py N_TRAIN EPOCHS [units|space|states ...]
    e.g. python recipes/diagnostics/units_ceiling.py 2000 6 units space states
"""
import sys
import time

import torch
from torch import nn
from tqdm import tqdm

from ctc_fit import best_paths, context_encoder, fit, score  # recipes/diagnostics/ctc_fit.py, beside this script
from towers.audio import load_audio
from towers.codec import load_codec
from towers.corpus import read_manifest
from towers.whisper_units import whisper_states
from zipper.ctc import CTC_CHARS
from zipper.recipe import RecipeConfig

torch.manual_seed(0)
cfg = RecipeConfig.from_json("recipes/configs/asr_base_whisper_proj_chars_guided_all_gpu.json")
n_train, epochs, inputs = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
if not inputs or set(inputs) - {"units", "space", "states"}:
    raise SystemExit("inputs: one or more of units, space, states")
codec = load_codec(cfg.codec)
t0 = time.time()
data = {}
make = {"states": lambda s: s.half(), "space": lambda s: codec.unit_space(s).half(), "units": codec.units_of_states}
for split, n in (("train", n_train), ("dev", 200), ("test", 100)):
    rows = read_manifest(f"{cfg.corpus}/{split}.jsonl")[:n]
    data[split] = {k: [] for k in inputs} | {"text": [r["text"] for r in rows]}
    for r in tqdm(rows, desc=f"{split}: whisper encoder", mininterval=10):
        states = whisper_states([load_audio(r["audio_filepath"], target_sr=16_000, max_seconds=None)[0]])[0]  # (T, 512)
        for k in inputs:
            data[split][k].append(make[k](states))
    print(f"{split}: {len(rows)} utterances, {sum(len(x) for x in data[split][inputs[0]])} frames "
          f"({time.time() - t0:.0f} s)", flush=True)


class Head(nn.Module):
    def __init__(self, kind):
        super().__init__()
        n, d = len(CTC_CHARS) + 1, 192
        self.inp = (nn.Embedding(codec.vocab_size, d) if kind == "units"
                    else nn.Linear(data["train"][kind][0].shape[-1], d))
        self.enc = context_encoder(d)
        self.out = nn.Linear(d, n)

    def forward(self, x, mask):  # x (B, M) ids or (B, M, D_in), mask (B, M) bool -> log-probs (B, M, 29)
        return self.out(self.enc(self.inp(x), src_key_padding_mask=~mask)).log_softmax(-1)


def report(head, kind, split):
    return score(split, data[split]["text"], best_paths(head, data[split][kind]))


for kind in inputs:
    head, t0 = Head(kind), time.time()
    for epoch, loss in enumerate(fit(head, data["train"][kind], data["train"]["text"], epochs, 32)):
        print(f"{kind} epoch {epoch + 1}: train CTC/char {loss:.3f}, {report(head, kind, 'dev')}, "
              f"{report(head, kind, 'test')} ({time.time() - t0:.0f} s)", flush=True)
