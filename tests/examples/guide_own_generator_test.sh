#!/usr/bin/env bash
# Builds examples/guide_own_generator against the installed package (build_example.sh), runs it for a few
# steps on the clip_parity hf_clip model and checks that it wrote an image and that the loss went down
# (mean of the last 3 steps below the mean of the first 3).
# Args: SOURCE_DIR BINARY_DIR PYTHON FIXTURES_DIR TEST_DATA (tests/data).
set -euo pipefail
src=$1 bin=$2 py=$3 fixtures=$4 data=$5
vocab="$data/openai-clip/bpe_simple_vocab_16e6.txt.gz"
if [ ! -f "$vocab" ]; then echo "FAIL: no vocabulary at $vocab (tests/data is part of the repository)"; exit 1; fi
source "$(dirname "${BASH_SOURCE[0]}")/build_example.sh"
build_example "$src" "$bin" "$py" guide_own_generator
out=$(OMP_NUM_THREADS=1 "$example_dir/guide_own_generator" "$fixtures/clip_parity/hf_clip" "$vocab" "$work/out.png" 20 \
      "a red circle")
echo "$out"
if [ ! -s "$work/out.png" ]; then echo "no image written at $work/out.png"; exit 1; fi
echo "$out" | awk '/^loss first3/ { found = 1; if (!($3 > $5)) { print "loss did not go down: " $0; exit 1 } }
  END { if (!found) { print "no loss summary line"; exit 1 } }'
