"""The libvips side of the AVIF benchmark: the default variants of one photo made as libvips
makes them fastest (shrink-on-load, thumbnail_image per width), saved as JPEG and WebP, with and
without an AVIF save (heifsave, AV1 by libaom in the pyvips-binary build), alternating.

Usage: python pyvips_avif.py IMAGE RUNS VARIANTS JPEG_Q WEBP_Q AVIF_Q EFFORT OUT_DIR
VARIANTS is name:width,...; OUT_DIR receives <name>.avif for the SSIM comparison.
Prints key=value lines like `cargo bench --bench avif`."""

import os
import statistics
import sys
import time

import pyvips

path, runs, variants = sys.argv[1], int(sys.argv[2]), sys.argv[3]
jpeg_q, webp_q, avif_q, effort = (int(v) for v in sys.argv[4:8])
out_dir = sys.argv[8]
widths = [(name, int(width)) for name, width in (v.split(":") for v in variants.split(","))]
pyvips.cache_set_max(0)


def render(avif):
    largest = max(width for _, width in widths)
    full = pyvips.Image.new_from_file(path, access="sequential")
    shrink = max(1, min(8, full.width // largest))
    shrink = 1 << (shrink.bit_length() - 1)
    base = pyvips.Image.new_from_file(path, shrink=shrink) if shrink > 1 else full
    base = base.copy_memory()
    files = {}
    for name, width in sorted(widths, key=lambda w: -w[1]):
        scaled = base.thumbnail_image(width).copy_memory()
        scaled.jpegsave_buffer(Q=jpeg_q, keep="none")
        scaled.webpsave_buffer(Q=webp_q, keep="none")
        if avif:
            files[name] = scaled.heifsave_buffer(
                Q=avif_q, effort=effort, compression="av1", keep="none"
            )
    return files


files = render(True)
render(False)
with_ms, without_ms = [], []
for _ in range(runs):
    for avif, into in ((True, with_ms), (False, without_ms)):
        cpu = time.process_time()
        render(avif)
        into.append((time.process_time() - cpu) * 1000)
os.makedirs(out_dir, exist_ok=True)
for name, data in files.items():
    with open(os.path.join(out_dir, f"{name}.avif"), "wb") as f:
        f.write(data)
w, wo = statistics.median(with_ms), statistics.median(without_ms)
print(
    f"libvips {pyvips.version(0)}.{pyvips.version(1)}.{pyvips.version(2)} heifsave "
    f"Q={avif_q} effort={effort} (libaom, 4:2:0):"
)
print(
    f"runs={runs} median_cpu_ms_with={w:.1f} median_cpu_ms_without={wo:.1f} "
    f"avif_cpu_ms={w - wo:.1f} avif_bytes={sum(len(d) for d in files.values())}"
)
