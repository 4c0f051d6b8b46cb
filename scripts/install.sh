#!/usr/bin/env bash
# Creates .venv/ and installs MAGVIT with everything it needs. Idempotent: a second run finds
# everything in place and only re-checks it.
#
# Two stages, because no resolver can install TFX 1.21 on Linux: tfx pins ml-metadata 1.21 and
# tensorflow-data-validation 1.21, which publish no Linux wheels. Stage 1 resolves everything else
# (setup.py); stage 2 adds tfx, ml-pipelines-sdk and ml-metadata 1.17.1 (which has a Linux wheel)
# with --no-deps, plus kfp-pipeline-spec for the Kubeflow V2 compiler. Never `import tfx.v1`
# (it needs TFDV); import the DSL modules directly. Do not install `kfp` here: it pins protobuf<5.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
VENV=.venv
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
PIP="$VENV/bin/python -m pip --disable-pip-version-check"
STAMP="$VENV/.installed"
HASH=$(cat setup.py scripts/install.sh | sha256sum | cut -d' ' -f1)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$HASH" ]; then
  echo "install: .venv is up to date ($VENV)"
  exit 0
fi
$PIP install -q --upgrade "pip>=24" setuptools wheel
# compat mode: a .pth entry for the repo root, so packages added later import without reinstalling
$PIP install -q -e ".[test]" --config-settings editable_mode=compat
$PIP install -q --no-deps tfx==1.21.0 ml-pipelines-sdk==1.21.0 ml-metadata==1.17.1 kfp-pipeline-spec==0.6.0
echo "$HASH" > "$STAMP"
echo "install: done ($VENV)"
