#!/usr/bin/env bash
# Builds the libFuzzer targets (CMake preset "fuzz": clang, ASan+UBSan, build-fuzz/) and runs each for a given
# time, keeping its corpus (build-fuzz/corpus/<target>) and any finding (build-fuzz/findings/<target>/).
# Seeds: the test fixtures of a normal build (build/fixtures, written by ctest) and the repository's files.
#
#   fuzz/run_fuzz.sh                    # every target, 600 s each
#   fuzz/run_fuzz.sh 30                 # every target, 30 s each
#   fuzz/run_fuzz.sh 120 pickle npy     # some targets
# Prints one line per target (seconds, executions, corpus size, findings) and exits 1 when any target found
# something. A finding is a crash, a sanitizer report, a hang (over 10 s an input) or an exception other
# than clipguide::Error escaping.
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
seconds=${1:-600}
shift || true
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(safetensors torch_zip pickle npy tokenizer vocab prompt vqgan_yaml manifest tar image settings_toml)
fixtures=${CLIPGUIDE_FIXTURES:-$root/build/fixtures}
out=$root/build-fuzz

scripts/setup.sh
[ -f "$out/CMakeCache.txt" ] || cmake --preset fuzz >&2
cmake --build "$out" -j "${CLIPGUIDE_JOBS:-$(nproc)}" --target "${targets[@]/%/_fuzz}" >&2 || exit 1

seed() {  # seed TARGET FILES...: copy the small ones into the target's corpus
  local t=$1; shift
  mkdir -p "$out/corpus/$t"
  for f in "$@"; do
    [ -f "$f" ] && [ "$(stat -c %s "$f")" -le 1048576 ] && cp "$f" "$out/corpus/$t/seed-$(basename "$f")"
  done
  return 0
}
shopt -s nullglob globstar
seed safetensors "$fixtures"/**/*.safetensors
seed torch_zip "$fixtures"/**/*.pt "$fixtures"/**/*.bin "$fixtures"/**/*.ckpt
mkdir -p "$out/corpus/pickle"
for f in "$fixtures"/**/*.pt; do  # the pickles inside small archives
  [ "$(stat -c %s "$f")" -le 1048576 ] || continue
  unzip -p "$f" '*/data.pkl' > "$out/corpus/pickle/seed-$(basename "$f").pkl" 2>/dev/null || rm -f "$out/corpus/pickle/seed-$(basename "$f").pkl"
done
seed npy "$fixtures"/**/*.npy
seed vqgan_yaml "$fixtures"/**/*.yaml
seed manifest "$fixtures"/**/*.csv "$fixtures"/**/*.tsv
seed tar "$fixtures"/**/*.tar
seed image "$fixtures"/**/*.png "$fixtures"/**/*.jpg "$root"/models/shapes-clip/*.png
seed vocab "$root"/models/shapes-clip/merges.txt
seed settings_toml "$root"/models/shapes-clip/clip-guide.toml "$root"/tests/data/**/*.toml
mkdir -p "$out/corpus/tokenizer" "$out/corpus/prompt"
printf 'a red circle on a blue background' > "$out/corpus/tokenizer/seed-1"
printf 'Caf\xc3\xa9 &amp; <|endoftext|> 123, ok!! \xe2\x9c\x93' > "$out/corpus/tokenizer/seed-2"
printf 'a red circle:1.5:-0.2|http://x/y.png:2|C:\\a\\b.png' > "$out/corpus/prompt/seed-1"

status=0
printf '%-12s %8s %12s %8s %9s\n' target seconds executions corpus findings
for t in "${targets[@]}"; do
  mkdir -p "$out/findings/$t"
  log=$out/findings/$t/fuzz.log
  ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    "$out/fuzz/${t}_fuzz" "$out/corpus/$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 \
    -artifact_prefix="$out/findings/$t/" -print_final_stats=1 >"$log" 2>&1
  rc=$?
  execs=$(grep -oE "stat::number_of_executed_units: *[0-9]+" "$log" | grep -oE "[0-9]+$" | tail -1)
  found=$(find "$out/findings/$t" -maxdepth 1 -type f ! -name fuzz.log | wc -l)
  printf '%-12s %8s %12s %8s %9s\n' "$t" "$seconds" "${execs:-?}" "$(ls "$out/corpus/$t" | wc -l)" "$found"
  if [ $rc -ne 0 ] || [ "$found" -gt 0 ]; then
    status=1
    grep -m3 -E "ERROR|runtime error|uncaught|deadly signal|timeout" "$log" | sed 's/^/    /'
  fi
done
exit $status
