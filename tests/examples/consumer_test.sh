#!/usr/bin/env bash
# Installs clipguide into a scratch prefix, builds examples/zero_shot against it with find_package (as an
# outside project would), and runs it on a reference model from the clip_parity fixture.
# Args: SOURCE_DIR BINARY_DIR PYTHON FIXTURES_DIR SHARED_DATA. Exit 77 = skipped (no vocabulary).
set -euo pipefail
src=$1 bin=$2 py=$3 fixtures=$4 shared=$5
vocab="$shared/openai-clip/bpe_simple_vocab_16e6.txt.gz"
if [ ! -f "$vocab" ]; then echo "SKIP: no vocabulary at $vocab"; exit 77; fi
prefix="$bin/consumer-test/install"
rm -rf "$bin/consumer-test" && mkdir -p "$bin/consumer-test"
cmake --install "$bin" --prefix "$prefix" >/dev/null
torch_prefix=$("$py" -c 'import torch; print(torch.utils.cmake_prefix_path)')
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
cmake -S "$src/examples/zero_shot" -B "$bin/consumer-test/build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  "${launcher[@]}" -DCMAKE_PREFIX_PATH="$prefix;$torch_prefix" >/dev/null
cmake --build "$bin/consumer-test/build" >/dev/null
out=$("$bin/consumer-test/build/zero_shot" "$fixtures/clip_parity/hf_clip" "$vocab" \
      "$fixtures/preprocess/landscape.png" cat dog "red circle")
echo "$out"
# Three labels, probabilities in [0, 1] summing to 1.
echo "$out" | awk '{ n++; s += $NF; if ($NF < 0 || $NF > 1) bad = 1 }
  END { if (n != 3 || bad || s < 0.999 || s > 1.001) { print "bad output: n=" n " sum=" s; exit 1 } }'
