"""How much faster is `zipper data import --workers N` than one process, on recordings to convert?

The sources are the five real LibriVox clips (pocketsphinx-testdata) written as 48 kHz MP3 files, as Common Voice
ships its clips, ``--files`` of them in all (each clip again under another speaker's name), listed in a TSV in
Common Voice's columns. Each round imports the list once per ``--workers`` value into a temporary folder,
the values in turn (interleaved rounds); every import's files are checked byte-identical to the one-process
import's (corpus.json's timing aside). A round's time includes starting the worker processes.

    python -m benchmarks.data_import --threads 0           # 3,000 files, workers 1 and 2, burn-in + 2 rounds: ~6 min
    python -m benchmarks.data_import --threads 0 --files 600 --steps 3
    python -m benchmarks.data_import --smoke               # 20 files, one round (CI)

``--threads 0``: the one-process import resamples with torch's default threads, as ``zipper data import`` does
(each worker process uses one). Measured on 2 cores (benchmarks/RESULTS.md, 2026-12-07): 2 workers 1.65x [1.62,
1.68] on 3,000 files (205 against 125 files/s), 1.04x on 600: starting the workers (each imports torch) takes
seconds, so they pay off on imports of thousands of files.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import soundfile as sf

from benchmarks import common

NAME = "data_import"


def parse_args(argv=None):
    p = common.make_parser(__doc__.split("\n")[0])
    p.add_argument("--files", type=int, default=3000, help="recordings to import (the 5 clips, repeated)")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="the --workers values compared")
    p.set_defaults(warmup=1, steps=2)
    args = p.parse_args(argv)
    common.setup(args, argv)
    if args.smoke:
        args.files, args.warmup, args.steps = 20, 0, 1
    if 1 not in args.workers:
        p.error("--workers must include 1: the other imports are checked against it and timed against it")
    return args


def write_sources(root: Path, files: int) -> Path:
    """``files`` 48 kHz MP3 recordings of the LibriVox clips and a Common Voice TSV listing them; -> the TSV."""
    import torch
    import torchaudio.functional as F

    from towers.audio import load_audio
    from zipper.data import librivox_examples

    clips = [(load_audio(r["audio_filepath"])[0], r["text"]) for r in librivox_examples(None)]
    (root / "clips").mkdir(parents=True)
    lines = ["client_id\tpath\tsentence"]
    for i in range(files):
        wave, text = clips[i % len(clips)]
        name = f"s{i // len(clips)}-{i % len(clips)}.mp3"
        up = F.resample(torch.from_numpy(wave), 16_000, 48_000).numpy()
        sf.write(root / "clips" / name, up, 48_000)
        lines.append(f"speaker{i // len(clips) % 7}\t{name}\t{text}")
    (root / "validated.tsv").write_text("\n".join(lines) + "\n")
    return root / "validated.tsv"


def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != "corpus.json"}


def main(argv=None) -> dict:
    args = parse_args(argv)
    from towers.corpus_import import assign_splits, import_corpus, read_manifest_sources

    with tempfile.TemporaryDirectory(prefix="zipper-data-import-") as tmp:
        tsv = write_sources(Path(tmp), args.files)
        reference: dict = {}

        def run(workers: int) -> None:
            rows = read_manifest_sources(tsv, tsv.parent / "clips")
            assign_splits(rows, held_out=0.2, seed=0)
            out = Path(tmp) / f"corpus-{workers}"
            info = import_corpus(out, rows, progress=False, workers=workers)
            assert not info["failed"] and sum(info["count_by_split"][s] for s in ("train", "dev", "test")) == args.files
            got = digest(out)
            assert reference.setdefault("files", got) == got, f"--workers {workers} wrote another corpus"
            shutil.rmtree(out)

        run(1)  # the reference corpus
        times = common.interleaved({f"workers={w}": (lambda w=w: run(w)) for w in args.workers},
                                   args.warmup, args.steps)
    one = times["workers=1"]
    result = {"files": args.files, "cores": os.cpu_count(),
              "seconds": {k: common.summarize(v) for k, v in times.items()},
              "files_per_s": {k: round(args.files / common.summarize(v)["median"], 1) for k, v in times.items()},
              "speedup": {k: common.ratios(one, v) for k, v in times.items() if k != "workers=1"}}
    headline = f"import of {args.files} 48 kHz MP3s: " + ", ".join(
        f"{k} {result['files_per_s'][k]} files/s" for k in times) + "".join(
        f"; {k} {common.fmt_stat(s, unit='x')} faster than one" for k, s in result["speedup"].items())
    print(headline)
    common.write_results(NAME, args, result, headline)
    return result


if __name__ == "__main__":
    main()
