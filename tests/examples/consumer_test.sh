#!/usr/bin/env bash
# Builds examples/zero_shot against the installed package (build_example.sh) and runs it on a reference
# model from the clip_parity fixture: three labels with probabilities in [0, 1] summing to 1.
# Args: SOURCE_DIR BINARY_DIR PYTHON FIXTURES_DIR TEST_DATA (tests/data).
set -euo pipefail
src=$1 bin=$2 py=$3 fixtures=$4 data=$5
vocab="$data/openai-clip/bpe_simple_vocab_16e6.txt.gz"
if [ ! -f "$vocab" ]; then echo "FAIL: no vocabulary at $vocab (tests/data is part of the repository)"; exit 1; fi
source "$(dirname "${BASH_SOURCE[0]}")/build_example.sh"
build_example "$src" "$bin" "$py" zero_shot
out=$("$example_dir/zero_shot" "$fixtures/clip_parity/hf_clip" "$vocab" \
      "$fixtures/preprocess/landscape.png" cat dog "red circle")
echo "$out"
echo "$out" | awk '{ n++; s += $NF; if ($NF < 0 || $NF > 1) bad = 1 }
  END { if (n != 3 || bad || s < 0.999 || s > 1.001) { print "bad output: n=" n " sum=" s; exit 1 } }'
