# The image every step of the Kubeflow / Vertex AI pipeline runs in (and a Dataflow worker can use
# with --sdk_container_image). Same two-stage install as scripts/install.sh: setup.py's
# dependencies first, then tfx / ml-pipelines-sdk / ml-metadata with --no-deps (see setup.py).
#
#   docker build -t REGION-docker.pkg.dev/PROJECT/REPO/magvit:TAG .
#   python -m pipelines.run --orchestrator=kubeflow --image=REGION-docker.pkg.dev/PROJECT/REPO/magvit:TAG \
#       --pipeline_root=gs://BUCKET/runs --config=bair_b --data_root=gs://BUCKET/bair --runner=DataflowRunner ...
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update && apt-get install -y --no-install-recommends ffmpeg libgl1 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /magvit
# Dependencies first (their layer is reused while only the code changes).
COPY setup.py README.md ./
RUN mkdir -p magvit pipelines components tfrecords_schemas \
    && touch magvit/__init__.py pipelines/__init__.py components/__init__.py tfrecords_schemas/__init__.py \
    && python -m pip install "pip>=24" setuptools wheel \
    && python -m pip install ".[test]" \
    && python -m pip install --no-deps tfx==1.21.0 ml-pipelines-sdk==1.21.0 ml-metadata==1.17.1 \
       kfp-pipeline-spec==0.6.0 \
    && python -m pip uninstall -y magvit
# The code, installed editable so `python -m pipelines.run` and the TFX executors import it.
COPY . .
RUN python -m pip install --no-deps -e .
