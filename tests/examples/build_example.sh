#!/usr/bin/env bash
# Sourced by the example tests: installs clipguide from BINARY_DIR into a scratch prefix and builds
# examples/<name> against it with find_package, as an outside project would.
# Usage: build_example SOURCE_DIR BINARY_DIR PYTHON NAME  → sets $example_dir (its build folder) and $work.
build_example() {
  local src=$1 bin=$2 py=$3 name=$4
  work="$bin/example-test-$name"
  local prefix="$work/install"
  rm -rf "$work" && mkdir -p "$work"
  cmake --install "$bin" --prefix "$prefix" >/dev/null
  local torch_prefix
  torch_prefix=$("$py" -c 'import torch; print(torch.utils.cmake_prefix_path)')
  local launcher=()
  command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
  cmake -S "$src/examples/$name" -B "$work/build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    "${launcher[@]}" -DCMAKE_PREFIX_PATH="$prefix;$torch_prefix" >/dev/null
  cmake --build "$work/build" >/dev/null
  example_dir="$work/build"
}
