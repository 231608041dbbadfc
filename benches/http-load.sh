#!/usr/bin/env bash
# HTTP benchmarks of the all-in-one server, in one run on one machine:
#   (a) a PiCloud hello-world endpoint and (b) a minimal axum handler returning
#   the same bytes, both loaded by wrk over loopback; plus start-up time with a
#   warm guest cache, first-request latency after a deploy, and idle memory/CPU.
# Usage: benches/http-load.sh [seconds-per-load-run]   (needs wrk and curl)
# Only 127.0.0.1 is contacted. Figures go to stdout as Markdown.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${1:-10}"
PICLOUD_PORT=18080
AXUM_PORT=18081
PASSWORD=bench-password-123
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

command -v wrk >/dev/null || { echo "wrk is required (apt-get install wrk)" >&2; exit 1; }
cargo build --release --locked -p picloud -p picloud-benches --bin picloud --bin axum-hello >&2
PICLOUD=target/release/picloud
AXUM=target/release/axum-hello
BASE="http://127.0.0.1:$PICLOUD_PORT"

start_picloud() {
    PICLOUD_OWNER_PASSWORD=$PASSWORD "$PICLOUD" serve --listen "127.0.0.1:$PICLOUD_PORT" \
        --data-dir "$WORK/data" >>"$WORK/server.log" 2>&1 &
    PICLOUD_PID=$!
}
wait_for() { # url
    for _ in $(seq 1 2000); do
        curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
        sleep 0.005
    done
    echo "timed out waiting for $1" >&2; cat "$WORK/server.log" >&2; exit 1
}
now_ms() { date +%s%3N; }
api() { # method path [json]
    curl -fsS -X "$1" -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' \
        ${3:+--data "$3"} "$BASE/api/v1$2"
}

# First start: compiles the guest into the cache, creates the owner.
start_picloud
wait_for "$BASE/healthz"
curl -fsS -c "$WORK/cookies" -H 'content-type: application/json' \
    --data "{\"login\":\"owner\",\"password\":\"$PASSWORD\"}" "$BASE/api/v1/auth/login" >"$WORK/login.json"
CSRF=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["csrf_token"])' "$WORK/login.json")
TOKEN=$(curl -fsS -b "$WORK/cookies" -H "x-csrf-token: $CSRF" -H 'content-type: application/json' \
    --data '{"name":"bench"}' "$BASE/api/v1/tokens" | python3 -c 'import json,sys; print(json.load(sys.stdin)["secret"])')
api POST /apps '{"slug":"bench"}' >/dev/null
api PUT /apps/bench/scripts/hello '{"source":"\"Hello, world!\""}' >/dev/null
# The JSON endpoint: parse a 1 KB body, read a nested field, answer a small
# JSON object (the same work as POST /json of axum-hello).
JSON_SCRIPT='let order = json_parse(request.body); #{ city: order.customer.address.city, items: order.items.len(), ok: true }'
api PUT /apps/bench/scripts/order "$(python3 -c 'import json,sys; print(json.dumps({"source": sys.argv[1]}))' "$JSON_SCRIPT")" >/dev/null
kill -TERM $PICLOUD_PID; wait $PICLOUD_PID || true

# Second start: warm guest cache; time from exec to the first served request.
# The binary was just built and the guest just compiled, so the page cache
# holds both as large folios, which the kernel maps whole and which would count
# as the server's resident memory. Where allowed (root), drop the page cache
# first, as a start after a reboot would find it.
sync
PAGE_CACHE="as left by the build"
if [ -w /proc/sys/vm/drop_caches ]; then
    echo 1 >/proc/sys/vm/drop_caches && PAGE_CACHE="dropped before the measured start"
fi
STARTED=$(now_ms)
start_picloud
wait_for "$BASE/bench/hello"
START_MS=$(( $(now_ms) - STARTED ))

# First request after a deploy (the deploy prepares a warm instance).
api PUT /apps/bench/scripts/hello2 '{"source":"\"Hello, world!\""}' >/dev/null
FIRST_AFTER_DEPLOY=$(curl -fsS -o /dev/null -w '%{time_total}' "$BASE/bench/hello2")

"$AXUM" "127.0.0.1:$AXUM_PORT" &
AXUM_PID=$!
wait_for "http://127.0.0.1:$AXUM_PORT/"
[ "$(curl -fsS "$BASE/bench/hello")" = "$(curl -fsS "http://127.0.0.1:$AXUM_PORT/")" ] || { echo "bodies differ" >&2; exit 1; }

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; } # pid → user + system clock ticks
load() { # url pid [wrk arguments...] → "rps p50 p99 server-µs-per-request"
    local url=$1 pid=$2 before; shift 2
    before=$(cpu_ticks "$pid")
    wrk -t2 -c32 -d"${DURATION}s" --latency "$@" "$url" >"$WORK/wrk.txt"
    python3 - "$WORK/wrk.txt" "$before" "$(cpu_ticks "$pid")" "$(getconf CLK_TCK)" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
def latency(label):
    match = re.search(r"^\s+%s\s+([\d.]+)(us|ms|s)" % label, text, re.M)
    value, unit = float(match.group(1)), match.group(2)
    return value * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
if errors: sys.exit("non-2xx responses: " + errors.group(1))
requests = int(re.search(r"(\d+) requests in", text).group(1))
before, after, ticks_per_second = (int(value) for value in sys.argv[2:5])
server_us = (after - before) / ticks_per_second / requests * 1e6
print(f"{rps:.0f} {latency('50%'):.3f} {latency('99%'):.3f} {server_us:.1f}")
PY
}
wrk -t2 -c32 -d2s "$BASE/bench/hello" >/dev/null      # warm-up
read -r PICLOUD_RPS PICLOUD_P50 PICLOUD_P99 PICLOUD_CPU < <(load "$BASE/bench/hello" "$PICLOUD_PID")
wrk -t2 -c32 -d2s "http://127.0.0.1:$AXUM_PORT/" >/dev/null
read -r AXUM_RPS AXUM_P50 AXUM_P99 AXUM_CPU < <(load "http://127.0.0.1:$AXUM_PORT/" "$AXUM_PID")

# The JSON POST endpoints, with a 1 KB order as the body.
python3 - "$WORK/order.json" <<'PY'
import json, sys
order = {"id": "ord_1234567890", "customer": {"id": 42, "name": "Ada Lovelace",
         "email": "ada@example.com", "address": {"street": "12 Analytical Way", "city": "London",
         "postcode": "N1 9GU", "country": "GB"}},
         "items": [{"sku": f"SKU-{i:04d}", "name": f"Item number {i}", "quantity": i % 3 + 1,
                    "price_cents": 199 + i * 25, "tags": ["tea", "green"]} for i in range(6)],
         "notes": "Leave at the door, please.", "created_at": "2026-11-30T08:00:00Z"}
text = json.dumps(order)
text = text[:-1] + ', "padding": "' + "x" * (1024 - len(text) - 16) + '"}'
assert 1000 <= len(text) <= 1050, len(text)
open(sys.argv[1], "w").write(text)
PY
cat > "$WORK/post.lua" <<LUA
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
local file = io.open("$WORK/order.json", "r")
wrk.body = file:read("*a")
file:close()
LUA
PICLOUD_JSON=$(curl -fsS -H 'content-type: application/json' --data-binary "@$WORK/order.json" "$BASE/bench/order")
AXUM_JSON=$(curl -fsS -H 'content-type: application/json' --data-binary "@$WORK/order.json" "http://127.0.0.1:$AXUM_PORT/json")
python3 -c 'import json,sys; a,b=json.loads(sys.argv[1]),json.loads(sys.argv[2]); assert a==b,(a,b)' "$PICLOUD_JSON" "$AXUM_JSON" \
    || { echo "JSON answers differ: $PICLOUD_JSON vs $AXUM_JSON" >&2; exit 1; }
wrk -t2 -c32 -d2s -s "$WORK/post.lua" "$BASE/bench/order" >/dev/null
read -r PICLOUD_JSON_RPS PICLOUD_JSON_P50 PICLOUD_JSON_P99 PICLOUD_JSON_CPU < <(load "$BASE/bench/order" "$PICLOUD_PID" -s "$WORK/post.lua")
wrk -t2 -c32 -d2s -s "$WORK/post.lua" "http://127.0.0.1:$AXUM_PORT/json" >/dev/null
read -r AXUM_JSON_RPS AXUM_JSON_P50 AXUM_JSON_P99 AXUM_JSON_CPU < <(load "http://127.0.0.1:$AXUM_PORT/json" "$AXUM_PID" -s "$WORK/post.lua")
kill $AXUM_PID

# Idle: resident memory at rest and CPU time over 60 idle seconds.
sleep 5
ticks() { awk '{print $14 + $15}' "/proc/$PICLOUD_PID/stat"; }
TICKS_BEFORE=$(ticks)
sleep 60
TICKS_AFTER=$(ticks)
CLK=$(getconf CLK_TCK)
IDLE_CPU_MS=$(( (TICKS_AFTER - TICKS_BEFORE) * 1000 / CLK ))
RSS_KIB=$(awk '/VmRSS/ {print $2}' "/proc/$PICLOUD_PID/status")
ANON_KIB=$(awk '/^Anonymous/ {print $2}' "/proc/$PICLOUD_PID/smaps_rollup")
kill -TERM $PICLOUD_PID; wait $PICLOUD_PID || true

# A fresh server that served nothing: memory at rest straight after start.
rm -rf "$WORK/fresh"; mkdir -p "$WORK/fresh"
cp -r "$WORK/data/cache" "$WORK/fresh/" 2>/dev/null || true
sync
PICLOUD_OWNER_PASSWORD=$PASSWORD "$PICLOUD" serve --listen "127.0.0.1:$PICLOUD_PORT" --data-dir "$WORK/fresh" >>"$WORK/server.log" 2>&1 &
FRESH_PID=$!
wait_for "$BASE/healthz"
sleep 2
FRESH_RSS_KIB=$(awk '/VmRSS/ {print $2}' "/proc/$FRESH_PID/status")
kill -TERM $FRESH_PID; wait $FRESH_PID || true

RATIO=$(python3 -c "print(f'{$PICLOUD_RPS / $AXUM_RPS:.2f}')")
cat <<TABLE
| measurement | PiCloud hello world | minimal axum |
|---|---|---|
| requests/s (wrk -t2 -c32, ${DURATION} s) | $PICLOUD_RPS | $AXUM_RPS |
| p50 latency (ms) | $PICLOUD_P50 | $AXUM_P50 |
| p99 latency (ms) | $PICLOUD_P99 | $AXUM_P99 |
| server CPU per request (µs, user + system) | $PICLOUD_CPU | $AXUM_CPU |
| ratio PiCloud / axum | $RATIO | |

| measurement | PiCloud JSON endpoint | axum + serde_json |
|---|---|---|
| requests/s (1 KB JSON POST, wrk -t2 -c32, ${DURATION} s) | $PICLOUD_JSON_RPS | $AXUM_JSON_RPS |
| p50 latency (ms) | $PICLOUD_JSON_P50 | $AXUM_JSON_P50 |
| p99 latency (ms) | $PICLOUD_JSON_P99 | $AXUM_JSON_P99 |
| server CPU per request (µs, user + system) | $PICLOUD_JSON_CPU | $AXUM_JSON_CPU |
| ratio PiCloud / axum | $(python3 -c "print(f'{$PICLOUD_JSON_RPS / $AXUM_JSON_RPS:.2f}')") | |

| measurement | value |
|---|---|
| process start → first served request (warm guest cache) | $START_MS ms |
| first request after a deploy | $(python3 -c "print(f'{$FIRST_AFTER_DEPLOY * 1000:.2f}')") ms |
| resident memory at rest, fresh start | $((FRESH_RSS_KIB / 1024)) MiB |
| resident memory at rest, 65 s after the load runs | $((RSS_KIB / 1024)) MiB ($((ANON_KIB / 1024)) MiB anonymous; page cache $PAGE_CACHE) |
| CPU time over 60 idle seconds | $IDLE_CPU_MS ms |
TABLE
