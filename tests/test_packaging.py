"""The built wheel ships the model registry inside the package, and the installed registry finds it there. FAISS comes
from exactly one of the `cpu` and `gpu` extras: each gives a working `import faiss` in a clean venv, and a missing FAISS,
or two builds installed over each other, is one line naming the command that fixes it."""

import importlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from vidsearch.errors import VidsearchError
from vidsearch.faiss_backend import import_faiss

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_wheel_contains_the_registry_and_the_console_script(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp_path),
                    str(ROOT)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("vidsearch-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    shipped = {Path(n).name for n in names if n.startswith("vidsearch/models/")}
    assert shipped == {p.name for p in (ROOT / "models").glob("*.json")}
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "vidsearch = vidsearch.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
    # unpacked as an installed package, the registry is found inside it
    zipfile.ZipFile(wheel).extractall(tmp_path / "site")
    code = "from vidsearch.registry import registry_dir, list_models; print(registry_dir()); print(len(list_models()))"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(tmp_path / "site")}).stdout.split()
    assert out[0] == str(tmp_path / "site" / "vidsearch" / "models") and int(out[1]) == len(shipped)


def project() -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        tomllib = pytest.importorskip("tomli", reason="reading pyproject.toml needs tomllib (Python 3.11+) or tomli")
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def faiss_pin(extra: str) -> tuple[str, str]:
    """(distribution, version) that the extra installs FAISS from."""
    (requirement,) = [r for r in project()["optional-dependencies"][extra] if r.startswith("faiss")]
    name, _, version = requirement.partition("==")
    return name, version


def test_faiss_comes_from_one_extra_and_both_extras_pin_the_same_release():
    assert not [r for r in project()["dependencies"] if r.startswith("faiss")]  # a base FAISS would sit under the GPU one
    assert faiss_pin("cpu")[0] == "faiss-cpu" and faiss_pin("gpu")[0] == "faiss-gpu"
    assert faiss_pin("cpu")[1] == faiss_pin("gpu")[1] != ""


def test_a_missing_faiss_is_one_line_naming_both_extras(monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)  # `import faiss` now fails as when neither extra is installed
    with pytest.raises(VidsearchError) as caught:
        import_faiss()
    assert str(caught.value) == "FAISS is not installed: pip install 'vidsearch[cpu]' (or 'vidsearch[gpu]' on a CUDA machine)"
    monkeypatch.delitem(sys.modules, "vidsearch.store", raising=False)  # store imports FAISS through the check
    with pytest.raises(VidsearchError, match=r"^FAISS is not installed: pip install 'vidsearch\[cpu\]'"):
        importlib.import_module("vidsearch.store")


SWIG_MISMATCH = "raise AttributeError(\"module 'faiss._swigfaiss' has no attribute 'delete_GpuResourcesVector'\")"


@pytest.mark.parametrize("files, builds, expected", [
    pytest.param({"faiss/__init__.py": SWIG_MISMATCH}, ["faiss_cpu-1.15.1", "faiss_gpu_cu12-1.14.1.post1"],
                 "FAISS is installed 2 times (faiss-cpu 1.15.1, faiss-gpu-cu12 1.14.1.post1), and each overwrites the others' "
                 "files; keep one: pip uninstall -y faiss-cpu faiss-gpu-cu12 && pip install 'vidsearch[cpu]' (or 'vidsearch[gpu]' "
                 "on a CUDA machine)", id="the CPU build under the GPU wrappers"),
    pytest.param({"faiss/__init__.py": ""}, ["faiss_cpu-1.15.1", "faiss_gpu-1.15.1"],
                 "pip uninstall -y faiss-cpu faiss-gpu &&", id="two builds that happen to import"),
    pytest.param({"faiss/_gpu_build.py": ""}, ["faiss_gpu-1.15.1"],
                 "FAISS (faiss-gpu 1.15.1) does not load: its faiss/__init__.py is missing (uninstalling another FAISS build "
                 "removes it); reinstall it: pip install --force-reinstall --no-deps 'faiss-gpu==1.15.1'",
                 id="what uninstalling the other build leaves"),
    pytest.param({"faiss/_gpu_build.py": ""}, [], "FAISS is not installed, only a leftover folder", id="a folder nothing owns"),
    pytest.param({"faiss/__init__.py": "raise ImportError('libcudart.so.12: cannot open shared object file')"}, ["faiss_gpu-1.15.1"],
                 "FAISS (faiss-gpu 1.15.1) does not load: libcudart.so.12: cannot open shared object file; reinstall it: ",
                 id="one build that does not load"),
    pytest.param({"faiss/__init__.py": "raise RuntimeError(\"faiss-gpu installed but nvidia-cublas-cu12 is missing —\\n"
                                       "pip install 'nvidia-cublas-cu12>=12.6,<13'\")"}, ["faiss_gpu-1.15.1"],
                 "FAISS does not load: faiss-gpu installed but nvidia-cublas-cu12 is missing — pip install 'nvidia-cublas-cu12>=12.6,<13'",
                 id="FAISS's own fix-it is passed on"),
])
def test_a_broken_faiss_install_is_one_line_with_its_fix(tmp_path, monkeypatch, files, builds, expected):
    site = tmp_path / "site-packages"  # the files two FAISS wheels leave in one site-packages folder
    for name, text in files.items():
        (site / name).parent.mkdir(parents=True, exist_ok=True)
        (site / name).write_text(text)
    for build in builds:
        (site / f"{build}.dist-info").mkdir()
        (site / f"{build}.dist-info" / "RECORD").write_text("faiss/__init__.py,sha256=x,1\nfaiss/swigfaiss.py,sha256=y,2\n")
    monkeypatch.setattr(sys, "path", [str(site)] + [p for p in sys.path if "-packages" not in p])  # hide the real FAISS
    monkeypatch.delitem(sys.modules, "faiss", raising=False)
    importlib.invalidate_caches()
    with pytest.raises(VidsearchError) as caught:
        import_faiss()
    assert expected in str(caught.value) and "\n" not in str(caught.value)


def test_other_faiss_named_packages_are_not_counted_as_builds(tmp_path, monkeypatch):
    site = tmp_path / "site-packages"
    (site / "faiss").mkdir(parents=True)
    (site / "faiss" / "__init__.py").write_text("")
    for build, record in {"faiss_cpu-1.15.1": "faiss/__init__.py,,\n", "faiss_haystack-3.0.0": "haystack_faiss/__init__.py,,\n"}.items():
        (site / f"{build}.dist-info").mkdir()
        (site / f"{build}.dist-info" / "RECORD").write_text(record)
    monkeypatch.setattr(sys, "path", [str(site)] + [p for p in sys.path if "-packages" not in p])
    monkeypatch.delitem(sys.modules, "faiss", raising=False)
    importlib.invalidate_caches()
    assert import_faiss().__file__ == str(site / "faiss" / "__init__.py")


# --- each extra in a clean venv: only vidsearch (no dependencies), the extra's FAISS wheel and what it needs ---------

NO_NETWORK = ("NewConnectionError", "Failed to establish a new connection", "Temporary failure in name resolution",
              "Name or service not known", "Network is unreachable", "ConnectTimeoutError", "ReadTimeoutError", "ProxyError",
              "connection broken by", "Max retries exceeded")

# Run in the scratch venv: import FAISS through vidsearch's check and use it through VectorStore; print what happened.
CHECK = """
import json, numpy as np
from vidsearch.errors import VidsearchError
from vidsearch.faiss_backend import import_faiss
try:
    faiss = import_faiss()
except VidsearchError as exc:
    print(json.dumps({"error": str(exc)}))
    raise SystemExit
from vidsearch.store import VectorStore
rng = np.random.default_rng(0)
vectors = rng.standard_normal((64, 16)).astype(np.float32)
vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
ids = np.arange(64) * 7 + 3
store = VectorStore.build(ids, vectors, 16)
gpu_store = store.on_gpu()
report = {"file": faiss.__file__, "version": faiss.__version__, "nearest": store.search(vectors[:8], 3)[1][:, 0].tolist(),
          "gpu_api": all(hasattr(faiss, n) for n in ("StandardGpuResources", "GpuIndexFlatIP", "index_cpu_to_gpu")),
          "gpus": faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else None,
          "gpu_copy": gpu_store is not store, "gpu_nearest": gpu_store.search(vectors[:8], 3)[1][:, 0].tolist()}
print(json.dumps(report))
"""


@pytest.fixture
def scratch(tmp_path):
    """A clean venv (no system site-packages) with vidsearch installed editable and without its dependencies; removed
    afterwards (with GPU FAISS it holds 1.6 GB)."""
    venv = tmp_path / "venv"
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
    pip(venv, "install", "--no-deps", "-e", str(ROOT))
    print(f"venv + vidsearch --no-deps: {time.perf_counter() - started:.1f} s")
    yield venv
    shutil.rmtree(venv, ignore_errors=True)


def pip(venv: Path, *args: str) -> str:
    """Run the venv's pip. Skips, saying why, when pip could not reach the package index, and outside CI when the index
    has no such wheel for this Python and platform; in CI a missing wheel fails, and so does any other pip error."""
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PYTHONNOUSERSITE": "1"}
    env.pop("VIRTUAL_ENV", None)
    env.pop("PYTHONPATH", None)
    done = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", *args], capture_output=True, text=True, env=env)
    if done.returncode == 0:
        return done.stdout
    output = done.stdout + done.stderr
    command = f"pip {' '.join(args)}"
    last = next((line for line in reversed(output.splitlines()) if line.startswith("ERROR")), output.strip()[-300:])
    unreachable = next((line for line in output.splitlines() if any(marker in line for marker in NO_NETWORK)), None)
    if unreachable is not None:
        pytest.skip(f"`{command}` could not reach the package index (no network): {unreachable.strip()[-200:]}")
    if "No matching distribution found" in output and not os.environ.get("CI"):
        pytest.skip(f"`{command}`: the package index has no such wheel for this Python and platform: {last}")
    pytest.fail(f"`{command}` failed:\n{output[-4000:]}")


def install_extra(venv: Path, extra: str) -> None:
    started = time.perf_counter()
    pip(venv, "install", *project()["optional-dependencies"][extra])
    print(f"[{extra}] {' '.join(project()['optional-dependencies'][extra])} and its dependencies: "
          f"{time.perf_counter() - started:.1f} s")


def check(venv: Path) -> dict:
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run([str(venv / "bin" / "python"), "-c", CHECK], capture_output=True, text=True, cwd=venv,
                          env={**env, "PYTHONNOUSERSITE": "1"})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def has_nvidia_gpu() -> bool:
    return Path("/dev/nvidiactl").exists()


@pytest.mark.slow
def test_the_cpu_extra_gives_a_working_cpu_faiss(scratch):
    install_extra(scratch, "cpu")
    found = check(scratch)
    assert "error" not in found, found["error"]
    assert Path(found["file"]).is_relative_to(scratch) and found["version"] == faiss_pin("cpu")[1]
    assert found["nearest"] == [3 + 7 * i for i in range(8)]  # each vector finds itself first
    assert not found["gpu_api"] and not found["gpu_copy"]


@pytest.mark.slow
def test_the_gpu_extra_gives_a_gpu_faiss_and_a_mixed_install_says_how_to_fix_it(scratch):
    install_extra(scratch, "gpu")
    found = check(scratch)
    assert "error" not in found, found["error"]
    assert Path(found["file"]).is_relative_to(scratch) and found["version"] == faiss_pin("gpu")[1]
    assert found["gpu_api"]  # the GPU build, not the CPU one
    assert found["nearest"] == found["gpu_nearest"] == [3 + 7 * i for i in range(8)]
    if has_nvidia_gpu():
        assert found["gpus"] >= 1 and found["gpu_copy"]
    else:  # no GPU here: GPU FAISS loads, sees none, and vidsearch searches on the CPU
        assert found["gpus"] == 0 and not found["gpu_copy"]

    # the mix: the CPU build installed over the GPU one
    cpu_name, cpu_version = faiss_pin("cpu")
    pip(scratch, "install", "--no-deps", f"{cpu_name}=={cpu_version}")
    assert check(scratch)["error"].endswith(f"keep one: pip uninstall -y {cpu_name} {faiss_pin('gpu')[0]} && pip install "
                                            f"'vidsearch[cpu]' (or 'vidsearch[gpu]' on a CUDA machine)")
    # uninstalling the CPU build takes faiss/__init__.py with it; the command the error gives brings FAISS back
    pip(scratch, "uninstall", "-y", cpu_name)
    error = check(scratch)["error"]
    assert "its faiss/__init__.py is missing" in error
    fix = shlex.split(error.split("reinstall it: ", 1)[1])
    assert fix[:2] == ["pip", "install"]
    pip(scratch, *fix[1:])
    repaired = check(scratch)
    assert "error" not in repaired and repaired["gpu_api"] and repaired["nearest"] == found["nearest"]
