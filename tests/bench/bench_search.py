#!/usr/bin/python3
"""Search benchmark (issue 9): `ls FOLDER/.search/TOKEN` against `grep -rl TOKEN FOLDER/`
on a 10,000-message folder, each cold (a fresh mount, empty persistent cache, default
configuration), on loopback and through the counting proxy with a 20 ms delay per chunk:
time, bytes on the wire each way, IMAP commands (from Dovecot's rawlog).

    /usr/bin/python3 tests/bench/bench_search.py [--quick] [--no-delay] [--bin PATH]

The mail is bench.py's (deterministic, 2-20 KB, ~1 % of 150-250 KB). TOKEN is a sender
address that about 1 % of the messages carry. Both ways must find the same files (checked).
Exits non-zero only if something broke, never because a figure is slow. Stdlib only."""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))

import bench as B  # noqa: E402
import dovecot as D  # noqa: E402
import imapfs as I  # noqa: E402
import mailgen as G  # noqa: E402
import proxy as P  # noqa: E402

BOX = "BenchSearch"
TOKEN = "p13@example.org"
ENV = dict(os.environ, LC_ALL="C.UTF-8")


def log(*a):
    print("[bench_search]", *a, file=sys.stderr, flush=True)


def measure(d, proxy, workdir, n, argv_of, delay):
    """One cold run: a fresh mount through the proxy, then argv_of(mountpoint) timed."""
    wd = os.path.join(workdir, "m%d" % n)
    os.makedirs(wd)
    m = I.Mount("imaps://%s@127.0.0.1:%d" % (d.user, proxy.port), workdir=wd,
                opts={"cafile": d.cafile, "password_file": d.password_file})
    proxy.set_delay(0)
    m.mount(foreground=True)
    try:
        proxy.set_delay(delay)
        time.sleep(0.05)
        proxy.reset()
        t0 = time.time()
        p0 = time.perf_counter()
        r = subprocess.run(argv_of(m.mp), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           env=ENV, timeout=1800)
        secs = time.perf_counter() - p0
        t1 = time.time()
        time.sleep(0.1)
        up, down = proxy.counts()
        if r.returncode not in (0, 1):
            raise RuntimeError("%s: exit %d %s" % (argv_of(m.mp), r.returncode, r.stderr[:300]))
        names = {os.path.basename(x) for x in r.stdout.decode("utf-8", "replace").split("\n") if x}
    finally:
        proxy.set_delay(0)
        m.unmount()
        m.cleanup()
    time.sleep(0.2)
    cmds = [c for ts, c in B.rawlog_commands(d) if t0 <= ts <= t1 + 0.001]
    return secs, up, down, cmds, names


def baseline(d, proxy, keys, delay):
    """imaplib on a logged-in connection through the proxy: SELECT + UID SEARCH keys."""
    import imaplib
    c = imaplib.IMAP4_SSL("127.0.0.1", proxy.port, ssl_context=d.ssl_context(), timeout=600)
    try:
        c.login(d.user, d.password)
        proxy.set_delay(delay)
        time.sleep(0.05)
        proxy.reset()
        p0 = time.perf_counter()
        c.select(BOX, readonly=True)
        typ, data = c.uid("SEARCH", *keys)
        secs = time.perf_counter() - p0
        time.sleep(0.1)
        up, down = proxy.counts()
        if typ != "OK":
            raise RuntimeError("UID SEARCH %s: %r" % (keys, data))
        return secs, up, down, ["SELECT", "UID SEARCH"], len(data[0].split())
    finally:
        proxy.set_delay(0)
        c.logout()


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="2,000 messages")
    ap.add_argument("--no-delay", action="store_true", help="loopback only")
    ap.add_argument("--bin", help="imapfs binary (default $IMAPFS_BIN or build/fs/imapfs)")
    args = ap.parse_args()
    n_msgs = 2000 if args.quick else 10000
    workdir = tempfile.mkdtemp(prefix="ifss", dir="/tmp")
    os.chmod(workdir, 0o755)
    d = proxy = None
    try:
        os.environ["IMAPFS_BIN"] = B.find_bin(args.bin, workdir)
        d = D.Dovecot(rawlog=True)
        d.start()
        msgs = B.gen_messages(n_msgs, BOX, "list")
        c = d.client(plain=True)
        c.create(BOX)
        G.multiappend(c, BOX, msgs)
        c.logout()
        want = sum(1 for m in msgs if TOKEN.encode() in m.raw)
        log("%d messages (%.0f MB), %d carry %s" % (
            n_msgs, sum(len(m.raw) for m in msgs) / 1e6, want, TOKEN))
        proxy = P.Proxy(d.imaps_port).start()
        rows = []
        n = 0
        for delay in ([0] if args.no_delay else [0, 0.02]):
            res = {}
            for what, argv_of in [
                    ("ls .search", lambda mp: ["sh", "-c", 'ls "$0"', os.path.join(
                        mp, BOX, ".search", TOKEN)]),
                    ("grep -rl", lambda mp: ["grep", "-rlF", "--", TOKEN, os.path.join(mp, BOX)])]:
                n += 1
                res[what] = measure(d, proxy, workdir, n, argv_of, delay)
                log("%s, %d ms: %.2fs" % (what, delay * 1000, res[what][0]))
            n += 1
            res["ls .search/from:"] = measure(d, proxy, workdir, n, lambda mp: [
                "sh", "-c", 'ls "$0"', os.path.join(mp, BOX, ".search", "from:" + TOKEN)], delay)
            res["imaplib UID SEARCH TEXT"] = baseline(d, proxy, ["TEXT", TOKEN], delay)
            res["imaplib UID SEARCH FROM"] = baseline(d, proxy, ["FROM", TOKEN], delay)
            for k in ("ls .search/from:", "imaplib UID SEARCH TEXT", "imaplib UID SEARCH FROM"):
                log("%s, %d ms: %.2fs" % (k, delay * 1000, res[k][0]))
            if res["ls .search"][4] != res["grep -rl"][4]:
                raise RuntimeError("different files: %d by search, %d by grep" % (
                    len(res["ls .search"][4]), len(res["grep -rl"][4])))
            if len(res["ls .search"][4]) != want:
                raise RuntimeError("%d files found, %d expected" % (len(res["ls .search"][4]), want))
            rows.append((delay, res))
        print("\n%d messages in %s, TOKEN %s (%d matches), cold mounts, default options\n" % (
            n_msgs, BOX, TOKEN, want))
        print("| path | what | time | client→server | server→client | IMAP commands |")
        print("|---|---|---|---|---|---|")
        for delay, res in rows:
            for what, (secs, up, down, cmds, _) in res.items():
                kinds = {}
                for cmd in cmds if isinstance(cmds, list) else []:
                    k = " ".join(cmd.split()[:2])
                    kinds[k] = kinds.get(k, 0) + 1
                print("| %s | `%s` | %.2f s | %s | %s | %d (%s) |" % (
                    "loopback" if not delay else "%d ms delay" % (delay * 1000), what, secs,
                    B.fmt_b(up), B.fmt_b(down), len(cmds),
                    ", ".join("%s ×%d" % kv for kv in sorted(kinds.items()))))
        return 0
    finally:
        if proxy:
            proxy.stop()
        if d:
            d.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
