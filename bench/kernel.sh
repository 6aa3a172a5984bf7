#!/usr/bin/env bash
# Goal 1 of BENCHMARKS.md: Kiln's resize kernel next to libvips, same photo, widths, formats and
# qualities, in one run on one machine. Usage: bench/kernel.sh [image] [runs]
set -euo pipefail
cd "$(dirname "$0")/.."
image="${1:-$(cd .. && pwd)/shared/bench-images/photo-16mp.jpg}"
runs="${2:-7}"
widths="160,480,1024,2048"   # KILN_VARIANTS' defaults
jpeg_q=82 webp_q=80          # KILN_JPEG_QUALITY, KILN_WEBP_QUALITY defaults

venv="${BENCH_VENV:-$HOME/.cache/kiln-bench-venv}"
if ! "$venv/bin/python" -c "import pyvips" >/dev/null 2>&1; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q pyvips pyvips-binary
fi

# sharp (npm; it ships libvips prebuilt), pinned to 0.34.x, which runs on this machine's Node 20.
sharp_dir="${BENCH_SHARP_DIR:-$HOME/.cache/kiln-bench-sharp}"
if [ ! -d "$sharp_dir/node_modules/sharp" ]; then
  mkdir -p "$sharp_dir"
  npm install --prefix "$sharp_dir" --no-audit --no-fund --silent 'sharp@0.34' >/dev/null
fi

echo "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p')"
kiln=$(cargo bench -q -p kiln-worker --bench kernel -- "$image" "$runs" 2>/dev/null)
vips=$("$venv/bin/python" bench/pyvips_kernel.py "$image" "$runs" "$widths" "$jpeg_q" "$webp_q")
sharp=$(SHARP_DIR="$sharp_dir" node bench/sharp_kernel.mjs "$image" "$runs" "$widths" "$jpeg_q" "$webp_q")
echo "$kiln"
echo "$vips"
echo "$sharp"
field() { sed -n "s/.*$1=\([0-9.]*\).*/\1/p" <<<"$2" | tail -n1; }
for key in median_cpu_ms median_wall_ms jpeg_bytes webp_bytes peak_rss_mb; do
  k=$(field "$key" "$kiln"); v=$(field "$key" "$vips"); s=$(field "$key" "$sharp")
  printf '%-16s kiln %10s   libvips %10s (%s)   sharp %10s (%s)\n' "$key" "$k" "$v" \
    "$(python3 -c "print(f'{$k/$v:.2f}x')")" "$s" "$(python3 -c "print(f'{$k/$s:.2f}x')")"
done
