#!/usr/bin/env bash
# make demo: make a sample qcow2 disk, import it through the diskport CLI, export the imported image,
# and say whether the exported bytes equal the sample's raw content.
# Uses the local mode already running on LOCAL_API_PORT (default 3000), or starts one for the demo.
set -euo pipefail

api_port="${LOCAL_API_PORT:-3000}"
aws_port="${LOCAL_AWS_PORT:-5000}"
export LOCAL_API_PORT="$api_port" LOCAL_AWS_PORT="$aws_port"
work="$(mktemp -d)"
server_pid=""

cleanup() {
  if [[ -n "$server_pid" ]]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

answers() {
  python -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)" \
    "http://127.0.0.1:$api_port/openapi.json" 2>/dev/null
}

if answers; then
  echo "Using the local mode running on port $api_port."
else
  echo "Starting local mode for the demo (API port $api_port, AWS emulator port $aws_port)..."
  diskport serve >"$work/local-mode.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 1 60); do answers && break; sleep 0.5; done
  answers || { echo "Local mode did not start:"; cat "$work/local-mode.log"; exit 1; }
fi

echo "Making a 64 MiB sample disk with data in three places and holes between..."
python - "$work/sample.raw" <<'PY'
import os, random, sys
random.seed(2026)
with open(sys.argv[1], "wb") as disk:
    disk.truncate(64 * 1024 * 1024)
    for offset, size in ((0, 1024 * 1024), (10 * 1024 * 1024 + 4096, 300_000), (40 * 1024 * 1024, 2 * 1024 * 1024)):
        disk.seek(offset)
        disk.write(random.randbytes(size))
PY
qemu-img convert -f raw -O qcow2 "$work/sample.raw" "$work/sample.qcow2"
echo "  $(stat -c %s "$work/sample.qcow2") bytes of qcow2 for 64 MiB of virtual disk"

echo "Importing it: diskport import sample.qcow2 --name demo-data-disk --min-disk 40 --wait"
diskport import "$work/sample.qcow2" --name demo-data-disk --min-disk 40 --tag origin=demo --wait >"$work/job.json"
image_id="$(python -c "import json, sys; print(json.load(open(sys.argv[1]))['entities']['image_id'])" "$work/job.json")"
echo "  image $image_id"

echo "Exporting it: diskport export $image_id exported.raw"
diskport export "$image_id" "$work/exported.raw"

if cmp -s "$work/sample.raw" "$work/exported.raw"; then
  echo "MATCH: the exported image is byte for byte the sample's raw content."
else
  echo "DIFFERENT: the exported image does not equal the sample's raw content."
  cmp "$work/sample.raw" "$work/exported.raw" | head -1 || true
  exit 1
fi
