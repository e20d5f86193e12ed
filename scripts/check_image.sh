#!/usr/bin/env bash
# Build the Docker image and run it for real, with no Docker engine: ./scripts/check_image.sh (as root, on Debian)
# The Dockerfile is built by podman (vfs storage, chroot isolation) on a Debian bookworm base made by debootstrap,
# kept in the cache for the next run. The image's own command then runs as the image's user under chroot, on a
# loopback port, with a read-only root and /data as its volume (as `docker run --read-only -v ...:/data`), and the
# script shows: the image's HEALTHCHECK passing and /health's answer, an EXEC job run as that user, and poulpe
# finishing its running job, then exiting 0, on SIGTERM (`docker stop`). Any other outcome fails the script.
# POULPE_IMAGE_CACHE (default /var/tmp/poulpe-image-check) holds the base and podman's storage: remove it to start cold.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"

CACHE=${POULPE_IMAGE_CACHE:-/var/tmp/poulpe-image-check}
BASE_IMAGE=localhost/poulpe-base:bookworm
IMAGE=localhost/poulpe:check
MIRROR=${POULPE_DEBIAN_MIRROR:-http://deb.debian.org/debian}
# The CA bundle the build's pip checks PyPI with: this machine's, so a build behind a TLS-inspecting proxy works too.
HOST_CA=/etc/ssl/certs/ca-certificates.crt

is_root || die "run as root: debootstrap, podman's storage, mount and chroot need it"
ensure_debian_packages debootstrap podman curl flock:util-linux python3
mkdir -p "$CACHE"
# One run at a time on a cache (they share the image's name): a second one waits for the first.
exec 9>"$CACHE/lock"
flock 9

# podman on its own storage in the cache; vfs needs no fuse-overlayfs and no kernel overlay support.
pm() { podman --root "$CACHE/storage" --runroot "$CACHE/run" --storage-driver vfs "$@"; }
elapsed() { printf '%d s' $((SECONDS - $1)); }

work=$(mktemp -d)
server_pid=''
mounted=''
cleanup() {
  if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  [[ -z $mounted ]] || pm image unmount "$IMAGE" >/dev/null || true
  rm -rf --one-file-system "$work"  # never into a /proc or /dev a failed debootstrap left mounted
}
trap cleanup EXIT

# 1. The base: what python:3.11-slim-bookworm gives, made from Debian's packages (no registry is needed).
started=$SECONDS
if pm image exists "$BASE_IMAGE"; then
  step "base image $BASE_IMAGE: cached"
else
  step "debootstrap bookworm into $BASE_IMAGE"
  rootfs="$work/rootfs"
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$rootfs" "$MIRROR" \
    >"$work/debootstrap.log" 2>&1 || { tail -n 30 "$work/debootstrap.log" >&2; die "debootstrap failed"; }
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -c . | pm import --quiet - "$BASE_IMAGE" >/dev/null
  rm -rf --one-file-system "$rootfs"
  echo "base made in $(elapsed "$started")" >&2
fi

# 2. The image, from the Dockerfile as it is: docker format, which keeps HEALTHCHECK. No layer cache: vfs stores each
# layer as a whole copy of the tree, which makes a layered build four times slower than this one. The host's CA bundle
# is mounted for the RUN steps only (nothing of it stays in the image).
step "podman build $IMAGE"
built=$SECONDS
ca_volume=()
[[ -f $HOST_CA ]] && ca_volume=(--volume "$HOST_CA:$HOST_CA:ro")
pm build --layers=false --isolation chroot --network host --format docker --pull=never \
  --build-arg "BASE=$BASE_IMAGE" "${ca_volume[@]}" --tag "$IMAGE" "$ROOT" >"$work/build.log" 2>&1 \
  || { tail -n 30 "$work/build.log" >&2; die "podman build failed"; }
pm image prune --force >/dev/null  # the previous run's image
echo "image built in $(elapsed "$built")" >&2

# 3. What `docker run` takes from the image: user, working directory, environment, entrypoint, command, health check.
config="$work/config.sh"
pm image inspect "$IMAGE" | python3 -c '
import json, shlex, sys
image = json.load(sys.stdin)[0]
config, check = image["Config"], image.get("Healthcheck") or {}
def array(name, words):
    print(name + "=(" + " ".join(shlex.quote(word) for word in words or []) + ")")
print("USER_SPEC=" + shlex.quote(config.get("User") or "0:0"))
print("WORKDIR=" + shlex.quote(config.get("WorkingDir") or "/"))
array("ENV_VARS", config.get("Env"))
array("ENTRYPOINT", config.get("Entrypoint"))
array("CMD", config.get("Cmd"))
test = check.get("Test") or []
shell = ["/bin/sh", "-c"] if test[:1] == ["CMD-SHELL"] else [] if test[:1] == ["CMD"] else None
array("HEALTHCHECK", None if shell is None else [*shell, *test[1:]])  # empty: no HEALTHCHECK, or NONE
' >"$config"
# shellcheck source=/dev/null  # written just above
source "$config"
((${#HEALTHCHECK[@]} > 0)) || die "the image has no HEALTHCHECK"
uid=${USER_SPEC%%:*}
[[ $uid =~ ^[0-9]+$ && $uid != 0 ]] || die "the image's USER is '$USER_SPEC': it must be a non-root number"

# The volume: owned by the image's user, holding one EXEC program that tells who runs it.
data="$work/data"
mkdir -p "$data/bin"
printf '#!/bin/sh\nexec id\n' >"$data/bin/whoami"
printf '#!/bin/sh\nsleep 3\necho drained\n' >"$data/bin/slow"
chmod 755 "$data/bin/whoami" "$data/bin/slow"
chown "$USER_SPEC" "$data"

# 4. Start the image's command. A private mount namespace holds the read-only view of the image with /data, /proc,
# /dev and a /tmp on it, so nothing is left mounted when poulpe ends. Every step execs: $server_pid is poulpe.
mounted=$(pm image mount "$IMAGE")
view="$work/view"
mkdir "$view"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
in_image=(chroot --userspec="$USER_SPEC" "$view" /usr/bin/env -i -C "$WORKDIR" "${ENV_VARS[@]}" POULPE_PORT="$port")
# Flags after the image's own are what `docker run IMAGE --flag` adds: loopback instead of 0.0.0.0, the EXEC directory.
poulpe_argv=("${ENTRYPOINT[@]}" "${CMD[@]}" --host 127.0.0.1 --port "$port" --exec_dir /data/bin)
step "start: ${poulpe_argv[*]} (as $USER_SPEC)"
log="$work/poulpe.log"
# shellcheck disable=SC2016  # the inner script's variables are its own arguments
unshare --mount --propagation private -- bash -euc '
  image=$1 view=$2 data=$3
  shift 3
  mount --bind "$image" "$view"
  mount -o remount,bind,ro "$view"
  mount --bind "$data" "$view/data"
  mount -t proc proc "$view/proc"
  mount --rbind /dev "$view/dev"
  mount -t tmpfs -o mode=1777 tmpfs "$view/tmp"
  exec "$@"
' _ "$mounted" "$view" "$data" "${in_image[@]}" "${poulpe_argv[@]}" >"$log" 2>&1 &
server_pid=$!
fail() { printf '%s\n' "--- poulpe's log:" >&2; cat "$log" >&2; die "$*"; }

# 5. The image's HEALTHCHECK, run inside the image as its user, until it passes.
step "HEALTHCHECK ${HEALTHCHECK[*]}"
healthy=''
for _ in $(seq 150); do
  kill -0 "$server_pid" 2>/dev/null || fail "poulpe exited before its health check passed"
  if nsenter --target "$server_pid" --mount -- "${in_image[@]}" "${HEALTHCHECK[@]}" >/dev/null 2>&1; then
    healthy=1
    break
  fi
  sleep 0.2
done
[[ -n $healthy ]] || fail "the health check still failed after 30 s"
health=$(curl --silent --show-error --fail --noproxy '*' "http://127.0.0.1:$port/health") || fail "GET /health failed"
echo "GET /health: $health"
running_uid=$(awk '/^Uid:/ {print $2}' "/proc/$server_pid/status")
echo "poulpe runs as uid $running_uid"
[[ $running_uid == "$uid" ]] || fail "poulpe runs as uid $running_uid, not the image's $uid"

# 6. A job, through the API as a user sends it: the program runs as the image's user.
step "EXEC job whoami"
answer=$(curl --silent --show-error --noproxy '*' -H 'Content-Type: application/json' \
  -d '{"method": "EXEC", "name": "whoami", "wait": 30}' "http://127.0.0.1:$port/task_in_queue") \
  || fail "POST /task_in_queue failed"
python3 -c '
import json, sys
job, uid = json.loads(sys.argv[1]), sys.argv[2]
result = job.get("result") or {}
print("job %s: status %s, exit code %s, stdout: %s" % (job.get("id"), job.get("status"), result.get("exit_code"),
      str(result.get("stdout", "")).strip()))
sys.exit(not (job.get("status") == "succeeded" and str(result.get("stdout", "")).startswith("uid=%s(" % uid)))
' "$answer" "$uid" || fail "the job did not succeed as uid $uid: $answer"

# 7. docker stop: SIGTERM while a 3 s job runs. poulpe must let it finish (its grace period is 30 s), then exit 0.
step "SIGTERM while the EXEC job slow runs"
api() { curl --silent --show-error --noproxy '*' "$@"; }
api -o /dev/null -H 'Content-Type: application/json' -d '{"id": "drain-check", "method": "EXEC", "name": "slow"}' \
  "http://127.0.0.1:$port/task_in_queue" || fail "POST /task_in_queue failed"
running=''
for _ in $(seq 100); do
  api "http://127.0.0.1:$port/task_resp/drain-check?timeout=0" | grep -q '"status":"running"' && running=1 && break
  sleep 0.1
done
[[ -n $running ]] || fail "the job slow did not start within 10 s"
logged=$(wc -l <"$log")
stopping=$SECONDS
kill -TERM "$server_pid"
for _ in $(seq 450); do
  kill -0 "$server_pid" 2>/dev/null || break
  sleep 0.1
done
kill -0 "$server_pid" 2>/dev/null && fail "poulpe still runs 45 s after SIGTERM"
status=0
wait "$server_pid" || status=$?
server_pid=''
echo "poulpe exited with status $status, $(elapsed "$stopping") after SIGTERM; its log from SIGTERM on:"
tail -n +$((logged + 1)) "$log"
((status == 0)) || fail "poulpe exited with status $status on SIGTERM"
grep -q 'job drain-check succeeded' "$log" || fail "the job running at SIGTERM did not finish"
[[ -s $data/poulpe.db ]] || fail "no store in the /data volume"

echo "image $IMAGE checked in $(elapsed "$started")" >&2
