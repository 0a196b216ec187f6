"""Importing FAISS, which comes from the `cpu` or the `gpu` extra: when it is missing, or broken because two FAISS
builds were installed over each other, the error is one line with the pip command that fixes it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from .errors import VidsearchError

INSTALL = "pip install 'vidsearch[cpu]' (or 'vidsearch[gpu]' on a CUDA machine)"


def import_faiss():
    """The `faiss` module; VidsearchError when it is not installed, when more than one FAISS build is (faiss-cpu,
    faiss-gpu, faiss-gpu-cu12 all write the same `faiss/` folder, and the last one installed wins file by file), or
    when the one installed does not load."""
    try:
        import faiss
    except ModuleNotFoundError as exc:
        if exc.name == "faiss":
            raise VidsearchError(f"FAISS is not installed: {INSTALL}") from None
        faiss, problem = None, exc
    except (ImportError, AttributeError, RuntimeError, OSError) as exc:  # CPU `_swigfaiss` under GPU wrappers, a missing CUDA library
        faiss, problem = None, exc
    else:
        problem = None
    folder = _faiss_folder(faiss)
    builds = faiss_builds(folder.parent) if folder is not None else []
    if len(builds) > 1:
        names = " ".join(name for name, _ in builds)
        raise VidsearchError(f"FAISS is installed {len(builds)} times ({', '.join(f'{n} {v}' for n, v in builds)}), and "
                             f"each overwrites the others' files; keep one: pip uninstall -y {names} && {INSTALL}")
    if problem is None and getattr(faiss, "__file__", None) is not None:
        return faiss
    if problem is None:  # a namespace package: the folder is there without its __init__.py
        if not builds:
            raise VidsearchError(f"FAISS is not installed, only a leftover folder {folder}: delete it, then {INSTALL}")
        reason = "its faiss/__init__.py is missing (uninstalling another FAISS build removes it)"
    else:
        reason = " ".join(str(problem).split()) or type(problem).__name__
    if "pip install" in reason:  # faiss-gpu names the CUDA runtime wheel it misses
        raise VidsearchError(f"FAISS does not load: {reason}")
    if not builds:
        raise VidsearchError(f"FAISS in {folder} does not load: {reason}; reinstall it: {INSTALL}")
    ((name, version),) = builds
    raise VidsearchError(f"FAISS ({name} {version}) does not load: {reason}; "
                         f"reinstall it: pip install --force-reinstall --no-deps '{name}=={version}'")


def faiss_builds(site: Path) -> list[tuple[str, str]]:
    """(name, version) of each distribution installed in the folder `site` that writes the `faiss` package, sorted."""
    builds = []
    for info in sorted(site.glob("faiss*.dist-info")):
        try:
            record = (info / "RECORD").read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        if any(line.startswith("faiss/") for line in record.splitlines()):
            name, _, version = info.name.removesuffix(".dist-info").partition("-")
            builds.append((name.replace("_", "-"), version))
    return builds


def _faiss_folder(module) -> Path | None:
    """The `faiss` package folder: of the module when it imported (a namespace package when its __init__.py is
    gone), else where the import system finds it; None when it finds none."""
    if module is not None:
        locations = list(getattr(module, "__path__", []))
    else:
        try:
            spec = importlib.util.find_spec("faiss")
        except (ImportError, ValueError):
            spec = None
        locations = list(spec.submodule_search_locations or []) if spec is not None else []
    return Path(locations[0]) if locations else None
