#!/usr/bin/env bash
# Issue 21's transcode benchmark: Kiln's video job on a 1080p clip against the same ffmpeg
# commands (the ladder, then the poster: printed by `--example video_args`) run by hand, on
# the same machine, alternating. Kiln's time is its job's (started_at to finished_at: reading
# the original, both ffmpeg runs, the poster's image variants, storing, recording).
# Usage: bench/video.sh [runs] [seconds]   (default 5 runs of a 10 s clip)
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-5}" seconds="${2:-10}"
export KILN_CONCURRENCY_VIDEO=1
# shellcheck source=bench/lib.sh
. bench/lib.sh
cargo build -q --release -p kiln-worker --example video_args
clips="$storage/clips"; mkdir -p "$clips"

# A moving 1080p test pattern with a tone, as a phone would send it (index at the end), made
# unique per run (a comment) so no upload is a duplicate of another.
make_clip() {
  ffmpeg -hide_banner -v error -nostdin -f lavfi -i "testsrc2=size=1920x1080:rate=30:duration=$seconds" \
    -f lavfi -i "sine=frequency=440:duration=$seconds" -c:v libx264 -preset ultrafast \
    -pix_fmt yuv420p -c:a aac -metadata "comment=$(python3 -c 'import uuid; print(uuid.uuid4())')" \
    -y "$1"
}
by_hand() {
  local out="$clips/hand"; rm -rf "$out"; mkdir -p "$out"
  local start end
  start=$(date +%s.%N)
  "$target/examples/video_args" "$1" 1920 1080 "$seconds" "$out" | python3 -c '
import subprocess, sys
commands = sys.stdin.read().split("\n\n")
for command in commands:
    args = [a for a in command.split("\n") if a]
    if args:
        subprocess.run(["ffmpeg", *args], check=True, stdout=subprocess.DEVNULL)
'
  end=$(date +%s.%N)
  python3 -c "print(f'{$end - $start:.2f}')"
}
kiln() {
  local id job
  id=$(upload "$1" | json_field id)
  # Checked once a second with one psql: polling the API with curl and python every 100 ms
  # took a third of a core from the transcode it was timing.
  for _ in $(seq 600); do
    sleep 1
    status=$(psql -qAt -h 127.0.0.1 -U postgres -d "$name" -c "SELECT status FROM media WHERE id = '$id'")
    [ "$status" = ready ] && break
    [ "$status" = failed ] && { echo "video $id failed" >&2; return 1; }
  done
  psql -qAt -h 127.0.0.1 -U postgres -d "$name" -c \
    "SELECT round(extract(epoch FROM finished_at - started_at)::numeric, 2) FROM jobs j JOIN media m ON m.job_id = j.id WHERE m.id = '$id'"
}

echo "clip: 1920x1080, 30 fps, ${seconds} s, H.264 + AAC; ladder $(printenv KILN_VIDEO_RENDITIONS || echo 360,720,1080); KILN_CPU_THREADS=$KILN_CPU_THREADS"
make_clip "$clips/warm.mp4"; kiln "$clips/warm.mp4" >/dev/null; by_hand "$clips/warm.mp4" >/dev/null
hand=() ours=()
for run in $(seq "$runs"); do
  make_clip "$clips/$run.mp4"
  ours+=("$(kiln "$clips/$run.mp4")")
  hand+=("$(by_hand "$clips/$run.mp4")")
  echo "run $run: kiln ${ours[-1]} s, by hand ${hand[-1]} s"
done
python3 - "${ours[*]}" "${hand[*]}" <<'PY'
import statistics, sys
ours = [float(x) for x in sys.argv[1].split()]
hand = [float(x) for x in sys.argv[2].split()]
k, h = statistics.median(ours), statistics.median(hand)
print(f"median: kiln {k:.2f} s, by hand {h:.2f} s, overhead {100 * (k / h - 1):+.1f}% (goal <= 5%)")
PY
