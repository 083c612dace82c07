#!/usr/bin/env bash
# Instructions per hot-path call, counted by callgrind (repeatable, unlike
# wall time on a shared machine). Each contender runs twice, with A and B
# calls; (Ir(B) - Ir(A)) / (B - A) is the cost of one call with all setup
# (runtime, first token fetch) cancelled out.
#
#   bash benches/callgrind.sh            # opaque 43-byte token
#   HOT_PATH_TOKEN=jwt bash benches/callgrind.sh
#   HOT_PATH_REQUEST=typical bash benches/callgrind.sh   # GET with 3 headers
#   HOT_PATH_INNER=arcs bash benches/callgrind.sh        # inner costly to clone
#   HOT_PATH_PATTERN=oneshot bash benches/callgrind.sh   # svc.clone().oneshot(req)
#   CONTENDERS="bare tower_oauth2" bash benches/callgrind.sh   # a subset (bare first)
#   BIN=/tmp/hot_path-main bash benches/callgrind.sh   # a binary built before
set -euo pipefail
cd "$(dirname "$0")/.."
A=${A:-2000}
B=${B:-22000}
bin=${BIN:-}
[ -n "$bin" ] || bin=$(cargo bench -p tower-oauth2-benches --bench hot_path --no-run --message-format=json 2>/dev/null |
    grep -o '"executable":"[^"]*hot_path[^"]*"' | tail -n1 | cut -d'"' -f4)
[ -x "$bin" ] || { echo "could not build the hot_path bench" >&2; exit 1; }
contenders=${CONTENDERS:-}
[ -n "$contenders" ] || contenders=$(grep -A20 'pub const CONTENDERS' benches/contenders/mod.rs |
    sed -n '/\[/,/\]/p' | grep -o '"[a-z0-9_]*"' | tr -d '"')
ir() {
    local out
    out=$(mktemp)
    HOT_PATH_CALLGRIND=$1 HOT_PATH_CALLS=$2 valgrind --tool=callgrind \
        --callgrind-out-file="$out" "$bin" >/dev/null 2>&1
    grep '^summary:' "$out" | awk '{print $2}'
    rm -f "$out"
}
printf '%-30s %12s\n' contender "Ir/call"
bare=
for c in $contenders; do
    a=$(ir "$c" "$A")
    b=$(ir "$c" "$B")
    per=$(( (b - a) / (B - A) ))
    [ -z "$bare" ] && bare=$per
    printf '%-30s %12d   (+%d over bare)\n' "$c" "$per" $(( per - bare ))
done
# The size of the layer's response future over the no-op service (moved on
# every call: issue 23 asks for it beside the instructions).
HOT_PATH_SIZES=1 "$bin"
