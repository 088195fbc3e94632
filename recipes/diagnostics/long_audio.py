"""Does a zip transcribe a recording longer than its training sentences? The 5 LibriVox clips (consecutive
sentences of one chapter, 24.7 s together) transcribed three ways by `zipper.tasks.transcribe_audio`, as
`zipper transcribe` does:

* **clips**: each clip alone, the texts joined (the reference point);
* **whole**: the clips concatenated into one recording, transcribed whole (``--chunk-seconds 0``);
* **chunked**: the same recording cut at its pauses into pieces of at most ``--chunk-seconds`` (default 10).

WER of each against the joined transcripts, and the pieces' boundaries:

    python recipes/diagnostics/long_audio.py --model runs/asr-medium-units-2100/model [--fusion]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as `python recipes/diagnostics/long_audio.py`

from towers.audio import load_audio  # noqa: E402
from towers.chunking import CHUNK_SECONDS  # noqa: E402
from towers.judges import wer  # noqa: E402
from zipper.cli import _load_model, _load_model_codec  # noqa: E402
from zipper.ctc_beam import FUSION_BEAM, KNOWN_WORDS_FILE, read_word_list  # noqa: E402
from zipper.data import librivox_examples  # noqa: E402
from zipper.tasks import transcribe_audio, transcribe_pieces  # noqa: E402


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="a trained ASR zip directory")
    p.add_argument("--fusion", action="store_true", help="decode by the fused CTC search (a character CTC head)")
    p.add_argument("--chunk-seconds", type=float, default=CHUNK_SECONDS, help="longest piece of the chunked run")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    codec, model = _load_model_codec(a.model), _load_model(a.model)
    clips = librivox_examples(codec)
    if not clips:
        raise SystemExit("the LibriVox clips of Debian's pocketsphinx-testdata are not installed (make setup)")
    waves = [load_audio(c["audio_filepath"], target_sr=codec.sample_rate) for c in clips]
    sr = waves[0][1]
    whole = np.concatenate([w for w, _ in waves])
    known = Path(a.model) / KNOWN_WORDS_FILE
    fusion = dict(beam=FUSION_BEAM, words=read_word_list(known) if known.is_file() else []) if a.fusion else None
    ref = " ".join(c["text"] for c in clips)
    chunked = transcribe_pieces(model, codec, [(whole, sr)], chunk_seconds=a.chunk_seconds, fusion=fusion)[0]
    hyps = {"clips": " ".join(transcribe_audio(model, codec, waves, chunk_seconds=0, fusion=fusion)),
            "whole": transcribe_audio(model, codec, [(whole, sr)], chunk_seconds=0, fusion=fusion)[0],
            "chunked": " ".join(p["text"] for p in chunked if p["text"])}
    bounds = np.cumsum([len(w) for w, _ in waves])[:-1] / sr
    pieces = [(p["start"], p["end"]) for p in chunked]
    result = {"model": a.model, "decoding": "fused" if a.fusion else "greedy", "seconds": round(len(whole) / sr, 2),
              "clip_boundaries_s": [round(b, 2) for b in bounds], "pieces_s": pieces, "reference": ref,
              **{f"wer_{k}": round(100 * wer([ref], [h]).wer, 1) for k, h in hyps.items()},
              **{f"hyp_{k}": h for k, h in hyps.items()}}
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
