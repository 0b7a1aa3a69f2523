#!/usr/bin/env bash
# The one entry point: installs what is missing (scripts/setup.sh), configures and builds build/,
# then runs what you ask for. Setup and build logs go to stderr, so a tool's stdout stays clean.
#   scripts/run.sh test              the whole test suite (ctest)
#   scripts/run.sh bench             the benchmarks (ratios against the Python references)
#   scripts/run.sh <tool> [args...]  a tool from build/tools, e.g. clip-embed --help
#   scripts/run.sh build             only set up and build
# Env: CLIPGUIDE_BUILD_DIR (default build/), CLIPGUIDE_VENV (see setup.sh), CLIPGUIDE_JOBS.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${CLIPGUIDE_BUILD_DIR:-$root/build}
venv=${CLIPGUIDE_VENV:-$HOME/.cache/clipguide/venv}
jobs=${CLIPGUIDE_JOBS:-$(nproc)}

"$root/scripts/setup.sh"
if [ ! -f "$build/CMakeCache.txt" ]; then
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCLIPGUIDE_PYTHON="$venv/bin/python" >&2
fi
cmake --build "$build" -j "$jobs" >&2

what=${1:-build}
shift || true
case "$what" in
  build) ;;
  test)  # every test; then no skip allowed except for tests labelled cuda (they need a GPU)
    status=0
    ctest --test-dir "$build" --output-on-failure -j "$jobs" --output-junit "$build/ctest-junit.xml" "$@" || status=$?
    "$root/scripts/check_skips.py" "$build" || status=1
    exit $status ;;
  bench) exec "$root/bench/run_all.sh" "$build" "$venv/bin/python" "$@" ;;
  *)
    if [ -x "$build/tools/$what" ]; then exec "$build/tools/$what" "$@"; fi
    echo "scripts/run.sh: unknown command or tool '$what' (try: test, bench, build, clip-embed)" >&2
    exit 2 ;;
esac
