"""The built wheel ships the model registry inside the package, and the installed registry finds it there."""

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


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
