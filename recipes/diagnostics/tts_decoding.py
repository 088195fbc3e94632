"""Does a TTS zip speak better with another decoding rule? Greedy, sampling, and guidance, on one model.

    python recipes/diagnostics/tts_decoding.py --config recipes/configs/tts_base_whisper_proj_frozen.json \
        --model runs/tts-base-whisper-proj-frozen/model --n 50 '{}' '{"guidance": 1.0}' \
        '{"do_sample": true, "temperature": 0.7, "top_k": 20}'

``--skip`` and ``--n`` choose other test sentences than the recipe's; ``--voice`` speaks as a recipe with that
``voice_prompt`` does. Each positional argument is a JSON object of `zipper.tasks.speak_units` settings (``guidance``, ``do_sample``,
``temperature``, ``top_k``); ``{}`` is the recipes' greedy decoding. For each, the ``--n`` test sentences
after the first ``--skip`` are spoken, decoded by the config's codec and heard by the Whisper-base judge, exactly as
the recipe's own test (`zipper.tasks.tts_metrics`, without the teacher-forced ``text_info``, which does
not depend on decoding). Sampling draws from a generator seeded with 0. Prints one JSON line per setting:
judge-WER against the gold text, mean generated units, and the seconds it took. ``--save FILE`` also writes
every sentence's text and what the judge heard (JSON lines, each with a ``source``: this command, the model,
the voice and the git hash), for `compare_tts.py`'s paired comparison of two models on the same sentences.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import torch

from towers.codec import load_codec
from towers.judges import WhisperJudge
from zipper.data import load_split, voice_text_prompt
from zipper.model import ZipperModel
from zipper.recipe import RecipeConfig, splits_used
from zipper.results import git_hash
from zipper.tasks import tts_metrics


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True, help="the TTS recipe config the model was trained with")
    p.add_argument("--model", required=True, help="the trained model directory")
    p.add_argument("--n", type=int, default=50, help="test sentences to speak (the recipe's test uses 50)")
    p.add_argument("--skip", type=int, default=0, help="start after this many test sentences (0: the recipe's)")
    p.add_argument("--voice", default="", help="speak every sentence as '<voice>: <sentence>' (a model trained "
                                               "with the config's voice_prompt; the judge scores the sentence)")
    p.add_argument("--save", help="write each sentence's setting, text and judge transcript to this JSONL file")
    p.add_argument("settings", nargs="+", help="JSON objects of speak_units settings; '{}' is greedy")
    a = p.parse_args(argv)
    settings = [json.loads(s) for s in a.settings]
    if a.save and Path(a.save).exists():  # before minutes of decoding, and without replacing earlier results
        raise SystemExit(f"--save {a.save} exists: choose another file")
    cfg = RecipeConfig.from_json(a.config)
    model = ZipperModel.from_pretrained(a.model)
    codec = load_codec(cfg.codec)
    if a.skip:
        test = load_split(cfg.corpus, "test", codec, keep=lambda rows: rows[a.skip: a.skip + a.n])
    else:  # the recipe's own selection (and units cache)
        test = load_split(cfg.corpus, "test", codec, keep=splits_used(cfg)["test"])[: a.n]
    gold_units = round(sum(len(ex["units"]) for ex in test) / len(test), 1)  # the reference recordings' units
    prompt = {"text_prompt": voice_text_prompt(a.voice)} if a.voice else {}
    test = [{**{k: v for k, v in ex.items() if k != "units"}, **prompt} for ex in test]  # no teacher-forced text_info
    judge, out = WhisperJudge(), []
    for kw in settings:
        if kw.get("do_sample"):
            kw = {**kw, "generator": torch.Generator().manual_seed(0)}
        t = time.time()
        m = tts_metrics(model, test, codec, judge, show=len(test) if a.save else 3, **kw)
        row = {"setting": {k: v for k, v in kw.items() if k != "generator"}, "judge_wer_vs_gold": m["judge_wer_vs_gold"],
               "mean_units": m["mean_units"], "reference_mean_units": gold_units,
               "seconds": round(time.time() - t), "examples": m["examples"][:3]}
        print(json.dumps(row), flush=True)
        out.append({**row, "examples": m["examples"]})
    if a.save:  # every line says what produced it
        source = {"command": shlex.join(["python", "recipes/diagnostics/tts_decoding.py",
                                         *(sys.argv[1:] if argv is None else argv)]),
                  "model": a.model, "voice": a.voice, "git": git_hash()}
        with open(a.save, "w") as fh:
            for row in out:
                fh.writelines(json.dumps({"setting": row["setting"], **ex, "source": source}) + "\n"
                              for ex in row["examples"])
    return out


if __name__ == "__main__":
    main()
