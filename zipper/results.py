"""The results tables: one row per run in recipes/RESULTS.md (ESPnet style), the numbers beside the command that
made them, the machine and the git hash of the code that ran.
"""
from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from zipper.config import ConfigError

if TYPE_CHECKING:  # the recipe imports this module
    from zipper.recipe import RecipeConfig

RESULTS_MD = Path(__file__).resolve().parent.parent / "recipes" / "RESULTS.md"


def check_results_md(path: str | Path, hint: str = "") -> None:
    """A results file `append_results_row` can write (it skips a missing folder), refused before any work."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"--results-md {path} is a directory; pass a file in an existing folder{hint}")
    if not path.parent.is_dir():
        raise ConfigError(f"--results-md {path}: its folder {path.parent} does not exist; pass a file in an existing "
                          f"folder{hint}")


def machine() -> str:
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {gpu}"


def git_hash() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, timeout=5).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _headline(results: dict) -> str:
    m = results.get("metrics", {})
    shown = ("wer", "cer", "ctc_wer", "ctc_cer", "speech_info", "text_info", "judge_wer_vs_gold",
             "judge_wer_vs_reference_transcript", "reference_audio_judge_wer", "dnsmos_ovrl", "reference_audio_dnsmos_ovrl")
    parts = []
    for k, v in m.items():
        if isinstance(v, dict):
            parts += [f"{k}.{kk}={vv}" for kk, vv in v.items() if kk in shown]
        elif k != "step":
            parts.append(f"{k}={v}")
    return "; ".join(parts)


def append_results_row(cfg: RecipeConfig, results: dict, path: Path = RESULTS_MD) -> None:
    """One row per run in recipes/RESULTS.md (ESPnet style): numbers next to the command that made them."""
    steps, best = results.get("steps"), results.get("best")
    kept = results.get("kept", best)  # the weights saved and tested (a run recorded before "kept": best's)
    if kept and kept["step"] == steps != best["step"]:  # a time budget's end beat the best scheduled evaluation
        steps = f"{steps} (its last weights: {cfg.best_metric} better than step {best['step']}'s, the best scheduled)"
    elif kept:
        steps = f"{steps} (weights of {kept['step']}: best {cfg.best_metric})"
    wall, segment = results.get("wall_s"), results.get("segment_wall_s")
    if segment is not None and segment != wall:  # a resumed run: all its segments, then this one's
        wall = f"{wall} (last segment {segment})"
    where, commit, command = results["machine"], results["git"], f"`{results['command']}`"
    tested = results.get("tested")
    if tested:  # trained on one machine, tested later (`zipper eval --results-md`), maybe on another
        where += f"; tested: {tested['machine']}"
        commit += f"; tested: {tested['git']}"
        command += f"; tested {tested['date'][:16]}: `{tested['command']}`"
    hours = results.get("train_hours")  # None: text alone (adapt_text)
    size = f"{results.get('train_utts')}" + (f" ({hours})" if hours is not None else " (text)")
    append_row(path, f"| {results['started'][:16]} | {cfg.task} | {_headline(results)} | {size} | {steps} | {wall} "
                     f"| {where} | {commit} | {command} |\n")


def append_row(path: Path, row: str) -> None:
    """Appends one row to a results table, writing its header first if the file is new (nothing if its folder is
    missing: a checkout without recipes/)."""
    path = Path(path)
    if not path.parent.exists():
        return
    if not path.exists():
        path.write_text("# Recipe results\n\nEvery row was appended by the run it describes. Re-run the command in "
                        "its row to reproduce it.\n\n"
                        "| date (UTC) | task | results | train utts (h) | steps | wall s | machine | git | command |\n"
                        "|---|---|---|---|---|---|---|---|---|\n")
    with open(path, "a") as fh:
        fh.write(row)
