"""The libvips side of the kernel benchmark: the same photo, widths, formats and qualities as
Kiln's defaults, done the way libvips does it fastest (decode once with shrink-on-load, then
thumbnail_image per width), with the operation cache off.

Usage: python pyvips_kernel.py IMAGE RUNS WIDTHS JPEG_Q WEBP_Q
Prints one line in the same key=value form as `cargo bench --bench kernel`."""

import resource
import statistics
import sys
import time

import pyvips

path, runs = sys.argv[1], int(sys.argv[2])
widths = [int(w) for w in sys.argv[3].split(",")]
jpeg_q, webp_q = int(sys.argv[4]), int(sys.argv[5])
pyvips.cache_set_max(0)


def render():
    largest = max(widths)
    full = pyvips.Image.new_from_file(path, access="sequential")
    # Shrink-on-load: decode at the largest JPEG scale that still covers the widest variant.
    shrink = max(1, min(8, full.width // largest))
    shrink = 1 << (shrink.bit_length() - 1)
    base = pyvips.Image.new_from_file(path, shrink=shrink) if shrink > 1 else full
    base = base.copy_memory()
    jpeg = webp = 0
    for width in sorted(widths, reverse=True):
        scaled = base.thumbnail_image(width)
        jpeg += len(scaled.jpegsave_buffer(Q=jpeg_q, strip=True))
        webp += len(scaled.webpsave_buffer(Q=webp_q, strip=True))
    return jpeg, webp


render()
walls, cpus = [], []
for _ in range(runs):
    cpu, wall = time.process_time(), time.perf_counter()
    jpeg, webp = render()
    walls.append((time.perf_counter() - wall) * 1000)
    cpus.append((time.process_time() - cpu) * 1000)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(f"libvips {pyvips.version(0)}.{pyvips.version(1)}.{pyvips.version(2)} kernel:")
print(
    f"runs={runs} median_wall_ms={statistics.median(walls):.1f} "
    f"median_cpu_ms={statistics.median(cpus):.1f} jpeg_bytes={jpeg} webp_bytes={webp} "
    f"peak_rss_mb={peak:.1f}"
)
