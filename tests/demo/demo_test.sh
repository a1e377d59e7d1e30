#!/usr/bin/env bash
# deploy/demo/run-demo, non-interactively: `top` in plain mode for a few
# seconds, then the demo's own cleanup. Passes when the GPU container reached
# the fast tier, the CPU container never left the slow one, and nothing the
# demo made is left: its directory, pins, stand-in device, mounts, loop
# devices, containers' cgroups. About 25 s. The tiered path is not /data, which
# agents of other tests running on the same machine tier in every container.

#
#   tests/demo/demo_test.sh BIN_DIR [SECONDS]
set -uo pipefail
BIN="${1:?usage: demo_test.sh BIN_DIR [SECONDS]}"
FOR="${2:-12}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

if [[ $(id -u) -ne 0 ]]; then echo "SKIP: needs root"; exit 77; fi
for tool in podman runc busybox; do
  command -v "$tool" >/dev/null || { echo "SKIP: $tool is not installed (deploy/bootstrap test installs it)"; exit 77; }
done

DIR="/tmp/gputier-demo-test-$$"
OUT="$(mktemp /tmp/gputier-demo-test-out.XXXXXX)"
trap 'rm -f "$OUT"' EXIT
"$ROOT/deploy/demo/run-demo" --for "$FOR" --plain --dir "$DIR" --bin "$BIN" \
  --path /gputier-demo-data >"$OUT" 2>&1
rc=$?
cat "$OUT"
fail() { echo "FAIL: $*"; exit 1; }
[[ $rc -eq 0 ]] || fail "run-demo exited $rc"

ids=$(sed -n 's/^demo: GPU container: podman:\([0-9a-f]*\) (\([^)]*\)); CPU container: podman:\([0-9a-f]*\) (\([^)]*\)).*/\1 \2 \3 \4/p' "$OUT")
read -r GPU GPU_NAME CPU CPU_NAME <<<"$ids"
[[ -n "$GPU" && -n "$CPU" ]] || fail "run-demo did not name its two containers"
# Rows: CONTAINER VERDICT CONF TIER ...; a container is shown by its name
# where gputierd knows one (cut to the column's width), else by its short id.
is_row() { printf '%s' "-v a=$1 -v b=podman:$1 -v c=$2"; }
awk $(is_row "$GPU" "$GPU_NAME") '($1 == a || $1 == b || (length($1) >= 12 && index(c, $1) == 1)) && $2 == "gpu" && $4 == "fast" {found = 1} END {exit !found}' "$OUT" ||
  fail "the GPU container ($GPU_NAME, $GPU) never showed as gpu on the fast tier"
awk $(is_row "$CPU" "$CPU_NAME") '($1 == a || $1 == b || (length($1) >= 12 && index(c, $1) == 1)) {seen = 1; if ($4 == "fast" || $2 == "gpu") bad = 1} END {exit !(seen && !bad)}' "$OUT" ||
  fail "the CPU container ($CPU_NAME, $CPU) was not shown, or showed as gpu or on the fast tier"

NAME="$(basename "$DIR")"
[[ ! -e "$DIR" ]] || fail "$DIR is left behind"
[[ ! -e "/sys/fs/bpf/$NAME" ]] || fail "the pins /sys/fs/bpf/$NAME are left behind"
[[ ! -e "/dev/$NAME-gpu0" ]] || fail "the stand-in device /dev/$NAME-gpu0 is left behind"
! grep -q "$DIR" /proc/self/mountinfo || fail "mounts below $DIR are left behind: $(grep "$DIR" /proc/self/mountinfo)"
! losetup -a | grep -q "$DIR" || fail "loop devices of $DIR are left behind: $(losetup -a | grep "$DIR")"
left=$(find /sys/fs/cgroup -maxdepth 4 -type d \( -name "$NAME" -o -name "*$GPU*" -o -name "*$CPU*" \) 2>/dev/null)
[[ -z "$left" ]] || fail "the containers' cgroups are left behind: $left"
echo "PASS: GPU container fast, CPU container slow, nothing left behind"
