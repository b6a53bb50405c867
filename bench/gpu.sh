#!/usr/bin/env bash
# The one-call GPU benchmark (bench/gpu.py: every GPU row of the README into results/gpu.json).
#
#   bash bench/gpu.sh --prepare   here, where pip reaches a registry: download the wheels the GPU machine lacks
#                                 (POT, omegaconf 2.4 (which needs only PyYAML), the peers TorchCFM and flow_matching, diffusers
#                                 for the latent pipeline's AutoencoderKL; --no-deps,
#                                 CPython 3.12 manylinux x86-64) into bench/wheels/ (ignored by git)
#   bash bench/gpu.sh --out $OUT  on the GPU machine (the device tool, carry=["bench/wheels"]): installs what it lacks
#                                 from those wheels and this checkout into /tmp/flowkit-site, offline, then runs
#                                 bench/gpu.py; gpu.json and gpu.md land in --out (default bench/results/)
#   bash bench/gpu.sh --smoke     anywhere, on the CPU: every row with tiny models (the test suite runs this)
#
# Other arguments go to bench/gpu.py (--out DIR, --device cpu|cuda).
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=bench/wheels
PINS=("pot==0.9.7.post1" "omegaconf==2.4.0" "torchcfm==1.0.7" "flow_matching==1.0.10" "diffusers==0.42.1")

if [[ "${1:-}" == "--prepare" ]]; then
    mkdir -p "$WHEELS"
    platforms=()
    for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
        platforms+=(--platform "$p")
    done
    python -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${platforms[@]}" \
        -d "$WHEELS" "${PINS[@]}"
    ls -la "$WHEELS"
    exit 0
fi

PY="${PYTHON:-python3}"  # PYTHON: the test suite runs it with its own interpreter
if ! "$PY" -c "import flowkit, ot, omegaconf, torchcfm, flow_matching, diffusers" 2> /dev/null; then
    # the GPU machine: what it lacks, installed offline from the prepared wheels and this checkout
    compgen -G "$WHEELS/*.whl" > /dev/null || { echo "bench/gpu.sh: packages are missing and $WHEELS/ holds no wheels; run bash bench/gpu.sh --prepare where pip reaches a registry, and carry $WHEELS" >&2; exit 2; }
    SITE=/tmp/flowkit-site
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$WHEELS"/*.whl
    "$PY" -m pip install -q --no-index --no-deps --no-build-isolation --no-cache-dir --upgrade --target "$SITE" .
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}" PATH="$SITE/bin:$PATH"
fi
export PYTHONUNBUFFERED=1
"$PY" bench/gpu.py "$@"
