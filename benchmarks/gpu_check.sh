#!/usr/bin/env bash
# The GPU check on a bare CUDA machine: install what is missing, then run benchmarks/gpu_check.py.
#
#   benchmarks/gpu_check.sh pack     HERE (with network and ../shared/data): writes .gpu_data/lucchi.npz
#                                    (EPFL/Lucchi, 20 MB) and MONAI's wheel into .whl/ (both git-ignored)
#   benchmarks/gpu_check.sh [ARGS]   THERE (carry .gpu_data and .whl): uses the machine's python3 and its
#                                    torch (pip-installs torch only when none imports), installs MONAI from
#                                    .whl/ (or the index when reachable), runs the check; report in $OUT.
#
# ARGS go to gpu_check.py (e.g. --parts throughput,train --train-minutes 5). The whole run takes
# about 7 minutes on an H200 (gpu_check.py --budget 540 keeps it under 9): give the device command
# timeout_s=590.
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
MONAI_VERSION=${MONAI_VERSION:-1.6.1}

if [ "${1:-}" = pack ]; then
    "$PY" benchmarks/gpu_check.py --pack .gpu_data || exit 1
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation py \
        --platform any -d .whl "monai==$MONAI_VERSION" || echo "could not download MONAI: its column will say so"
    ls -la .gpu_data .whl
    exit 0
fi

if ! "$PY" -c "import torch" 2>/dev/null; then
    echo "no torch in $PY: installing it from the index"
    "$PY" -m pip install -q torch || { echo "cannot install torch here: give PYTHON=<a python with torch>"; exit 2; }
fi
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"

# The check needs numpy, scipy, tifffile, safetensors, pyyaml, psutil, pytest (on the CUDA image
# already) and MONAI for its comparison column; napari, dask, zarr ... are not imported by it.
missing=""
for pair in monai:monai tifffile:tifffile scipy:scipy safetensors:safetensors yaml:pyyaml \
            psutil:psutil pytest:pytest skimage:scikit-image; do
    "$PY" -c "import ${pair%%:*}" 2>/dev/null || missing="$missing ${pair#*:}"
done
if [ -n "$missing" ]; then
    echo "missing:$missing"
    site=/tmp/gpu_check_site
    if ls .whl/*.whl >/dev/null 2>&1; then
        "$PY" -m pip install -q --no-index --no-deps --no-compile --target "$site" .whl/*.whl
    fi
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
    for pair in monai:monai tifffile:tifffile scipy:scipy safetensors:safetensors yaml:pyyaml \
                psutil:psutil pytest:pytest skimage:scikit-image; do
        "$PY" -c "import ${pair%%:*}" 2>/dev/null || \
            "$PY" -m pip install -q --target "$site" "${pair#*:}" 2>/dev/null || echo "still missing: ${pair#*:}"
    done
fi

export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
mkdir -p "${OUT:-gpu_check_out}"
exec "$PY" benchmarks/gpu_check.py --data .gpu_data --out "${OUT:-gpu_check_out}" "$@"
