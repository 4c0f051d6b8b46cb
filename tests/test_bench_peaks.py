"""bench/peaks.py: the MFU denominators looked up from jax's device_kind strings."""
import importlib.util
import os
import sys

import jax.numpy as jnp

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "bench"))   # peaks imports timing
_spec = importlib.util.spec_from_file_location(
    "peaks", os.path.join(os.path.dirname(__file__), "..", "bench", "peaks.py"))
peaks = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(peaks)


def test_vendor_peaks_by_device_kind_most_specific_first():
    assert peaks.vendor_peak("NVIDIA H100 80GB HBM3", jnp.bfloat16) == 989e12
    assert peaks.vendor_peak("NVIDIA H100 PCIe", jnp.bfloat16) == 756e12
    assert peaks.vendor_peak("NVIDIA H200", jnp.float32) == 494.7e12       # TF32
    assert peaks.vendor_peak("NVIDIA A100-SXM4-40GB", jnp.float32) == 156e12
    assert peaks.vendor_peak("NVIDIA L40S", jnp.bfloat16) == 362e12       # not the L4 entry
    assert peaks.vendor_peak("TPU v5 lite", jnp.bfloat16) == 197e12       # v5e, not v5p
    assert peaks.vendor_peak("TPU v5p", jnp.float32) == 459e12
    assert peaks.vendor_peak("Quadro RTX 9000", jnp.bfloat16) is None


def test_cpu_peak_is_measured():
    peak, source = peaks.device_peak(jnp.float32)
    assert peak is None and "measured" in source
    assert peaks.measured_matmul_peak(jnp.float32, n=128, iters=2) > 1e6
