"""recipes/asr_cpu_chain.sh: every step parses with today's command lines, reads a config that exists, and starts
from the model the step before it wrote; a finished step is skipped (the chain resumes)."""
from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
from pathlib import Path

from tests.conftest import RECIPES, load_recipe_script
from zipper.cli import build_parser

ROOT = RECIPES.parent


def _dry_run(tmp_path: Path) -> list[str]:
    """The chain's printed steps, run from a copy in an empty checkout (so no step's output exists yet)."""
    (tmp_path / "recipes").mkdir(exist_ok=True)
    shutil.copy(RECIPES / "asr_cpu_chain.sh", tmp_path / "recipes")
    env = {**os.environ, "DRY_RUN": "1", "ZIPPER": "zipper", "PY": "python"}
    out = subprocess.run(["bash", "recipes/asr_cpu_chain.sh"], cwd=tmp_path, env=env, check=True,
                         capture_output=True, text=True).stdout
    return [line.removeprefix("[chain] ") for line in out.splitlines()]


def test_each_step_parses_and_starts_from_the_step_before(tmp_path):
    steps = [shlex.split(s) for s in _dry_run(tmp_path)]
    states_parser = load_recipe_script("asr_states").build_parser()
    written = {"runs/asr-medium-units-2100"}  # `zipper train --out`
    last = None
    for argv in steps:
        if argv[:2] == ["python", "recipes/asr_states.py"]:
            a = states_parser.parse_args(argv[2:])
            assert (ROOT / a.config).is_file()
            assert str(Path(a.model).parent) == last, f"{argv}: does not start from {last}"
            last = a.out
            written.add(a.out)
            continue
        assert argv[0] == "zipper", argv
        a = build_parser().parse_args(argv[1:])
        if a.command in ("train", "eval"):
            assert (ROOT / a.config).is_file()
        if a.command == "train" and a.out:
            last = a.out
        if a.command == "eval":
            assert str(Path(a.model).parent) == last and a.fusion and a.results_md
    assert len(steps) == 13 and steps[-1][1] == "eval" and len(written) == 8


def test_a_finished_step_is_skipped(tmp_path):
    """A step is done when its output is there: a built corpus, a results.json (at the step asked for: a run stopped
    earlier, e.g. by a time budget, is resumed; an asr_states.py pass with model/ but no results.json is too)."""
    (tmp_path / "data/corpus-medium").mkdir(parents=True)
    (tmp_path / "data/corpus-medium/corpus.json").write_text("{}")
    tower, zip_ = tmp_path / "runs/pretrain-speech-medium-whisper-proj", tmp_path / "runs/asr-medium-units-2100"
    tower.mkdir(parents=True)
    zip_.mkdir()
    (tower / "results.json").write_text(json.dumps({"steps": 430, "wall_s": 1200.0}, indent=2))
    (zip_ / "results.json").write_text(json.dumps({"steps": 786, "wall_s": 2700.0}, indent=2))
    lines = _dry_run(tmp_path)
    assert lines[0] == "done: [ -e data/corpus-medium/corpus.json ]" and "--stop-step 610" in lines[1]
    assert lines[2].startswith("done: [ -e runs/asr-medium-units-2100/results.json ]") and "--steps 2100" in lines[3]
    (tower / "results.json").write_text(json.dumps({"steps": 610, "wall_s": 1200.0}, indent=2))
    (zip_ / "results.json").write_text(json.dumps({"steps": 2100, "wall_s": 6700.0}, indent=2))
    (tmp_path / "runs/asr-medium-units-2100-input/model").mkdir(parents=True)  # a pass stopped after its 1st epoch
    (tmp_path / "runs/asr-medium-units-2100-input-tower/model").mkdir(parents=True)
    (tmp_path / "runs/asr-medium-units-2100-input/results.json").write_text("{}")  # finished
    lines = _dry_run(tmp_path)
    assert [line.startswith("done:") for line in lines[:6]] == [True] * 5 + [False], lines
    assert "--out runs/asr-medium-units-2100-input-tower " in lines[5]  # model/ but no results.json: resumed
    assert lines[5].startswith("python recipes/asr_states.py --model runs/asr-medium-units-2100-input/model")
