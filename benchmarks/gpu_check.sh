#!/usr/bin/env bash
# The prepared GPU check (issue 12): rerun it unchanged on any machine with one CUDA GPU.
#
#   bash benchmarks/gpu_check.sh [PART ...]          # default: part1 part2 part3
#
# 1. (with part1) benchmarks/bench_part1.py on all detected genes: cells/s of the CNN and the K = 5 CNN ensemble,
#    the Trainer against a loop written like the authors' (and what data on the device / fusing buy);
# 2. benchmarks/bench_part1_models.py: chapter I.3's models one by one on one split, `full` settings;
# 3. `cellbook run PART --profile full --device cuda` for each part, each under a time limit;
# then one table: seconds per notebook (finished or stopped at the limit), the slowest cells, cells/s, and each
# sweep's tasks done with its pace (a stopped sweep projected to the whole).
# bench_part1 also times the Trainer with CUDA graphs (Trainer(graphs=True)); where pytest is installed,
# tests/test_train_graphs.py runs first (its CUDA test checks a captured fit trains like an eager one).
#
# On a machine lent without network (see DEVELOPERS.md), package one part at a time (64 MiB travel; gpu_pack
# picks the part's datasets and leaves out wheels it does not import) and run it through the wrapper:
#   bash benchmarks/gpu_pack.sh part1          # part2, part3 likewise (part1 + part2 together is over 64 MiB)
#   bash .gpu/run bash benchmarks/gpu_check.sh part1
# Settings (environment): GPU_CHECK_OUT (where logs and JSON go; default $OUT, else benchmarks/_gpu_check),
# GPU_CHECK_BENCH=0/1 (the Part I benchmarks; default: when part1 is run), GPU_CHECK_BENCH_S (default 300),
# GPU_CHECK_MODELS_S (default 900), GPU_CHECK_PART_S (per part, default 7200),
# GPU_CHECK_DEVICE (default cuda), PYTHON (default python3), GPU_CHECK_GRAPHS=1 (the parts' notebooks train with
# CUDA graphs: CELLBOOK_CUDA_GRAPHS=1), GPU_CHECK_WORKERS=W and GPU_CHECK_THREADS=T (each notebook's sweeps, e.g. Part
# I's splits, on W local Dask workers of T threads sharing the GPU: `cellbook run --workers W --threads-per-worker T`).
# pytest is not on the lent machine; gpu_pack.sh adds its wheels (after a bare gpu-prepare:
#   python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 -d .gpu/whl pytest iniconfig).
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
DEV=${GPU_CHECK_DEVICE:-cuda}   # cpu: a dry run of this script on a machine without a GPU
out=${GPU_CHECK_OUT:-${OUT:-benchmarks/_gpu_check}}
mkdir -p "$out"
out=$(cd "$out" && pwd)
date -u +%Y-%m-%dT%H:%M:%S+00:00 > "$out/started.txt"   # the report reads only what ran after this
parts=("$@"); [ ${#parts[@]} -gt 0 ] || parts=(part1 part2 part3)
export CELLBOOK_PROGRESS=0 PYTHONHASHSEED=0
# each sweep's tasks as they finish (cellbook.map_tasks): how far a notebook stopped at its limit got
export CELLBOOK_SWEEP_LOG="$out/sweeps.jsonl"
rm -f "$CELLBOOK_SWEEP_LOG"
step() {  # step NAME SECONDS COMMAND...: run with a time limit, log to $out/NAME.log, note the seconds
  local name=$1 limit=$2; shift 2
  local t0=$SECONDS
  echo "=== $name (limit ${limit}s): $*"
  timeout -s TERM -k 20 "$limit" "$@" > "$out/$name.log" 2>&1
  local rc=$?
  tail -n 25 "$out/$name.log"
  echo "$name rc=$rc seconds=$((SECONDS - t0))" | tee -a "$out/steps.txt"
}
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 || true
  $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU')"
} | tee "$out/gpu.txt"
if $PY -c "import pytest" 2>/dev/null; then
  step test_graphs 180 $PY -m pytest -q -p no:cacheprovider tests/test_train_graphs.py
fi
# The Part I benchmarks need Part I's data: they run when part1 is among the parts (GPU_CHECK_BENCH=0/1 overrides).
bench=${GPU_CHECK_BENCH:-$([[ " ${parts[*]} " == *" part1 "* ]] && echo 1 || echo 0)}
if [ "$bench" = 1 ]; then
  step bench_part1 "${GPU_CHECK_BENCH_S:-300}" $PY benchmarks/bench_part1.py --device "$DEV" --genes 0 --epochs 3 \
    --repeats 2 --out "$out/bench_part1.json"
  step bench_part1_models "${GPU_CHECK_MODELS_S:-900}" $PY benchmarks/bench_part1_models.py --profile full \
    --device "$DEV" --out "$out/bench_part1_models.json"
fi
scale=()
[ -n "${GPU_CHECK_WORKERS:-}" ] && scale+=(--workers "$GPU_CHECK_WORKERS")
[ -n "${GPU_CHECK_THREADS:-}" ] && scale+=(--threads-per-worker "$GPU_CHECK_THREADS")
[ "${GPU_CHECK_GRAPHS:-0}" = 1 ] && export CELLBOOK_CUDA_GRAPHS=1
echo "parts: ${parts[*]}; sweeps: ${scale[*]:-in process}; CUDA graphs in the notebooks: ${CELLBOOK_CUDA_GRAPHS:-0}" \
  | tee -a "$out/gpu.txt"
for part in "${parts[@]}"; do
  step "run_${part//\//_}" "${GPU_CHECK_PART_S:-7200}" $PY -m cellbook.cli run "$part" --profile full --device "$DEV" "${scale[@]}"
done
# what the runs left: the run record, executed and failed copies (per-cell seconds are in them)
cp book/_build/results/_run.json "$out/" 2>/dev/null || true
for d in executed failed; do   # only the copies this check wrote
  [ -d "book/_build/$d" ] && mkdir -p "$out/$d" && (cd "book/_build/$d" && find . -name '*.ipynb' \
    -newer "$out/started.txt" -exec cp --parents {} "$out/$d/" \;)
done
$PY benchmarks/gpu_report.py "$out" | tee "$out/summary.txt"
