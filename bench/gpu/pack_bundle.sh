#!/usr/bin/env bash
# Packs what run_gpu_bench.sh needs on a GPU machine that cannot build clipguide (no ICU, yaml-cpp, CLI11 or
# nlohmann-json headers there, no network) into bench/gpu/.bundle (git-ignored; name it in the device tool's
# carry list):
#   bin/guide_bench     built here against the same torch version (LibTorch's own libraries are NOT copied:
#                       run_gpu_bench.sh points LD_LIBRARY_PATH at the torch wheel installed there); also
#                       bin/guidance_graphed_encoder_test when built (checks the CUDA graph capture there)
#   lib/                clipguide's libraries and the system libraries they need that a bare machine may lack
#   python/             the reference's pure-Python packages: openai-clip (with its vocabulary),
#                       taming-transformers-rom1504, omegaconf, ftfy, wcwidth, guided_diffusion (diffusion_bench's
#                       reference); bin/diffusion_bench too when built
#   BUILT               what it was built from
#
#   bench/gpu/pack_bundle.sh BUILD_DIR [PYTHON]    # BUILD_DIR holds bench/guide_bench
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${1:?usage: pack_bundle.sh BUILD_DIR [PYTHON]}
python=${2:-python3}
bundle=$here/.bundle
program=$build/bench/guide_bench
[ -x "$program" ] || { echo "pack_bundle: no $program (build the guide_bench target first)" >&2; exit 1; }

rm -rf "$bundle"
mkdir -p "$bundle/bin" "$bundle/lib" "$bundle/python"
cp "$program" "$bundle/bin/"
[ -x "$build/bench/diffusion_bench" ] && cp "$build/bench/diffusion_bench" "$bundle/bin/"
check=$build/tests/guidance_graphed_encoder_test
[ -x "$check" ] && cp "$check" "$bundle/bin/"
site=$("$python" -c 'import os, torch; print(os.path.dirname(os.path.dirname(torch.__file__)))')

# Every library ldd resolves, except LibTorch, its CUDA wheels and the CUDA toolkit (taken from the machine it
# runs on), the C and compiler runtimes (a newer one is there), and the GPU driver.
ldd "$program" "$bundle"/bin/* | awk '/=> \//{print $1, $3}' | while read -r name path; do
  case $path in
    "$site"/*|/usr/local/cuda*) continue ;;
  esac
  case $name in
    libc.so*|libm.so*|libdl.so*|librt.so*|libpthread.so*|ld-linux*|libgcc_s.so*|libstdc++.so*|libcuda.so*) continue ;;
  esac
  [ -e "$bundle/lib/$name" ] || cp -L "$path" "$bundle/lib/$name"
done

for pkg in clip taming omegaconf ftfy wcwidth guided_diffusion; do
  dir=$("$python" -c "import importlib.util as u, os; s = u.find_spec('$pkg'); print(os.path.dirname(s.origin) if s and s.origin else '')" 2>/dev/null || true)
  if [ -n "$dir" ] && [ -d "$dir" ]; then
    cp -r "$dir" "$bundle/python/"
  else
    echo "pack_bundle: Python package '$pkg' not found with $python: the reference will not run from the bundle" >&2
  fi
done
find "$bundle/python" -name __pycache__ -type d -prune -exec rm -rf {} +

{
  echo "built $(date -u +%Y-%m-%dT%H:%MZ) from $(git -C "$root" rev-parse --short HEAD)$(git -C "$root" diff --quiet HEAD -- . 2>/dev/null || echo '+changes')"
  echo "against torch $("$python" -c 'import torch; print(torch.__version__)') on $(grep -m1 "^PRETTY_NAME=" /etc/os-release | cut -d= -f2 | tr -d '"')"
} >"$bundle/BUILT"
echo "pack_bundle: $(du -sh "$bundle" | cut -f1) in $bundle"
ls "$bundle/lib"
cat "$bundle/BUILT"
