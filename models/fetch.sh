#!/bin/sh
# Downloads the released model files into this folder, under the names the
# elements and `anitalker generate` look for, from the URLs in
# models/manifest.tsv (the table of lib/models.cpp: `anitalker models` says
# which are here).  Needs curl and network access.  Files already here are
# kept; an interrupted download resumes from its .part file.  A download is
# checked against the manifest's SHA-256 where the table has one (sha256sum):
# a file that does not match is removed and the script fails, naming both
# digests; where the table has none ("-"), it says the file is not verified.
# usage: models/fetch.sh [--all-variants] [--face-sr]
#   default: the group "required": stage1, the default variant
#            (hubert_audio_only) and HuBERT
#   --all-variants: the group "variant" too (the other four stage-2 checkpoints)
#   --face-sr: the group "face-sr" too (GFPGAN v1.4, RetinaFace, ParseNet)
set -eu
cd "$(dirname "$0")"
groups=" required "
for a in "$@"; do
  case "$a" in
    --face-sr) groups="$groups face-sr " ;;
    --all-variants) groups="$groups variant " ;;
    *) sed -n '2,11p' "$0"; exit 2 ;;
  esac
done
command -v curl > /dev/null || { echo "fetch.sh: needs curl (apt-get install curl)" >&2; exit 1; }

tab=$(printf '\t')
grep -v '^#' manifest.tsv | while IFS="$tab" read -r file group needed url sha; do
  case "$groups" in *" $group "*) ;; *) continue ;; esac
  if [ -s "$file" ]; then echo "have $file"; continue; fi
  mkdir -p "$(dirname "$file")"
  echo "fetching $file ($needed)"
  # -C -: go on from what an earlier, interrupted run left in .part.
  curl -fL --retry 3 -C - -o "$file.part" "$url"
  if [ -n "$sha" ] && [ "$sha" != "-" ]; then
    got=$(sha256sum "$file.part" | cut -d' ' -f1)
    if [ "$got" != "$sha" ]; then
      rm -f "$file.part"
      echo "fetch.sh: $file from $url: sha256 $got, expected $sha (the manifest's); removed, try again" >&2
      exit 1
    fi
    echo "  sha256 ok"
  else
    echo "  not verified: the manifest has no sha256 for $file"
  fi
  mv "$file.part" "$file"
done
echo "done: \`anitalker models\` lists which files each job needs and which are here"
