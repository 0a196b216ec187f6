"""Training through the real CLI: it learns, it resumes exactly, torchrun matches one process, bad manifests."""

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import zipfile

import pytest
import torch
from cli_helpers import run_cli, run_json


def log(folder):
    return [json.loads(line) for line in (folder / "train_log.jsonl").read_text().splitlines()]


def losses(folder):
    return [line["loss"] for line in log(folder)]


@pytest.mark.slow
def test_training_learns_far_above_chance(trained_tiny):
    folder, summary = trained_tiny
    assert summary["step"] == 150 and summary["checkpoint"] == str(folder)
    config = json.loads((folder / "config.json").read_text())
    assert config["temporal_mixing"] == "joint" and config["clip_frames"] == 8
    assert [line["step"] for line in log(folder)] == list(range(10, 151, 10))  # every --log-every 10 steps by default
    curve = losses(folder)
    assert sum(curve[-3:]) / 3 < 0.7 * sum(curve[:3]) / 3
    # 16 held-out scenes with (almost) unique captions: chance R@1 is about 1/16
    assert summary["val"]["t2v_r1"] >= 0.25, summary["val"]
    assert summary["val"]["t2v_r5"] >= 0.6, summary["val"]


@pytest.mark.slow
def test_eval_command_reports_recall(trained_tiny, synthetic):
    folder, summary = trained_tiny
    metrics = run_json("eval", str(synthetic[1]), "--model", str(folder))
    assert metrics == summary["val"]
    assert set(metrics) >= {"t2v_r1", "t2v_r5", "t2v_r10", "t2v_median_rank", "v2t_r1", "v2t_median_rank"}


@pytest.mark.slow
def test_the_trained_model_finds_the_right_moment(trained_tiny, synthetic, tmp_path):
    folder, _ = trained_tiny
    test = synthetic[1]
    rows = [json.loads(line) for line in test.read_text().splitlines()]
    home = tmp_path / "index"
    run_cli("index", str(test.parent / "videos"), "--model", str(folder), "--segment", "8", home=home)
    found = 0
    rows = rows[::2]  # one query per 16 s keeps the test quick; each is a fresh process
    for row in rows:
        hits = run_json("query", row["caption"], "-k", "3", home=home)["hits"]
        path = str((test.parent / row["video"]).resolve())
        found += any(h["path"] == path and h["start"] < row["end"] and h["end"] > row["start"] for h in hits)
    # 16 scenes of 8 s: a random ranking puts the right one in the top 3 about 1.5 times in 8
    assert found >= 5, f"{found}/{len(rows)} queries found their scene in the top 3"
    # a query on a checkpoint-built index loads only the text tower, and imports neither open_clip nor torchvision
    code = ("import sys; from pathlib import Path; from vidsearch.indexdir import IndexDir; "
            "from vidsearch.search import Searcher; from vidsearch.terms import parse_query; "
            f"assert Searcher(IndexDir(Path({str(home)!r}))).search(parse_query('a red circle'), k=1); "
            "assert not {'open_clip', 'torchvision'} & set(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)


RESUMABLE = ["--model", "tiny", "--frames", "4", "--steps", "18", "--batch-size", "8", "--lr", "1e-3",
             "--checkpoint-every", "5", "--device", "cpu", "--log-every", "1"]


@pytest.fixture(scope="module")
def whole_run(synthetic, tmp_path_factory):
    """The loss curve of a 18-step run that nothing interrupts."""
    out = tmp_path_factory.mktemp("whole") / "ckpt"
    run_cli("train", str(synthetic[0]), *RESUMABLE, "--out", str(out))
    return losses(out)


def killed_run(manifest, out, point, *extra):
    """Start the RESUMABLE run (with `extra` flags) into `out` and SIGKILL it at the named crash point."""
    proc = run_cli("train", str(manifest), *RESUMABLE, *extra, "--out", str(out), env={"VIDSEARCH_TEST_KILL_AT": point},
                   check=None)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]


@pytest.mark.slow
def test_resume_after_a_kill_retraces_the_uninterrupted_run(synthetic, whole_run, tmp_path):
    killed = tmp_path / "killed"
    # logged every 3 steps (the uninterrupted run logs every step), decoded in 2 worker processes
    killed_run(synthetic[0], killed, "train-step@12", "--log-every", "3", "--workers", "2")
    assert _checkpoint_step(killed) == 10 and [line["step"] for line in log(killed)] == [3, 6, 9]  # the checkpoint at 10
    summary = json.loads(run_cli("train", str(synthetic[0]), "--out", str(killed), "--resume", "--json").stdout)
    assert summary["step"] == 18
    assert [line["step"] for line in log(killed)] == list(range(3, 19, 3))  # the saved --log-every, in step with before
    assert losses(killed) == pytest.approx(whole_run[2::3], abs=1e-4)


@pytest.mark.slow
def test_a_kill_while_swapping_checkpoints_loses_nothing_and_resume_puts_it_back(synthetic, whole_run, tmp_path):
    killed = tmp_path / "killed"
    killed_run(synthetic[0], killed, "checkpoint-swap@10")
    old = tmp_path / ".killed.old"
    assert not killed.exists() and _checkpoint_step(old) == 5  # between the renames: step 5 waits beside it
    proc = run_cli("eval", str(synthetic[1]), "--model", str(killed), check=1)
    assert proc.stderr.count("\n") == 1 and str(old) in proc.stderr  # a reader says where the checkpoint is
    assert not killed.exists()
    summary = json.loads(run_cli("train", str(synthetic[0]), "--out", str(killed), "--resume", "--json").stdout)
    assert summary["step"] == 18
    assert losses(killed) == pytest.approx(whole_run, abs=1e-4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["killed"]  # no .old or temporary folder left


@pytest.mark.slow
def test_a_kill_while_swapping_then_a_new_run_puts_the_checkpoint_back_first(synthetic, tmp_path):
    killed = tmp_path / "killed"
    killed_run(synthetic[0], killed, "checkpoint-swap@10")
    saved = {p.name: p.read_bytes() for p in (tmp_path / ".killed.old").iterdir()}
    bad = tmp_path / "empty.jsonl"  # a run that fails before training still recovers the checkpoint first
    bad.write_text("")
    run_cli("train", str(bad), "--out", str(killed), "--model", "tiny", "--device", "cpu", check=2)
    assert {p.name: p.read_bytes() for p in killed.iterdir()} == saved
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.jsonl", "killed"]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("torchrun", path=os.path.dirname(sys.executable)) is None, reason="torchrun missing")
def test_torchrun_with_two_processes_matches_one_process(synthetic, tmp_path):
    train, _ = synthetic
    args = ["train", str(train), "--model", "tiny", "--frames", "4", "--steps", "4", "--batch-size", "16", "--lr", "1e-3",
            "--mask-ratio", "0", "--device", "cpu", "--log-every", "1"]
    run_cli(*args, "--out", str(tmp_path / "one"), "--workers", "0")  # decoded in a thread; each rank below has a worker
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([torchrun, "--standalone", "--nproc_per_node=2", "-m", "vidsearch", *args, "--out",
                           str(tmp_path / "two")], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(losses(tmp_path / "one")) == 4
    assert losses(tmp_path / "two") == pytest.approx(losses(tmp_path / "one"), abs=1e-4)


@pytest.mark.slow
def test_a_bad_manifest_gives_line_numbered_errors_and_training_goes_on(synthetic, tmp_path):
    train, _ = synthetic
    lines = train.read_text().splitlines()
    (tmp_path / "broken.mp4").write_bytes(b"not a video at all")
    bad = [json.dumps({"caption": "no video"}), json.dumps({"video": str(tmp_path / "broken.mp4"), "caption": "x"}),
           json.dumps({"video": json.loads(lines[0])["video"], "start": 4, "end": 1, "caption": "backwards"}),
           json.dumps({"video": json.loads(lines[0])["video"], "caption": ""}),
           json.dumps({"video": json.loads(lines[0])["video"], "start": 10_000, "caption": "after the end"})]
    manifest = train.parent / "with-bad-lines.jsonl"
    manifest.write_text("\n".join(lines[:40] + bad) + "\n")
    proc = run_cli("train", str(manifest), "--out", str(tmp_path / "out"), "--model", "tiny", "--frames", "4", "--steps",
                   "2", "--batch-size", "8", "--device", "cpu")
    skipped = [line for line in proc.stderr.splitlines() if line.startswith("skipped: ")]
    assert [line.split(":")[2] for line in skipped] == ["41", "42", "43", "44", "45"], proc.stderr
    assert "missing key: video" in skipped[0] and "unreadable video" in skipped[1]
    assert "after start" in skipped[2] and "empty caption" in skipped[3] and "video's end" in skipped[4]
    assert (tmp_path / "out" / "model.safetensors").is_file()


def _checkpoint_step(folder):
    if not (folder / "model.safetensors").is_file() or not (folder / "train_state.pt").is_file():
        return 0
    return torch.load(folder / "train_state.pt", weights_only=True)["step"]


# --- what --out may be, and what --resume takes ---


def snapshot(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.slow
@pytest.mark.parametrize("case", ["folder of other files", "regular file"])
def test_train_refuses_an_out_that_is_not_a_checkpoint_and_leaves_it_byte_equal(synthetic, tmp_path, case):
    out = tmp_path / "precious"
    if case == "regular file":
        out.write_bytes(b"\x00my only copy\n")
    else:
        (out / "photos").mkdir(parents=True)
        (out / "thesis.tex").write_text("\\section{Results}")
        (out / "photos" / "cat.jpg").write_bytes(bytes(range(256)))
        (out / "config.json").write_text('{"theme": "dark"}')
    before = snapshot(tmp_path)
    proc = run_cli("train", str(synthetic[0]), "--out", str(out), "--model", "tiny", "--frames", "4", "--steps", "2",
                   "--batch-size", "8", "--device", "cpu", check=2)
    assert proc.stderr.startswith("error: --out ") and proc.stderr.count("\n") == 1, proc.stderr
    assert snapshot(tmp_path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["precious"]  # no temporary folder either


@pytest.fixture(scope="module")
def short_run(synthetic, tmp_path_factory):
    """A finished 2-step run of the tiny model with 4-frame clips (not the defaults), to resume from."""
    out = tmp_path_factory.mktemp("short") / "ckpt"
    run_cli("train", str(synthetic[0]), "--out", str(out), "--model", "tiny", "--frames", "4", "--steps", "2",
            "--batch-size", "8", "--lr", "1e-3", "--device", "cpu", "--log-every", "1")
    return out


@pytest.mark.slow
def test_resume_with_nothing_to_resume_is_an_error(synthetic, tmp_path):
    (tmp_path / "empty").mkdir()
    for out in (tmp_path / "missing", tmp_path / "empty"):
        proc = run_cli("train", str(synthetic[0]), "--out", str(out), "--resume", "--model", "tiny", check=2)
        assert proc.stderr.startswith("error: --resume") and proc.stderr.count("\n") == 1, proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"] and not any((tmp_path / "empty").iterdir())


@pytest.mark.slow
def test_resume_refuses_a_flag_that_conflicts_with_the_saved_run_by_name(synthetic, short_run):
    before = snapshot(short_run.parent)
    proc = run_cli("train", str(synthetic[0]), "--out", str(short_run), "--resume", "--frames", "8", "--steps", "3",
                   check=2)
    assert proc.stderr.startswith("error: --resume: --frames 8 differs") and proc.stderr.count("\n") == 1, proc.stderr
    assert "(--frames 4)" in proc.stderr and "--steps" not in proc.stderr.split(" from the run")[0]
    # a flag given with the saved value is no conflict, and other flags are named together
    proc = run_cli("train", str(synthetic[0]), "--out", str(short_run), "--resume", "--frames", "4", "--lr", "0.5",
                   "--mixing", "frame", check=2)
    assert "--lr 0.5 and --mixing frame differ" in proc.stderr and "--frames" not in proc.stderr.split("differ")[0]
    assert snapshot(short_run.parent) == before


@pytest.mark.slow
def test_resume_may_change_the_steps_and_takes_the_rest_from_the_saved_run(synthetic, short_run, tmp_path):
    out = tmp_path / "ckpt"
    shutil.copytree(short_run, out)
    summary = run_json("train", str(synthetic[0]), "--out", str(out), "--resume", "--steps", "4", "--checkpoint-every", "3",
                       "--workers", "0")
    assert summary["step"] == 4 and len(losses(out)) == 4  # the saved --log-every 1
    assert losses(out)[:2] == losses(short_run)
    assert json.loads((out / "config.json").read_text())["clip_frames"] == 4  # the saved --frames, not the default 16
    saved = torch.load(out / "train_state.pt", weights_only=True)["settings"]
    assert (saved["steps"], saved["checkpoint_every"], saved["frames"], saved["batch_size"], saved["lr"]) == (4, 3, 4, 8, 1e-3)
    assert (saved["workers"], saved["log_every"]) == (0, 1)


@pytest.mark.slow
def test_a_malicious_train_state_is_refused_and_runs_no_code(synthetic, short_run, tmp_path):
    class Payload:
        def __init__(self, marker):
            self.marker = str(marker)

        def __reduce__(self):  # unpickling this calls open(marker, "w"): it creates the marker file
            return open, (self.marker, "w")

    out = tmp_path / "ckpt"
    shutil.copytree(short_run, out)
    marker, proof = tmp_path / "pwned", tmp_path / "proof"
    state = torch.load(out / "train_state.pt", weights_only=True)
    torch.save({**state, "optimizer": {**state["optimizer"], "hook": Payload(marker)}}, out / "train_state.pt")
    torch.save({"hook": Payload(proof)}, tmp_path / "proof.pt")
    torch.load(tmp_path / "proof.pt", weights_only=False)  # the payload works when unpickled without weights_only
    assert proof.exists()
    before = snapshot(out)
    proc = run_cli("train", str(synthetic[0]), "--out", str(out), "--resume", check=1)
    assert "train_state.pt: refused" in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
    assert not marker.exists()
    assert snapshot(out) == before


def test_a_state_saved_on_a_gpu_loads_on_the_cpu(tmp_path, monkeypatch):
    from vidsearch.train import load_state

    state = {"step": 7, "optimizer": {"state": {0: {"exp_avg": torch.arange(4.0)}}, "param_groups": [{"lr": 0.1}]},
             "settings": {"seed": 3}}
    # save as a GPU run does: every storage tagged "cuda:0" (the tag is all torch.save records of the device)
    with monkeypatch.context() as patch:
        patch.setattr(torch.serialization, "_package_registry", list(torch.serialization._package_registry))
        torch.serialization.register_package(0, lambda storage: "cuda:0", lambda storage, location: None)
        torch.save(state, tmp_path / "train_state.pt")
    with zipfile.ZipFile(tmp_path / "train_state.pt") as archive:
        pickled = archive.read(next(n for n in archive.namelist() if n.endswith("data.pkl")))
    assert b"cuda:0" in pickled and b"cpu" not in pickled
    if not torch.cuda.is_available():  # without map_location the tensors would have to go to a GPU
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(io.BytesIO((tmp_path / "train_state.pt").read_bytes()), weights_only=True)
    loaded = load_state(tmp_path)
    exp_avg = loaded["optimizer"]["state"][0]["exp_avg"]
    assert exp_avg.device.type == "cpu" and torch.equal(exp_avg, torch.arange(4.0))
    assert (loaded["step"], loaded["settings"]) == (7, {"seed": 3})


@pytest.mark.slow
def test_under_fp16_the_loss_is_scaled_and_the_scaler_resumes(synthetic, tmp_path, monkeypatch):
    # a GPU without native bf16 trains in fp16: force that precision on the CPU, where fp16 autocast also runs
    from vidsearch import device, train

    monkeypatch.setattr(device, "precision", lambda dev: torch.float16)
    out = tmp_path / "ckpt"
    settings = train.TrainSettings(manifest=str(synthetic[0]), out=str(out), model="tiny", frames=4, steps=3, batch_size=8,
                                   lr=1e-3, device="cpu", workers=0, log_every=1, checkpoint_every=2)
    scaled = []
    real_scale = torch.amp.GradScaler.scale
    monkeypatch.setattr(torch.amp.GradScaler, "scale", lambda self, loss: scaled.append(self.is_enabled()) or real_scale(self, loss))
    train.train(settings, on_problem=lambda line: None)
    assert scaled == [True, True, True]
    state = torch.load(out / "train_state.pt", weights_only=True)
    assert state["scaler"]["scale"] > 1 and all(torch.isfinite(torch.tensor([json.loads(line)["loss"] for line in
                                                                                 (out / "train_log.jsonl").read_text().splitlines()])))
    loaded = []
    real_load = torch.amp.GradScaler.load_state_dict
    monkeypatch.setattr(torch.amp.GradScaler, "load_state_dict", lambda self, s: loaded.append(s) or real_load(self, s))
    train.train(train.TrainSettings(**{**settings.__dict__, "steps": 4}), resume=True, given={"steps"},
                on_problem=lambda line: None)
    assert loaded and loaded[0]["scale"] == state["scaler"]["scale"]


@pytest.mark.slow
def test_out_may_be_the_current_folder(synthetic, short_run, tmp_path):
    out = tmp_path / "ckpt"
    shutil.copytree(short_run, out)
    summary = json.loads(run_cli("train", str(synthetic[0]), "--out", ".", "--resume", "--steps", "3", "--json",
                                 cwd=out).stdout)
    assert summary["step"] == 3 and summary["checkpoint"] == str(out)
    assert len(losses(out)) == 3 and not [p for p in tmp_path.iterdir() if p.name.startswith(".ckpt")]


def test_resume_keeps_the_saved_sampling_and_a_run_saved_before_it_resumes_contiguous():
    from dataclasses import asdict

    from vidsearch.errors import UsageError
    from vidsearch.train import TrainSettings, resumed_settings

    typed = TrainSettings(manifest="pairs.jsonl", out="ckpt")  # --sampling at its default, spread
    saved = asdict(TrainSettings(manifest="pairs.jsonl", out="ckpt", sampling="contiguous"))
    assert resumed_settings(saved, typed, given=set()).sampling == "contiguous"
    with pytest.raises(UsageError, match=r"--sampling spread differs .*\(--sampling contiguous\)"):
        resumed_settings(saved, typed, given={"sampling"})
    # a checkpoint from before --sampling took windows of consecutive frames, and goes on doing so
    before = {name: value for name, value in saved.items() if name != "sampling"}
    assert resumed_settings(before, typed, given=set()).sampling == "contiguous"
    with pytest.raises(UsageError, match=r"--sampling spread differs .*\(--sampling contiguous\)"):
        resumed_settings(before, typed, given={"sampling"})
    with pytest.raises(UsageError, match="--sampling must be spread or contiguous"):
        TrainSettings(manifest="pairs.jsonl", out="ckpt", sampling="random").validate()


@pytest.fixture(scope="module")
def two_scene_captions(tmp_path_factory):
    """8 videos of two 4 s scenes, each captioned whole ("a red square moving up, then a blue circle moving left")."""
    import numpy as np

    from vidsearch.synthetic import random_scenes, write_video

    root = tmp_path_factory.mktemp("two-scenes")
    rng = np.random.default_rng(5)
    lines = []
    for i in range(8):
        scenes = random_scenes(2, rng=rng)
        rows = write_video(root / f"v{i}.mp4", scenes, scene_seconds=4, fps=4, size=64, seed=i)
        lines.append({"video": f"v{i}.mp4", "start": rows[0]["start"], "end": rows[1]["end"],
                      "caption": f"{scenes[0].caption}, then {scenes[1].caption}"})
    manifest = root / "pairs.jsonl"
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return manifest


@pytest.mark.slow
def test_training_on_captions_of_two_scenes_spreads_each_clip_over_both(two_scene_captions, tmp_path):
    import numpy as np

    from vidsearch.data import ClipDataset, load_pairs

    # 8 s spans at 1 fps are 8 frames; a 4-frame clip of consecutive ones would see one scene only
    pairs, _ = load_pairs(two_scene_captions)
    dataset = ClipDataset(pairs, frames=4, fps=1.0, size=64, cache=False, sampling="spread")
    span = dataset.decoded(0)
    for step in range(5):
        clip = dataset.clip(0, np.random.default_rng([0, step, 0]))
        taken = [next(k for k, f in enumerate(span) if np.array_equal(f, frame)) for frame in clip]
        assert taken[0] < 2 and taken[-1] >= 6  # the first scene's start and the second's end

    out = tmp_path / "ckpt"
    fast = ["--model", "tiny", "--frames", "4", "--batch-size", "8", "--lr", "1e-3", "--device", "cpu", "--log-every", "1"]
    summary = run_json("train", str(two_scene_captions), "--out", str(out), *fast, "--steps", "2", "--workers", "1")
    assert summary["step"] == 2 and len(losses(out)) == 2 and all(np.isfinite(losses(out)))
    assert torch.load(out / "train_state.pt", weights_only=True)["settings"]["sampling"] == "spread"  # the default
    proc = run_cli("train", str(two_scene_captions), "--out", str(out), "--resume", "--sampling", "contiguous",
                   "--steps", "3", check=2)
    assert proc.stderr.startswith("error: --resume: --sampling contiguous differs") and "(--sampling spread)" in proc.stderr
    assert run_json("train", str(two_scene_captions), "--out", str(out), "--resume", "--sampling", "spread",
                    "--steps", "3", "--workers", "0")["step"] == 3
    assert len(losses(out)) == 3
