"""Registry models load their open_clip tag from the local Hugging Face cache, with no network, and say
clearly when the weights are neither cached nor downloadable."""

import os
import subprocess
import sys

import pytest
import torch
from cli_helpers import run_cli, run_json
from media import write_video


@pytest.fixture(scope="module")
def hf_home(tmp_path_factory):
    """A Hugging Face cache holding random ViT-B/32 weights where open_clip's `openai` tag looks for them."""
    import open_clip

    home = tmp_path_factory.mktemp("hf")
    repo = home / "hub" / "models--timm--vit_base_patch32_clip_224.openai"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-32-quickgelu")
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(snapshot / "open_clip_model.safetensors"))
    return home


@pytest.mark.slow
def test_clip_b32_indexes_from_cached_weights_offline(hf_home, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(hf_home))
    monkeypatch.setenv("HF_ENDPOINT", "http://no-such-host.invalid")  # only the cache can answer
    write_video(tmp_path / "v" / "clip.mp4", seconds=3, fps=5)
    summary = run_json("index", str(tmp_path / "v"), "--model", "clip-b32", home=tmp_path / "idx")
    assert summary["indexed"] == 1
    status = run_json("status", home=tmp_path / "idx")
    assert status["model"]["spec"] == "clip-b32" and status["model"]["dim"] == 512
    hits = run_json("query", "a gray square", home=tmp_path / "idx")["hits"]
    assert hits and hits[0]["path"].endswith("clip.mp4")
    # the index notes where the weights are, so a query loads only the text tower from them, without open_clip
    weights = status["model"]["weights_file"]
    assert weights.startswith(str(hf_home)) and weights.endswith("open_clip_model.safetensors")
    # in fp32 the tower equals the full model's; with bf16 weights (a CPU that runs bf16 natively) it keeps the
    # direction (test_model covers that rule)
    code = ("import sys; import numpy as np; from vidsearch import encoder; from vidsearch.encoder import Encoder, TextEncoder; "
            "encoder.cpu_runs_bf16 = lambda: False; "
            f"tower = TextEncoder('clip-b32', 'cpu', weights_file={weights!r}); "
            "encoder.cpu_runs_bf16 = lambda: True; "
            f"half = TextEncoder('clip-b32', 'cpu', weights_file={weights!r}); "
            "assert not {'open_clip', 'torchvision'} & set(sys.modules); "
            "texts = ['a gray square', 'a dog on a beach']; "
            "full = Encoder.load('clip-b32', 'cpu').encode_text(texts); "
            "np.testing.assert_allclose(tower.encode_text(texts), full, atol=1e-5); "
            "assert (half.encode_text(texts) * full).sum(-1).min() > 0.999")
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "HF_HOME": str(hf_home)})


@pytest.mark.slow
def test_weights_neither_cached_nor_reachable_give_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("HF_ENDPOINT", "http://no-such-host.invalid")
    write_video(tmp_path / "v" / "clip.mp4", seconds=2, fps=5)
    proc = run_cli("index", str(tmp_path / "v"), "--model", "clip-b32", home=tmp_path / "idx", check=1)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "--model tiny" in lines[0] and "cannot be reached" in lines[0], proc.stderr


@pytest.mark.slow
def test_the_text_tower_loads_from_a_torch_pickle_as_from_safetensors(hf_home, tmp_path):
    from safetensors.torch import load_file

    from vidsearch.registry import load_text_tower

    safetensors = next(hf_home.rglob("open_clip_model.safetensors"))
    wrapped = tmp_path / "weights.bin"  # as some trainers save them: wrapped, with DDP's "module." prefix
    torch.save({"state_dict": {f"module.{k}": v for k, v in load_file(str(safetensors)).items()}}, wrapped)
    tokens = torch.randint(1, 49000, (2, 77))
    outputs = []
    for source in (safetensors, wrapped):
        _, tower, _ = load_text_tower("clip-b32", weights_file=str(source))
        with torch.no_grad():
            outputs.append(tower(tokens))
    torch.testing.assert_close(outputs[0], outputs[1])
    assert load_text_tower("clip-b32", weights_file=str(tmp_path / "gone.bin")) is None  # falls back to the full model
