#!/usr/bin/env bash
# Generates the seed corpora of the fuzz targets from real artifacts:
#   corpus/link_object/  objects compiled from testdata/scenarios/*/*/*.c and
#                        testdata/relocs/*.c (-O0 and -O2), each as mode 0
#                        (object), mode 1 (an archive of one scenario step's
#                        modules) and mode 2 (main.o + an archive of the
#                        other modules); see fuzz/src/lib.rs for the modes.
#   corpus/image_parse/  images linked from those objects with hcr-link.
# Usage: fuzz/seed.sh [HCR_LINK]   (default: build hcr-link with cargo)
# Seeds are named by content hash; nothing here is committed.
set -euo pipefail
cd "$(dirname "$0")"
fuzz=$PWD
repo=$(cd .. && pwd)
link=${1:-}
if [ -z "$link" ]; then
  (cd "$repo" && cargo build --release -q -p hcr-tools --bin hcr-link)
  link="$repo/target/release/hcr-link"
fi
work=$fuzz/seeds-work
rm -rf "$work"
mkdir -p "$work" corpus/link_object corpus/image_parse corpus/control_request
# Requests of the control endpoint's protocol (runtime/src/control.rs).
for r in 'info' 'globals' 'globals lib' 'write lib speed 0 2a000000' 'write m n 4 0102030405060708'; do
  printf '%s' "$r" >"corpus/control_request/$(printf '%s' "$r" | sha1sum | cut -c1-16)"
done

# put_seed TARGET MODE FILE...: one seed = the mode byte, then the files'
# bytes, named by its content hash.
put_seed() {
  local target=$1 mode=$2
  shift 2
  local tmp=$work/seed.tmp
  printf "\\x$(printf %02x "$mode")" >"$tmp"
  cat "$@" >>"$tmp"
  local name
  name=$(sha1sum "$tmp" | cut -c1-16)
  mv "$tmp" "corpus/$target/$name"
}
# le16 N: N as two little-endian bytes.
le16() { printf "\\x$(printf %02x $(($1 & 255)))\\x$(printf %02x $(($1 >> 8)))"; }

flags="-c -fPIC -ffunction-sections -fdata-sections"
inc="-I $repo/runtime/include -I $repo/testdata/scenarios"
n=0
build_step() { # DIR OPT: compile DIR/*.c into $work/$n, link, make seeds
  local dir=$1 opt=$2 out=$work/$n
  n=$((n + 1))
  mkdir -p "$out"
  for c in "$dir"/*.c; do
    # shellcheck disable=SC2086
    cc $flags $opt $inc "$c" -o "$out/$(basename "${c%.c}").o"
  done
  local objs=("$out"/*.o)
  for o in "${objs[@]}"; do
    # Objects above 64 KiB slow the fuzzer down for little extra coverage.
    if [ "$(stat -c %s "$o")" -le 65536 ]; then put_seed link_object 0 "$o"; fi
  done
  local main=$out/main.o others=()
  for o in "${objs[@]}"; do [ "$o" = "$main" ] || others+=("$o"); done
  if [ -f "$main" ]; then
    if "$link" -o "$out/app.hcr" "$main" "${others[@]}" 2>/dev/null; then
      cp "$out/app.hcr" "corpus/image_parse/$(sha1sum "$out/app.hcr" | cut -c1-16)"
    fi
    if [ "${#others[@]}" -gt 0 ]; then
      ar rcs "$out/libm.a" "${others[@]}"
      put_seed link_object 1 "$out/libm.a"
      le16 "$(stat -c %s "$main")" >"$out/len"
      put_seed link_object 2 "$out/len" "$main" "$out/libm.a"
    fi
  fi
}

for opt in -O0 -O2; do
  for scen in "$repo"/testdata/scenarios/*/; do
    # Each step's files as the scenario's rebuild script sees them: step 0,
    # then each later step's files copied over the previous ones.
    cur=$work/cur
    rm -rf "$cur"
    mkdir -p "$cur"
    for step in $(ls "$scen" | grep -E '^[0-9]+$' | sort -n); do
      for f in "$scen/$step"/*; do
        b=$(basename "$f")
        [ "$b" = REMOVE ] || cp "$f" "$cur/$b"
      done
      if [ -f "$scen/$step/REMOVE" ]; then
        while read -r f; do [ -n "$f" ] && rm -f "$cur/$f"; done <"$scen/$step/REMOVE"
      fi
      build_step "$cur" "$opt"
    done
  done
  build_step "$repo/testdata/relocs" "$opt"
done
rm -rf "$work"
echo "seeds: $(ls corpus/link_object | wc -l) link_object, $(ls corpus/image_parse | wc -l) image_parse"
