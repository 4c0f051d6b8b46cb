#!/usr/bin/env bash
# Regenerates requirements.lock: the exact versions of everything MAGVIT runs with, which
# scripts/install.sh, the Dockerfile and so CI all install (with --no-deps: no resolver runs there).
#
# Stage 1 (setup.py with its test extra) is resolved by pip against the current .venv's versions
# (`pip freeze` as constraints, so the lock is what was tested; pass UPGRADE=1 to resolve fresh);
# stage 2 is the --no-deps group below, which no resolver can install (see setup.py).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${VENV_PYTHON:-.venv/bin/python}
# tf-keras: tensorflow-model-analysis (imported by the TFX Kubeflow V2 container entrypoint) imports it.
NO_DEPS="tfx==1.21.0 ml-pipelines-sdk==1.21.0 ml-metadata==1.17.1 kfp-pipeline-spec==0.6.0 \
tensorflow-model-analysis==0.52.0 tf-keras==2.21.0"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
CONSTRAINTS=()
if [ -z "${UPGRADE:-}" ]; then
  "$PY" -m pip freeze --exclude-editable | grep -v " @ " > "$WORK/constraints.txt" || true
  CONSTRAINTS=(-c "$WORK/constraints.txt")
fi
"$PY" -m pip install --disable-pip-version-check -q --dry-run --ignore-installed \
  --report "$WORK/report.json" "${CONSTRAINTS[@]}" ".[test]"
"$PY" - "$WORK/report.json" "$NO_DEPS" > requirements.lock <<'PYEOF'
import json, sys
report, no_deps = json.load(open(sys.argv[1])), sys.argv[2].split()
pins = sorted((i["metadata"]["name"], i["metadata"]["version"]) for i in report["install"]
              if i["metadata"]["name"].lower() != "magvit")
print("# Exact versions MAGVIT runs with (made by scripts/lock.sh; do not edit by hand).")
print("# Installed with `pip install --no-deps -r requirements.lock` by scripts/install.sh and the")
print("# Dockerfile. Stage 1: setup.py's dependencies (test extra included), resolved by pip.")
for name, version in pins:
    print(f"{name}=={version}")
print("# Stage 2: no resolver can install these together (tfx 1.21 pins ml-metadata 1.21, which has")
print("# no Linux wheel); they are pinned here and installed without their declared dependencies.")
for pin in no_deps:
    print(pin)
PYEOF
echo "lock: wrote requirements.lock ($(grep -c '==' requirements.lock) pins)"
