"""The device switch: CUDA when present, else CPU; the precision, autocast and gradient scaler that go with it
(and whether a CPU runs bf16); why `auto` fell back to the CPU; and whether a query's vector search is worth a GPU."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
from pathlib import Path

import torch

from .errors import UsageError

DEVICES = ("auto", "cpu", "cuda")

# bf16 runs natively from Ampere (compute capability 8.0) on. Before it (T4 is 7.5) bf16 is emulated, and SDPA's
# flash and memory-efficient kernels refuse it, so attention would materialise the whole attention matrix.
NATIVE_BF16_CAPABILITY = (8, 0)

NVIDIA_PROC = Path("/proc/driver/nvidia")
# The oldest Linux driver branch each CUDA major version runs on (CUDA's minor-version compatibility).
CUDA_DRIVER_BRANCH = {11: 450, 12: 525, 13: 580}
CUDA12_INDEX = "https://download.pytorch.org/whl/cu126"

# When a query's vector search pays for a GPU (see `search_on_gpu`). Measured by `bench/gpu_memory.py --search`
# (bench/RESULTS.md): one FAISS thread scanned exact indexes of 50k-400k vectors at 5.9-11.7 GB/s on this machine's
# CPU; the slow end is taken, which favours the GPU.
CPU_SCAN_BYTES_PER_S = 6.8e9
# Estimates, not measured (no GPU here): copying the vectors to the GPU over PCIe 3.0 x16, and starting CUDA and
# FAISS's GPU resources (context, cuBLAS handle, temporary memory) in a fresh process.
PCIE_BYTES_PER_S = 10e9
GPU_START_SECONDS = 0.5


def resolve_device(name: str = "auto") -> torch.device:
    if name not in DEVICES:
        raise UsageError(f"--device must be one of {', '.join(DEVICES)}, got {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda was asked for but no CUDA GPU is available; use --device cpu")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def precision(device: torch.device) -> torch.dtype | None:
    """The autocast dtype for `device`: bf16 on GPUs that run it natively (compute capability 8.0 and later, and
    ROCm), fp16 on older GPUs, None (plain fp32) on the CPU."""
    if device.type != "cuda":
        return None
    if torch.version.hip or torch.cuda.get_device_capability(device) >= NATIVE_BF16_CAPABILITY:
        return torch.bfloat16
    return torch.float16


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """Autocast to `precision(device)` (half precision lets GPUs take flash attention); nothing on the CPU."""
    dtype = precision(device)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def cpu_runs_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively (AMX or AVX512-BF16). There a query's text tower keeps its weights
    in bf16: it reads half the bytes per query (the weights do not fit in cache), 32 -> 17 ms for ViT-B/32's on one
    thread here, for a vector within 1e-4 of fp32's in cosine (bench/RESULTS.md, serve)."""
    return any(bool(getattr(torch.cpu, probe, lambda: False)())
               for probe in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"))


def grad_scaler(device: torch.device) -> torch.amp.GradScaler:
    """The loss scaler training needs under fp16 autocast (fp16 gradients underflow without it); disabled, so that
    its calls pass straight through, for bf16 and fp32."""
    return torch.amp.GradScaler(device.type, enabled=precision(device) == torch.float16)


def fused_attention(device: torch.device, dtype: torch.dtype | None) -> bool:
    """Does SDPA take a fused kernel (flash or memory-efficient), which never holds the attention matrix, for
    `dtype` on `device`? Flash needs compute capability 8.0 and half precision; memory-efficient runs fp16 and fp32
    from 5.0 and bf16 from 8.0. Also False when the kernels are switched off (`torch.backends.cuda`)."""
    if device.type != "cuda":
        return True  # the CPU's flash kernel works in blocks, whatever the dtype
    capability = torch.cuda.get_device_capability(device)
    flash = torch.backends.cuda.flash_sdp_enabled() and dtype in (torch.float16, torch.bfloat16) and capability >= (8, 0)
    efficient = torch.backends.cuda.mem_efficient_sdp_enabled() and (
        capability >= (8, 0) or (capability >= (5, 0) and dtype != torch.bfloat16))
    return flash or efficient


def fallback_note(requested: str = "auto", *, proc: Path = NVIDIA_PROC) -> str | None:
    """One line saying why `--device auto` runs on the CPU although an NVIDIA GPU is visible (the driver's
    `/proc` folder exists or `nvidia-smi` answers), with the command that installs a PyTorch the driver can run;
    None when `requested` is not auto, CUDA works, no NVIDIA GPU is visible, or CUDA_VISIBLE_DEVICES hides it."""
    if requested != "auto" or torch.cuda.is_available() or os.environ.get("CUDA_VISIBLE_DEVICES") in ("", "-1"):
        return None
    driver = nvidia_driver(proc)
    if driver is None:
        return None
    have = f"an NVIDIA GPU is visible{f' (driver {driver})' if driver else ''}"
    build = torch.__version__
    install = f"pip install torch=={build.split('+')[0]}{_torchvision_pin()} --index-url {CUDA12_INDEX}"
    if torch.version.cuda is None:
        return f"{have} but PyTorch {build} is a CPU-only build, so this runs on the CPU; for a CUDA 12 build: {install}"
    major = int(torch.version.cuda.split(".")[0])
    needs = CUDA_DRIVER_BRANCH.get(major)
    if needs is None or (driver and int(driver.split(".")[0]) >= needs):
        return (f"{have} but PyTorch {build} (CUDA {torch.version.cuda}) cannot use it, so this runs on the CPU; "
                "check CUDA_VISIBLE_DEVICES and `nvidia-smi`")
    return (f"{have} but PyTorch {build} is built for CUDA {torch.version.cuda}, which needs driver R{needs} or newer, "
            f"so this runs on the CPU; for a CUDA 12 build (driver R{CUDA_DRIVER_BRANCH[12]}+): {install}")


def nvidia_driver(proc: Path = NVIDIA_PROC) -> str | None:
    """The NVIDIA driver's version when an NVIDIA GPU is visible ("" when its version cannot be read), else None."""
    if proc.is_dir():
        try:
            found = re.search(r"Kernel Module\b.*?\s(\d+\.\d+(?:\.\d+)?)\s", (proc / "version").read_text())
        except OSError:
            found = None
        return found.group(1) if found else ""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        answer = subprocess.run([smi, "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True,
                                text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    versions = answer.stdout.split()
    if answer.returncode != 0 or not versions:
        return None
    return versions[0] if re.fullmatch(r"\d+\.\d+(?:\.\d+)?", versions[0]) else ""


def _torchvision_pin() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f" torchvision=={version('torchvision').split('+')[0]}"
    except PackageNotFoundError:
        return ""


def search_on_gpu(segments: int, device: torch.device | str, *, dim: int = 512, scanned: int | None = None) -> bool:
    """Is one query's vector search faster on `device`'s GPU than on the CPU? Only when scanning `scanned` vectors
    (all `segments` for an exact index, the probed cells' share for IVF) on the CPU takes longer than starting CUDA
    and copying all `segments` vectors to the GPU. Copying reads every vector at PCIe speed, so it costs about what
    an exact CPU scan of them does: the GPU pays only for exact indexes far past the size at which the index turns
    IVF (`gpu_search_min_segments`), and never for IVF."""
    if torch.device(device).type != "cuda":
        return False
    scanned = segments if scanned is None else scanned
    cpu = scanned * dim * 4 / CPU_SCAN_BYTES_PER_S
    gpu = GPU_START_SECONDS + segments * dim * 4 / PCIE_BYTES_PER_S
    return cpu > gpu


def gpu_search_min_segments(dim: int = 512) -> int | None:
    """The smallest exact index (in vectors of `dim` floats) whose search `search_on_gpu` sends to a GPU; None if
    the CPU scans faster than PCIe copies, so that the GPU never pays."""
    saved_per_vector = dim * 4 / CPU_SCAN_BYTES_PER_S - dim * 4 / PCIE_BYTES_PER_S
    return int(GPU_START_SECONDS / saved_per_vector) + 1 if saved_per_vector > 0 else None
