"""Does a text tower adapted to a domain help a trained ASR zip on that domain's speech, the zip unchanged?

    zipper data build --hours 2 --text-sources foldoc --out data/corpus-foldoc     # computing prose, spoken
    zipper train recipes/configs/text_tower_foldoc.json                            # -> runs/text-tower-foldoc/tower
    python recipes/diagnostics/domain_tower.py --model runs/asr-medium-units-2100-input-tower/model \\
        --tower runs/text-tower-foldoc/tower --corpus data/corpus-foldoc --general-corpus data/corpus-medium

The fused WER (the search of `zipper transcribe --fusion`) of the corpus's first ``--utts`` test utterances
(held-out voices reading the domain's held-out sentences), three ways:

* **zip**: the zip as trained, with its own known words (its model directory's known_words.txt);
* **+ domain words**: the domain corpus's training-text words known too (what a word list alone gives,
  `zipper transcribe --fusion-words`);
* **+ domain tower**: the same known words, and the adapted text tower read in place of the original
  (`zipper transcribe --tower text=DIR`).

With ``--general-corpus``, also the first ``--general-utts`` test utterances of that corpus (the zip's own domain)
with each tower: what the swap costs outside the domain. ``--tower-only`` runs only the ways with ``--tower`` (the
others' files kept from an earlier run): e.g. a control tower, tuned the same way on the zip's own training text. Every utterance's hypothesis goes to ``--out``
(``<way>.jsonl``, as `zipper eval` writes them: `compare_asr.py` compares two ways by paired bootstrap).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as `python recipes/diagnostics/domain_tower.py`

from towers import load_tower  # noqa: E402
from towers.audio import load_audio  # noqa: E402
from towers.corpus import read_manifest  # noqa: E402
from towers.scoring import wer  # noqa: E402
from zipper.cli import _load_model, _load_model_codec  # noqa: E402
from zipper.ctc_beam import FUSION_BEAM, known_words  # noqa: E402
from zipper.data import corpus_words  # noqa: E402
from zipper.model import ZipperModel  # noqa: E402
from zipper.tasks import fused_transcribe_units, speech_inputs  # noqa: E402


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="a trained ASR zip directory with a character CTC head")
    p.add_argument("--tower", required=True, help="the adapted text tower (a path or a registered name)")
    p.add_argument("--corpus", required=True, help="the domain's corpus (its test split is transcribed)")
    p.add_argument("--utts", type=int, default=100, help="domain test utterances (the first N)")
    p.add_argument("--general-corpus", help="also this corpus's test utterances, with each tower")
    p.add_argument("--general-utts", type=int, default=50, help="general test utterances (the first N)")
    p.add_argument("--out", default="runs/domain-tower", help="folder for the per-utterance hypotheses")
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument("--tower-only", action="store_true", help="only the ways that read --tower")
    a = p.parse_args(argv)
    if a.utts < 1 or a.general_utts < 1:
        p.error("--utts and --general-utts must be >= 1")
    torch.set_num_threads(a.threads)
    codec = _load_model_codec(a.model)
    zips = {} if a.tower_only else {"zip": _load_model(a.model)}
    zips["domain tower"] = ZipperModel.from_pretrained(a.model, towers={"text": load_tower(a.tower, modality="text")})
    own, domain = known_words(a.model), sorted(corpus_words(a.corpus))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    inputs: dict[tuple[str, int], tuple] = {}  # (corpus, n) -> its rows, units, states: read and encoded once

    def run(name: str, model, corpus: str, n: int, words: list[str]) -> dict:
        if (corpus, n) not in inputs:  # the ways share the speech tower: the same inputs for all of them
            rows = read_manifest(Path(corpus) / "test.jsonl")[:n]
            waves = [load_audio(r["audio_filepath"], target_sr=codec.sample_rate) for r in rows]
            inputs[corpus, n] = (rows, *speech_inputs(model, codec, waves))
        rows, units, states = inputs[corpus, n]
        print(f"[domain_tower] {name}: {len(rows)} utterances of {corpus}", flush=True)
        hyps = fused_transcribe_units(model, units, beam=FUSION_BEAM, words=words, states=states, progress=True)
        refs = [r["text"] for r in rows]
        (out / f"{name.replace(' ', '_')}.jsonl").write_text("".join(
            json.dumps({"id": r["id"], "voice": r["voice"], "ref": r["text"], "hyp": h}, ensure_ascii=False) + "\n"
            for r, h in zip(rows, hyps)))
        score = wer(refs, hyps)
        return {"wer": round(100 * score.wer, 2), "words": score.n_ref_words, "utts": len(rows)}

    result = {"model": a.model, "tower": a.tower, "corpus": a.corpus, "known_words": len(own),
              "domain_words": len(domain), "domain": {}}
    if not a.tower_only:
        result["domain"]["zip"] = run("domain zip", zips["zip"], a.corpus, a.utts, own)
        result["domain"]["+ domain words"] = run("domain words", zips["zip"], a.corpus, a.utts, own + domain)
    result["domain"]["+ domain tower"] = run("domain tower", zips["domain tower"], a.corpus, a.utts, own + domain)
    if a.general_corpus:
        result["general"] = {name: run(f"general {name}", model, a.general_corpus, a.general_utts, own)
                             for name, model in zips.items()}
    (out / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
