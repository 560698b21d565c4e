#!/bin/bash
# Long audio with the tiny chain models (docs/reliability.md, issue "long
# audio"): 60 s offline costs at most 10x the 4 s run's time per second of
# audio and stays under 1 GB; 10 minutes in --mode auto (offline up to the
# elements' offline-limit, 120 s, then windows) finishes under 2 GB; 10
# minutes in --mode offline is refused at once, suggesting auto.
# usage: test_long_audio.sh ANITALKER_BIN DATA_DIR
set -u
bin=$1 data=$2
command -v /usr/bin/time >/dev/null || { echo "GNU time missing (Debian: time): skipped"; exit 77; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
fail=0
check() {  # check NAME CONDITION...
  local name=$1; shift
  if "$@"; then echo "ok: $name"; else echo "FAIL: $name"; fail=1; fi
}
speech="$data/audio/speech_2s_16k.wav"  # 2.08 s
ffmpeg -loglevel error -y -stream_loop 1 -i "$speech" -c copy s4.wav
ffmpeg -loglevel error -y -stream_loop 29 -i "$speech" -c copy s60.wav
ffmpeg -loglevel error -y -stream_loop 9 -i s60.wav -c copy s600.wav
# run NAME ARGS...: generate, recording "seconds peak_kB rc" in NAME.t
run() {
  local name=$1; shift
  /usr/bin/time -f "%e %M" -o "$name.time" "$bin" generate --models-dir "$data/chain" \
    --portrait "$data/renderer/monalisa.jpg" "$@" 2>"$name.err"
  local rc=$?
  echo "$(tail -n 1 "$name.time") $rc" > "$name.t"
  echo "$name: $(cat "$name.t") (seconds, peak kB, rc)"
}
run s4 --audio s4.wav --mode offline --out s4.mp4 --quiet
run s60 --audio s60.wav --mode offline --out s60.mp4 --quiet
read t4 m4 r4 < s4.t
read t60 m60 r60 < s60.t
check "4 s and 60 s offline succeed ($r4, $r60)" test "$r4" -eq 0 -a "$r60" -eq 0
# per second of audio: 60 s is 62.4 s, 4 s is 4.16 s
ratio=$(awk -v a="$t60" -v b="$t4" 'BEGIN { printf "%.2f", (a / 62.4) / (b / 4.16) }')
check "60 s offline: time per second of audio $ratio x the 4 s run's (<= 10)" \
  awk -v r="$ratio" 'BEGIN { exit !(r <= 10) }'
check "60 s offline: peak $((m60 / 1024)) MB < 1024 MB" test "$m60" -lt 1048576

run o600 --audio s600.wav --mode offline --out o600.mp4 --quiet
read t m r < o600.t
check "10 min offline is refused at once (rc $r, $t s)" awk -v r="$r" -v t="$t" 'BEGIN { exit !(r == 1 && t < 30) }'
check "  suggesting mode=auto" grep -q "mode=auto" o600.err
run a600 --audio s600.wav --mode auto --out a600.mp4
read t m r < a600.t
check "10 min auto succeeds (rc $r, $t s)" test "$r" -eq 0
check "10 min auto: peak $((m / 1024)) MB < 2048 MB" test "$m" -lt 2097152
lines=$(grep -c '^anitalker generate: [0-9]* s: features' a600.err)
check "10 min auto, stderr not a terminal: a progress line every 10 s ($lines lines for $t s)" \
  awk -v n="$lines" -v t="$t" 'BEGIN { exit !(n >= int(t / 10) - 1 && n <= int(t / 10) + 1) }'
# The lines count the encoder's frames too (at large sizes it runs long
# after the renderer's last frame), at most the renderer's.
last=$(grep '^anitalker generate: [0-9]* s: features' a600.err | tail -1)
enc=$(echo "$last" | sed -n 's/.*, encoded \([0-9]*\)$/\1/p')
vid=$(echo "$last" | sed -n 's/.*, video \([0-9]*\) of .*/\1/p')
check "  the progress counts the encoded frames ($last)" \
  bash -c "[ -n '$enc' ] && [ -n '$vid' ] && [ '$enc' -gt 0 ] && [ '$enc' -le '$vid' ]"
n=$(ffprobe -v error -count_packets -select_streams v:0 -show_entries stream=nb_read_packets -of csv=p=0 a600.mp4)
check "10 min auto: $n video frames (15626 +- 2)" test "$n" -ge 15624 -a "$n" -le 15628
[ $fail -eq 0 ] && echo "all passed"
exit $fail
