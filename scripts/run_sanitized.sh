#!/usr/bin/env bash
# The whole test suite built with AddressSanitizer + UndefinedBehaviorSanitizer (CMake preset "asan", in
# build-asan/). Any finding fails the test that hit it; the summary line counts them.
#   scripts/run_sanitized.sh [ctest args...]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
scripts/setup.sh
[ -f build-asan/CMakeCache.txt ] || cmake --preset asan >&2
cmake --build build-asan -j "${CLIPGUIDE_JOBS:-$(nproc)}" >&2
# LibTorch is not instrumented: its allocations made outside ASan's view are not leaks of ours, and its
# own code is not checked. Python fixture scripts and tools run under ctest inherit these settings; the
# ASan runtime is preloaded only into our programs (they link it).
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:detect_odr_violation=0:${ASAN_OPTIONS:-}
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:${UBSAN_OPTIONS:-}
set +e
ctest --test-dir build-asan --output-on-failure -j "${CLIPGUIDE_JOBS:-$(nproc)}" "$@" | tee build-asan/sanitized.log
status=${PIPESTATUS[0]}
findings=$(grep -cE "ERROR: AddressSanitizer|runtime error:" build-asan/sanitized.log || true)
echo "run_sanitized: $findings sanitizer finding(s); ctest exit status $status"
[ "$status" -eq 0 ] && [ "$findings" -eq 0 ]
