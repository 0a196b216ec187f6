#!/usr/bin/env bash
# The offline demo from a fresh machine: set up .venv, then train, index and query synthetic videos.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash .ci/setup
.venv/bin/python examples/demo.py "$@"
