#!/usr/bin/env bash
# The CPU-only ASR chain behind the lowest test WER measured here (recipes/README.md rows 2m and 2n;
# recipes/RESULTS.md, the 2026-12-06T06:05 rows): fused test WER 28.7% on the first 100 base-corpus test
# utterances, 29.9% on 300, LibriVox 22.5%; a second build by this script (2026-12-07T03:51 row): 30.9%, LibriVox
# 16.9%. Run it from the repository root:
#
#     bash recipes/asr_cpu_chain.sh            # DRY_RUN=1 bash recipes/asr_cpu_chain.sh: print the steps only
#
# Each step is skipped once its output exists, so the same command resumes after a stop (an interrupted `zipper
# train` or asr_states.py pass resumes from its last checkpoint). Measured step times on 2 CPU cores are in
# recipes/RESULTS.md (wall_s of each row); the whole chain is ~7 hours. The measured runs stopped at time budgets
# (20 and 45 minutes); `--stop-step` stops these at the steps those budgets reached on that machine, on the same
# schedules, so any machine trains the same.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -n "${DRY_RUN:-}" ] || bash scripts/setup.sh
ZIPPER=${ZIPPER:-.venv/bin/zipper}
PY=${PY:-.venv/bin/python}
MEDIUM=recipes/configs/asr_medium_whisper_proj_chars_guided.json
BASE=recipes/configs/asr_base_whisper_proj_chars_guided.json

step() {  # step DONE COMMAND...: run COMMAND unless DONE (a shell test: its output is there) holds
  local done=$1; shift
  if eval "$done"; then echo "[chain] done: $done"; return; fi
  echo "[chain] $*"
  [ -n "${DRY_RUN:-}" ] || "$@"
}
states() {  # states FROM TO ARGS...: a recipes/asr_states.py pass from runs/FROM's model to runs/TO
  local from=$1 to=$2; shift 2  # results.json marks a finished pass (model/ is written at its first epoch)
  step "[ -e runs/$to/results.json ]" "$PY" recipes/asr_states.py --model "runs/$from/model" --out "runs/$to" "$@"
}

# 1. The medium corpus (~6 h of speech) and a speech tower pretrained on its speech: 610 steps of a 3,000-step
#    schedule (where the config's 20-minute budget stopped it; RESULTS.md, 2026-12-05T14:44).
step "[ -e data/corpus-medium/corpus.json ]" "$ZIPPER" data build --size medium --out data/corpus-medium
step "grep -qs '\"steps\": 610,' runs/pretrain-speech-medium-whisper-proj/results.json" \
  "$ZIPPER" train recipes/configs/speech_tower_medium_whisper_proj.json --max-minutes 0 --stop-step 610
# 2. The units-only ASR zip (frozen SmolLM2, character CTC head, guided attention): 786 steps of the config's
#    2,400-step schedule (a 45-minute budget's, 2026-12-05T15:04), then resumed on a 2,100-step one (16:48).
Z=runs/asr-medium-units-2100
step "[ -e $Z/results.json ]" "$ZIPPER" train "$MEDIUM" --out $Z --max-minutes 0 --stop-step 786
step "grep -qs '\"steps\": 2100,' $Z/results.json" "$ZIPPER" train "$MEDIUM" --out $Z --max-minutes 0 --steps 2100
# 3. The Whisper-base states beside the units (row 2l): the feature input, the speech tower, the decoder.
R=asr-medium-units-2100
states $R $R-input --config "$MEDIUM" --train input --train-utts 4488 --epochs 2
states $R-input $R-input-tower --config "$MEDIUM" --train tower --train-utts 4488 --epochs 3
states $R-input-tower $R-input-tower-dec --config "$MEDIUM" --train decoder --train-utts 4488 --epochs 2
# 4. The same passes on base-corpus training utterances the medium zip has not seen (the base corpus's first 4,488
#    training sentences are the medium one's): three tower passes, a decoder pass.
step "[ -e data/corpus-base/corpus.json ]" "$ZIPPER" data build --size base --out data/corpus-base
R=$R-input-tower-dec
states $R $R-base8k --config "$BASE" --train tower --skip-utts 4488 --train-utts 8000 --epochs 1
states $R-base8k $R-base8k-base10k --config "$BASE" --train tower --skip-utts 12488 --train-utts 9951 --epochs 1
states $R-base8k-base10k $R-base8k-base10k-base8k2 --config "$BASE" --train tower --skip-utts 4488 --train-utts 8000 --epochs 1
states $R-base8k-base10k-base8k2 $R-base8k-base10k-base8k2-dec --config "$BASE" --train decoder --skip-utts 4488 --train-utts 8000 --epochs 1
# 5. The test: first 100 test utterances and the LibriVox clips, fused CTC/decoder search with the base corpus's
#    training words known; appends the row to recipes/RESULTS.md.
R=$R-base8k-base10k-base8k2-dec
step "[ -e runs/$R/hyps/model/asr_base_whisper_proj_chars_guided/test_asr_fusion.jsonl ]" \
  "$ZIPPER" eval "$BASE" --model runs/$R/model --fusion --results-md
