#!/usr/bin/env bash
# Installs what imapfs needs to build, test and run its demo, on Debian 12.
# Only packages that are missing are installed; needs root (or sudo).
set -euo pipefail

pkgs=(build-essential meson ninja-build pkg-config libfuse3-dev fuse3 libssl-dev uthash-dev
      check openssl attr python3 dovecot-imapd dovecot-core)
# LMDB: the persistent cache (liblmdb-dev) and its tests' independent reader (lmdb-utils).
pkgs+=(liblmdb-dev lmdb-utils)
# The man page (imapfs.1.scd); meson skips it without scdoc.
pkgs+=(scdoc)
# The fuzz targets (tests/fuzz): clang and its libFuzzer runtime.
pkgs+=(clang libclang-rt-14-dev)
# The scan tests (tests/integration/test_scan.py) run ripgrep against the mount.
pkgs+=(ripgrep)
missing=()
for p in "${pkgs[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
                missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=
[ "$(id -u)" -eq 0 ] || SUDO=sudo
echo "installing: ${missing[*]}"
# Installing dovecot would start the system's own server; ours are throwaway
# instances with their own config, so keep the system one from starting.
if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
        $SUDO chmod +x /usr/sbin/policy-rc.d
        trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
