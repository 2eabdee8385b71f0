#!/usr/bin/env bash
# The GPU figures (issues 16 and 18) on a lent GPU machine, in device calls of at most 10 min each.
#
# Here, once: scripts/gpu_carry.sh (fills .whl/ and .gl/, 58 MiB with the repository). Then each
# device call carries them and runs, from the repository root:
#   bash benchmarks/gpu_device.sh suite    # gpu_suite.py: train steps/s, MFU, data wait, inference (the issue's 8-minute budget)
#   bash benchmarks/gpu_device.sh eval     # eval_vector.py: jrobot.eval --num_envs 1/2/4 on the GPU
#   bash benchmarks/gpu_device.sh check    # only the setup and the versions (a first call's smoke test)
# Extra arguments go to the benchmark. Logs and JSON go to $OUT (the device tool's return folder),
# the work folders (datasets, shards, bundles: GBs) to /tmp, which a warm machine keeps between calls.
#
# Rehearsal on a CPU machine, in a venv holding only what the GPU image has (benchmarks/README.md):
#   PY=.../python WHL=.whl311 GL=none bash benchmarks/gpu_device.sh suite --small
#   PY=.../python WHL=.whl311 GL=none SUITE_ARGS=--small bash benchmarks/gpu_device.sh eval --episodes 4
set -euo pipefail
cd "$(dirname "$0")/.."

what=${1:-suite}
shift || true
out=${OUT:-/tmp/gpu_device_out}
work=${GPU_WORK:-/tmp/jrobot_gpu}
py=${PY:-python3}
whl=${WHL:-.whl}
site=$work/site
mkdir -p "$out" "$work"

# EGL/OpenGL loaders for MuJoCo's offscreen rendering (the image has the driver, not the loaders)
if [ "${GL:-carry}" != none ] && ! ldconfig -p | grep -q 'libEGL.so.1 '; then
  for f in .gl/*.deb; do dpkg -x "$f" /; done
  ldconfig
fi
vendor=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
if [ -z "${__EGL_VENDOR_LIBRARY_FILENAMES:-}" ] && [ -f "$vendor" ]; then
  export __EGL_VENDOR_LIBRARY_FILENAMES=$vendor
fi

if [ ! -f "$site/.installed" ]; then
  ls "$whl"/*.whl >/dev/null  # fails with the folder's name when scripts/gpu_carry.sh was not run
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" "$whl"/*.whl
  touch "$site/.installed"
fi
export PYTHONPATH="$site:$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 WANDB_MODE=disabled
if command -v nvidia-smi >/dev/null; then
  export MUJOCO_GL=${MUJOCO_GL:-egl}
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
else
  export MUJOCO_GL=${MUJOCO_GL:-osmesa}
fi

# what the run depends on, and a rendered frame: a missing piece fails here, in seconds
"$py" - <<'EOF' 2>&1 | tee "$out/versions.txt"
import importlib, platform, sys
print("python", platform.python_version(), sys.executable)
for m in ("jax", "jaxlib", "flax", "optax", "orbax.checkpoint", "numpy", "grain", "array_record", "av",
          "mujoco", "pyarrow", "cv2", "simplejpeg", "tokenizers", "safetensors", "ml_collections", "gymnasium"):
    mod = importlib.import_module(m)
    print(f"{m:18s} {getattr(mod, '__version__', '?')}")
import jax
print("devices", jax.devices())
from jrobot.sim.simulator import SO101Sim
sim = SO101Sim("pick_place", cameras=("front",), image_size=(96, 128))
sim.reset(seed=0)
frame = sim.render("front")
print("rendered", frame.shape, frame.dtype, "mean", float(frame.mean()))
sim.close()
EOF

case "$what" in
  check) ;;
  suite)
    "$py" benchmarks/gpu_suite.py --out "$work/suite" "$@" 2>&1 | tee "$out/gpu_suite.log"
    ;;
  eval)
    bundle=$work/suite/bundle_act
    if [ ! -f "$bundle/policy.json" ]; then  # a fresh machine: a full-size ACT bundle from a short suite run
      # shellcheck disable=SC2086  # SUITE_ARGS: more words for it (--small in a CPU rehearsal)
      "$py" benchmarks/gpu_suite.py --out "$work/suite" --policies act --no-act-batch8 --steps 2 --warmup 1 \
        --episodes 2 --batch 8 --calls 3 ${SUITE_ARGS:-} 2>&1 | tee "$out/gpu_suite_act_only.log"
    fi
    "$py" benchmarks/eval_vector.py --bundle "$bundle" --env jrobot/SO101PickColor-v0 --envs 1,2,4 \
      --episodes 16 --rounds 2 "$@" 2>&1 | tee "$out/eval_vector.log"
    ;;
  *)
    echo "gpu_device: unknown step '$what' (check, suite or eval)" >&2
    exit 2
    ;;
esac
