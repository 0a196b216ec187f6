"""The README's command reference, generated from `--help`; run this file to rewrite it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"
START, END = "<!-- cli-reference: start -->", "<!-- cli-reference: end -->"
COMMANDS = ["index", "query", "status", "ls", "remove", "verify", "models", "pairs", "train", "eval", "eval-moments", "serve"]


def help_text(*args: str) -> str:
    env = {**os.environ, "COLUMNS": "100", "TERM": "dumb"}
    vidsearch = Path(sys.executable).with_name("vidsearch")
    return subprocess.run([str(vidsearch), *args, "--help"], capture_output=True, text=True, env=env, check=True).stdout


def reference() -> str:
    blocks = [f"```\n$ vidsearch --help\n{help_text().rstrip()}\n```"]
    blocks += [f"### `vidsearch {c}`\n\n```\n$ vidsearch {c} --help\n{help_text(c).rstrip()}\n```" for c in COMMANDS]
    return "\n\n".join(blocks)


def current() -> str:
    text = README.read_text()
    return text[text.index(START) + len(START):text.index(END)].strip()


if __name__ == "__main__":
    text = README.read_text()
    before, after = text[:text.index(START) + len(START)], text[text.index(END):]
    README.write_text(f"{before}\n{reference()}\n{after}")
