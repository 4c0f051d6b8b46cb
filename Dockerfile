# The image every step of the Kubeflow / Vertex AI pipeline runs in, and a Dataflow custom
# container (--sdk_container_image): the Beam SDK worker boot program is its ENTRYPOINT, which
# Dataflow requires; Kubeflow / Vertex steps set their own command (the TFX entrypoint), which
# replaces it. Installs exactly requirements.lock, with the same commands as scripts/install.sh.
#
#   docker build -t REGION-docker.pkg.dev/PROJECT/REPO/magvit:cpu .
#   docker build --build-arg ACCELERATOR=cuda12 -t REGION-docker.pkg.dev/PROJECT/REPO/magvit:gpu .
#   docker build --build-arg ACCELERATOR=tpu -t REGION-docker.pkg.dev/PROJECT/REPO/magvit:tpu .
#
# ACCELERATOR: cpu (default), cuda12 (NVIDIA GPUs: CUDA jaxlib plugin and CUDA wheels) or tpu.
# Python 3.11 and Beam 2.77.0 here must match the machine that launches a Dataflow job.
FROM python:3.11-slim
ARG ACCELERATOR=cpu
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update && apt-get install -y --no-install-recommends ffmpeg libgl1 \
    && rm -rf /var/lib/apt/lists/*
# The Beam SDK harness boot program (Dataflow starts workers through it).
COPY --from=apache/beam_python3.11_sdk:2.77.0 /opt/apache/beam /opt/apache/beam

WORKDIR /magvit
# Dependencies first (their layer is reused while only the code changes).
COPY requirements.lock ./
ENV PIP="python -m pip --disable-pip-version-check"
RUN $PIP install -q "pip>=24" setuptools wheel \
    && $PIP install -q --no-deps -r requirements.lock \
    && if [ "$ACCELERATOR" != cpu ]; then $PIP install -q -c requirements.lock "jax[$ACCELERATOR]==0.10.2"; fi
# The code, installed editable so `python -m pipelines.run` and the TFX executors import it.
COPY . .
RUN $PIP install -q --no-deps -e . --config-settings editable_mode=compat
ENTRYPOINT ["/opt/apache/beam/boot"]
