#!/usr/bin/env bash
# Creates .venv/ and installs MAGVIT with exactly the versions in requirements.lock (the same
# ones the Dockerfile installs, so CI, a laptop and the cloud image run one stack). Idempotent: a
# second run finds everything in place and only re-checks it.
#
# The lock is installed with --no-deps: it lists every package, and no resolver could install
# TFX 1.21 on Linux anyway (tfx pins ml-metadata 1.21 and tensorflow-data-validation 1.21, which
# publish no Linux wheels; the lock has ml-metadata 1.17.1). scripts/lock.sh regenerates it.
# Never `import tfx.v1` (it needs TFDV); import the DSL modules directly.
#
#   ACCELERATOR=cpu (default) | cuda12 (NVIDIA GPUs) | tpu: which jaxlib backend to add.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
ACCELERATOR=${ACCELERATOR:-cpu}
VENV=.venv
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
PIP="$VENV/bin/python -m pip --disable-pip-version-check"
STAMP="$VENV/.installed"
HASH=$(cat setup.py requirements.lock scripts/install.sh | sha256sum | cut -d' ' -f1)-$ACCELERATOR
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$HASH" ]; then
  echo "install: .venv is up to date ($VENV)"
  exit 0
fi
# --- the same commands as the Dockerfile (tests/test_packaging.py keeps them identical) ---
$PIP install -q "pip>=24" setuptools wheel
$PIP install -q --no-deps -r requirements.lock
if [ "$ACCELERATOR" != cpu ]; then $PIP install -q -c requirements.lock "jax[$ACCELERATOR]==0.10.2"; fi
# compat mode: a .pth entry for the repo root, so packages added later import without reinstalling
$PIP install -q --no-deps -e . --config-settings editable_mode=compat
# --- end of the shared commands ---
echo "$HASH" > "$STAMP"
echo "install: done ($VENV)"
