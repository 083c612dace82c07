#!/usr/bin/env bash
# Instructions per DPoP proof and per request, counted by callgrind
# (repeatable, unlike wall time on a shared machine): for each key, each
# function runs twice, with A and B calls; (Ir(B) - Ir(A)) / (B - A) is the
# cost of one call with all setup cancelled out (A_EC/B_EC, A_RSA/B_RSA
# set A and B).
#
#   bash benches/dpop_callgrind.sh                        # RustCrypto (feature dpop)
#   FEATURES=jwt-ring,jwt-rsa bash benches/dpop_callgrind.sh   # ring
#   ALGS="ES256 EdDSA" FUNCTIONS="raw_sign_ring layer_call_dpop" bash benches/dpop_callgrind.sh
set -euo pipefail
cd "$(dirname "$0")/.."
features=${FEATURES:-dpop}
bin=$(cargo bench -p tower-oauth2-benches --features "$features" --bench dpop --no-run --message-format=json 2>/dev/null |
    grep -o '"executable":"[^"]*dpop[^"]*"' | tail -n1 | cut -d'"' -f4)
[ -x "$bin" ] || { echo "could not build the dpop bench" >&2; exit 1; }
algs=${ALGS:-ES256 EdDSA}
functions=${FUNCTIONS:-raw_sign_rustcrypto raw_sign_ring proof_resource_43B_token layer_call_bearer layer_call_dpop}
ir() {
    local out
    out=$(mktemp)
    DPOP_ALG=$1 DPOP_CALLGRIND=$2 DPOP_CALLS=$3 valgrind --tool=callgrind \
        --callgrind-out-file="$out" "$bin" >/dev/null 2>&1
    grep '^summary:' "$out" | awk '{print $2}'
    rm -f "$out"
}
printf '%-6s %-26s %12s\n' alg function "Ir/call"
for alg in $algs; do
    case $alg in RS256|PS256) A=${A_RSA:-5}; B=${B_RSA:-25} ;; *) A=${A_EC:-20}; B=${B_EC:-220} ;; esac
    for f in $functions; do
        a=$(ir "$alg" "$f" "$A") || continue
        b=$(ir "$alg" "$f" "$B") || continue
        [ -n "$a" ] && [ -n "$b" ] || { printf '%-6s %-26s %12s\n' "$alg" "$f" "-"; continue; }
        printf '%-6s %-26s %12d\n' "$alg" "$f" $(( (b - a) / (B - A) ))
    done
done
