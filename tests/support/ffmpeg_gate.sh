#!/bin/sh
# A stand-in for ffmpeg (KILN_FFMPEG) that holds a transcode where a test wants it: it reports
# one second done on its -progress output, as ffmpeg does every half second, until the file
# beside it named like it with `.go` for `.sh` exists, then becomes the real ffmpeg (from PATH:
# Kiln gives ffmpeg no other environment). Like ffmpeg, it dies of a broken pipe once nobody
# reads its progress (its worker is gone).
gate="${0%.sh}.go"
case " $* " in
  *" -progress "*) reports=true ;;
  *) reports=false ;;
esac
while [ ! -e "$gate" ]; do
  if [ "$reports" = true ]; then
    printf 'out_time_us=1000000\nprogress=continue\n' || exit 141
  fi
  sleep 0.1
done
exec ffmpeg "$@"
