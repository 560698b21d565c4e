# Sourced by the end-to-end tests (needs $work): check_mp4 FILE VIDEO_FRAMES
# checks with ffprobe that FILE decodes cleanly, holds VIDEO_FRAMES H.264
# frames at 25 fps, frame n at n x 40 ms, and an AAC track that starts at 0
# and lasts the 2 s clip (tests/data/audio/speech_2s_16k.wav).
check_mp4() {  # FILE VIDEO_FRAMES
  f=$1 n=$2
  ffprobe -v error -i "$f" >/dev/null 2>"$work/probe.err"; [ ! -s "$work/probe.err" ] || { cat "$work/probe.err"; exit 1; }
  ffmpeg -v error -i "$f" -f null - 2>"$work/decode.err"
  [ ! -s "$work/decode.err" ] || { echo "$f: decoding errors:"; cat "$work/decode.err"; exit 1; }
  v=$(ffprobe -v error -select_streams v:0 -count_frames -show_entries stream=codec_name,nb_read_frames,r_frame_rate \
      -of csv=p=0 "$f")
  echo "$f video: $v"
  [ "$v" = "h264,25/1,$n" ] || { echo "expected h264, 25/1, $n frames"; exit 1; }
  # PTS of video frame n is n x 40 ms.
  ffprobe -v error -select_streams v:0 -show_entries frame=pts_time -of csv=p=0 "$f" | tr -d ',' | grep . |
    awk '{ want = (NR - 1) * 0.04; d = $1 - want; if (d < 0) d = -d; if (d > 0.0005) { print "frame " NR - 1 ": pts " $1 ", want " want; bad = 1 } }
         END { exit bad }'
  a=$(ffprobe -v error -select_streams a:0 -show_entries stream=codec_name,duration -of csv=p=0 "$f")
  echo "$f audio: $a"
  # The clip lasts 2.0836 s; AAC adds its priming and pads the last frame:
  # up to two frames of 1024 samples (128 ms at 16 kHz).
  echo "$a" | awk -F, '{ d = $2 - 2.0836; if ($1 != "aac" || d < -0.001 || d > 0.129) exit 1 }' ||
    { echo "expected an AAC track of 2.084 s to 2.212 s"; exit 1; }
  s=$(ffprobe -v error -select_streams a:0 -show_entries stream=start_time -of csv=p=0 "$f")
  awk -v s="$s" 'BEGIN { if (s > 0.001 || s < -0.001) exit 1 }' || { echo "audio starts at $s s, not 0"; exit 1; }
}
