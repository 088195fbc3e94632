"""DNSMOS naturalness/quality (MOS 1..5) of a manifest's audio, and of its codec round trip.

    nice -n 10 .venv/bin/python recipes/eval_mos.py --manifest data/corpus-small/test.jsonl --n 20 \
        --librivox --roundtrip --out runs/mos_eval/default

Scores every clip with ``towers.judges.MosJudge`` (Microsoft DNSMOS from the ``speechmos`` package's
ONNX files, run with onnxruntime: P.835 SIG/BAK/OVRL and P.808 MOS; no pickle, no download) and
prints one table row per set:

* ``original``: the first ``--n`` rows of ``--manifest`` (``audio_filepath``), as they are;
* ``codec round trip`` (``--roundtrip``): the same clips through ``codec.decode(codec.encode(x))``
  with the codec of ``--codec`` (default: the shipped ``towers.codec.load_default_codec()``),
  scored at the level the decoder gives (no renormalisation);
* ``LibriVox`` (``--librivox``): the 5 real read-speech clips of pocketsphinx-testdata (and their
  round trip with ``--roundtrip``).

Writes ``results.json`` (table + per-clip scores) under ``--out`` when given.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from towers.audio import load_audio  # noqa: E402
from towers.judges import MosJudge  # noqa: E402

LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")
KEYS = ("ovrl", "sig", "bak", "p808")


def load_sets(manifest: str | None, n: int, librivox: bool) -> dict[str, list[str]]:
    """Set name -> audio paths."""
    sets = {}
    if manifest:
        from towers.corpus import read_manifest

        rows = read_manifest(manifest)  # relative audio paths resolved against the manifest
        sets[f"{Path(manifest).parent.name}/{Path(manifest).stem}"] = [r["audio_filepath"] for r in rows[: n or None]]
    if librivox:
        sets["LibriVox (real human)"] = sorted(str(p) for p in LIBRIVOX.glob("*.wav"))
    return sets


def summarise(per: list[dict]) -> dict:
    out = {"n": len(per), "minutes": round(sum(p["seconds"] for p in per) / 60, 2)}
    for k in KEYS:
        v = np.array([p[k] for p in per])
        out[f"{k}_mean"], out[f"{k}_median"] = round(float(v.mean()), 3), round(float(np.median(v)), 3)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--manifest", help="JSONL with audio_filepath (e.g. data/corpus-small/test.jsonl)")
    ap.add_argument("--n", type=int, default=20, help="first N manifest rows (0: all)")
    ap.add_argument("--librivox", action="store_true", help="also score the 5 pocketsphinx-testdata LibriVox clips")
    ap.add_argument("--roundtrip", action="store_true", help="also score decode(encode(x)) through the codec")
    ap.add_argument("--codec", help="codec directory or shipped codec name (default, whisper-joe, whisper-std-joe, whisper-proj-joe); default: default")
    ap.add_argument("--personalized", action="store_true", help="personalized DNSMOS P.835 model")
    ap.add_argument("--threads", type=int, default=2, help="onnxruntime / torch CPU threads")
    ap.add_argument("--out", help="output directory for results.json")
    args = ap.parse_args(argv)

    sets = load_sets(args.manifest, args.n, args.librivox)
    if not sets:
        ap.error("nothing to score: give --manifest and/or --librivox")
    judge = MosJudge(personalized=args.personalized, threads=args.threads)
    codec = None
    if args.roundtrip:
        import torch

        from towers.codec import load_codec

        torch.set_num_threads(args.threads)
        codec = load_codec(args.codec or "default")

    t0 = time.time()
    rows, clips = [], []
    for name, paths in sets.items():
        per_orig, per_rt = [], []
        for p in paths:
            s = judge.score_one(p)
            per_orig.append(s)
            clip = {"set": name, "path": p, "original": s}
            if codec is not None:
                x, sr = load_audio(p, target_sr=codec.sample_rate)
                y, ysr = codec.decode(codec.encode(x, sr))
                clip["roundtrip"] = judge.score_one((y.numpy(), ysr))
                per_rt.append(clip["roundtrip"])
            clips.append(clip)
        rows.append({"set": name, "audio": "original", **summarise(per_orig)})
        if codec is not None:
            rows.append({"set": name, "audio": "codec round trip", **summarise(per_rt)})

    result = {"command": " ".join(sys.argv), "judge": "DNSMOS" + (" personalized" if args.personalized else ""),
              "codec": args.codec or ("default" if codec is not None else None),
              "seconds": round(time.time() - t0, 1), "table": rows, "clips": clips}
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps(result, indent=1) + "\n")
    print(f"DNSMOS ({result['seconds']} s)")
    print("| set | audio | clips | min | OVRL mean | OVRL median | SIG mean | BAK mean | P.808 mean |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['set']} | {r['audio']} | {r['n']} | {r['minutes']} | {r['ovrl_mean']:.2f} | "
              f"{r['ovrl_median']:.2f} | {r['sig_mean']:.2f} | {r['bak_mean']:.2f} | {r['p808_mean']:.2f} |")


if __name__ == "__main__":
    main()
