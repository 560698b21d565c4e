#!/bin/bash
# How the CLI writes its outputs (docs/reliability.md, lib/output_file.h):
# never over one of its inputs, never a half-written or shared file, nothing
# left behind by SIGINT / SIGTERM (nor by SIGKILL where the file system has
# unnamed files), and clear messages for bad paths and bad
# controls.  The tiny chain models (tests/data/chain).
# usage: test_cli_output.sh ANITALKER_BIN DATA_DIR
set -u
bin=$1 data=$2
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
cd "$work"
cp "$data/renderer/monalisa.jpg" face.jpg
cp "$data/audio/speech_2s_16k.wav" speech.wav
fail=0
check() {  # check NAME CONDITION...
  local name=$1; shift
  if "$@"; then echo "ok: $name"; else echo "FAIL: $name"; fail=1; fi
}
gen() { "$bin" generate --models-dir "$data/chain" --steps 5 --quiet "$@"; }
leftovers() { ls -A | grep -c '\.part$'; }
# The temporary files a running process $1 has here: hidden .part files,
# and unnamed ones (O_TMPFILE, where the file system has them) it holds open.
here=$(pwd -P)
# (each counted once: the CLI and its file sink both hold it)
unnamed() { ls -l /proc/$1/fd 2>/dev/null | grep -o -- "-> $here/#[0-9]* (deleted)" | sort -u | wc -l; }
temps() { echo $(( $(leftovers) + $(unnamed $1) )); }
# Whether this folder's file system has unnamed files (then the CLI's must be).
has_tmpfile=0
command -v python3 >/dev/null &&
  python3 -c 'import os; os.close(os.open(".", os.O_TMPFILE | os.O_WRONLY, 0o600))' 2>/dev/null && has_tmpfile=1
frames() { ffprobe -v error -count_frames -select_streams v:0 -show_entries stream=nb_read_frames -of csv=p=0 "$1"; }

# 3. An output that is an input is refused, and the input is untouched.
md5=$(md5sum speech.wav face.jpg)
gen --portrait face.jpg --audio speech.wav --out speech.wav 2>err.txt; rc=$?
check "generate --out = --audio is refused (rc $rc)" test $rc -eq 2
check "  and says why" grep -q "is the input speech.wav" err.txt
gen --portrait face.jpg --audio speech.wav --out ./face.jpg 2>err.txt; rc=$?
check "generate --out = --portrait (another spelling) is refused (rc $rc)" test $rc -eq 2
ln -s speech.wav link.wav
gen --portrait face.jpg --audio speech.wav --out link.wav 2>err.txt; rc=$?
check "generate --out = a link to --audio is refused (rc $rc)" test $rc -eq 2
"$bin" features --mfcc --audio speech.wav --out speech.wav 2>err.txt; rc=$?
check "features --out = --audio is refused (rc $rc)" test $rc -eq 2
check "the inputs are unchanged" bash -c "[ \"\$(md5sum speech.wav face.jpg)\" = '$md5' ]"
gen --portrait face.jpg --audio speech.wav --out missing/out.mp4 2>err.txt; rc=$?
check "--out in a missing folder: rc 1 and the folder named (rc $rc)" \
  bash -c "[ $rc -eq 1 ] && grep -q 'the folder missing does not exist' err.txt"

# 3b. What --out names is kept: a link to a file stays a link (the file it
# names gets the result); a pipe is written into, not replaced by a file
# (so is /dev/null, which a rename by root would have replaced); "-" and a
# link to nothing are refused.
gen --portrait face.jpg --audio speech.wav --out real.mp4 2>/dev/null
ln -s real.mp4 alias.mp4
before=$(md5sum < real.mp4)
gen --portrait face.jpg --audio speech.wav --out alias.mp4 --seed 3 2>err.txt; rc=$?
check "--out a link to a file: rc 0, still a link, the file it names rewritten (rc $rc)" \
  bash -c "[ $rc -eq 0 ] && [ -L alias.mp4 ] && [ \"\$(md5sum < real.mp4)\" != '$before' ]"
ln -s nowhere.mp4 dangling.mp4
gen --portrait face.jpg --audio speech.wav --out dangling.mp4 2>err.txt; rc=$?
check "--out a link to nothing is refused (rc $rc: $(cat err.txt))" \
  bash -c "[ $rc -eq 2 ] && grep -q 'is a link to a missing file' err.txt && [ ! -e nowhere.mp4 ]"
gen --portrait face.jpg --audio speech.wav --out - 2>err.txt; rc=$?
check "--out - is refused, no file named - (rc $rc: $(cat err.txt))" \
  bash -c "[ $rc -eq 2 ] && grep -q 'standard output is not supported' err.txt && [ ! -e ./- ]"
mkfifo pipe.npy
(timeout 20 cat pipe.npy > from_pipe.npy) & reader=$!
"$bin" features --mfcc --audio speech.wav --out pipe.npy 2>err.txt; rc=$?
wait $reader
"$bin" features --mfcc --audio speech.wav --out direct.npy 2>/dev/null
check "--out a pipe: written through it, still a pipe (rc $rc)" \
  bash -c "[ $rc -eq 0 ] && [ -p pipe.npy ] && cmp -s from_pipe.npy direct.npy"

# 3c. The audio may come through a pipe (the same bytes as from its file);
# a device is refused, naming what it is.
gen --portrait face.jpg --audio <(cat speech.wav) --out piped.mp4 2>err.txt; rc=$?
gen --portrait face.jpg --audio speech.wav --out filed.mp4 2>/dev/null
check "--audio through a pipe: the same video as from the file (rc $rc)" \
  bash -c "[ $rc -eq 0 ] && cmp -s piped.mp4 filed.mp4"
gen --portrait /dev/zero --audio speech.wav --out z.mp4 2>err.txt; rc=$?
check "--portrait /dev/zero is refused as not a file (rc $rc: $(cat err.txt))" \
  bash -c "[ $rc -eq 2 ] && grep -q '/dev/zero: is not a file' err.txt"

# 3d. Files as file:// URIs (escapes decoded, as the elements' properties
# take them), also for the output-is-an-input check; other URLs refused.
cp face.jpg "a face.jpg"
gen --portrait "file://$here/a%20face.jpg" --audio "file://localhost$here/speech.wav" \
  --out "file://$here/uri%20out.mp4" 2>err.txt; rc=$?
check "file:// URIs for --portrait, --audio and --out (rc $rc: $(cat err.txt))" \
  bash -c "[ $rc -eq 0 ] && [ -s 'uri out.mp4' ]"
gen --portrait face.jpg --audio speech.wav --out "file://$here/speech.wav" 2>err.txt; rc=$?
check "--out as a URI of --audio is refused (rc $rc)" bash -c "[ $rc -eq 2 ] && grep -q 'is the input' err.txt"
gen --portrait https://example.org/face.jpg --audio speech.wav --out u.mp4 2>err.txt; rc=$?
check "an https URL is refused, named (rc $rc: $(cat err.txt))" \
  bash -c "[ $rc -eq 2 ] && grep -q -- '--portrait: .https://example.org/face.jpg. is a URL (https)' err.txt && [ ! -e u.mp4 ]"

# 3e. `anitalker render` writes its frames as they are made: a long clip's
# frames are never all in memory (before 2026-12-07 they were, three times
# over: 1500 frames peaked at 819 MB, 10 minutes with --raw would need
# about 35 GB).  1500 frames (295 MB of 256x256
# frames) against 10, peak resident memory.
motion_npy() {  # motion_npy FILE N: N zero motion codes of 20, float32
  local h="{'descr': '<f4', 'fortran_order': False, 'shape': ($2, 20), }"
  local len=$(( ${#h} + 1 )); len=$(( len + (64 - (10 + len) % 64) % 64 ))
  { printf '\x93NUMPY\x01\x00'; printf "\\x$(printf %02x $((len & 255)))\\x$(printf %02x $((len >> 8)))"
    printf '%s' "$h"; printf '%*s\n' $(( len - ${#h} - 1 )) ''; head -c $(( $2 * 80 )) /dev/zero; } > "$1"
}
if command -v /usr/bin/time >/dev/null; then
  motion_npy m10.npy 10; motion_npy m1500.npy 1500
  for n in 10 1500; do
    /usr/bin/time -f %M -o r$n.kb "$bin" render --stage1 "$data/renderer/tiny_lia.ckpt" --portrait face.jpg \
      --motion m$n.npy --out r$n.npy --batch-size 4 2>err.txt; rc=$?
    check "render of $n frames (rc $rc: $(cat err.txt))" bash -c "[ $rc -eq 0 ] && [ \$(stat -c %s r$n.npy) -eq $(( n * 196608 + 128 )) ]"
  done
  a=$(tail -n 1 r10.kb); b=$(tail -n 1 r1500.kb)
  check "render of 1500 frames: peak $((b / 1024)) MB, within 100 MB of 10 frames' $((a / 1024)) MB" test $(( b - a )) -lt 102400
  rm -f r10.npy r1500.npy
fi

# 4. Two runs with the same --out at once: both succeed, the result is one
# whole video (of either run), no temporary file is left.
ffmpeg -loglevel error -y -stream_loop 1 -i speech.wav -c copy speech4.wav
gen --portrait face.jpg --audio speech.wav --out same.mp4 2>a.txt & a=$!
gen --portrait face.jpg --audio speech4.wav --out same.mp4 2>b.txt & b=$!
wait $a; ra=$?
wait $b; rb=$?
check "two runs with one --out both succeed (rc $ra, $rb)" test $ra -eq 0 -a $rb -eq 0
n=$(frames same.mp4)
check "the output is one whole video ($n frames: 52 or 104)" test "$n" = 52 -o "$n" = 104
check "no temporary file left ($(leftovers))" test "$(leftovers)" -eq 0

# 10. Same inputs, same seed: the same bytes, also when runs share the cores
# (4 at once, twice: before the fix about 3 runs in 10 differed) and in
# streaming mode.
for mode in offline streaming; do
  for round in 1 2; do
    for i in 1 2 3 4; do
      gen --portrait face.jpg --audio speech4.wav --seed 7 --mode $mode --out s$round$i.mp4 2>/dev/null &
    done
    wait
  done
  distinct=$(md5sum s??.mp4 | awk '{print $1}' | sort -u | wc -l)
  check "$mode: 8 runs with one seed write identical MP4s ($distinct distinct)" test "$distinct" -eq 1
  gen --portrait face.jpg --audio speech4.wav --seed 8 --mode $mode --out s3.mp4 2>/dev/null
  ffmpeg -loglevel error -y -i s11.mp4 -map 0:v -f framemd5 s1.md5
  ffmpeg -loglevel error -y -i s3.mp4 -map 0:v -f framemd5 s3.md5
  check "$mode: another seed gives other frames" bash -c "! cmp -s s1.md5 s3.md5"
  rm -f s??.mp4
done

# 5. SIGINT, SIGTERM and timeout(1) while the video is being written leave
# neither the output nor a temporary file; so does SIGKILL where the file
# system has unnamed files (O_TMPFILE: ext4, xfs, btrfs, tmpfs).
ffmpeg -loglevel error -y -stream_loop 14 -i speech.wav -c copy long.wav
for sig in INT TERM KILL; do
  rm -f killed.mp4
  # Default dispositions: a background job of a script starts with SIGINT
  # ignored (and the program rightly keeps an ignored signal ignored).
  env --default-signal=INT,TERM "$bin" generate --models-dir "$data/chain" --steps 5 --quiet --portrait face.jpg \
    --audio long.wav --out killed.mp4 2>/dev/null & p=$!
  for i in $(seq 200); do [ "$(temps $p)" -gt 0 ] && break; sleep 0.05; done
  had=$(temps $p) was_unnamed=$(unnamed $p)
  sleep 0.3
  kill -$sig $p
  wait $p; rc=$?
  # Two: the MP4 and mp4mux's media spool (faststart, since 2026-12-07).
  check "SIG$sig: the run had its temporary files ($had, unnamed: $was_unnamed), ends by the signal (rc $rc)" \
    test "$had" -eq 2 -a $rc -ne 0
  [ $has_tmpfile -eq 1 ] && check "SIG$sig: the file system has unnamed files, and the run's were" test "$was_unnamed" -eq 2
  if [ $sig != KILL ] || [ "$was_unnamed" -eq 2 ]; then
    check "SIG$sig: no output, no temporary file" bash -c "[ ! -e killed.mp4 ] && [ $(leftovers) -eq 0 ]"
  else  # a file system without unnamed files: the hidden file stays until the next run (below)
    check "SIG$sig: no output (the hidden temporary file stays here)" bash -c "[ ! -e killed.mp4 ]"
    rm -f .killed.mp4.*.part
  fi
done
# Named temporaries (a file system without unnamed files, forced here):
# every signal whose default ends the process removes them (SIGUSR1, an
# alarm, a broken pipe left them, found 2026-12-07).
for sig in USR1 ALRM PIPE; do
  rm -f killed.mp4
  env --default-signal=INT,TERM,USR1,ALRM,PIPE ANITALKER_NAMED_TEMPORARIES=1 "$bin" generate --models-dir "$data/chain" \
    --steps 5 --quiet --portrait face.jpg --audio long.wav --out killed.mp4 2>/dev/null & p=$!
  for i in $(seq 200); do [ "$(leftovers)" -gt 0 ] && break; sleep 0.05; done
  had=$(leftovers)
  sleep 0.3
  kill -$sig $p
  wait $p; rc=$?
  check "SIG$sig, named temporaries ($had): ends by the signal (rc $rc), no output, no .part left ($(leftovers))" \
    bash -c "[ $had -gt 0 ] && [ $rc -ne 0 ] && [ ! -e killed.mp4 ] && [ $(leftovers) -eq 0 ]"
  rm -f .killed.mp4.*.part
done
# Where the file system has no unnamed files (forced here), SIGKILL leaves
# the hidden file, whose name holds its maker; the next run to that output
# removes it, and keeps another machine's and a live process's.
rm -f killed.mp4
env --default-signal=INT,TERM ANITALKER_NAMED_TEMPORARIES=1 "$bin" generate --models-dir "$data/chain" --steps 5 \
  --quiet --portrait face.jpg --audio long.wav --out killed.mp4 2>/dev/null & p=$!
for i in $(seq 200); do [ "$(leftovers)" -gt 0 ] && break; sleep 0.05; done
sleep 0.3
kill -KILL $p
wait $p
killed=$(ls -A | grep '^\.killed\.mp4\.[0-9a-f]\{8\}-.*\.part$')
spool=$(ls -A | grep '^\.killed\.mp4\.media\..*\.part$')
host=$(echo "$killed" | sed -n 's/^\.killed\.mp4\.\([0-9a-f]\{8\}\)-.*/\1/p')
boot=$(head -c 8 /proc/sys/kernel/random/boot_id)
other=".killed.mp4.$( [ "$host" = 00000000 ] && echo 00000001 || echo 00000000)-$boot-1-1.abcdef.part"
alive=".killed.mp4.$host-$boot-$$-$(sed 's/.*) //' /proc/$$/stat | cut -d' ' -f20).ghijkl.part"
: > "$other"; : > "$alive"
ANITALKER_NAMED_TEMPORARIES=1 gen --portrait face.jpg --audio speech.wav --out killed.mp4 2>err.txt; rc=$?
check "SIGKILL, named temporaries ($killed, $spool): the next run removes them, keeps another machine's and a live one's (rc $rc)" \
  bash -c "[ -n '$host' ] && [ -n '$spool' ] && [ $rc -eq 0 ] && [ ! -e '$killed' ] && [ ! -e '$spool' ] && [ -e '$other' ] && [ -e '$alive' ] && [ -s killed.mp4 ]"
check "  and its own named temporary file is gone ($(leftovers) left, 2 expected)" test "$(leftovers)" -eq 2
# The MP4 has its index (moov) right after ftyp, before the media: a browser
# plays it while it downloads (until 2026-12-07 moov came last).
ftyp=$((16#$(od -An -tx1 -N4 killed.mp4 | tr -d ' \n')))
second=$(dd if=killed.mp4 bs=1 skip=$((ftyp + 4)) count=4 2>/dev/null)
check "the MP4's second box is its index (faststart): $second" test "$second" = moov
rm -f "$other" "$alive" killed.mp4
# The same for a PNG sequence: its hidden folder goes, no frame is left.
mkdir -p frames
for sig in INT TERM; do
  env --default-signal=INT,TERM "$bin" generate --models-dir "$data/chain" --steps 5 --quiet --portrait face.jpg \
    --audio long.wav --out 'frames/%04d.png' 2>/dev/null & p=$!
  for i in $(seq 200); do ls -A frames | grep -q '^\.anitalker-frames' && break; sleep 0.05; done
  had=$(ls -A frames | grep -c '^\.anitalker-frames')
  sleep 0.3
  kill -$sig $p
  wait $p; rc=$?
  check "SIG$sig, PNG sequence: the run had a hidden folder ($had), ends by the signal (rc $rc)" \
    test "$had" -eq 1 -a $rc -ne 0
  check "SIG$sig, PNG sequence: nothing left in the folder ($(ls -A frames | wc -l))" bash -c "[ -z \"\$(ls -A frames)\" ]"
done
# SIGKILL cannot be caught: its hidden folder stays, with what it holds,
# and the next PNG run in that folder removes it (its maker is gone); a
# folder another machine made, or a live process, is left alone.
env --default-signal=INT,TERM "$bin" generate --models-dir "$data/chain" --steps 5 --quiet --portrait face.jpg \
  --audio long.wav --out 'frames/%04d.png' 2>/dev/null & p=$!
for i in $(seq 200); do ls -A frames | grep -q '^\.anitalker-frames' && break; sleep 0.05; done
sleep 0.3
kill -KILL $p
wait $p
killed=$(ls -A frames | grep '^\.anitalker-frames')
mkdir frames/.anitalker-frames.part.other frames/.anitalker-frames.part.alive
printf 'another-host\n%s\n1\n1\n' "$(cat /proc/sys/kernel/random/boot_id)" > frames/.anitalker-frames.part.other/.owner
printf '%s\n%s\n%s\n%s\n' "$(hostname)" "$(cat /proc/sys/kernel/random/boot_id)" $$ \
  "$(sed 's/.*) //' /proc/$$/stat | cut -d' ' -f20)" > frames/.anitalker-frames.part.alive/.owner
gen --portrait face.jpg --audio speech.wav --out 'frames/%04d.png' 2>err.txt; rc=$?
check "SIGKILL, PNG sequence: the hidden folder stayed ($killed); the next run removes it, keeps the others (rc $rc)" \
  bash -c "[ -n '$killed' ] && [ $rc -eq 0 ] && [ ! -e 'frames/$killed' ] && [ -d frames/.anitalker-frames.part.other ] && [ -d frames/.anitalker-frames.part.alive ] && [ -e frames/0052.png ]"
rm -rf frames/.anitalker-frames.part.other frames/.anitalker-frames.part.alive frames/*.png
# A frame's name taken by something other than a file (here a pipe): nothing
# is moved over it, no frame is written, nothing is left.
mkdir taken && mkfifo taken/0003.png
gen --portrait face.jpg --audio speech.wav --out 'taken/%04d.png' 2>err.txt; rc=$?
check "a frame name taken by a pipe: refused, the pipe kept, nothing else left (rc $rc: $(cat err.txt))" \
  bash -c "[ $rc -eq 2 ] && [ -p taken/0003.png ] && [ \"\$(ls -A taken)\" = 0003.png ] && grep -q 'is not a plain file' err.txt"
# A PNG sequence whose frames' names are the inputs (fr/00001.png for
# fr/%05d.png): refused before the run, the inputs untouched (until
# 2026-12-07 the frames replaced them); an input linked under a frame's
# name: refused at the end, no frame moved.
mkdir fr && cp face.jpg fr/00001.jpg && cp speech.wav fr/00002.png
ffmpeg -v error -i face.jpg fr/00001.png
seq_md5=$(md5sum fr/00001.png fr/00002.png)
gen --portrait fr/00001.png --audio fr/00002.png --out 'fr/%05d.png' 2>err.txt; rc=$?
check "a PNG sequence over its inputs is refused (rc $rc: $(cat err.txt))" \
  bash -c "[ $rc -eq 2 ] && grep -q 'is the input' err.txt && [ \"\$(md5sum fr/00001.png fr/00002.png)\" = '$seq_md5' ]"
mkdir fr/in && ln fr/00001.png fr/in/portrait.png
gen --portrait fr/in/portrait.png --audio speech.wav --out 'fr/%05d.png' 2>err.txt; rc=$?
check "a PNG sequence over a hard link of an input is refused (rc $rc: $(cat err.txt))" \
  bash -c "[ $rc -eq 2 ] && grep -q 'is the input' err.txt && [ \"\$(md5sum fr/00001.png fr/00002.png)\" = '$seq_md5' ] && [ ! -e fr/00003.png ]"
# A shorter run into a sequence a longer one wrote: the older frames after
# its last are removed, and it says so (until 2026-12-07 they stayed, the
# end of another video after this one).
mkdir seq
gen --portrait face.jpg --audio speech.wav --out 'seq/%03d.png' 2>err.txt
ffmpeg -v error -y -i speech.wav -t 1 short.wav
"$bin" generate --models-dir "$data/chain" --steps 5 --portrait face.jpg --audio short.wav --out 'seq/%03d.png' 2>err.txt; rc=$?
check "a shorter sequence over a longer one: $(ls seq | wc -l) frames left, the rest removed with a note (rc $rc)" \
  bash -c "[ $rc -eq 0 ] && [ \$(ls seq | wc -l) -eq 25 ] && grep -q 'removed 27 frames after this run' err.txt"
# Options that this run does not use: a note naming them and why (until
# 2026-12-07 they were ignored without a word).
gen --control --pose 0.9 0.5 0.5 --face-scale 5 --detect-every 3 --feather 4 --crop-ratio 0.5 \
  --portrait face.jpg --audio speech.wav --out unused.mp4 2>err.txt; rc=$?
check "options without effect: notes (rc $rc: $(grep -c note err.txt) notes)" \
  bash -c "[ $rc -eq 0 ] && grep -q 'note: --control, --pose, --face-scale ignored: the variant hubert_audio_only takes no pose' err.txt && grep -q 'note: --detect-every ignored: used only with --face-sr' err.txt && grep -q 'note: --feather ignored: used only with --paste-back' err.txt && grep -q 'note: --crop-ratio ignored: used only with --crop auto' err.txt"
gen --portrait face.jpg --audio speech.wav --out used.mp4 2>err.txt; rc=$?
check "no note when every option given is used (rc $rc)" bash -c "[ $rc -eq 0 ] && ! grep -q note err.txt"
# --crop-ratio sizes the square around a given --face-box too (it was said
# to be ignored there, while it changed the video).
gen --portrait face.jpg --audio speech.wav --out ratio.mp4 --crop auto --face-box 100,80,140,130 --crop-ratio 0.2 \
  2>err.txt; rc=$?
check "--crop-ratio with --face-box: no note (rc $rc: $(cat err.txt))" \
  bash -c "[ $rc -eq 0 ] && ! grep -q 'crop-ratio ignored' err.txt"
rm -f killed.mp4
timeout -s TERM 1 "$bin" generate --models-dir "$data/chain" --steps 50 --quiet --portrait face.jpg \
  --audio long.wav --out killed.mp4 2>/dev/null; rc=$?
check "timeout 1 s: rc 124, no output, no temporary file" \
  bash -c "[ $rc -eq 124 ] && [ ! -e killed.mp4 ] && [ $(leftovers) -eq 0 ]"

# 8. Controls out of range, NaN or inf are refused before anything runs.
for args in "--pose nan 0 0" "--pose 1e30 0 0" "--pose 0 -inf 0" "--scale inf" "--location nan" "--scale 11"; do
  gen --portrait face.jpg --audio speech.wav --out c.mp4 $args 2>err.txt; rc=$?
  check "generate $args is refused (rc $rc: $(head -c 80 err.txt))" \
    bash -c "[ $rc -eq 2 ] && grep -q 'expected a number from' err.txt && [ ! -e c.mp4 ]"
done

# Smaller: a folder as --audio, a text file named .wav, a truncated JPEG, a GIF.
gen --portrait face.jpg --audio . --out d.mp4 2>err.txt; rc=$?
check "a folder as --audio says so (rc $rc)" bash -c "[ $rc -ne 0 ] && grep -q 'is a folder' err.txt"
# A portrait with alpha (here every pixel half transparent): a note that
# its alpha is dropped, as the reference does; the video is made.
gst-launch-1.0 -q filesrc location=face.jpg ! jpegdec ! videoconvert ! alpha alpha=0.5 ! videoconvert ! \
  video/x-raw,format=RGBA ! pngenc ! filesink location=cutout.png
"$bin" generate --models-dir "$data/chain" --steps 5 --portrait cutout.png --audio speech.wav --out cut.mp4 2>err.txt; rc=$?
check "a transparent portrait gets a note (rc $rc: $(grep note err.txt))" \
  bash -c "[ $rc -eq 0 ] && [ -s cut.mp4 ] && grep -q 'note: \"cutout.png\" is transparent in 100% of its pixels; its alpha is dropped' err.txt"

# A video without a sound track as --audio: said so, not GStreamer's
# "Internal data stream error ... not-linked".
gst-launch-1.0 -q videotestsrc num-buffers=10 ! video/x-raw,width=64,height=64 ! x264enc ! mp4mux ! filesink location=silent.mp4
gen --portrait face.jpg --audio silent.mp4 --out d.mp4 2>err.txt; rc=$?
check "a video without sound as --audio says so (rc $rc: $(cat err.txt))" \
  bash -c "[ $rc -eq 1 ] && grep -q 'silent.mp4: no audio stream in it (it holds video/x-raw)' err.txt"
"$bin" features --audio silent.mp4 --mfcc --out f.npy 2>err.txt; rc=$?
check "likewise for anitalker features (rc $rc: $(cat err.txt))" \
  bash -c "[ $rc -eq 1 ] && grep -q 'silent.mp4: no audio stream in it' err.txt"
echo "not audio" > text.wav
gen --portrait face.jpg --audio text.wav --out d.mp4 2>err.txt; rc=$?
check "a text file as --audio names the file (rc $rc: $(cat err.txt))" \
  bash -c "[ $rc -eq 1 ] && grep -q 'text.wav' err.txt"
head -c 20000 face.jpg > cut.jpg
gen --portrait cut.jpg --audio speech.wav --out d.mp4 2>err.txt; rc=$?
check "a truncated JPEG is refused, named (rc $rc)" bash -c "[ $rc -eq 1 ] && grep -q 'cut.jpg.*truncated' err.txt"
printf 'GIF89a\x0a\x00\x0a\x00\x00\x00\x00;' > anim.gif
gen --portrait anim.gif --audio speech.wav --out d.mp4 2>err.txt; rc=$?
check "a GIF says GIF (rc $rc)" bash -c "[ $rc -eq 1 ] && grep -q 'GIF images cannot be read' err.txt"
# HEIF (an iPhone's HEIC, here under a .jpg name: the brands of its ftyp box
# tell) and AVIF, which OpenCV cannot decode here: named, with what to do.
printf '\x00\x00\x00\x1cftypmif1\x00\x00\x00\x00mif1heicmiaf' > phone.jpg
gen --portrait phone.jpg --audio speech.wav --out d.mp4 2>err.txt; rc=$?
check "a HEIC photo says HEIF (rc $rc: $(cat err.txt))" \
  bash -c "[ $rc -eq 1 ] && grep -q 'phone.jpg: a HEIF (HEIC) photo.*heif-convert' err.txt"
printf '\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf' > pic.avif
gen --portrait pic.avif --audio speech.wav --out d.mp4 2>err.txt; rc=$?
check "an AVIF image says AVIF (rc $rc)" bash -c "[ $rc -eq 1 ] && grep -q 'pic.avif: an AVIF image' err.txt"
# A video under a name that is not a video's (.3gp, none) is taken as one by
# its header: before, "not an image OpenCV can decode".
cp real.mp4 clip
gen --portrait clip --audio speech.wav --out v.mp4 2>err.txt; rc=$?
check "an MP4 without its extension is a video portrait (rc $rc: $(cat err.txt))" bash -c "[ $rc -eq 0 ] && [ -s v.mp4 ]"
gst-launch-1.0 -q videotestsrc num-buffers=5 ! video/x-raw,width=64,height=64 ! vp8enc ! webmmux ! filesink location=clipw
gen --portrait clipw --audio speech.wav --out w.mp4 2>err.txt; rc=$?
check "a WebM without its extension likewise (rc $rc: $(cat err.txt))" bash -c "[ $rc -eq 0 ] && [ -s w.mp4 ]"
# An MPEG transport stream (a broadcast recording) without an extension:
# its packets' sync bytes tell (before 2026-12-07, "not an image").
gst-launch-1.0 -q videotestsrc num-buffers=5 ! video/x-raw,width=64,height=64 ! x264enc ! mpegtsmux ! filesink location=recording
gen --portrait recording --audio speech.wav --out t.mp4 2>err.txt; rc=$?
check "an MPEG-TS without its extension likewise (rc $rc: $(cat err.txt))" bash -c "[ $rc -eq 0 ] && [ -s t.mp4 ]"

# 7. Portraits too large are refused from their header, before decoding,
# naming the size and the limit (a header-only PNG claims 30000x30000).
printf '\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR\x00\x00\x75\x30\x00\x00\x75\x30\x08\x02\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00IEND\xae\x42\x60\x82' > huge.png
start=$(date +%s%N)
gen --portrait huge.png --audio speech.wav --out h.mp4 2>err.txt; rc=$?
ms=$(( ($(date +%s%N) - start) / 1000000 ))
check "a 30000x30000 PNG is refused in $ms ms, naming its size (rc $rc: $(cat err.txt))" \
  bash -c "[ $rc -eq 1 ] && grep -q '30000x30000 (900 Mpx), more than the limit of 100 Mpx' err.txt && [ $ms -lt 10000 ]"
ANITALKER_MAX_PIXELS=1000 "$bin" generate --models-dir "$data/chain" --steps 5 --quiet --portrait face.jpg \
  --audio speech.wav --out h.mp4 2>err.txt; rc=$?
check "ANITALKER_MAX_PIXELS lowers the limit (rc $rc)" bash -c "[ $rc -eq 1 ] && grep -q 'more than the limit' err.txt"
# A value that is not a whole number (1e9) keeps the default; the refusal
# says so rather than only "raise ANITALKER_MAX_PIXELS", which was done.
ANITALKER_MAX_PIXELS=1e9 "$bin" generate --models-dir "$data/chain" --steps 5 --quiet --portrait huge.png \
  --audio speech.wav --out h.mp4 2>err.txt; rc=$?
check "ANITALKER_MAX_PIXELS=1e9 is said to be ignored (rc $rc)" \
  bash -c "[ $rc -eq 1 ] && grep -q 'ANITALKER_MAX_PIXELS=1e9 is not a whole number of pixels above 0, so the default is in force' err.txt"
# 7b. A video frame larger than H.264 or VP9 encodes (level 6.2: 35.7 Mpx)
# is refused before anything runs: --size 16384x16384 took 23 GB in
# x264enc's look-ahead until the system killed the process (2026-12-07);
# likewise --paste-back of a 9000x9000 picture (header only: refused before
# it is decoded).  PNG frames have no such limit.
gen --portrait face.jpg --audio speech.wav --out s.mp4 --size 16384x16384 2>err.txt; rc=$?
check "--size 16384x16384 to an MP4 is refused (rc $rc: $(cat err.txt))" \
  bash -c "[ $rc -eq 2 ] && grep -q -- '--size 16384x16384: a video frame of 16384x16384 (268.4 Mpx) is larger than H.264 encodes' err.txt && [ ! -e s.mp4 ]"
gen --portrait face.jpg --audio speech.wav --out s.webm --size 8192x4608 2>err.txt; rc=$?
check "--size 8192x4608 to a WebM is refused (rc $rc)" \
  bash -c "[ $rc -eq 2 ] && grep -q 'is larger than VP9 encodes' err.txt && [ ! -e s.webm ]"
printf '\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR\x00\x00\x23\x28\x00\x00\x23\x28\x08\x02\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00IEND\xae\x42\x60\x82' > wide.png
gen --portrait wide.png --audio speech.wav --out p.mp4 --paste-back --crop 0,0,1000 --max-size 16384 2>err.txt; rc=$?
check "--paste-back of a 9000x9000 picture to an MP4 is refused (rc $rc: $(cat err.txt))" \
  bash -c "[ $rc -eq 2 ] && grep -q -- '--paste-back (wide.png is 9000x9000, --max-size 16384): a video frame of 9000x9000 (81.0 Mpx)' err.txt && [ ! -e p.mp4 ]"
check "  nothing left ($(leftovers))" test "$(leftovers)" -eq 0

# 9. The element's cause is printed without ANITALKER_DEBUG: a stage-2
# checkpoint of another variant.
mkdir models
for f in stage1.ckpt chinese-hubert-large; do ln -s "$data/chain/$f" models/$f; done
ln -s "$data/chain/stage2_audio_only_hubert.ckpt" models/stage2_pose_only_hubert.ckpt
"$bin" generate --models-dir models --variant hubert_pose_only --steps 5 --quiet --portrait face.jpg \
  --audio speech.wav --out v.mp4 2>err.txt; rc=$?
check "a wrong variant's checkpoint: the cause is shown (rc $rc: $(cat err.txt))" \
  bash -c "[ $rc -eq 1 ] && grep -q 'stage-2 checkpoint' err.txt && grep -qi 'audio_only' err.txt"
gen --portrait face.jpg --audio speech.wav --out cuda.mp4 --device cuda 2>err.txt; rc=$?
if [ $rc -ne 0 ]; then  # a CPU build: the reason comes with the error
  check "--device cuda without CUDA: the reason is shown (rc $rc: $(cat err.txt))" \
    bash -c "[ $rc -eq 1 ] && grep -q 'Cannot use the device \"cuda\". (.*CUDA' err.txt"
fi
gen --portrait face.jpg --audio speech.wav --out fp16.mp4 --precision fp16 2>err.txt; rc=$?
check "--precision fp16 on the CPU is refused before anything runs (rc $rc: $(cat err.txt))" \
  bash -c "[ $rc -eq 2 ] && grep -q 'needs a CUDA device; each network on cpu supports fp32' err.txt && [ ! -e fp16.mp4 ]"
# bf16 (HuBERT, motion and the renderer) on a CPU that has it: a whole
# video; without it, refused before anything runs.
gen --portrait face.jpg --audio speech.wav --out bf16.mp4 --precision bf16 2>err.txt; rc=$?
if grep -qw avx512_bf16 /proc/cpuinfo; then
  n=$( [ -e bf16.mp4 ] && frames bf16.mp4 || echo 0)
  check "--precision bf16 makes the video (rc $rc, $n frames: $(cat err.txt))" \
    bash -c "[ $rc -eq 0 ] && [ ${n:-0} -gt 0 ]"
else
  check "--precision bf16 without AVX512_BF16 is refused (rc $rc: $(cat err.txt))" \
    bash -c "[ $rc -eq 2 ] && grep -q 'AVX512_BF16' err.txt && [ ! -e bf16.mp4 ]"
fi
# The name says what the file holds: another extension, a .png that is no
# frame pattern, and a video under 16x16 (what the H.264 and VP9 muxers
# take) are refused before anything runs, with no file; PNG frames may be
# that small.  (An .avi used to get MP4 bytes, '%d%d.png' an MP4 named so,
# and --size 8x8 'Could not link render to the out-queue'.)
gen --portrait face.jpg --audio speech.wav --out clip.avi 2>err.txt; rc=$?
check "--out clip.avi is refused (rc $rc: $(cat err.txt))" \
  bash -c "[ $rc -eq 2 ] && grep -q \"'.avi'; the outputs are .mp4\" err.txt && [ ! -e clip.avi ]"
gen --portrait face.jpg --audio speech.wav --out 'f%d%d.png' 2>err.txt; rc=$?
check "--out 'f%d%d.png' is refused (rc $rc: $(cat err.txt))" \
  bash -c "[ $rc -eq 2 ] && grep -q 'needs one %d' err.txt && [ ! -e 'f%d%d.png' ]"
# The %d in the file's name only (a folder's failed while writing), and
# %d or %0Nd only (%5d made names with leading spaces), found 2026-12-07.
mkdir -p 'pf%d'
for bad in 'pf%d/x.png' 'pf%d/%d.png' 'sp%5d.png' 'sp%0d.png'; do
  gen --portrait face.jpg --audio speech.wav --out "$bad" 2>err.txt; rc=$?
  check "--out '$bad' is refused before the run (rc $rc: $(cat err.txt))" \
    bash -c "[ $rc -eq 2 ] && grep -q 'needs one %d' err.txt && [ -z \"\$(ls -A 'pf%d')\" ] && ! ls sp*.png >/dev/null 2>&1"
done
gen --portrait face.jpg --audio speech.wav --out small.mp4 --size 8x8 2>err.txt; rc=$?
check "--size 8x8 for an MP4 is refused (rc $rc: $(cat err.txt))" \
  bash -c "[ $rc -eq 2 ] && grep -q 'at least 16x16' err.txt && [ ! -e small.mp4 ]"
# --size read whole: 4294967360 wrapped round to 64 (sscanf's %d) and gave a
# 64x64 video, found 2026-12-07.
for bad in 4294967360x64 64x4294967360 64x64x2 ' 64x64' 64x+64 x64; do
  gen --portrait face.jpg --audio speech.wav --out wrap.mp4 --size "$bad" 2>err.txt; rc=$?
  check "--size '$bad' is refused (rc $rc: $(cat err.txt))" \
    bash -c "[ $rc -eq 2 ] && grep -q 'expected WxH, even numbers from 2 to 16384' err.txt && [ ! -e wrap.mp4 ]"
done
# VP9 in an MP4 (the help offers it): mp4mux refused vp9enc's caps without
# vp9parse, every run ('not-negotiated'), found 2026-12-07.
gen --portrait face.jpg --audio speech.wav --out vp9.mp4 --codec vp9 --size 64x64 2>err.txt; rc=$?
check "--codec vp9 to an MP4 works (rc $rc: $(cat err.txt))" \
  bash -c "[ $rc -eq 0 ] && [ \"\$(ffprobe -v error -select_streams v:0 -show_entries stream=codec_name -of csv=p=0 vp9.mp4)\" = vp9 ]"
mkdir small
gen --portrait face.jpg --audio speech.wav --out 'small/%02d.png' --size 8x8 2>err.txt; rc=$?
check "--size 8x8 for PNG frames works (rc $rc: $(cat err.txt))" \
  bash -c "[ $rc -eq 0 ] && [ -e small/01.png ] && [ \"\$(od -An -tu1 -j16 -N8 small/01.png | tr -s ' ')\" = ' 0 0 0 8 0 0 0 8' ]"
# The .npy writers want a .npy name (features used to write its .npy into
# f.wav), and two outputs of one run may not be one file (crop's JSON went
# over its PNG, sr's --raw over its --out).
"$bin" features --mfcc --audio speech.wav --out feats.wav 2>err.txt; rc=$?
check "features --out feats.wav is refused (rc $rc: $(cat err.txt))" \
  bash -c "[ $rc -eq 2 ] && grep -q 'give it a .npy name' err.txt && [ ! -e feats.wav ]"
"$bin" render --stage1 "$data/chain/stage1.ckpt" --portrait face.jpg --motion none.npy --out frames.png 2>err.txt; rc=$?
check "render --out frames.png is refused (rc $rc: $(cat err.txt))" \
  bash -c "[ $rc -eq 2 ] && grep -q 'give it a .npy name' err.txt && [ ! -e frames.png ]"
"$bin" crop --portrait face.jpg --face-box 100,80,140,130 --out sq.png --box-out ./sq.png 2>err.txt; rc=$?
check "crop --box-out = --out is refused (rc $rc: $(cat err.txt))" \
  bash -c "[ $rc -eq 2 ] && grep -q 'is also --out' err.txt && [ ! -e sq.png ]"
# A HuBERT folder that cannot be loaded is not the audio's fault: the error
# names the folder's file, not speech.wav (it was prefixed with the audio's
# name, found 2026-12-07).
mkdir -p badcfg/chinese-hubert-large
ln -s "$data/chain/stage1.ckpt" "$data/chain/stage2_audio_only_hubert.ckpt" badcfg/
ln -s "$data/chain/chinese-hubert-large/pytorch_model.bin" badcfg/chinese-hubert-large/
cp "$data/chain/chinese-hubert-large/preprocessor_config.json" badcfg/chinese-hubert-large/
echo '{"hidden_size": "x"}' > badcfg/chinese-hubert-large/config.json
"$bin" generate --models-dir badcfg --portrait face.jpg --audio speech.wav --out bc.mp4 2>err.txt; rc=$?
check "a HuBERT config that cannot be read is named, not the audio (rc $rc: $(cat err.txt))" \
  bash -c "[ $rc -eq 1 ] && grep -q 'config.json: field .hidden_size. must be an integer' err.txt && ! grep -q 'speech.wav:' err.txt && [ ! -e bc.mp4 ]"
# A --box-out that cannot be written (a full disk): the run fails naming
# the cause, and leaves no square (it was committed first, and the message
# named a stale errno, found 2026-12-07).
"$bin" crop --portrait face.jpg --face-box 100,80,140,130 --out sq.png --box-out /dev/full 2>err.txt; rc=$?
check "crop --box-out /dev/full fails with no square left (rc $rc: $(cat err.txt))" \
  bash -c "[ $rc -eq 1 ] && grep -q '/dev/full: cannot write: No space left on device' err.txt && [ ! -e sq.png ]"
"$bin" crop --portrait face.jpg --face-box 100,80,140,130 --out sq.png --box-out box.png 2>err.txt; rc=$?
check "crop --box-out box.png (JSON under an image's name) is refused (rc $rc: $(cat err.txt))" \
  bash -c "[ $rc -eq 2 ] && grep -q 'give it a .json name' err.txt && [ ! -e box.png ] && [ ! -e sq.png ]"
"$bin" sr --model "$data/face-sr/gfpgan_tiny.pth" --aligned --in face.jpg --out r.npy --raw r.npy 2>err.txt; rc=$?
check "sr --raw = --out is refused (rc $rc: $(cat err.txt))" \
  bash -c "[ $rc -eq 2 ] && grep -q 'is also --out' err.txt && [ ! -e r.npy ]"
# The fixed names that render --codes-dir and motion --predicted-dir write
# may not be an input (it would be replaced after being read) or --out.
mkdir codes pred
cp speech.wav codes/h_motion.npy
md5=$(md5sum < codes/h_motion.npy)
"$bin" render --stage1 "$data/chain/stage1.ckpt" --portrait face.jpg --motion codes/h_motion.npy --out fr.npy \
  --codes-dir codes 2>err.txt; rc=$?
check "render --codes-dir over its --motion is refused (rc $rc: $(cat err.txt))" \
  bash -c "[ $rc -eq 2 ] && grep -q 'codes/h_motion.npy is the input' err.txt && [ \"\$(md5sum < codes/h_motion.npy)\" = '$md5' ]"
"$bin" motion --stage2 "$data/chain/stage2_audio_only_hubert.ckpt" --features f.npy --start s.npy --direction d.npy \
  --seed 0 --out pred/pred_pose.npy --predicted-dir pred 2>err.txt; rc=$?
check "motion --out in --predicted-dir's names is refused (rc $rc: $(cat err.txt))" \
  bash -c "[ $rc -eq 2 ] && grep -q 'pred/pred_pose.npy is also --out' err.txt && [ ! -e pred/pred_pose.npy ]"
# fixtures chain / random into a models folder put random weights over the
# released files without a word (found 2026-12-06): refused unless --force.
mkdir released
echo released > released/stage1.ckpt
echo released > released/stage2_audio_only_hubert.ckpt
"$bin" fixtures chain released 2>err.txt; rc=$?
check "fixtures chain over a folder's model files is refused (rc $rc: $(cat err.txt))" \
  bash -c "[ $rc -eq 2 ] && grep -q 'released already holds stage1.ckpt, stage2_audio_only_hubert.ckpt;' err.txt &&
           grep -q -- '--force' err.txt && [ \"\$(cat released/stage1.ckpt)\" = released ] && [ ! -e released/chinese-hubert-large ]"
"$bin" fixtures random released 2>err.txt; rc=$?
check "fixtures random likewise (rc $rc)" \
  bash -c "[ $rc -eq 2 ] && grep -q 'already holds stage1.ckpt' err.txt && [ \"\$(cat released/stage1.ckpt)\" = released ]"
"$bin" fixtures chain speech.wav 2>err.txt; rc=$?
check "fixtures chain into a file is refused (rc $rc: $(cat err.txt))" \
  bash -c "[ $rc -eq 2 ] && grep -q 'speech.wav: is not a folder' err.txt"
"$bin" fixtures chain released --force 2>err.txt; rc=$?
check "fixtures chain --force replaces them (rc $rc)" \
  bash -c "[ $rc -eq 0 ] && [ \"\$(head -c 2 released/stage1.ckpt)\" = PK ] && [ -s released/chinese-hubert-large/pytorch_model.bin ]"
"$bin" fixtures chain fresh 2>err.txt; rc=$?
check "fixtures chain into a new folder (rc $rc)" bash -c "[ $rc -eq 0 ] && [ -s fresh/stage2_pose_only_mfcc.ckpt ]"
check "no temporary file left at the end ($(leftovers))" test "$(leftovers)" -eq 0
[ $fail -eq 0 ] && echo "all passed"
exit $fail
