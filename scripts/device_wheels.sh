#!/usr/bin/env bash
# The packages the GPU calls carry to a device machine that has torch (2.11, Python 3.12) but neither diffusers
# nor FlashAttention-4, and no network (docs/gpu_runs/2026-12-06/log.md, fourth and thirteenth sessions). Run it
# here, where pip reaches a package registry; each folder is ignored through .git/info/exclude:
#   scripts/device_wheels.sh [ROOT]     (default: the repository root)
#   ROOT/.whl    diffusers 0.42.1 and importlib_metadata (6.4 MB): every SD-size benchmark needs them
#   ROOT/.fa4w   FA4 4.0.0b40 with its CuTe DSL runtime's small wheels (10 MB), and libs.part-a
#   ROOT/.fa4b   libs.part-b
# A call carries at most 64 MiB with the tree, and the CuTe DSL's cu13 libraries are one 92 MB wheel: it travels
# unzipped and repacked as `tar | xz -9e` (63.5 MB), split in two parts for two calls on one warm machine
# (part a the first 28,000,000 bytes). ~3 min on 2 cores, most of it xz. How the calls use them: README, Status.
set -euo pipefail
root=${1:-$(cd "$(dirname "$0")/.." && pwd)}
PIP=(python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp
     --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux_2_24_x86_64
     --platform manylinux_2_27_x86_64 --platform manylinux_2_28_x86_64)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for folder in .whl .fa4w .fa4b; do
  grep -qx "/$folder/" "$root/.git/info/exclude" 2>/dev/null || echo "/$folder/" >> "$root/.git/info/exclude"
done
mkdir -p "$work/whl" "$work/fa4" "$work/libs"
echo "downloading diffusers and FA4's wheels ..."
"${PIP[@]}" -d "$work/whl" diffusers==0.42.1 importlib_metadata
"${PIP[@]}" -d "$work/fa4" flash-attn-4==4.0.0b40 nvidia-cutlass-dsl==4.8.1 nvidia-cutlass-dsl-libs-base==4.8.1 \
  nvidia-cutlass-dsl-libs-core==4.8.1 apache-tvm-ffi==0.1.15.post2 torch-c-dlpack-ext==0.1.5 quack-kernels==0.6.5
"${PIP[@]}" -d "$work/libs" nvidia-cutlass-dsl-libs-cu13==4.8.1
echo "repacking the cu13 libraries as tar | xz -9e (~3 min on 2 cores) ..."
mkdir "$work/unzipped"
unzip -q "$work"/libs/*.whl -d "$work/unzipped"  # unzip keeps the files' modes
tar c -C "$work/unzipped" . | xz -9e -T0 > "$work/libs.tar.xz"
head -c 28000000 "$work/libs.tar.xz" > "$work/libs.part-a"
tail -c +28000001 "$work/libs.tar.xz" > "$work/libs.part-b"
# written last, whole folders at once: an interrupted run leaves the old folders as they were
rm -rf "$root/.whl" "$root/.fa4w" "$root/.fa4b"
mkdir "$root/.fa4w" "$root/.fa4b"
mv "$work/whl" "$root/.whl"
mv "$work"/fa4/*.whl "$work/libs.part-a" "$root/.fa4w/"
mv "$work/libs.part-b" "$root/.fa4b/"
du -sh "$root/.whl" "$root/.fa4w" "$root/.fa4b"
