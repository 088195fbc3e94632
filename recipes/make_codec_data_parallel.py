"""Parallel speech for a single-speaker codec decoder: the 14 codec training voices of
make_codec_data.py reading sentences that piper joe already read in runs/codec_data_joe2k.

    OMP_NUM_THREADS=1 .venv/bin/python recipes/make_codec_data_parallel.py 150    # 14 x 150 = 2,100 clips

Voice k reads the joe2k sentences [k * N, (k + 1) * N), so every sentence is read by joe and at most
one other voice. None of them is a held-out test voice of make_codec_data.py, and no sentence is in
its test split (make_codec_data_joe.py drops those). Same synthesis and post-processing as
make_codec_data.py. Writes runs/codec_data_parallel/train.jsonl (audio_filepath, duration, text,
voice, target_filepath = joe's clip of the sentence) for ``recipes/train_codec.py
--parallel-manifest``. Re-running keeps the WAVs already written.
"""
import json, os, random, sys

import make_codec_data as mcd  # recipes/ is sys.path[0] when run as a script

SRC, OUT = "runs/codec_data_joe2k/train.jsonl", "runs/codec_data_parallel"


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 150
    joe = [json.loads(line) for line in open(SRC) if line.strip()]
    if n * len(mcd.TRAIN) > len(joe):
        sys.exit(f"{n} x {len(mcd.TRAIN)} voices needs {n * len(mcd.TRAIN)} sentences; {SRC} has {len(joe)}")
    os.makedirs(f"{OUT}/wav", exist_ok=True)
    random.seed(0)  # espeak's speaking-rate draw in synth()
    rows = []
    for v, (engine, voice) in enumerate(mcd.TRAIN):
        part = joe[v * n:(v + 1) * n]
        items = [(r["text"], f"{OUT}/wav/{engine}_{voice.replace('+', '_')}_{v * n + i:05d}.wav") for i, r in enumerate(part)]
        durs = mcd.synth_missing(engine, voice, items, workdir=OUT)  # festival's script goes here, not into runs/codec_data
        rows += [dict(audio_filepath=os.path.abspath(p), duration=round(d, 3), text=t, voice=f"{engine}:{voice}",
                      target_filepath=r["audio_filepath"]) for (t, p), d, r in zip(items, durs, part)]
        print(engine, voice, round(sum(durs)), "s", flush=True)
    mcd.write_manifest(f"{OUT}/train.jsonl", rows, "parallel")


if __name__ == "__main__":
    main()
