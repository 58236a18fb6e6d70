"""Child-process checks that an accelerator (GPU, external delegate) can run a .tflite file.

Creating a GPU context or loading a foreign delegate library can crash the
process; :func:`probe_accelerator` does it in a child process so the caller
stays alive, and turns what went wrong into a one-line reason.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

__all__ = ["probe_accelerator", "delegate_load_failure"]

_PROBE_CACHE: dict[tuple, str | None] = {}

# The child scripts run with ``python -c`` and import only ai_edge_litert, so they
# quote the first line of an error themselves.
_GPU_PROBE = r"""
import sys
from ai_edge_litert.compiled_model import CompiledModel
from ai_edge_litert.hardware_accelerator import HardwareAccelerator
from ai_edge_litert.options import Options
try:
    cm = CompiledModel.from_file(sys.argv[1], options=Options(hardware_accelerators=HardwareAccelerator.GPU))
except Exception as e:
    print("FAIL", str(e).splitlines()[0] if str(e) else type(e).__name__)
    sys.exit(0)
print("OK", int(cm.is_fully_accelerated()))
"""

_DELEGATE_PROBE = r"""
import sys, json
from ai_edge_litert.interpreter import Interpreter, OpResolverType, load_delegate
try:
    d = load_delegate(sys.argv[2], json.loads(sys.argv[3]))
except Exception as e:
    print("FAIL", (str(e).splitlines() or [type(e).__name__])[0][:200]); sys.exit(0)
try:
    it = Interpreter(model_path=sys.argv[1], experimental_delegates=[d],
                     experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    it.allocate_tensors()
except Exception as e:
    print("FAIL", (str(e).splitlines() or [type(e).__name__])[0][:200]); sys.exit(0)
n = sum(1 for i in range(it._interpreter.NumNodes()) if it._interpreter.NodeName(i) == "DELEGATE")
print("OK", n)
"""

_DELEGATE_LOAD = r"""
import sys
from ai_edge_litert.interpreter import load_delegate
try:
    load_delegate(sys.argv[1])
except Exception as e:
    print("FAIL", (str(e).splitlines() or [type(e).__name__])[0][:200]); sys.exit(0)
print("OK")
"""

_REASONS = (
    r"No adapters found",
    r"Failed to initialize WebGPU[^\n]*",
    r"Could not load shared library [^\n:]*",
    r"cannot open shared object file[^\n]*",
    r"GPU accelerator[^\n]*not[^\n]*",
    r"undefined symbol[^\n]*",
)

_NOT_FULLY_ON_GPU = "model is not fully accelerated on the GPU (some ops would silently run on CPU)"

# LiteRT's GPU accelerator (libLiteRtWebGpuAccelerator.so) is WebGPU through Dawn,
# which on Linux reaches a GPU only through Vulkan: it dlopens the Vulkan loader
# (libvulkan.so.1), which asks the installed Vulkan drivers (ICDs) for adapters.
_VULKAN_DRIVERS = ("a Vulkan driver for the GPU (NVIDIA: the driver's Vulkan ICD, nvidia_icd.json, "
                   "from the libnvidia-gl/nvidia-vulkan-icd package; AMD/Intel: mesa-vulkan-drivers)")


def gpu_failure(stderr: str, fallback: str) -> str:
    """Why LiteRT's GPU accelerator could not start, naming what is missing and what provides it.

    Args:
        stderr: What the GPU probe printed on stderr (LiteRT's and Dawn's logs).
        fallback: The reason to give when no known cause is found.

    Returns:
        One line for ``Timing.status`` after "unavailable: ".

    Example:
        >>> gpu_failure("Couldn't load Vulkan: libvulkan.so.1: cannot open shared object file", "x")[:60]
        'no usable GPU: the Vulkan loader libvulkan.so.1 is missing ('
    """
    text = stderr or ""
    m = re.search(r"Couldn't load Vulkan: ([^\s:]+)", text)
    if m:
        return (f"no usable GPU: the Vulkan loader {m.group(1)} is missing (LiteRT's GPU accelerator is WebGPU/Dawn, "
                f"which on Linux needs Vulkan): install it (Debian/Ubuntu: apt install libvulkan1) and "
                f"{_VULKAN_DRIVERS}")
    if "No adapters found" in text:
        return ("no usable GPU: WebGPU/Dawn found no Vulkan adapter (the Vulkan loader is installed but no "
                f"Vulkan driver offers a GPU; check with vulkaninfo --summary): install {_VULKAN_DRIVERS}")
    return "no usable GPU: " + _reason_from(text, fallback)


def _reason_from(text: str, fallback: str) -> str:
    """The first known failure pattern found in a child's stderr, else ``fallback``."""
    for pat in _REASONS:
        m = re.search(pat, text or "")
        if m:
            return m.group(0).strip()[:160]
    return fallback


def _run_probe(script: str, args: list[str], timeout: float = 120.0):
    """Runs a probe script; ``(OK/FAIL line or None if it died, why it died, stderr)``."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    try:
        p = subprocess.run(
            [sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=timeout, env=env
        )
    except subprocess.TimeoutExpired:
        return None, f"probe timed out after {timeout:.0f}s", ""
    line = next((ln for ln in p.stdout.splitlines() if ln.startswith(("OK", "FAIL"))), "")
    if p.returncode < 0:
        return None, f"runtime crashed with signal {-p.returncode}", p.stderr
    return line, "", p.stderr


def _probe_gpu(path: str) -> str | None:
    """None if the GPU runs the whole model, else why not."""
    line, err, stderr = _run_probe(_GPU_PROBE, [path])
    if line is None:
        return f"GPU probe failed ({err})"
    if line.startswith("OK"):
        return None if line.split()[1] == "1" else _NOT_FULLY_ON_GPU
    return gpu_failure(stderr, line[5:].strip() or "GPU accelerator could not be created")


def delegate_load_failure(delegate) -> str | None:
    """None if LiteRT loads ``delegate`` as an external delegate (in a child process), else why not.

    Example:
        >>> delegate_load_failure("/usr/lib/libm.so.6")  # doctest: +SKIP
        'undefined symbol: tflite_plugin_create_delegate'
    """
    line, err, stderr = _run_probe(_DELEGATE_LOAD, [os.fspath(delegate)], timeout=60.0)
    if line is None:
        return f"loading it crashed the probe: {err}"
    if line.startswith("OK"):
        return None
    return _reason_from(stderr, line[5:].strip() or "load failed")


def _probe_delegate(path: str, delegate, delegate_options) -> str | None:
    """None if the external delegate takes at least one op, else why not."""
    name = os.path.basename(os.fspath(delegate))
    line, err, stderr = _run_probe(_DELEGATE_PROBE, [path, os.fspath(delegate), json.dumps(delegate_options or {})])
    if line is None:
        return f"delegate {delegate} crashed the probe ({err})"
    if line.startswith("OK"):
        if int(line.split()[1]) > 0:
            return None
        return f"delegate {name} accepted none of the ops (everything would run on CPU)"
    return f"cannot use delegate {name}: " + _reason_from(stderr, line[5:].strip() or "load failed")


def probe_accelerator(
    path, accelerator: str = "gpu", delegate: str | None = None, delegate_options=None
) -> str | None:
    """Checks in a child process whether ``path`` can run on an accelerator.

    Creating a GPU context or loading a foreign delegate library can crash the
    process; doing it in a child keeps the caller alive. Results are cached per
    file version (path, mtime, size) and accelerator settings.

    Args:
        path: The .tflite file.
        accelerator: "gpu" or "delegate". Defaults to `"gpu"`.
        delegate: Shared library path when ``accelerator="delegate"``. Defaults to `None`.
        delegate_options: Dict of delegate options. Defaults to `None`.

    Returns:
        None if usable, else the reason it is not (for ``Timing.status``).

    Example:
        >>> probe_accelerator("m.tflite", "gpu")   # doctest: +SKIP
        'no usable GPU: the Vulkan loader libvulkan.so.1 is missing (...)'
    """
    path = os.path.abspath(os.fspath(path))
    st = os.stat(path)
    options = json.dumps(delegate_options or {}, sort_keys=True)
    key = (accelerator, path, st.st_mtime_ns, st.st_size, delegate, options)
    if key in _PROBE_CACHE:
        return _PROBE_CACHE[key]
    if accelerator == "gpu":
        reason = _probe_gpu(path)
    else:
        reason = _probe_delegate(path, delegate, delegate_options)
    _PROBE_CACHE[key] = reason
    return reason
