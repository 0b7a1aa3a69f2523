#!/usr/bin/env bash
# Installs everything clipguide needs on Debian 12, idempotently: Debian packages (compiler, CMake,
# Ninja, ccache, ICU, OpenImageIO, GoogleTest, ...) and a Python venv holding the torch wheel (whose
# LibTorch we build against) plus the reference packages the parity tests use.
# Needs the CUDA toolkit that comes with the machine (nvcc): the torch wheel is a CUDA build.
# Usage: scripts/setup.sh        (quiet when nothing is missing; logs go to stderr)
# Env:   CLIPGUIDE_VENV=<dir>    where the venv lives (default ~/.cache/clipguide/venv)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${CLIPGUIDE_VENV:-$HOME/.cache/clipguide/venv}
log() { echo "[setup] $*" >&2; }

apt_packages=(
  build-essential cmake ninja-build ccache pkg-config git
  python3 python3-venv python3-pip
  zlib1g-dev libicu-dev nlohmann-json3-dev libcli11-dev libspdlog-dev libfmt-dev
  libgtest-dev libgmock-dev libbenchmark-dev libtomlplusplus-dev libarchive-dev
  libopenimageio-dev openimageio-tools libyaml-cpp-dev
  ffmpeg  # clip-guide --video and --zoom_video encode through it
  libgloo-dev  # gloo's headers: LibTorch's c10d Gloo, for clip-train on several processes
  libimgui-dev libglfw3-dev libgl1-mesa-dev libgl1-mesa-dri xvfb xauth xdotool  # clip-studio and its test
  clang libclang-rt-14-dev unzip  # fuzz/run_fuzz.sh: libFuzzer targets, seeds from archives
)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo=sudo
  log "installing Debian packages: ${missing[*]}"
  $sudo apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
fi

if ! command -v nvcc >/dev/null && [ ! -x /usr/local/cuda/bin/nvcc ]; then
  log "error: no CUDA toolkit (nvcc) found; the torch wheel is a CUDA build and its CMake config needs it."
  log "       Install the CUDA toolkit (it comes with this project's machines) and put nvcc on PATH."
  exit 1
fi

# The venv is rebuilt only when requirements.txt changes (stamp = its hash).
stamp="$venv/.clipguide-requirements"
want=$(sha256sum "$root/scripts/requirements.txt" | cut -d' ' -f1)
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  log "preparing Python venv at $venv (torch wheel + reference packages; first time takes a few minutes)"
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv" >&2
  "$venv/bin/python" -m pip install -q --upgrade pip >&2
  "$venv/bin/python" -m pip install -q -r "$root/scripts/requirements.txt" >&2
  echo "$want" > "$stamp"
fi
