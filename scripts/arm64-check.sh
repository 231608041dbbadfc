#!/usr/bin/env bash
# Cross-builds the picloud binary for arm64 (aarch64-unknown-linux-gnu, the
# Raspberry Pi 4/5 target) and runs it under qemu-user emulation: the server
# starts, compiles its guest with Cranelift's arm64 backend, and serves
# scripts. Then again inside a 39-bit (512 GiB) and an 8 GiB address space,
# as on many Pi kernels and smaller: the executor's pool must fit in the
# first and fall back to on-demand allocation in the second, and the server
# must work in both. Only 127.0.0.1 is contacted. See docs/executor.md.
#
# Usage: scripts/arm64-check.sh   (Debian; installs the cross linker and qemu)
# PROFILE=dev checks a debug build instead of the release build (quicker to
# build; scripts/test does so); CARGO_PROFILE_RELEASE_LTO=thin also helps.
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=aarch64-unknown-linux-gnu
PORT="${PORT:-18097}"
BASE="http://127.0.0.1:$PORT"
PASSWORD=arm64-check-password
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

if ! command -v aarch64-linux-gnu-gcc >/dev/null || ! command -v qemu-aarch64 >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user >/dev/null
fi
rustup target add "$TARGET" >/dev/null
PROFILE="${PROFILE:-release}"
CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc \
    cargo build --profile "$PROFILE" --locked -p picloud --target "$TARGET" >&2
BINARY="target/$TARGET/$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")/picloud"
file "$BINARY" | grep -q 'ARM aarch64' || { echo "not an arm64 binary: $(file "$BINARY")" >&2; exit 1; }

fail() { echo "FAIL: $*" >&2; tail -30 "$WORK/server.log" >&2; exit 1; }

# check NAME [qemu -R size]: start the emulated server on a fresh data
# directory (sharing the guest cache), deploy two scripts, call them.
check() {
    local name=$1 reserve=${2:-}
    : >"$WORK/server.log"
    rm -rf "$WORK/data"
    mkdir -p "$WORK/data" "$WORK/cache"
    env QEMU_LD_PREFIX=/usr/aarch64-linux-gnu ${reserve:+QEMU_RESERVED_VA=$reserve} \
        PICLOUD_OWNER_PASSWORD=$PASSWORD qemu-aarch64 "$BINARY" serve --listen "127.0.0.1:$PORT" \
        --data-dir "$WORK/data" --cache-dir "$WORK/cache" >>"$WORK/server.log" 2>&1 &
    local pid=$! started; started=$(date +%s)
    # The first start compiles the guest under emulation: minutes, not seconds.
    for _ in $(seq 1 3000); do
        curl -fsS -o /dev/null "$BASE/readyz" 2>/dev/null && break
        kill -0 $pid 2>/dev/null || fail "$name: the server exited"
        sleep 0.2
    done
    curl -fsS -o /dev/null "$BASE/readyz" || fail "$name: not ready after 10 minutes"
    local token
    token=$(curl -fsS -H 'content-type: application/json' \
        --data "{\"login\":\"owner\",\"password\":\"$PASSWORD\"}" -c "$WORK/cookies" "$BASE/api/v1/auth/login" |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["csrf_token"])')
    token=$(curl -fsS -b "$WORK/cookies" -H "x-csrf-token: $token" -H 'content-type: application/json' \
        --data '{"name":"arm64"}' "$BASE/api/v1/tokens" | python3 -c 'import json,sys; print(json.load(sys.stdin)["secret"])')
    api() { curl -fsS -X "$1" -H "authorization: Bearer $token" -H 'content-type: application/json' --data "$3" "$BASE/api/v1$2" >/dev/null; }
    api POST /apps '{"slug":"pi"}'
    api PUT /apps/pi/scripts/hello '{"source":"let name = request.query.name ?? \"world\"; `Hello, ${name}!`"}'
    api PUT /apps/pi/scripts/order '{"source":"fn fib(n) { if n < 2 { n } else { fib(n - 1) + fib(n - 2) } }\nlet order = json_parse(request.body);\n#{ city: order.customer.address.city, fib: fib(15) }"}'
    api PUT /apps/pi/scripts/spin '{"source":"loop { }"}'
    [ "$(curl -fsS "$BASE/pi/hello?name=Pi")" = "Hello, Pi!" ] || fail "$name: hello"
    [ "$(curl -fsS -H 'content-type: application/json' --data '{"customer":{"address":{"city":"Cambridge"}}}' "$BASE/pi/order")" \
        = '{"city":"Cambridge","fib":610}' ] || fail "$name: JSON and recursion"
    # A script that never ends is stopped by its limits (fuel or deadline), and the server goes on.
    local status; status=$(curl -sS -o /dev/null -w '%{http_code}' "$BASE/pi/spin")
    [ "$status" = 504 ] || fail "$name: an endless loop answered $status, not 504"
    [ "$(curl -fsS "$BASE/pi/hello")" = "Hello, world!" ] || fail "$name: hello after the endless loop"
    local allocation=pooling
    grep -q 'falling back to on-demand allocation' "$WORK/server.log" && allocation=on-demand
    echo "$name: ok ($allocation allocation, ready after $(( $(date +%s) - started )) s)"
    kill -TERM $pid; wait $pid || true
    echo "$allocation" >"$WORK/allocation"
}

check "arm64, unlimited address space"
[ "$(cat "$WORK/allocation")" = pooling ] || fail "the pool did not start with the whole address space"
check "arm64, 39-bit (512 GiB) address space" 512G
[ "$(cat "$WORK/allocation")" = pooling ] || fail "the pool does not fit in a 39-bit address space"
check "arm64, 8 GiB address space" 8G
[ "$(cat "$WORK/allocation")" = on-demand ] || fail "no fallback to on-demand allocation in 8 GiB"
echo "PASS"
