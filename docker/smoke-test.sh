#!/usr/bin/env bash
# Builds the image of docker/Dockerfile and checks it end to end, over
# loopback only (docs/docker.md). Needs a Docker engine; runs the container
# with host networking on 127.0.0.1:$PORT.
#   docker/smoke-test.sh                          # build picloud:smoke-test, check it
#   SKIP_BUILD=1 IMAGE=picloud docker/smoke-test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGE="${IMAGE:-picloud:smoke-test}"
PORT="${PORT:-18095}"
NAME="picloud-smoke-$$"
VOLUME="picloud-smoke-$$"
PASSWORD="smoke-test-password-1"
BASE="http://127.0.0.1:$PORT"

cleanup() {
    docker rm -f "$NAME" >/dev/null 2>&1 || true
    docker volume rm "$VOLUME" >/dev/null 2>&1 || true
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; docker logs "$NAME" 2>&1 | tail -40 >&2 || true; exit 1; }
step() { echo "==> $*"; }

if [ -z "${SKIP_BUILD:-}" ]; then
    step "building $IMAGE"
    docker build ${DOCKER_BUILD_ARGS:-} -f docker/Dockerfile -t "$IMAGE" .
fi
docker volume create "$VOLUME" >/dev/null

start() {
    docker start "$NAME" >/dev/null
    for _ in $(seq 1 300); do
        curl -fsS -o /dev/null "$BASE/healthz" 2>/dev/null && return 0
        sleep 0.1
    done
    fail "the server did not answer /healthz within 30 s"
}

step "first start (compiles the guest into the volume)"
docker create --name "$NAME" --network host \
    -e PICLOUD_LISTEN="127.0.0.1:$PORT" -e PICLOUD_OWNER_PASSWORD="$PASSWORD" \
    -v "$VOLUME:/data" "$IMAGE" >/dev/null
start
[ "$(docker exec "$NAME" id -u)" = 10001 ] || fail "the server does not run as uid 10001"
docker exec "$NAME" picloud health | grep -q '"ok"' || fail "picloud health inside the container"
curl -fsS "$BASE/dashboard/" | grep -qi '<html' || fail "the dashboard is not served"

step "the CLI in the container deploys a script"
cli() { docker exec -e PICLOUD_SERVER="$BASE" "$NAME" picloud "$@"; }
printf '%s\n' "$PASSWORD" | docker exec -i "$NAME" picloud login --server "$BASE" --username owner \
    >/dev/null || fail "picloud login"
cli apps create smoke >/dev/null || fail "picloud apps create"
docker exec "$NAME" sh -c 'printf "%s\n" "\`Hello, \${request.query.name ?? \"container\"}!\`" > /tmp/hello.rhai'
cli deploy smoke/hello /tmp/hello.rhai | grep -q 'version 1' || fail "picloud deploy"
[ "$(curl -fsS "$BASE/smoke/hello?name=Pi")" = "Hello, Pi!" ] || fail "the deployed script does not answer"

step "docker stop ends the server cleanly"
docker stop -t 30 "$NAME" >/dev/null
[ "$(docker inspect -f '{{.State.ExitCode}}' "$NAME")" = 0 ] || fail "exit status after SIGTERM is not 0"

step "restart on the same volume"
start
[ "$(curl -fsS "$BASE/smoke/hello")" = "Hello, container!" ] || fail "the script is gone after a restart"
[ "$(docker logs "$NAME" 2>&1 | grep -c 'created the owner account')" = 1 ] || fail "the owner was created twice"
docker exec "$NAME" picloud health >/dev/null || fail "picloud health after the restart"

echo "PASS: $IMAGE"
