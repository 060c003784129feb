#!/usr/bin/env bash
# Idempotent setup: system packages (ffmpeg + offline TTS engines), then a venv with the project installed.
# Usage: bash scripts/setup.sh            (creates ./.venv)
#        VENV=/path/to/venv bash scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}

APT_PKGS=(ffmpeg espeak-ng flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts sox chromium)
missing=()
for p in "${APT_PKGS[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    echo "[setup] installing system packages: ${missing[*]}"
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
  else
    echo "[setup] WARNING: no apt-get; install ${missing[*]} yourself (ffmpeg is required, the rest are TTS engines)" >&2
  fi
fi

if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q -U pip
fi
# The constraints file pins the verified stack; pyproject.toml itself only holds ranges.
"$VENV/bin/pip" install -q -c constraints/ci.txt -e ".[train,tts,demo,dev]"
echo "[setup] ready: $VENV/bin/speechtext"
