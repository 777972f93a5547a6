#!/usr/bin/env bash
# Refreshes the locks from pyproject.toml's declared ranges, with pip-tools (pinned here so that the refresh is
# itself reproducible). Commit the result only after the whole suite passed against it.
#   requirements/runtime.lock: what `pip install -e .` needs (the demo and the servers)
#   requirements/test.lock:    the runtime plus the test and fast extras (the test command and CI)
# Pass --upgrade to move every package to the newest version the ranges allow.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q "pip-tools==7.6.2"
common=(--quiet --strip-extras --no-emit-index-url --no-emit-find-links --allow-unsafe "$@")
python3 -m piptools compile "${common[@]}" -o requirements/runtime.lock pyproject.toml
python3 -m piptools compile "${common[@]}" --extra test --extra fast -o requirements/test.lock pyproject.toml
