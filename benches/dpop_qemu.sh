#!/usr/bin/env bash
# Instructions per DPoP proof and per request as an x86-64 CPU with ADX and
# BMI2 executes them, counted by QEMU user mode and a plugin
# (benches/qemu/insn.c: every translated block adds its instruction count
# to one counter as it runs). Callgrind (benches/dpop_callgrind.sh) runs on
# valgrind's CPU, which has no ADX: `ring` takes its slower P-256 code
# there. Each function runs twice in the bench binary (benches/dpop.rs,
# DPOP_CALLGRIND mode), with A and B calls; (N(B) - N(A)) / (B - A) is the
# cost of one call with all setup cancelled out.
#
# Two builds of the bench: feature `dpop` (the pure-Rust `p256` signs) and
# `jwt-ring,jwt-rsa` (`ring` signs), each counted on every CPU model of
# CPUS (default: `max`, and `max` without ADX and BMI2, to show that the
# count depends on them); the features each model shows are printed first.
# QEMU 7.2's `max` has ADX, BMI2 and AVX2 but no SHA-NI: SHA-256 runs its
# AVX code here, its SHA-NI code on a CPU that has it.
#
#   bash benches/dpop_qemu.sh
#   CPUS="max Haswell" A=10 B=110 bash benches/dpop_qemu.sh
#
# Needs qemu-x86_64 7.x (`-plugin`; Debian: qemu-user) and gcc. Not run by
# CI: a measurement, see BENCHMARKS.md "DPoP".
set -euo pipefail
cd "$(dirname "$0")/.."
command -v qemu-x86_64 >/dev/null || { echo "needs qemu-x86_64 (qemu-user)" >&2; exit 1; }
out=target/qemu
mkdir -p "$out"
gcc -O2 -Wall -shared -fPIC -o "$out/insn.so" benches/qemu/insn.c
gcc -O2 -Wall -o "$out/cpuid" benches/qemu/cpuid.c
bench() {
    cargo bench -p tower-oauth2-benches --features "$1" --bench dpop --no-run --message-format=json 2>/dev/null |
        grep -o '"executable":"[^"]*dpop[^"]*"' | tail -n1 | cut -d'"' -f4
}
p256=$(bench dpop)
ring=$(bench jwt-ring,jwt-rsa)
[ -x "$p256" ] && [ -x "$ring" ] || { echo "could not build the dpop bench" >&2; exit 1; }
cpus=${CPUS:-max max,-adx,-bmi2}
A=${A:-20}
B=${B:-220}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# Instructions of `calls` calls of function $3 by binary $2 on CPU model $1.
insns() {
    DPOP_ALG=ES256 DPOP_CALLGRIND=$3 DPOP_CALLS=$4 qemu-x86_64 -cpu "$1" \
        -plugin "$out/insn.so" -d plugin -D "$log" "$2" >/dev/null
    sed -n 's/^insns: //p' "$log"
}
per_call() {
    local a b
    a=$(insns "$1" "$2" "$3" "$A")
    b=$(insns "$1" "$2" "$3" "$B")
    echo $(( (b - a) / (B - A) ))
}
for cpu in $cpus; do
    printf '%-16s %s\n' "$cpu" "$(qemu-x86_64 -cpu "$cpu" "$out/cpuid" 2>/dev/null)"
done
echo
printf '%-8s %-26s' build function
for cpu in $cpus; do printf ' %16s' "$cpu"; done
echo
declare -A n
for row in "p256 raw_sign_rustcrypto" "p256 proof_resource_43B_token" "p256 proof_resource_1KiB_token" \
    "p256 layer_call_bearer" "p256 layer_call_dpop" "ring raw_sign_ring" "ring proof_resource_43B_token" \
    "ring proof_resource_1KiB_token" "ring layer_call_bearer" "ring layer_call_dpop"; do
    set -- $row
    bin=$p256
    [ "$1" = ring ] && bin=$ring
    printf '%-8s %-26s' "$1" "$2"
    for cpu in $cpus; do
        n[$1 $2 $cpu]=$(per_call "$cpu" "$bin" "$2")
        printf ' %16d' "${n[$1 $2 $cpu]}"
    done
    echo
done
echo
for cpu in $cpus; do
    today=${n[p256 proof_resource_43B_token $cpu]}
    proof=${n[ring proof_resource_43B_token $cpu]}
    raw=${n[ring raw_sign_ring $cpu]}
    added=$(( n[ring layer_call_dpop $cpu] - n[ring layer_call_bearer $cpu] ))
    printf '%-16s p256 proof / ring proof = %s; ring proof - raw sign = %d; DPoP added / raw = %s\n' "$cpu" \
        "$(awk -v a="$today" -v b="$proof" 'BEGIN { printf "%.2f", a / b }')" $(( proof - raw )) \
        "$(awk -v a="$added" -v b="$raw" 'BEGIN { printf "%.3f", a / b }')"
done
