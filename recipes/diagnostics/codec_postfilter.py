"""Does sharpening the decoded mel make a codec's resynthesis more intelligible?

    .venv/bin/python recipes/diagnostics/codec_postfilter.py --codec runs/codec/whisper-joe-3600 \
        --manifest runs/codec_data/test.jsonl --scales 1.0 1.2 1.4 --out runs/codec_eval/postfilter-joe-3600

The unit -> mel decoders are trained with L1, so they predict an over-smoothed mel (per-bin std 2.4
against 2.8 for real speech, RESULTS_codec.md), and Griffin-Lim turns it into buzzy audio. A classic
remedy from statistical parametric TTS is variance expansion (a "global variance" post-filter). This
script decodes every utterance's units once, then for each mode and scale s judges
``towers.vocoder.expand_variance(mel, s, mode)``: ``time`` scales each mel bin's deviation from its mean
over the utterance, ``freq`` each frame's deviation from its mean over the bins (spectral contrast).
s = 1 is the codec as shipped. It also prints the decoded and real per-bin standard deviations.
Writes ``results.json`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # recipes/: eval_codec

import numpy as np  # noqa: E402
import torch  # noqa: E402

from towers.audio import load_audio  # noqa: E402
from eval_codec import load_items  # noqa: E402
from towers.codec import load_codec  # noqa: E402
from towers.judges import WhisperJudge  # noqa: E402
from towers.scoring import normalize_text, wer  # noqa: E402
from towers.vocoder import expand_variance  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--codec", required=True, help="codec directory or shipped codec name, with a mel decoder (decode_mel)")
    ap.add_argument("--manifest", required=True, help="JSONL of held-out utterances (audio_filepath, text, voice)")
    ap.add_argument("--n", type=int, default=0, help="first N rows only (0: all)")
    ap.add_argument("--scales", type=float, nargs="+", default=[1.0, 1.2, 1.4], help="variance scales to try")
    ap.add_argument("--modes", nargs="+", default=["time", "freq"], choices=["time", "freq"], help="post-filter modes")
    ap.add_argument("--threads", type=int, default=2, help="torch and judge CPU threads")
    ap.add_argument("--out", required=True, help="output directory for results.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    codec = load_codec(args.codec)
    judge = WhisperJudge(cpu_threads=args.threads)
    rows = load_items(args.manifest, args.n, librivox=False)  # manifest paths resolved as eval_codec.py does
    variants = [("time", 1.0)] + [(m, s) for m in args.modes for s in args.scales if s != 1.0]
    hyps = {f"{m}:{s:g}": [] for m, s in variants}
    refs, std_dec, std_real, t0 = [], [], [], time.time()
    from tqdm import tqdm

    for r in tqdm(rows, desc="decode/judge", mininterval=5):
        x, sr = load_audio(r["path"], target_sr=codec.sample_rate)
        mel = codec.decode_mel(codec.encode(x, sr))  # (T, n_mels)
        real = codec.mel(torch.from_numpy(x))  # (T', n_mels)
        std_dec.append(mel.std(0))
        std_real.append(real.std(0))
        refs.append(normalize_text(r["text"]))
        for m, s in variants:
            y = codec.vocoder(expand_variance(mel, s, m)).numpy()
            y = y / max(1e-6, float(np.abs(y).max())) * 0.7
            hyps[f"{m}:{s:g}"].append(normalize_text(judge.transcribe_one((y.astype(np.float32), 16_000))))
    table = {k: wer(refs, h).wer for k, h in hyps.items()}
    result = {"command": " ".join(sys.argv), "codec": args.codec, "utterances": len(rows),
              "decoded_bin_std": float(torch.stack(std_dec).mean()), "real_bin_std": float(torch.stack(std_real).mean()),
              "wer": table, "seconds": round(time.time() - t0, 1), "refs": refs, "hyps": hyps}
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "results.json").write_text(json.dumps(result, indent=1) + "\n")
    print(f"{args.codec}: {len(rows)} utts; per-bin std decoded {result['decoded_bin_std']:.2f}, "
          f"real {result['real_bin_std']:.2f}")
    for k, v in table.items():
        print(f"| {k} | {v:.1%} |")


if __name__ == "__main__":
    main()
