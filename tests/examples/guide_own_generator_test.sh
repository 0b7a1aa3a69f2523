#!/usr/bin/env bash
# Installs clipguide into a scratch prefix, builds examples/guide_own_generator against it with find_package
# (as an outside project would), runs it for a few steps on the clip_parity hf_clip model and checks that it
# wrote an image and that the loss went down (mean of the last 3 steps below the mean of the first 3).
# Args: SOURCE_DIR BINARY_DIR PYTHON FIXTURES_DIR SHARED_DATA. Exit 77 = skipped (no vocabulary).
set -euo pipefail
src=$1 bin=$2 py=$3 fixtures=$4 shared=$5
vocab="$shared/openai-clip/bpe_simple_vocab_16e6.txt.gz"
if [ ! -f "$vocab" ]; then echo "SKIP: no vocabulary at $vocab"; exit 77; fi
work="$bin/guide-own-generator-test"
prefix="$work/install"
rm -rf "$work" && mkdir -p "$work"
cmake --install "$bin" --prefix "$prefix" >/dev/null
torch_prefix=$("$py" -c 'import torch; print(torch.utils.cmake_prefix_path)')
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
cmake -S "$src/examples/guide_own_generator" -B "$work/build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  "${launcher[@]}" -DCMAKE_PREFIX_PATH="$prefix;$torch_prefix" >/dev/null
cmake --build "$work/build" >/dev/null
out=$(OMP_NUM_THREADS=1 "$work/build/guide_own_generator" "$fixtures/clip_parity/hf_clip" "$vocab" "$work/out.png" 20 \
      "a red circle")
echo "$out"
if [ ! -s "$work/out.png" ]; then echo "no image written at $work/out.png"; exit 1; fi
echo "$out" | awk '/^loss first3/ { found = 1; if (!($3 > $5)) { print "loss did not go down: " $0; exit 1 } }
  END { if (!found) { print "no loss summary line"; exit 1 } }'
