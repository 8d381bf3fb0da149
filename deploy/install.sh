#!/usr/bin/env bash
# Installs everything gantry needs on Debian 12, as root: the Debian packages, the npm packages
# (Node 24 among them), gantry-exec, and the `gantry`/`gantryd` commands in /usr/local/bin.
# Idempotent. `--bench` also installs the peers the benchmarks compare against (Docker, containerd).
set -euo pipefail
cd "$(dirname "$0")/.."
top=$(pwd)

if [ "$(id -u)" != 0 ]; then echo "deploy/install.sh: run as root (gantry runs containers)" >&2; exit 1; fi

pkgs=(ca-certificates git gcc make libc6-dev libseccomp-dev pkg-config protobuf-compiler
      etcd-server etcd-client docker-registry runc crun busybox-static skopeo umoci
      iproute2 iptables debootstrap util-linux procps psmisc attr apache2-utils docker.io containerd)
if [ "${1:-}" = "--bench" ]; then pkgs+=(hyperfine wrk); fi

missing=()
for p in "${pkgs[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p"); done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  # no init system may be running (containers, CI): keep package scripts from starting daemons
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d
  apt-get install -y -q --no-install-recommends "${missing[@]}"
  rm -f /usr/sbin/policy-rc.d
fi

if [ ! -x node_modules/.bin/node ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "installing npm packages"
  # not `npm ci`: this npm leaves other platforms' optional packages out of the lock, then `ci` refuses it;
  # `install` keeps the pinned versions the lock records
  npm install --no-audit --no-fund --loglevel=error
fi

if [ -f native-exec/Makefile ]; then make -s -C native-exec; fi

# the CLI as one bundled file (cli/bundle.ts): loading ~100 modules was ~60 ms of every call
node_modules/.bin/node cli/bundle.ts

for cmd in gantry gantryd; do
  entry="$top/cli/$cmd.ts"
  if [ "$cmd" = gantry ]; then entry="$top/cli/dist/gantry.cjs"; fi
  cat > "/usr/local/bin/$cmd" <<WRAP
#!/bin/sh
# Node keeps compiled (type-stripped) code here: most of a CLI call's start-up otherwise
export NODE_COMPILE_CACHE="\${NODE_COMPILE_CACHE:-/var/cache/gantry/node-compile}"
exec "$top/node_modules/.bin/node" "$entry" "\$@"
WRAP
  chmod 755 "/usr/local/bin/$cmd"
done
echo "gantry installed: $(gantry version)"
