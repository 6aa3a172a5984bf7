#!/usr/bin/env bash
# Goal 3 of BENCHMARKS.md: no-op jobs per second end to end (row committed, published with
# confirms, consumed, row marked succeeded, acked) against a raw lapin publisher + consumer on
# the same broker with the same durability (persistent messages, confirms, manual acks, quorum
# queue), alternating in one run. Release binaries on a private database, vhost and namespace.
# Usage: bench/queue.sh [jobs per run] [runs]
set -euo pipefail
cd "$(dirname "$0")/.."
count="${1:-20000}"
runs="${2:-3}"
# No-op jobs wait on nothing but Postgres and the broker: many in flight keep both busy.
export KILN_WORKER_CONCURRENCY="${KILN_WORKER_CONCURRENCY:-1024}"
# shellcheck source=bench/lib.sh
. bench/lib.sh
cargo build -q --release -p kiln-worker --example queue_bench
echo "worker concurrency (prefetch) $KILN_WORKER_CONCURRENCY, producers ${BENCH_PRODUCERS:-2048}"

rate() { sed -n 's/.*per_s=\([0-9.]*\).*/\1/p' <<<"$1"; }
# The machine's busy CPU time (user, nice, system, irq, softirq; not idle, I/O wait or steal), in
# clock ticks. Per message it is steadier than the rate on a shared machine whose speed drifts:
# the ratio of the two costs is what the ratio of the rates tends to when the CPU is the limit.
busy() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8}' /proc/stat; }
per_job_us() { python3 -c "print(round(($2 - $1) / $(getconf CLK_TCK) / $count * 1e6))"; }
for run in $(seq "$runs"); do
  before=$(busy)
  raw=$("$target/examples/queue_bench" raw "$count")
  between=$(busy)
  kiln=$("$target/examples/queue_bench" kiln "$count")
  after=$(busy)
  psql -q -h 127.0.0.1 -U postgres -d "$name" -c "DELETE FROM jobs WHERE kind = 'noop'"
  raw_us=$(per_job_us "$before" "$between")
  kiln_us=$(per_job_us "$between" "$after")
  echo "run $run: $raw | $kiln | ratio $(python3 -c "print(f'{$(rate "$kiln") / $(rate "$raw"):.2f}x')") (goal >= 0.5x)" \
    "| CPU per message: raw ${raw_us} us, Kiln ${kiln_us} us, cost ratio $(python3 -c "print(f'{$raw_us / $kiln_us:.2f}x')")"
done
