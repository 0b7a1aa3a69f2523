#!/usr/bin/env bash
# Builds examples/ddim_sampler against the installed package (build_example.sh) and samples twice on the
# clip_parity hf_clip model from the same seed: without guidance (scale 0) and with it. The guided sample's
# CLIP loss must be the lower, and both images must be written.
# Args: SOURCE_DIR BINARY_DIR PYTHON FIXTURES_DIR TEST_DATA (tests/data).
set -euo pipefail
src=$1 bin=$2 py=$3 fixtures=$4 data=$5
vocab="$data/openai-clip/bpe_simple_vocab_16e6.txt.gz"
if [ ! -f "$vocab" ]; then echo "FAIL: no vocabulary at $vocab (tests/data is part of the repository)"; exit 1; fi
source "$(dirname "${BASH_SOURCE[0]}")/build_example.sh"
build_example "$src" "$bin" "$py" ddim_sampler
run() { OMP_NUM_THREADS=1 "$example_dir/ddim_sampler" "$fixtures/clip_parity/hf_clip" "$vocab" "$work/$1.png" 12 "a red circle" "$2" 3; }
plain=$(run plain 0)
guided=$(run guided 3000)
echo "$guided" | tail -4
for name in plain guided; do
  if [ ! -s "$work/$name.png" ]; then echo "FAIL: no image written at $work/$name.png"; exit 1; fi
done
a=$(echo "$plain" | awk '/^final clip loss/ { print $4 }')
b=$(echo "$guided" | awk '/^final clip loss/ { print $4 }')
echo "final clip loss: unguided $a, guided $b"
awk -v a="$a" -v b="$b" 'BEGIN { if (a == "" || b == "" || !(b < a)) { print "FAIL: guidance did not lower the loss"; exit 1 } }'
