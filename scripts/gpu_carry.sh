#!/usr/bin/env bash
# Fill .whl/ and .gl/ (both ignored by git) with what the lent GPU machine lacks for
# benchmarks/gpu_device.sh: that machine has its own Python (3.12) with JAX (CUDA), flax, optax,
# orbax-checkpoint, pyarrow, OpenCV, tokenizers and safetensors, reaches no package index, and takes
# at most 64 MiB of files with each call (the repository included).
#
# Carried, at the versions constraints.txt pins:
#   pure Python: gymnasium, Farama-Notifications, ml_collections, portpicker, mujoco (the bindings'
#                Python part), PyOpenGL (MuJoCo's EGL context);
#   binary (manylinux x86-64): grain, array_record, av (PyAV with its own FFmpeg: the recorder's AV1
#                encoder, the shard builder's decoder), mujoco-core, simplejpeg.
#   .gl: the EGL/OpenGL loader packages (Debian, amd64) MuJoCo's offscreen rendering needs there.
# Not carried: mujoco-studio and glfw (the viewer; `import mujoco` with MUJOCO_GL=egl needs neither),
# wandb, rerun, tensorflow-datasets and the servo SDK (the suite imports none of them).
#
#   scripts/gpu_carry.sh              # for the GPU machine (CPython 3.12)
#   PY_VERSION=3.11 scripts/gpu_carry.sh .whl311   # the same set for this machine's Python (a rehearsal)
set -euo pipefail
cd "$(dirname "$0")/.."

dest=${1:-.whl}
py_version=${PY_VERSION:-3.12}
pure=(gymnasium Farama-Notifications ml_collections portpicker mujoco PyOpenGL)
binary=(grain array_record av mujoco-core simplejpeg)

# every name is pinned in constraints.txt, which pip applies as bootstrap.sh does
for name in "${pure[@]}" "${binary[@]}"; do
  grep -qiE "^${name//[-_.]/[-_.]}==" constraints.txt || { echo "gpu_carry: $name is not pinned in constraints.txt" >&2; exit 1; }
done
rm -rf "$dest" && mkdir -p "$dest"
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$py_version" \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform manylinux1_x86_64 -c constraints.txt -d "$dest" "${pure[@]}" "${binary[@]}"

if [ "$dest" = .whl ]; then
  rm -rf .gl && mkdir -p .gl /tmp/gpu_carry_apt/partial
  apt_opts=(-o APT::Architecture=amd64 -o APT::Architectures=amd64 -o Dir::State::Lists=/tmp/gpu_carry_apt)
  apt-get "${apt_opts[@]}" update -qq
  (cd .gl && apt-get "${apt_opts[@]}" download -qq libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
fi

total=$(du -cb "$dest" .gl 2>/dev/null | tail -1 | cut -f1)
# what the device tool sends besides: the files git tracks and the untracked ones it does not ignore
repo=$(git ls-files -z --cached --others --exclude-standard | xargs -0 stat -c %s | awk '{s += $1} END {print s}')
echo "gpu_carry: $(ls "$dest" | wc -l) wheels in $dest/ and $(ls .gl 2>/dev/null | wc -l) packages in .gl/:" \
  "$((total / 1048576)) MiB, with the repository's $((repo / 1048576)) MiB of files" \
  "$(((total + repo) / 1048576)) MiB of the 64 MiB a call may carry"
if [ $((total + repo)) -ge $((64 * 1048576)) ]; then
  echo "gpu_carry: over 64 MiB: the device call would be refused" >&2
  exit 1
fi
