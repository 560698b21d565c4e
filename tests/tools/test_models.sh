#!/bin/bash
# The one model table: models/manifest.tsv must be what `anitalker models
# --manifest` prints (lib/models.cpp), `anitalker models` must say what a
# folder lacks, and models/fetch.sh must fetch the manifest's files by group,
# keep what is there and resume a .part (a stand-in curl on PATH records the
# calls; nothing leaves the machine).
# usage: test_models.sh ANITALKER_BIN SOURCE_DIR
set -eu
bin=$1 src=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$bin" models --manifest > "$work/manifest.tsv"
diff -u "$src/models/manifest.tsv" "$work/manifest.tsv" ||
  { echo "FAIL: models/manifest.tsv differs from \`anitalker models --manifest\` (regenerate it)"; exit 1; }
rows=$(grep -vc '^#' "$work/manifest.tsv")
[ "$rows" -eq 12 ] || { echo "FAIL: $rows files in the table, expected 12"; exit 1; }

# An empty folder: every required file missing, exit 1.
mkdir "$work/empty"
set +e
"$bin" models --models-dir "$work/empty" > "$work/out.txt"
rc=$?
set -e
[ $rc -eq 1 ] || { cat "$work/out.txt"; echo "FAIL: exit $rc for a folder without the required files"; exit 1; }
grep -q "MISSING.*stage1.ckpt" "$work/out.txt" && grep -q "5 required files missing" "$work/out.txt" ||
  { cat "$work/out.txt"; echo "FAIL: the missing files are not named"; exit 1; }

# A file that is there but not a file: a link to nothing (a models folder
# of links to another disk that is not mounted) and a pipe are MISSING with
# the reason, not as if nothing were there.
mkdir "$work/links"
ln -s "$work/unmounted/stage1.ckpt" "$work/links/stage1.ckpt"
mkfifo "$work/links/stage2_audio_only_hubert.ckpt"
ln -s detection_Resnet50_Final.pth "$work/links/detection_Resnet50_Final.pth"  # a link to itself
set +e
"$bin" models --models-dir "$work/links" > "$work/out.txt"
rc=$?
set -e
[ $rc -eq 1 ] && grep -q "MISSING.*stage1.ckpt.*: a link to nothing ($work/unmounted/stage1.ckpt)" "$work/out.txt" &&
  grep -q "MISSING.*stage2_audio_only_hubert.ckpt.*: a pipe (FIFO), not a regular file" "$work/out.txt" &&
  grep -q "detection_Resnet50_Final.pth.*: a loop of links (detection_Resnet50_Final.pth)" "$work/out.txt" ||
  { cat "$work/out.txt"; echo "FAIL: a dangling link or a pipe is not said (exit $rc)"; exit 1; }

# An empty file (an interrupted download) is no model: EMPTY, counted as
# missing (it was "present", exit 0, found 2026-12-07); an empty
# --models-dir is refused.
mkdir "$work/zero"
for f in stage1.ckpt stage2_audio_only_hubert.ckpt; do : > "$work/zero/$f"; done
set +e
"$bin" models --models-dir "$work/zero" > "$work/out.txt"
rc=$?
"$bin" models --models-dir "" > /dev/null 2> "$work/err.txt"
rc_empty=$?
set -e
[ $rc -eq 1 ] && grep -q "EMPTY.*stage1.ckpt.*: the file is empty (0 bytes" "$work/out.txt" &&
  grep -q "5 required files missing" "$work/out.txt" && [ $rc_empty -eq 2 ] && grep -q "an empty name" "$work/err.txt" ||
  { cat "$work/out.txt" "$work/err.txt"; echo "FAIL: an empty file is not said (exit $rc), or --models-dir '' ($rc_empty)"; exit 1; }

# A file as the folder: refused (exit 2) naming it; a missing folder is said.
touch "$work/file"
set +e
"$bin" models --models-dir "$work/file" > "$work/out.txt" 2> "$work/err.txt"
rc=$?
set -e
[ $rc -eq 2 ] && grep -q "is not a folder" "$work/err.txt" ||
  { cat "$work/out.txt" "$work/err.txt"; echo "FAIL: exit $rc for a file as --models-dir"; exit 1; }
set +e
"$bin" models --models-dir "$work/nowhere" > "$work/out.txt"
rc=$?
set -e
[ $rc -eq 1 ] && head -1 "$work/out.txt" | grep -q "the folder $work/nowhere does not exist" ||
  { cat "$work/out.txt"; echo "FAIL: a missing folder is not said (exit $rc)"; exit 1; }

# fetch.sh, on a copy of models/ with a stand-in curl.
mkdir -p "$work/models" "$work/path"
cp "$src/models/fetch.sh" "$work/models/"
# The manifest with its sha256 column set to what the stand-in curl below
# writes for each file (its URL and a newline; stage1.ckpt resumes a .part
# that holds "partial"), so that the downloads verify.
tab=$(printf '\t')
while IFS="$tab" read -r file group needed url sha; do
  case "$file" in '#'*) printf '%s\t%s\t%s\t%s\t%s\n' "$file" "$group" "$needed" "$url" "$sha"; continue ;; esac
  if [ "$file" = stage1.ckpt ]; then content="partial
$url"; else content=$url; fi
  printf '%s\t%s\t%s\t%s\t%s\n' "$file" "$group" "$needed" "$url" "$(printf '%s\n' "$content" | sha256sum | cut -d' ' -f1)"
done < "$src/models/manifest.tsv" > "$work/models/manifest.tsv"
cat > "$work/path/curl" <<'CURL'
#!/bin/bash
# records the call; writes the URL (appended, as a resumed download would) to -o FILE
out="" url="" resume=0
while [ $# -gt 0 ]; do
  case "$1" in -o) out=$2; shift ;; -C) resume=1; shift ;; -*) ;; *) url=$1 ;; esac
  shift
done
echo "$url resume=$resume" >> "$CURL_LOG"
echo "$url" >> "$out"
CURL
chmod +x "$work/path/curl"
echo "partial" > "$work/models/stage1.ckpt.part"  # an interrupted download
echo "kept" > "$work/models/parsing_parsenet.pth"   # already here
CURL_LOG=$work/curl.log PATH="$work/path:$PATH" sh "$work/models/fetch.sh" > "$work/fetch1.txt"
[ "$(wc -l < "$work/curl.log")" -eq 5 ] || { cat "$work/curl.log"; echo "FAIL: the default fetch made $(wc -l < "$work/curl.log") downloads, expected the 5 required"; exit 1; }
grep -q "^https://huggingface.co/taocode/anitalker_ckpts/resolve/main/stage1.ckpt resume=1$" "$work/curl.log" ||
  { cat "$work/curl.log"; echo "FAIL: stage1.ckpt not fetched from the table's URL with resume"; exit 1; }
[ "$(head -1 "$work/models/stage1.ckpt")" = partial ] || { echo "FAIL: the .part was not resumed"; exit 1; }
[ -s "$work/models/chinese-hubert-large/pytorch_model.bin" ] || { echo "FAIL: HuBERT not fetched into its folder"; exit 1; }
[ ! -e "$work/models/GFPGANv1.4.pth" ] || { echo "FAIL: face-sr fetched without --face-sr"; exit 1; }
: > "$work/curl.log"
CURL_LOG=$work/curl.log PATH="$work/path:$PATH" sh "$work/models/fetch.sh" --face-sr --all-variants > "$work/fetch2.txt"
[ "$(wc -l < "$work/curl.log")" -eq 6 ] || { cat "$work/curl.log"; echo "FAIL: expected the 4 variants and 2 face-sr files not yet here"; exit 1; }
[ "$(cat "$work/models/parsing_parsenet.pth")" = kept ] || { echo "FAIL: a file already here was fetched again"; exit 1; }
"$bin" models --models-dir "$work/models" > "$work/out.txt" || { cat "$work/out.txt"; echo "FAIL: all present, yet exit 1"; exit 1; }
[ "$(cat "$work/fetch1.txt" "$work/fetch2.txt" | grep -c "sha256 ok")" -eq 11 ] ||
  { cat "$work/fetch1.txt" "$work/fetch2.txt"; echo "FAIL: expected 11 downloads verified"; exit 1; }

# A download that does not match the manifest's sha256 is removed and fails
# the script, naming both digests; one the manifest has no digest for ("-")
# is kept with a note.
rm "$work/models/GFPGANv1.4.pth" "$work/models/detection_Resnet50_Final.pth"
sed -i "s|^\(GFPGANv1.4.pth\t.*\t\)[0-9a-f]*\$|\1-|; s|^\(detection_Resnet50_Final.pth\t.*\t\)[0-9a-f]*\$|\1$(printf '%064d' 0)|" \
  "$work/models/manifest.tsv"
set +e
CURL_LOG=$work/curl.log PATH="$work/path:$PATH" sh "$work/models/fetch.sh" --face-sr > "$work/fetch3.txt" 2>&1
rc=$?
set -e
[ $rc -ne 0 ] || { cat "$work/fetch3.txt"; echo "FAIL: a download with the wrong sha256 did not fail"; exit 1; }
grep -q "detection_Resnet50_Final.pth from .*: sha256 [0-9a-f]\{64\}, expected 0\{64\}" "$work/fetch3.txt" ||
  { cat "$work/fetch3.txt"; echo "FAIL: the mismatch is not named"; exit 1; }
[ ! -e "$work/models/detection_Resnet50_Final.pth" ] && [ ! -e "$work/models/detection_Resnet50_Final.pth.part" ] ||
  { echo "FAIL: the bad download was kept"; exit 1; }
grep -q "not verified: the manifest has no sha256 for GFPGANv1.4.pth" "$work/fetch3.txt" && [ -s "$work/models/GFPGANv1.4.pth" ] ||
  { cat "$work/fetch3.txt"; echo "FAIL: a download without a digest is not kept with a note"; exit 1; }
echo "the table, the manifest and fetch.sh agree; downloads are checked against the manifest's sha256"
