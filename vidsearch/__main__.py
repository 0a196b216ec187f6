"""`python -m vidsearch` runs the CLI (and is what `torchrun -m vidsearch` starts)."""

from .cli import main

main()
