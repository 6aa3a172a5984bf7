#!/usr/bin/env bash
# AVIF output next to libvips's AVIF save (heifsave), same photo and variants, in one run:
# the CPU the AVIF variants add, their bytes, and their SSIM against one reference.
# Usage: bench/avif.sh [image] [runs] [libvips Q] [libvips effort]
# KILN_AVIF_QUALITY / KILN_AVIF_SPEED set Kiln's side (the worker's defaults otherwise).
set -euo pipefail
cd "$(dirname "$0")/.."
image="${1:-$(cd .. && pwd)/shared/bench-images/photo-16mp.jpg}"
runs="${2:-5}"
vips_q="${3:-50}" vips_effort="${4:-4}"   # heifsave's defaults
variants="thumb:160,small:480,medium:1024,large:2048"   # KILN_VARIANTS' defaults
jpeg_q=82 webp_q=80

venv="${BENCH_VENV:-$HOME/.cache/kiln-bench-venv}"
if ! "$venv/bin/python" -c "import pyvips" >/dev/null 2>&1; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q pyvips pyvips-binary
fi
peer_dir=$(mktemp -d)
trap 'rm -rf "$peer_dir"' EXIT

echo "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p')"
"$venv/bin/python" bench/pyvips_avif.py "$image" "$runs" "$variants" "$jpeg_q" "$webp_q" \
  "$vips_q" "$vips_effort" "$peer_dir"
cargo bench -q -p kiln-worker --bench avif -- "$image" "$runs" "$peer_dir" 2>/dev/null
