#!/usr/bin/env bash
# Installs what imapfs needs to build, test and run its demo, on Debian 12.
# Only packages that are missing are installed; needs root (or sudo).
set -euo pipefail

pkgs=(build-essential meson ninja-build pkg-config libfuse3-dev fuse3 libssl-dev uthash-dev
      check openssl attr python3 dovecot-imapd dovecot-core)
# LMDB: the persistent cache (liblmdb-dev) and its tests' independent reader (lmdb-utils).
pkgs+=(liblmdb-dev lmdb-utils)
# COMPRESS=DEFLATE (RFC 4978).
pkgs+=(zlib1g-dev)
# The man page (imapfs.1.scd); meson skips it without scdoc.
pkgs+=(scdoc)
# test_servers.py's Cyrus and GNU Mailutils: their packages conflict with dovecot-imapd,
# so the tests unpack them (apt-get download, dpkg -x) into the build directory; what they
# link against comes from here, and saslpasswd2 (sasl2-bin) writes Cyrus's users.
pkgs+=(sasl2-bin libical3 libxapian30 libclamav12 libzephyr4 libjansson4 libpq5 libwrap0
       libmailutils9 libgsasl18)
# The fuzz targets (tests/fuzz): clang and its libFuzzer runtime.
pkgs+=(clang libclang-rt-14-dev)
# Tools the scratch-file tests run for real (tests/integration/test_scratch.py).
pkgs+=(vim rsync)
# The desktop tests (test_desktop): gio, gvfs's trash daemon on a session bus, inotifywait.
pkgs+=(libglib2.0-bin gvfs gvfs-daemons dbus-daemon dbus-bin inotify-tools)
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
