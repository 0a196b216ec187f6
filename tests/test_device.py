"""GPU paths tested on the CPU (issue #12): precision by capability, half-precision numerics, loss scaling, GPU batch
sizing against measured peaks, the note when `auto` falls back to the CPU, and when a query searches on a GPU."""

from __future__ import annotations

import os
import stat
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from gpu_memory import allocator_peak  # noqa: E402  (the benchmark's measurement, so the test checks the same thing)

from vidsearch import device as dev
from vidsearch import registry
from vidsearch.encoder import (
    GPU_MEMORY_SHARE,
    KERNEL_WORKSPACE_BYTES,
    MAX_WINDOWS_PER_BATCH,
    Encoder,
    TowerShape,
    encode_bytes,
    fitted_peak_bytes,
    windows_that_fit,
)

CPU, CUDA = torch.device("cpu"), torch.device("cuda")
GiB = 2 ** 30
B32 = TowerShape(image_size=224, patch=32, tubelet=1, width=768, mlp_width=3072, heads=12, joint=True)


def fake_capability(monkeypatch, capability):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)


# --- precision, autocast, loss scaling ---------------------------------------------------------------------------

@pytest.mark.parametrize("capability, expected", [((8, 0), torch.bfloat16), ((9, 0), torch.bfloat16),
                                                  ((8, 6), torch.bfloat16), ((7, 5), torch.float16),
                                                  ((7, 0), torch.float16), ((6, 1), torch.float16)])
def test_precision_is_bf16_only_where_the_gpu_runs_it_natively(monkeypatch, capability, expected):
    fake_capability(monkeypatch, capability)
    assert dev.precision(CUDA) == expected
    assert dev.precision(CPU) is None


def test_autocast_follows_precision(monkeypatch):
    with dev.autocast(CPU):
        assert not torch.is_autocast_enabled("cpu")
    monkeypatch.setattr(dev, "precision", lambda device: torch.float16)
    with dev.autocast(CPU):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.float16


@pytest.fixture(scope="module")
def tiny_encoder():
    config, model = registry.load_model("tiny")
    return Encoder(config, model, CPU)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_encoder_agrees_with_fp32(monkeypatch, tiny_encoder, dtype):
    encoder = tiny_encoder
    clips = [np.random.default_rng(i).integers(0, 255, (12, 64, 64, 3), dtype=np.uint8) for i in range(2)]
    texts = ["a red circle moving left", "a blue square moving up"]
    full = encoder.encode_clips(clips), encoder.encode_text(texts)
    monkeypatch.setattr(dev, "precision", lambda device: dtype)  # what a GPU would get, forced on the CPU
    half = encoder.encode_clips(clips), encoder.encode_text(texts)

    def cosines(a, b):
        a, b = np.atleast_2d(a), np.atleast_2d(b)
        return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)

    pairs = [(f[0], h[0]) for f, h in zip(full[0], half[0])] + [(f[1], h[1]) for f, h in zip(full[0], half[0])]
    pairs.append((full[1], half[1]))
    for fp32, reduced in pairs:
        assert cosines(fp32, reduced).min() > 0.99
    assert max(np.abs(f - h).max() for f, h in pairs) > 0  # autocast really ran in half precision


def test_grad_scaler_is_on_only_for_fp16(monkeypatch):
    assert not dev.grad_scaler(CPU).is_enabled()
    monkeypatch.setattr(dev, "precision", lambda device: torch.bfloat16)
    assert not dev.grad_scaler(CPU).is_enabled()
    monkeypatch.setattr(dev, "precision", lambda device: torch.float16)
    assert dev.grad_scaler(CPU).is_enabled()


def test_fp16_grad_scaler_skips_overflowing_steps_and_unscales_the_others(monkeypatch):
    monkeypatch.setattr(dev, "precision", lambda device: torch.float16)
    torch.manual_seed(0)
    x = torch.randn(8, 4)

    def step(model, scaler, factor):
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        optimizer.zero_grad()
        with dev.autocast(CPU):
            loss = model(x).float().pow(2).mean() * factor
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        scaler.step(optimizer)
        scaler.update()

    model, scaler = torch.nn.Linear(4, 1), dev.grad_scaler(CPU)
    before = [p.detach().clone() for p in model.parameters()]
    step(model, scaler, float("inf"))
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # the overflowing step was skipped
    assert scaler.get_scale() == 2.0 ** 16 / 2
    reference = torch.nn.Linear(4, 1)
    reference.load_state_dict(model.state_dict())
    step(model, scaler, 1.0)
    step(reference, torch.amp.GradScaler("cpu", enabled=False), 1.0)
    for scaled, plain, old in zip(model.parameters(), reference.parameters(), before):
        assert not torch.equal(scaled, old)
        torch.testing.assert_close(scaled, plain, rtol=1e-3, atol=1e-4)  # gradients unscaled before the step


# --- fused attention, the memory estimate, GPU batches ---------------------------------------------------------

@pytest.mark.parametrize("capability, dtype, efficient, expected", [
    ((8, 0), torch.bfloat16, True, True),
    ((7, 5), torch.float16, True, True),  # T4: memory-efficient attention in fp16
    ((7, 5), torch.bfloat16, True, False),  # T4 in bf16: neither kernel takes it
    ((7, 5), torch.float16, False, False),  # memory-efficient switched off
    ((8, 0), torch.float16, False, True),  # flash remains
])
def test_fused_attention_by_capability_and_dtype(monkeypatch, capability, dtype, efficient, expected):
    fake_capability(monkeypatch, capability)
    monkeypatch.setattr(torch.backends.cuda, "mem_efficient_sdp_enabled", lambda: efficient)
    assert dev.fused_attention(CUDA, dtype) is expected
    assert dev.fused_attention(CPU, dtype)


@pytest.fixture(scope="module")
def b32_encoder():
    config = registry.resolve("longvivit-b32")[0]
    return Encoder(config, registry.build_model(config, load_pretrained=False), CPU)


@pytest.mark.parametrize("model, mixing, attention, lengths", [
    ("tiny", "joint", "flash", (16, 256)), ("tiny", "joint", "math", (16, 128)), ("tiny", "frame", "math", (16, 256)),
    ("b32", "joint", "flash", (16, 48)), ("b32", "joint", "math", (16, 32)), ("b32", "frame", "flash", (16, 48)),
])
def test_the_estimate_covers_the_measured_peaks_of_half_precision_passes(request, model, mixing, attention, lengths):
    """bf16 autocast with the flash kernel, or fp16 with the math kernel (a GPU without fused attention), on the CPU:
    the estimate is never below the allocator's peak plus the uint8 frames a GPU copies; and where the window, not
    a kernel's fixed scratch, makes the peak (the longer length), the fitted terms match it (the margin and the
    workspace allowance could hide a missing term)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    base = request.getfixturevalue(f"{model}_encoder")
    model = base.model
    model.temporal_mixing = mixing
    measured, estimates = [], []
    try:
        encoder = Encoder(replace(base.config, temporal_mixing=mixing), model, CPU)
        size = encoder.image_size
        dtype, backend = (torch.bfloat16, SDPBackend.FLASH_ATTENTION) if attention == "flash" else (torch.float16, SDPBackend.MATH)
        for frames in lengths:
            clip = np.random.default_rng(frames).integers(0, 255, (frames, size, size, 3), dtype=np.uint8)
            with sdpa_kernel([backend]), torch.autocast("cpu", dtype=dtype):
                encoder.encode_clips([clip[:2]])
                measured.append(allocator_peak(lambda c=clip: encoder.encode_clips([c])) + clip.nbytes)
            estimates.append(encode_bytes(TowerShape.of(model), frames=frames, fused_attention=attention == "flash"))
        fitted = fitted_peak_bytes(TowerShape.of(model), frames=lengths[-1], fused_attention=attention == "flash")
    finally:
        model.temporal_mixing = base.config.temporal_mixing
    for peak, estimate in zip(measured, estimates):
        assert peak <= estimate <= 1.5 * peak + KERNEL_WORKSPACE_BYTES, (measured, estimates)
    assert 0.95 <= fitted / measured[-1] <= 1.2, (fitted, measured)


def test_the_estimate_grows_with_windows_and_with_attention_entries_without_a_fused_kernel():
    one = encode_bytes(B32, frames=256) - KERNEL_WORKSPACE_BYTES
    assert encode_bytes(B32, frames=256, windows=3) - KERNEL_WORKSPACE_BYTES == pytest.approx(3 * one, abs=2)
    fused, unfused = encode_bytes(B32, frames=64), encode_bytes(B32, frames=64, fused_attention=False)
    heads, tokens = 12, 64 * 50
    assert unfused - fused >= heads * tokens ** 2 * 2  # at least the fp16 attention matrix
    frame = replace(B32, joint=False)
    assert encode_bytes(frame, frames=64, fused_attention=False) - encode_bytes(frame, frames=64) < heads * tokens ** 2
    # the float32 copies of the frames count: a 256-frame window at 224 px holds 477 MiB while it is normalised
    assert one >= 256 * 224 * 224 * 3 * 13


def fake_gpu(monkeypatch, *, free, reserved=0, allocated=0, capability=(8, 0)):
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (free, 24 * GiB))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: reserved)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: allocated)
    fake_capability(monkeypatch, capability)


def gpu_encoder(tiny_encoder, shape):
    encoder = Encoder(tiny_encoder.config, tiny_encoder.model, CPU)
    encoder.device, encoder.shape = CUDA, shape
    return encoder


def test_windows_per_batch_fills_the_free_memory_and_is_sized_once(monkeypatch, tiny_encoder):
    encoder = gpu_encoder(tiny_encoder, B32)
    fake_gpu(monkeypatch, free=22 * GiB)
    n = encoder.windows_per_batch(256)
    budget = GPU_MEMORY_SHARE * 22 * GiB
    assert 1 < n < MAX_WINDOWS_PER_BATCH
    assert encode_bytes(B32, frames=256, windows=n) <= budget < encode_bytes(B32, frames=256, windows=n + 1)
    fake_gpu(monkeypatch, free=2 * GiB)  # the allocator now caches the first batch's memory
    assert encoder.windows_per_batch(256) == n
    # a new window length is sized with the cached-but-free memory counted as free
    fake_gpu(monkeypatch, free=2 * GiB, reserved=21 * GiB, allocated=1 * GiB)
    assert encoder.windows_per_batch(128) == windows_that_fit(B32, 128, int(GPU_MEMORY_SHARE * 22 * GiB))


def test_windows_per_batch_counts_the_attention_matrix_without_fused_attention(monkeypatch, tiny_encoder):
    fake_gpu(monkeypatch, free=15 * GiB, capability=(7, 5))
    fused = gpu_encoder(tiny_encoder, B32).windows_per_batch(64)
    monkeypatch.setattr(torch.backends.cuda, "mem_efficient_sdp_enabled", lambda: False)
    unfused = gpu_encoder(tiny_encoder, B32).windows_per_batch(64)
    assert unfused < fused
    assert encode_bytes(B32, frames=64, windows=unfused, fused_attention=False) <= GPU_MEMORY_SHARE * 15 * GiB
    assert gpu_encoder(tiny_encoder, B32).windows_per_batch(256) == 1  # even one does not fit: one at a time


def test_windows_per_batch_is_one_on_the_cpu(tiny_encoder):
    assert tiny_encoder.windows_per_batch(256) == 1


# --- the fallback note -------------------------------------------------------------------------------------------

def nvidia_proc(tmp_path, driver="535.104.05"):
    proc = tmp_path / "proc-driver-nvidia"
    proc.mkdir()
    (proc / "version").write_text(f"NVRM version: NVIDIA UNIX x86_64 Kernel Module  {driver}  Sat Aug 19 01:15:15 UTC "
                                  "2023\nGCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n")
    return proc


@pytest.fixture
def no_cuda(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))  # no nvidia-smi


def test_fallback_note_names_the_cuda_build_the_driver_and_the_cuda12_command(no_cuda, tmp_path):
    note = dev.fallback_note("auto", proc=nvidia_proc(tmp_path))
    assert "\n" not in note
    assert "driver 535.104.05" in note and "CUDA 13.0" in note and "R580" in note
    assert f"pip install torch=={torch.__version__.split('+')[0]} torchvision==" in note
    assert note.endswith("--index-url https://download.pytorch.org/whl/cu126")


def test_no_fallback_note_without_a_visible_gpu_with_cuda_or_when_not_auto(no_cuda, monkeypatch, tmp_path):
    assert dev.fallback_note("auto", proc=tmp_path / "missing") is None
    proc = nvidia_proc(tmp_path)
    assert dev.fallback_note("cpu", proc=proc) is None
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert dev.fallback_note("auto", proc=proc) is None
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert dev.fallback_note("auto", proc=proc) is None


def test_fallback_note_with_a_new_enough_driver_or_a_cpu_only_build(no_cuda, monkeypatch, tmp_path):
    note = dev.fallback_note("auto", proc=nvidia_proc(tmp_path, driver="580.65.06"))
    assert "cannot use it" in note and "CUDA_VISIBLE_DEVICES" in note and "pip install" not in note
    monkeypatch.setattr(torch.version, "cuda", None)
    note = dev.fallback_note("auto", proc=tmp_path / "proc-driver-nvidia")
    assert "CPU-only build" in note and "cu126" in note


def fake_nvidia_smi(folder, body):
    script = folder / "nvidia-smi"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)


def test_fallback_note_asks_nvidia_smi_when_there_is_no_proc_folder(no_cuda, tmp_path):
    bin_dir = tmp_path / "empty-bin"
    fake_nvidia_smi(bin_dir, "echo 550.54.14")
    note = dev.fallback_note("auto", proc=tmp_path / "missing")
    assert "driver 550.54.14" in note and "R580" in note
    fake_nvidia_smi(bin_dir, "echo \"NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\"; exit 9")
    assert dev.fallback_note("auto", proc=tmp_path / "missing") is None
    assert os.environ["PATH"] == str(bin_dir)


# --- where a query searches --------------------------------------------------------------------------------------

def test_search_stays_on_the_cpu_unless_an_exact_index_is_huge():
    assert not dev.search_on_gpu(10 ** 9, CPU)
    smallest = dev.gpu_search_min_segments(512)
    assert smallest > 200_000  # the size at which the index turns IVF (store.IVF_THRESHOLD)
    assert not dev.search_on_gpu(smallest - 1, CUDA) and dev.search_on_gpu(smallest, CUDA)
    assert not dev.search_on_gpu(100_000, "cuda")
    # IVF scans a few cells: the copy alone costs more than the CPU's whole search
    assert not dev.search_on_gpu(10 ** 8, CUDA, scanned=10 ** 8 // 100)


def test_a_cpu_that_scans_faster_than_pcie_copies_never_sends_search_to_the_gpu(monkeypatch):
    monkeypatch.setattr(dev, "CPU_SCAN_BYTES_PER_S", 2 * dev.PCIE_BYTES_PER_S)
    assert dev.gpu_search_min_segments(512) is None
    assert not dev.search_on_gpu(10 ** 10, CUDA)


@pytest.fixture
def small_index(tmp_path):
    from vidsearch.db import Segment
    from vidsearch.indexdir import IndexDir

    index = IndexDir(tmp_path / "index", create=True)
    config = registry.resolve("tiny")[0]
    dim = registry.embedding_dim(config)
    index.db.set_setting("model", {"spec": "tiny", "fingerprint": registry.fingerprint("tiny"), "name": "tiny",
                                   "dim": dim, "weights": None})
    index.db.set_setting("settings", {"fps": 1.0, "window": 32, "segment": 4.0})
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((5, dim)).astype(np.float32)
    segments = [Segment("segment", 4.0 * i, 4.0 * i + 4, v / np.linalg.norm(v)) for i, v in enumerate(vectors)]
    index.db.save_video(path=str(tmp_path / "a.mp4"), size=1, mtime=0.0, hash="h", duration=20.0, fps=1.0,
                        frames=20, segments=segments)
    return index


def test_searcher_keeps_a_small_index_and_the_text_tower_on_the_cpu(monkeypatch, small_index):
    from vidsearch.search import Searcher
    from vidsearch.store import VectorStore

    copied = []
    monkeypatch.setattr(VectorStore, "on_gpu", lambda self: copied.append(self) or self)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    searcher = Searcher(small_index, device="auto")
    assert searcher.vectors and searcher.device == "cpu" and copied == []  # the vectors load on first use
    monkeypatch.setattr(dev, "search_on_gpu", lambda segments, device, **kw: segments == 5 and device.type == "cuda")
    searcher = Searcher(small_index, device="auto")
    assert searcher.vectors and searcher.device == "cpu" and len(copied) == 1  # a large index: the search goes to the GPU
    searcher = Searcher(small_index, device="cuda")
    assert searcher.vectors and searcher.device == "cuda" and len(copied) == 2  # asked for: both on the GPU
