"""Checkpoint folders: what --out may replace, a swap killed anywhere loses nothing, and model fingerprints."""

import hashlib
import json
import subprocess
import sys
from dataclasses import asdict, field, make_dataclass, replace

import pytest

from vidsearch import checkpoint, registry
from vidsearch.config import ModelConfig
from vidsearch.errors import ModelUnavailable, UsageError


def fake_checkpoint(folder, *, step=1):
    """A folder holding the four checkpoint files (config.json a real model config; the rest marked by `step`)."""
    folder.mkdir(parents=True)
    ModelConfig(name=f"step-{step}", clip_arch="ViT-B-32").save(folder / "config.json")
    for name in ("model.safetensors", "train_state.pt", "train_log.jsonl"):
        (folder / name).write_bytes(f"{name} at step {step}".encode())
    return folder


def snapshot(root):
    """Every file under `root` (hidden ones too) -> its bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# --- what --out may be ---


def test_out_may_be_missing_empty_or_a_checkpoint(tmp_path):
    checkpoint.check_target(tmp_path / "new")
    (tmp_path / "empty").mkdir()
    checkpoint.check_target(tmp_path / "empty")
    checkpoint.check_target(fake_checkpoint(tmp_path / "ckpt"))


@pytest.mark.parametrize("case", ["file", "foreign files", "checkpoint plus a file", "checkpoint plus a folder",
                                  "no weights", "bad config", "link"])
def test_anything_else_at_out_is_refused_and_left_as_it_was(tmp_path, case):
    out = tmp_path / "out"
    if case == "file":
        out.write_bytes(b"my thesis")
    elif case == "foreign files":
        out.mkdir()
        (out / "notes.txt").write_text("keep me")
        (out / "sub").mkdir()
        (out / "sub" / "config.json").write_text("{}")
    elif case.startswith("checkpoint plus"):
        fake_checkpoint(out)
        if case.endswith("file"):
            (out / "README.md").write_text("mine")
        else:
            (out / "eval").mkdir()
            (out / "eval" / "results.json").write_text("{}")
    elif case == "no weights":
        fake_checkpoint(out)
        (out / "model.safetensors").unlink()
    elif case == "bad config":
        fake_checkpoint(out)
        (out / "config.json").write_text('{"not": "a model config"}')
    else:
        fake_checkpoint(tmp_path / "real")
        out.symlink_to(tmp_path / "real")
    before = snapshot(tmp_path)
    with pytest.raises(UsageError, match="--out") as caught:
        checkpoint.check_target(out)
    assert "\n" not in str(caught.value)
    checkpoint.recover(out)  # nothing to recover, and nothing of the user's is touched
    assert snapshot(tmp_path) == before
    assert out.is_symlink() == (case == "link")


# --- recovering a swap ---


def test_killed_between_the_renames_the_old_checkpoint_comes_back(tmp_path):
    out = tmp_path / "out"
    fake_checkpoint(checkpoint.old_path(out), step=5)
    fake_checkpoint(tmp_path / ".out.tmp-abcd1234", step=10)  # finished but never renamed into place
    before = snapshot(checkpoint.old_path(out))
    with pytest.raises(ModelUnavailable, match=r"\.out\.old"):  # a reader says where it is, and moves nothing
        registry.resolve(str(out))
    assert not out.exists()
    checkpoint.recover(out)
    assert snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert registry.resolve(str(out))[0].name == "step-5"


def test_killed_after_the_new_checkpoint_is_in_place_the_old_one_goes(tmp_path):
    out = fake_checkpoint(tmp_path / "out", step=10)
    fake_checkpoint(checkpoint.old_path(out), step=5)
    before = snapshot(out)
    checkpoint.recover(out)
    assert snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_recovery_deletes_nothing_vidsearch_did_not_write(tmp_path):
    out = fake_checkpoint(tmp_path / "out", step=10)
    fake_checkpoint(checkpoint.old_path(out), step=5)
    (checkpoint.old_path(out) / "mine.txt").write_text("not a checkpoint file")
    fake_checkpoint(tmp_path / ".out.tmp-abcd1234")
    (tmp_path / ".out.tmp-abcd1234" / "photo.jpg").write_bytes(b"\xff\xd8")
    fake_checkpoint(tmp_path / ".out.tmp-not-ours")  # not a name vidsearch makes
    before = snapshot(tmp_path)
    checkpoint.recover(out)
    assert snapshot(tmp_path) == before


def save_twice_script(out, kill_at):
    """Python that saves the tiny model to `out` at steps 1 and 2 (different weights), killed at `kill_at`."""
    return (
        "import os, sys, torch; from pathlib import Path; from vidsearch import checkpoint, registry\n"
        "config, model = registry.load_model('tiny')\n"
        "for step in (1, 2):\n"
        "    with torch.no_grad(): model.temporal_embedding.fill_(step)\n"
        f"    os.environ['VIDSEARCH_TEST_KILL_AT'] = {kill_at!r}\n"
        f"    checkpoint.save_checkpoint(model, config, Path({str(out)!r}), step=step,\n"
        "        extra_files={'train_log.jsonl': f'step {step}'.encode()})\n")


@pytest.mark.slow
def test_a_save_killed_at_the_swap_keeps_the_last_checkpoint(tmp_path):
    out = tmp_path / "ckpt"
    subprocess.run([sys.executable, "-c", save_twice_script(out, "none")], check=True)
    finished = snapshot(out)
    assert finished["train_log.jsonl"] == b"step 2"
    out_2 = tmp_path / "killed" / "ckpt"
    proc = subprocess.run([sys.executable, "-c", save_twice_script(out_2, "checkpoint-swap@2")])
    assert proc.returncode == -9
    assert not out_2.exists() and checkpoint.old_path(out_2).is_dir()
    assert len(checkpoint.temp_folders(out_2)) == 1  # the new checkpoint, complete but not in place
    checkpoint.recover(out_2)
    recovered = snapshot(out_2)
    assert recovered["train_log.jsonl"] == b"step 1"
    assert recovered["model.safetensors"] != finished["model.safetensors"]
    assert sorted(p.name for p in out_2.parent.iterdir()) == ["ckpt"]
    # the next save of the same run then swaps over it normally, and the result is what an unkilled run wrote
    subprocess.run([sys.executable, "-c", save_twice_script(out_2, "none")], check=True)
    assert snapshot(out_2) == finished


def test_a_save_refuses_to_replace_what_became_foreign(tmp_path):
    import torch

    config, model = registry.load_model("tiny")
    out = tmp_path / "ckpt"
    checkpoint.save_checkpoint(model, config, out, step=1)
    assert registry.resolve(str(out))[1] == out.resolve()
    (out / "notes.txt").write_text("added while training")
    with torch.no_grad():
        model.temporal_embedding.fill_(1)
    before = snapshot(tmp_path)
    with pytest.raises(UsageError, match="notes.txt"):
        checkpoint.save_checkpoint(model, config, out, step=2)
    assert snapshot(tmp_path) == before


# --- fingerprints ---


def first_formula(config, weights_sha256=None):
    """The fingerprint as the first release computed it: every field but name and description, then the weights."""
    recipe = {k: v for k, v in asdict(config).items() if k not in ("name", "description")}
    digest = hashlib.sha256(hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest().encode())
    if weights_sha256:
        digest.update(weights_sha256.encode())
    return digest.hexdigest()[:16]


def test_a_new_field_at_its_default_keeps_the_digest():
    config = registry.resolve("tiny")[0]
    later = make_dataclass("LaterConfig", [("frame_stride", int, field(default=1))], bases=(ModelConfig,))
    assert later(**asdict(config)).digest() == config.digest()
    assert later(**asdict(config), frame_stride=2).digest() != config.digest()


def test_only_what_changes_the_vectors_is_fingerprinted():
    config = registry.resolve("tiny")[0]
    same = [replace(config, name="x", description="y"), replace(config, fps=2.0), replace(config, clip_frames=8)]
    assert all(c.digest() == config.digest() for c in same)
    changed = [replace(config, temporal_mixing="frame"), replace(config, pooling="mean"), replace(config, max_frames=64),
               replace(config, tubelet_size=2), replace(config, init_seed=1), replace(config, pretrained="openai"),
               replace(config, clip_arch="ViT-B-32")]
    assert len({c.digest() for c in changed} | {config.digest()}) == len(changed) + 1


@pytest.mark.parametrize("spec", ["tiny", "clip-b32", "longvivit-b32"])
def test_a_fingerprint_of_the_first_formula_is_accepted_and_upgraded(spec):
    config = registry.resolve(spec)[0]
    current = registry.fingerprint(spec)
    assert first_formula(config) != current
    assert registry.fingerprint_matches(first_formula(config), spec) == current
    assert registry.fingerprint_matches(current, spec) == current
    other = "clip-b32" if spec != "clip-b32" else "tiny"
    assert registry.fingerprint_matches(first_formula(registry.resolve(other)[0]), spec) is None
    assert registry.fingerprint_matches(registry.fingerprint(other), spec) is None


def test_a_checkpoint_fingerprint_of_the_first_formula_is_accepted(tmp_path):
    config, model = registry.load_model("tiny")
    checkpoint.save_checkpoint(model, config, tmp_path / "ckpt")
    spec = str(tmp_path / "ckpt")
    saved, stamp = registry.resolve(spec)[0], registry.weights_stamp(spec)
    old = first_formula(saved, stamp["sha256"])
    assert registry.fingerprint_matches(old, spec, weights=stamp) == registry.fingerprint(spec) != old
    assert registry.fingerprint_matches(first_formula(saved, "0" * 64), spec, weights=stamp) is None


@pytest.mark.slow
def test_an_index_recorded_with_the_first_formula_is_queried_and_upgraded(tmp_path):
    from cli_helpers import run_cli, run_json
    from media import write_video

    from vidsearch.indexdir import IndexDir

    write_video(tmp_path / "v" / "a.mp4", seconds=2, fps=5)
    home = tmp_path / "idx"
    run_json("index", str(tmp_path / "v"), "--model", "tiny", home=home)
    current = run_json("status", home=home)["model"]
    assert current["fingerprint"] == registry.fingerprint("tiny")

    def record(fingerprint):
        index = IndexDir(home)
        index.db.set_setting("model", {**index.db.get_setting("model"), "fingerprint": fingerprint})
        index.close()

    record("0" * 16)  # other weights: refused
    assert "changed" in run_cli("query", "a gray square", home=home, check=1).stderr
    old = first_formula(registry.resolve("tiny")[0])
    record(old)  # the same weights under the first formula: a reader accepts it and changes nothing
    assert run_json("query", "a gray square", home=home)["hits"]
    assert run_json("status", home=home)["model"]["fingerprint"] == old
    write_video(tmp_path / "v" / "b.mp4", seconds=3, fps=5)  # a writer accepts it and records the current one
    assert run_json("index", str(tmp_path / "v"), home=home)["indexed"] == 1
    assert run_json("status", home=home)["model"] == current
