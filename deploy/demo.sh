#!/usr/bin/env bash
# gantry's main job on one host: install, start gantryd, create a single-node cluster, make a
# small image from busybox-static, run a 3-replica service and show where its tasks run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/install.sh

mkdir -p /var/log/gantry
if ! gantry info >/dev/null 2>&1; then
  echo "starting gantryd (log: /var/log/gantry/gantryd.log)"
  setsid gantryd >>/var/log/gantry/gantryd.log 2>&1 < /dev/null &
  for _ in $(seq 1 100); do gantry info >/dev/null 2>&1 && break; sleep 0.1; done
  gantry info >/dev/null || { echo "gantryd did not start: see /var/log/gantry/gantryd.log" >&2; exit 1; }
fi
gantry info --format json | grep -q '"state": *"inactive"' && gantry init

# a tiny image: busybox-static as a root filesystem
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
mkdir -p "$work/rootfs/bin" "$work/rootfs/tmp" "$work/rootfs/etc"
cp /bin/busybox "$work/rootfs/bin/busybox"
for c in sh echo sleep cat ls hostname date httpd wget true false; do ln -sf busybox "$work/rootfs/bin/$c"; done
echo 'root:x:0:0:root:/:/bin/sh' > "$work/rootfs/etc/passwd"
tar -C "$work/rootfs" -cf "$work/busybox.tar" .
gantry image import "$work/busybox.tar" demo/busybox:1

gantry service rm hello >/dev/null 2>&1 || true
gantry service create --name hello --replicas 3 demo/busybox:1 \
  sh -c 'while true; do echo "hello from $(hostname)"; sleep 5; done'
gantry service ls
gantry service ps hello
