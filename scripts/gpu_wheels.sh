#!/usr/bin/env bash
# Prepare what scripts/gpu_warp.sh installs on a GPU machine without network, from a machine with PyPI: the
# runtime wheels for Python 3.12 (the GPU image's) in .gpu_c, and warp-lang's CUDA library (300 MB, larger than
# one transfer may be) xz-compressed (78 MB) and split: 52 MB in .gpu_a, carried by a first call into PARTS, the
# rest in .gpu_c/parts, carried with the wheels by the call that runs scripts/gpu_warp.sh.
# Each call also carries the working tree, and one call carries 64 MiB in all: both calls fit only with docs/ and
# the Go2 model (not needed there) left out of the index for the two calls. docs/results/gpu.md says how.
set -euo pipefail
rm -rf .gpu_a .gpu_b .gpu_c /tmp/gpu_wheels_tmp && mkdir -p .gpu_a .gpu_c/parts /tmp/gpu_wheels_tmp
plat=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
      --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${plat[@]}" \
  -d .gpu_c mujoco==4.0.0 mujoco-core==4.0.0 mujoco-warp==4.0.0 gymnasium hydra-core "omegaconf<2.4" \
  cloudpickle farama-notifications glfw pyopengl
python3 -m pip wheel -q --no-deps -w .gpu_c antlr4-python3-runtime==4.9.3  # hydra's pin: an sdist only
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${plat[@]}" \
  -d /tmp/gpu_wheels_tmp warp-lang==1.19.0
# warp's Python files (without its CPU compiler, examples and tests: a GPU run needs none of them) ...
(cd /tmp/gpu_wheels_tmp && unzip -q warp_lang-*.whl -x 'warp/examples/*' 'warp/tests/*' 'warp/bin/warp-clang.so')
(cd /tmp/gpu_wheels_tmp && mv warp/bin/warp.so . && tar -czf - warp warp_lang-*.dist-info) > .gpu_c/warp_py.tgz
# ... and its CUDA library, xz-compressed, in two parts
xz -T0 -9 -c /tmp/gpu_wheels_tmp/warp.so | split -b 52000000 - /tmp/gpu_wheels_tmp/warp.so.xz.
mv /tmp/gpu_wheels_tmp/warp.so.xz.aa .gpu_a/ && mv /tmp/gpu_wheels_tmp/warp.so.xz.a[b-z] .gpu_c/parts/
du -sh .gpu_a .gpu_c
