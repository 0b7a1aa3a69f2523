#!/usr/bin/env bash
# GPU benchmark of the guidance loop (issues 3 and 14), in one call: clipguide's GuideLoop (VQGAN f16 +
# ViT-B/32, random weights, Adam, random crops) against the Python VQGAN+CLIP loop (openai-clip +
# taming-transformers-rom1504, bench/reference/guide_ref.py), same settings, same card, one after the other.
# Each variant reports it/s and peak CUDA memory. A variant's name is made of:
#   fp32 | bf16 (autocast), then any of _channels_last, and (clipguide only) _graphs (CUDA graphs of CLIP's
#   forward and backward, checked first by guidance_graphed_encoder_test when the bundle has it), _mbN (the
#   cutouts in N micro-batches), _ckpt (VQGAN decoder checkpointing); @SIZE for another image side.
# Prints one table; with $OUT set, writes gpu_bench.json, gpu_bench.md and gpu_bench.log there.
# Then CLIP-guided diffusion (issue 15): diffusion_bench (the 256x256 uncond architecture at
# --diffusion-channels, default 256 as released, ViT-B/32, 256x256, 8+8 cutouts, DDIM) fp32, bf16 and bf16
# channels-last, each
# against Disco's loop (bench/reference/diffusion_ref.py); its lines go to the log and diffusion.txt.
#
#   bench/gpu/run_gpu_bench.sh                      # CUDA, 512x512, cutn 32, the default variants
#   bench/gpu/run_gpu_bench.sh --device cpu --size 64 --cutn 4 --iters 1 --warmup 1 --variants fp32,fp32_mb2   # dry run anywhere
# Other flags: --variants LIST  --profile N (clipguide: print where N steps' time went)  --no-reference
#   --no-diffusion  --diffusion-channels N
#   --build (ignore the bundle)  --build-dir DIR  --guide-bench PATH  --python PY  --step-timeout S (per run; default 150)
#
# guide_bench comes from, in order: --guide-bench PATH; the bundle bench/gpu/pack_bundle.sh made
# (bench/gpu/.bundle: the program, its libraries and the reference's pure-Python packages, for a machine
# without the build dependencies or network); a build in --build-dir against this Python's torch.
# A part that cannot run (no reference packages, no build) is reported and the rest still runs.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
device=cuda size=512 cutn=32 iters=50 warmup=10
python=${PYTHON:-python3}
build_dir=/tmp/clipguide-build-gpu
guide_bench="" force_build=0 run_reference=1 run_diffusion=1 diffusion_channels=256
variants=fp32,bf16,bf16_channels_last,bf16_channels_last_graphs,bf16_channels_last_mb4,bf16_channels_last_ckpt,bf16_channels_last_mb4_ckpt,bf16_channels_last@1024,bf16_channels_last_mb4_ckpt@1024
profile_flag=""
step_timeout=150
usage() { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case $1 in
    --device) device=$2; shift ;;
    --size) size=$2; shift ;;
    --cutn) cutn=$2; shift ;;
    --iters) iters=$2; shift ;;
    --warmup) warmup=$2; shift ;;
    --python) python=$2; shift ;;
    --build-dir) build_dir=$2; shift ;;
    --guide-bench) guide_bench=$2; shift ;;
    --build) force_build=1 ;;
    --no-reference) run_reference=0 ;;
    --no-diffusion) run_diffusion=0 ;;
    --diffusion-channels) diffusion_channels=$2; shift ;;
    --step-timeout) step_timeout=$2; shift ;;
    --variants) variants=$2; shift ;;
    --profile) profile_flag="--profile $2"; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "run_gpu_bench: unknown argument '$1' (--help lists them)" >&2; exit 2 ;;
  esac
  shift
done

out=${OUT:-}
work=$(mktemp -d /tmp/clipguide-gpu-bench.XXXXXX)
results=$work/results
mkdir -p "$results"
report_dir=$work                     # gpu_bench.{log,json,md}: in $OUT as they grow, so a run cut short
if [ -n "$out" ]; then mkdir -p "$out"; report_dir=$out; fi   # still leaves what it measured
log=$report_dir/gpu_bench.log
exec > >(tee "$log") 2>&1
say() { printf '[gpu-bench %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
started=$(date +%s)
notes=()
note() { notes+=("$*"); say "NOTE: $*"; }

# --- the machine ---------------------------------------------------------------------------------
say "repo $root, device $device, ${size}x${size}, cutn $cutn, $iters timed steps after $warmup warm-up"
if ! "$python" -c 'import torch' 2>/dev/null; then
  say "FATAL: '$python' cannot import torch"; exit 1
fi
"$python" - <<'EOF'
import torch
print(f"torch {torch.__version__}, CUDA build {torch.version.cuda}, cuda available {torch.cuda.is_available()}")
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print(f"GPU: {p.name}, {p.total_memory / 2**30:.0f} GiB, {p.multi_processor_count} SMs, capability {p.major}.{p.minor}")
EOF
if [ "$device" = cuda ] && ! "$python" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  say "FATAL: --device cuda but this torch sees no GPU"; exit 1
fi
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader

torch_lib=$("$python" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
# The CUDA libraries of the pip wheels (nvidia/*/lib), for a bundled guide_bench built elsewhere.
nvidia_libs=$("$python" - <<'EOF'
import glob, os, site, sys
dirs = []
for base in site.getsitepackages() + [site.getusersitepackages()] + sys.path:
    dirs += glob.glob(os.path.join(base, "nvidia", "*", "lib")) + glob.glob(os.path.join(base, "nvidia", "cu*", "lib"))
print(":".join(dict.fromkeys(d for d in dirs if os.path.isdir(d))))
EOF
)

# --- the reference's Python packages ------------------------------------------------------------
bundle=$here/.bundle
if [ -d "$bundle/python" ]; then
  export PYTHONPATH="$bundle/python${PYTHONPATH:+:$PYTHONPATH}"
  say "reference packages from the bundle: $bundle/python"
fi
models=$work/models
have_reference=0
if [ $run_reference = 1 ]; then
  say "writing the random-weight model files (guide_ref.py --write)"
  if timeout "$step_timeout" "$python" "$root/bench/reference/guide_ref.py" --write "$models" >"$work/write.log" 2>&1; then
    have_reference=1
  else
    tail -5 "$work/write.log"
    note "the Python reference cannot run here (openai-clip / taming-transformers-rom1504 / omegaconf missing? see above): clipguide is timed on random in-memory weights of the same architectures, with no ratios"
  fi
fi

# The vocabulary for the text prompt: openai-clip's copy, else the repository's tests/data; else an image prompt.
vocab=$("$python" - <<'EOF'
import importlib.util, os
spec = importlib.util.find_spec("clip")
if spec and spec.submodule_search_locations:
    path = os.path.join(list(spec.submodule_search_locations)[0], "bpe_simple_vocab_16e6.txt.gz")
    if os.path.exists(path):
        print(path)
EOF
)
if [ -z "$vocab" ] && [ -f "$root/tests/data/openai-clip/bpe_simple_vocab_16e6.txt.gz" ]; then
  vocab=$root/tests/data/openai-clip/bpe_simple_vocab_16e6.txt.gz
fi
vocab_flag=()
if [ -n "$vocab" ]; then vocab_flag=(--vocab "$vocab"); else
  note "no OpenAI vocabulary: clipguide scores an image prompt (the loop's cost is the same)"; fi

# --- guide_bench ----------------------------------------------------------------------------------
runs_here() {  # runs_here PROGRAM: --help works (libraries found)
  "$1" --help >/dev/null 2>"$work/help.err"
}
if [ -z "$guide_bench" ] && [ $force_build = 0 ] && [ -x "$bundle/bin/guide_bench" ]; then
  export LD_LIBRARY_PATH="$bundle/lib:$torch_lib${nvidia_libs:+:$nvidia_libs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}:/usr/local/cuda/lib64"
  if runs_here "$bundle/bin/guide_bench"; then
    guide_bench=$bundle/bin/guide_bench
    say "guide_bench from the bundle ($(cat "$bundle/BUILT" 2>/dev/null || echo 'no build note'))"
  else
    note "the bundled guide_bench does not start here: $(head -c 300 "$work/help.err"); building instead"
  fi
fi
if [ -z "$guide_bench" ]; then
  generator="Unix Makefiles"
  command -v ninja >/dev/null && generator=Ninja
  launcher=()
  command -v ccache >/dev/null || launcher=(-DCLIPGUIDE_USE_CCACHE=OFF)
  say "building guide_bench in $build_dir ($generator, $(nproc) jobs)"
  build_start=$(date +%s)
  if cmake -S "$root" -B "$build_dir" -G "$generator" -DCMAKE_BUILD_TYPE=Release -DCLIPGUIDE_PYTHON="$python" \
       -DCLIPGUIDE_BUILD_TESTS=OFF -DCLIPGUIDE_BUILD_TOOLS=OFF -DCLIPGUIDE_BUILD_GUI=OFF -DCLIPGUIDE_WITH_OIIO=OFF \
       "${launcher[@]}" >"$work/configure.log" 2>&1 \
     && timeout 420 cmake --build "$build_dir" --target guide_bench diffusion_bench -j "$(nproc)" >"$work/build.log" 2>&1; then
    guide_bench=$build_dir/bench/guide_bench
    say "built in $(( $(date +%s) - build_start )) s"
  else
    tail -20 "$work/configure.log" "$work/build.log" 2>/dev/null
    note "guide_bench could not be built here (see the log above); only the Python reference runs"
  fi
elif [ ! -x "$guide_bench" ]; then
  note "--guide-bench $guide_bench is not an executable"; guide_bench=""
fi

# --- the runs ------------------------------------------------------------------------------------
graph_check=""
common=(--device "$device" --size "$size" --cutn "$cutn" --iters "$iters" --warmup "$warmup")
failed=()
with_size() {  # the common flags, without --size when the variant's flags ($@) give one
  if [[ " $* " == *" --size "* ]]; then echo --device "$device" --cutn "$cutn" --iters "$iters" --warmup "$warmup"
  else echo "${common[@]}"; fi
}
run_cpp() {  # run_cpp NAME [guide_bench flags...]
  local name=$1; shift
  local c; read -r -a c <<<"$(with_size "$@")"
  local weights=(--random-weights)
  [ $have_reference = 1 ] && weights=(--dir "$models")
  say "clipguide $name"
  if ! timeout "$step_timeout" "$guide_bench" "${c[@]}" --no-reference "${weights[@]}" "${vocab_flag[@]}" \
        --label "$name" --json "$results/cpp_$name.json" "$@"; then
    failed+=("clipguide $name"); note "clipguide $name failed (exit status above)"
  fi
}
run_ref() {  # run_ref NAME [guide_ref.py flags...]
  local name=$1; shift
  local c; read -r -a c <<<"$(with_size "$@")"
  say "reference $name"
  if timeout "$step_timeout" "$python" "$root/bench/reference/guide_ref.py" --run "$models" "${c[@]}" "$@" \
       >"$work/ref_$name.out" 2>"$work/ref_$name.err"; then
    tail -1 "$work/ref_$name.out" >"$results/ref_$name.json"
    cat "$results/ref_$name.json"
  else
    tail -5 "$work/ref_$name.err"; failed+=("reference $name"); note "reference $name failed"
  fi
}
summarize() {  # summarize [--print]: gpu_bench.json and gpu_bench.md from the runs so far
  local elapsed=$(( $(date +%s) - started )) notes_json
  notes_json=$(printf '%s\n' "${notes[@]}" | "$python" -c 'import json, sys; print(json.dumps([l.strip() for l in sys.stdin if l.strip()]))')
  "$python" - "$results" "$report_dir" "$elapsed" "$notes_json" "${1:-}" <<'PY'
import glob, json, os, sys
results, report_dir, elapsed, notes, show = sys.argv[1], sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4]), sys.argv[5]
runs = {}
for path in sorted(glob.glob(os.path.join(results, "*.json"))):
    try:
        runs[os.path.basename(path)[:-5]] = json.load(open(path))
    except ValueError as e:
        notes.append(f"{os.path.basename(path)}: not JSON ({e})")
def label(v):  # "bf16_channels_last_mb4_ckpt@1024" -> "bf16 autocast + channels_last + 4 cutout micro-batches + ..."
    import re
    name, _, size = v.partition("@")
    parts = ["bf16 autocast" if name.startswith("bf16") else "fp32"]
    if "channels_last" in name: parts.append("channels_last")
    if "graphs" in name: parts.append("CUDA graphs")
    m = re.search(r"_mb(\d+)", name)
    if m: parts.append(m.group(1) + " cutout micro-batches")
    if "_ckpt" in name: parts.append("decoder checkpointing")
    return " + ".join(parts) + (f", {size}x{size}" if size else "")
def base(v):  # the reference variant to compare with: the same without clipguide-only options
    import re
    return re.sub(r"_graphs|_mb\d+|_ckpt", "", v)
order = lambda key: list(runs).index(key)
ref_fp32 = runs.get("ref_fp32", {}).get("its_per_s")
fmt = lambda v, f: "-" if v is None else format(v, f)
rows = []
for impl, prefix in (("clipguide", "cpp_"), ("VQGAN+CLIP (Python)", "ref_")):
    for key in runs:
        if not key.startswith(prefix):
            continue
        v, r = key[len(prefix):], runs[key]
        same = runs.get("ref_" + base(v), {}).get("its_per_s")
        rows.append([f"{impl}, {label(v)}", fmt(r["its_per_s"], ".2f"), fmt(r.get("ms_per_it"), ".1f"),
                     fmt(r.get("peak_cuda_allocated_mb"), ".0f"), fmt(r.get("peak_cuda_reserved_mb"), ".0f"),
                     fmt(r["its_per_s"] / ref_fp32 if ref_fp32 and "@" not in v else None, ".2f") + "x",
                     fmt(r["its_per_s"] / same if same else None, ".2f") + "x"])
for v in [k[4:] for k in runs if k.startswith("cpp_") and k != "cpp_" + base(k[4:])]:  # clipguide-only options
    a, b = runs.get("cpp_" + base(v), {}), runs.get("cpp_" + v, {})  # step 0 scores the same as without them
    if a.get("first_loss") is not None and b.get("first_loss") is not None:
        notes.append(f"{label(v)}: step-0 loss {b['first_loss']:.6f} vs {a['first_loss']:.6f} without its clipguide-only options "
                     f"(diff {abs(a['first_loss'] - b['first_loss']):.1e})")
head = ["variant", "it/s", "ms/it", "peak alloc MiB", "peak reserved MiB", "vs ref fp32", "vs ref same variant"]
first = next(iter(runs.values()), {})
title = (f"guide loop, VQGAN f16 + ViT-B/32 (random weights), {first.get('size', '?')}x{first.get('size', '?')}, "
         f"cutn {first.get('cutn', '?')}, Adam, {first.get('device', '?')}, torch {first.get('torch', '?')}")
widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"
table = "\n".join([title, "", line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [line(r) for r in rows])
json.dump({"title": title, "runs": runs, "notes": notes, "seconds": elapsed},
          open(os.path.join(report_dir, "gpu_bench.json"), "w"), indent=2)
open(os.path.join(report_dir, "gpu_bench.md"), "w").write(table + "\n\n" + "".join(f"- {n}\n" for n in notes))
if show:
    print("\n" + table + "\n")
    for n in notes:
        print("note: " + n)
    print(f"total {elapsed} s")
PY
}

flags_of() {  # flags_of VARIANT: its flags (guide_bench and guide_ref.py spell them alike); see --help
  local v=$1 out=()
  case $v in fp32*|bf16*) ;; *) return 1 ;; esac
  [[ $v == bf16* ]] && out+=(--bf16)
  [[ $v == *channels_last* ]] && out+=(--channels-last)
  [[ $v == *graphs* ]] && out+=(--cuda-graphs)
  [[ $v =~ _mb([0-9]+) ]] && out+=(--cutn-batches "${BASH_REMATCH[1]}")
  [[ $v == *_ckpt* ]] && out+=(--checkpoint)
  [[ $v =~ @([0-9]+)$ ]] && out+=(--size "${BASH_REMATCH[1]}")
  echo "${out[@]}"
}
clipguide_only() { [[ $1 == *graphs* || $1 =~ _mb[0-9] || $1 == *_ckpt* ]]; }  # options the reference lacks

# One variant at a time, clipguide then the reference, so a run cut short still has pairs.
IFS=, read -r -a variant_list <<<"$variants"
for v in "${variant_list[@]}"; do
  if ! flags=$(flags_of "$v"); then note "unknown variant '$v' skipped"; continue; fi
  read -r -a vflags <<<"$flags"
  if [[ $v == *graphs* ]] && [ -n "$guide_bench" ] && [ "$device" = cuda ] && [ -z "$graph_check" ]; then
    # The capture is checked against eager first where the test program is at hand.
    graph_check=skipped
    for t in "$bundle/bin/guidance_graphed_encoder_test" "$build_dir/tests/guidance_graphed_encoder_test"; do
      [ -x "$t" ] || continue
      say "checking the CUDA graph capture: $(basename "$t")"
      if timeout "$step_timeout" "$t" 2>&1 | tee "$work/graph_check.log"; then graph_check=passed; else graph_check=failed; fi
      grep -q '^\[  SKIPPED \]' "$work/graph_check.log" && graph_check="skipped by the test (no CUDA device seen)"
      break
    done
    note "CUDA graph capture check (graphed vs eager features and gradients): $graph_check"
  fi
  if [[ $v == *graphs* ]] && [ "$graph_check" = failed ]; then note "variant $v skipped: the capture check failed"; continue; fi
  if [ -n "$guide_bench" ]; then run_cpp "$v" "${vflags[@]}" $profile_flag; summarize; fi
  if [ $have_reference = 1 ] && ! clipguide_only "$v"; then run_ref "$v" "${vflags[@]}"; summarize; fi
done
summarize --print

# --- CLIP-guided diffusion ---------------------------------------------------------------------------
diffusion_bench=""
for p in "$bundle/bin/diffusion_bench" "$(dirname "${guide_bench:-/nonexistent}")/diffusion_bench"; do
  [ -x "$p" ] && runs_here "$p" && { diffusion_bench=$p; break; }
done
if [ $run_diffusion = 1 ] && [ -n "$diffusion_bench" ]; then
  dflags=(--device "$device" --channels "$diffusion_channels" --size 256 --steps 10 --warmup 2 --dir "$work/diffusion"
          --python "$python" --vocab "${vocab:-$root/tests/data/openai-clip/bpe_simple_vocab_16e6.txt.gz}")
  [ $run_reference = 1 ] || dflags+=(--no-reference)
  for precision in fp32 bf16 bf16_channels_last; do
    say "diffusion $precision"
    extra=(); [[ $precision == bf16* ]] && extra=(--bf16)
    [[ $precision == *channels_last ]] && extra+=(--channels-last)
    if timeout $((step_timeout * 2)) "$diffusion_bench" "${dflags[@]}" "${extra[@]}" 2>&1 | grep -v Warning | tee -a "$report_dir/diffusion.txt"; then :; else
      failed+=("diffusion $precision"); note "diffusion $precision failed"; fi
  done
elif [ $run_diffusion = 1 ]; then
  note "no diffusion_bench (neither bundled nor built): the diffusion part did not run"
fi
say "reports: $report_dir/gpu_bench.json, gpu_bench.md, gpu_bench.log"
[ ${#failed[@]} -eq 0 ] || { say "failed: ${failed[*]}"; exit 1; }
exit 0
