#!/usr/bin/env bash
# Runs every benchmark: bench/run_all.sh BUILD_DIR PYTHON [extra args for each]
set -euo pipefail
build=$1 python=$2
shift 2
for b in "$build"/bench/*_bench; do
  echo "== $(basename "$b")"
  "$b" --python "$python" "$@"
done
