#!/usr/bin/env bash
# Package the project for a lent GPU machine, part by part, within the 64 MiB the device tool carries (issue 12).
#
#   bash benchmarks/gpu_pack.sh part2                  # or several: part1 summary; or one notebook: part3/07_noise
#   then, on the lent machine (carry [".gpu"]):  bash .gpu/run bash benchmarks/gpu_check.sh part2
#
# ../shared/tools/gpu-prepare carries every runtime wheel the machine lacks (about 45 MiB) and the datasets it is
# given. With Part II's images (43 MiB) or Part III's tables (45 MiB) that is more than the 64 MiB that travel. So:
#  1. the datasets are the folders of ../shared/data whose names the notebooks (notebooks/PART/*.ipynb) contain;
#  2. gpu-prepare packs them;
#  3. wheels that no notebook of these parts imports are left out (below; each is imported lazily by cellbook,
#     and the kernel runs without debugpy and jedi);
#  4. what would travel (the working tree git sees, plus .gpu/) is added up: over 64 MiB, it says so and exits 1.
# Set GPU_PACK_KEEP_ALL=1 to keep every wheel.
set -euo pipefail
cd "$(dirname "$0")/.."
shared=$(cd ../shared && pwd)
targets=("$@"); [ ${#targets[@]} -gt 0 ] || { echo "usage: bash benchmarks/gpu_pack.sh PART|PART/NOTEBOOK ..." >&2; exit 2; }
notebooks=()
for t in "${targets[@]}"; do
  t=${t%.ipynb}
  if [ -d "notebooks/$t" ]; then notebooks+=(notebooks/"$t"/*.ipynb)
  elif [ -f "notebooks/$t.ipynb" ]; then notebooks+=("notebooks/$t.ipynb")
  else echo "gpu_pack: no part or notebook '$t' under notebooks/" >&2; exit 2; fi
done
datasets=()
for d in "$shared"/data/*/; do
  name=$(basename "$d"); [ "$name" = raw ] && continue
  if grep -qw -- "$name" "${notebooks[@]}"; then datasets+=("$name"); fi
done
echo "gpu_pack: ${#notebooks[@]} notebooks; datasets: ${datasets[*]:-none}"
"$shared"/tools/gpu-prepare "${datasets[@]}"
# Never needed on the lent machine: pyreadr reads the raw Ensembl table (dataset builders only);
# debugpy and jedi are optional for the notebook kernel (debugger, tab completion).
drop=(pyreadr debugpy jedi parso)
# CellTypist, LightGBM and Leiden clustering (igraph, leidenalg) are Part I's baselines and annotation only.
if [ "${GPU_PACK_KEEP_ALL:-0}" = 1 ]; then drop=()
elif ! printf '%s\n' "${notebooks[@]}" | grep -q '^notebooks/part1/'; then drop+=(celltypist lightgbm igraph leidenalg texttable); fi
for pkg in "${drop[@]}"; do
  rm -f .gpu/whl/"$pkg"-*.whl
done
[ ${#drop[@]} -gt 0 ] && echo "gpu_pack: left out ${drop[*]}"
# pytest (the machine has pluggy and packaging), so that gpu_check runs tests/test_train_graphs.py there first.
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 -d .gpu/whl pytest iniconfig \
  || echo "gpu_pack: could not fetch pytest; gpu_check will skip the graph test"
bytes=$(python3 - <<'PY'
import os, subprocess
files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                       capture_output=True, check=True).stdout.decode().split("\0")
total = sum(os.path.getsize(f) for f in files if f and os.path.isfile(f))
for root, _, names in os.walk(".gpu"):
    total += sum(os.path.getsize(os.path.join(root, n)) for n in names)
print(total)
PY
)
mib=$(python3 -c "print(f'{$bytes / 2**20:.1f}')")
echo "gpu_pack: $(ls .gpu/whl | wc -l) wheels ($(du -sh .gpu/whl | cut -f1)), data $(du -sh .gpu/data | cut -f1); ${mib} MiB travel (limit 64)"
if [ "$bytes" -gt $((64 * 1024 * 1024)) ]; then
  echo "gpu_pack: over 64 MiB: pack fewer notebooks at a time (e.g. one part, or one notebook)" >&2
  exit 1
fi
