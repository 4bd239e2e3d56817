#!/usr/bin/python3
"""Debian server packages unpacked (not installed) for the integration tests.

cyrus-imapd and mailutils-imap4d conflict with dovecot-imapd as packages, so the tests
`apt-get download` them and `dpkg -x` them into the build directory, once: later runs
reuse the unpacked tree. Their shared libraries that are not in the packages themselves
come from ordinary installed packages (examples/install-deps.sh); `missing_libs` says which
are absent, so a test can skip saying exactly what to install.

The cache is $IMAPFS_SERVERS_CACHE, else BUILD/servers where BUILD is the directory of
$IMAPFS_BIN's parent (build/fs/imapfs → build/servers), else $IMAPFS_SRC/build/servers.
"""

import glob
import os
import subprocess


class Unavailable(Exception):
    """The server can't run here; the message says why (a test skips with it)."""


def cache_dir():
    d = os.environ.get("IMAPFS_SERVERS_CACHE")
    if not d:
        b = os.environ.get("IMAPFS_BIN")
        if b:
            d = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(b))), "servers")
        else:
            here = os.path.dirname(os.path.abspath(__file__))
            src = os.environ.get("IMAPFS_SRC") or os.path.dirname(os.path.dirname(here))
            d = os.path.join(src, "build", "servers")
    os.makedirs(d, exist_ok=True)
    return d


def unpacked(name, packages):
    """Root of the unpacked packages (downloaded and unpacked on first use)."""
    root = os.path.join(cache_dir(), name)
    done = os.path.join(root, ".unpacked")
    if os.path.exists(done):
        return root
    dl = os.path.join(cache_dir(), "debs")
    os.makedirs(dl, exist_ok=True)
    os.chmod(dl, 0o777)  # apt's _apt user writes the download when it can
    need = [p for p in packages if not glob.glob(os.path.join(dl, p + "_*.deb"))]
    if need:
        def download():
            return subprocess.run(["apt-get", "download"] + need, cwd=dl, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, timeout=300)
        r = download()
        if r.returncode != 0 and os.geteuid() == 0:
            # a machine whose package lists were never fetched (everything else installed)
            subprocess.run(["apt-get", "update", "-qq"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=300)
            r = download()
        if r.returncode != 0:
            raise Unavailable("apt-get download %s failed: %s" % (
                " ".join(need), r.stderr.decode(errors="replace").strip()[-300:]))
    os.makedirs(root, exist_ok=True)
    for p in packages:
        debs = sorted(glob.glob(os.path.join(dl, p + "_*.deb")))
        if not debs:
            raise Unavailable("no %s package downloaded in %s" % (p, dl))
        subprocess.run(["dpkg", "-x", debs[-1], root], check=True, timeout=120)
    open(done, "w").close()
    return root


def lib_path(root):
    return os.path.join(root, "usr", "lib", "x86_64-linux-gnu")


def env(root):
    e = dict(os.environ)
    e["LD_LIBRARY_PATH"] = lib_path(root) + (
        ":" + e["LD_LIBRARY_PATH"] if e.get("LD_LIBRARY_PATH") else "")
    return e


def missing_libs(root, binaries):
    """Shared libraries the binaries need that neither the system nor the packages have."""
    miss = set()
    for b in binaries:
        r = subprocess.run(["ldd", b], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           env=env(root), timeout=30)
        for line in r.stdout.decode(errors="replace").splitlines():
            if "not found" in line:
                miss.add(line.split()[0])
    return sorted(miss)
