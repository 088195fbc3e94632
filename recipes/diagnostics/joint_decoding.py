"""Joint CTC/attention beam search (``generate(..., ctc_weight=w)``, zipper/ctc_prefix.py): WER/CER of the
attention decoder alone (greedy, then ``beam``) and with each CTC weight, on the first N utterances of a split.

    python recipes/diagnostics/joint_decoding.py MODEL_DIR CONFIG SPLIT N BEAM W ...
    e.g. python recipes/diagnostics/joint_decoding.py runs/asr-base-whisper-proj-chars-guided-gpu/model \
             recipes/configs/asr_base_whisper_proj_chars_guided_gpu.json test 20 4 0.1 0.2 0.3 0.5

CONFIG names the corpus and codec (a model directory saved with its codec uses that one). The table of
recipes/diagnostics/README.md, "Joint decoding on the GPU-trained zip", came from this (one thread).
"""
import sys
import time

import torch

from towers.scoring import cer, wer
from zipper.cli import _load_model, _load_model_codec
from zipper.data import load_split
from zipper.recipe import RecipeConfig
from zipper.tasks import transcribe_units

torch.set_num_threads(1)
model_dir, cfg = sys.argv[1], RecipeConfig.from_json(sys.argv[2])
split, n, beam = sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
model = _load_model(model_dir)
codec = _load_model_codec(model_dir, default=cfg.codec)
examples = load_split(cfg.corpus, split, codec, keep=lambda rows: rows[:n])
refs, units = [e["text"] for e in examples], [e["units"] for e in examples]
for beams, w in [(1, 0.0), (beam, 0.0)] + [(beam, float(a)) for a in sys.argv[6:]]:
    t0 = time.time()
    hyps = transcribe_units(model, units, num_beams=beams, ctc_weight=w)
    print(f"beams {beams}, ctc_weight {w}: WER {100 * wer(refs, hyps).wer:.1f} CER {100 * cer(refs, hyps).cer:.1f} "
          f"({(time.time() - t0) / len(units):.1f} s an utterance)", flush=True)
    for ref, hyp in list(zip(refs, hyps))[:3]:
        print(f"    {ref} | {hyp}")
