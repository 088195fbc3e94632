"""Tune the fused CTC search (zipper/ctc_beam.py): WER/CER of the CTC best path, then of each setting, on
the first N utterances of a split.

    python recipes/diagnostics/fused_tune.py MODEL_DIR SPLIT N BEAM,ALPHA,BETA,UNK_WORD,UNK_LETTER ...
    e.g. python recipes/diagnostics/fused_tune.py runs/asr-base-whisper-proj-chars-guided-model-step2400 \
             dev 20 8,0.5,3,-10,-2 32,0.7,3,-10,-2

The corpus is the one of recipes/configs/asr_base_whisper_proj_chars_guided.json (data/corpus-base). The
tables of recipes/diagnostics/README.md, "Decoding with the CTC head", came from this (one thread).
"""
import sys
import time

import torch

from towers.judges import cer, wer
from zipper.cli import _load_model, _load_model_codec
from zipper.data import load_split
from zipper.recipe import RecipeConfig
from zipper.tasks import ctc_transcribe_units, fused_transcribe_units

torch.set_num_threads(1)
cfg = RecipeConfig.from_json("recipes/configs/asr_base_whisper_proj_chars_guided.json")
model_dir, split, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
model, codec = _load_model(model_dir), _load_model_codec(model_dir)
examples = load_split(cfg.corpus, split, codec, keep=lambda rows: rows[:n])
refs, units = [e["text"] for e in examples], [e["units"] for e in examples]
hyps = ctc_transcribe_units(model, units)
print(f"CTC best path: WER {100 * wer(refs, hyps).wer:.1f} CER {100 * cer(refs, hyps).cer:.1f}", flush=True)
for spec in sys.argv[4:]:
    beam, alpha, beta, unk_word, unk_letter = spec.split(",")
    t0 = time.time()
    hyps = fused_transcribe_units(model, units, beam=int(beam), alpha=float(alpha), beta=float(beta),
                                  unk_penalty=float(unk_word), unk_letter_penalty=float(unk_letter))
    print(f"{spec}: WER {100 * wer(refs, hyps).wer:.1f} CER {100 * cer(refs, hyps).cer:.1f} "
          f"({(time.time() - t0) / len(units):.1f} s an utterance)", flush=True)
    for ref, hyp in list(zip(refs, hyps))[:4]:
        print(f"    {ref} | {hyp}")
