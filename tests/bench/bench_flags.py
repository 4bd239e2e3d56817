#!/usr/bin/python3
"""setfattr of N messages from `xargs -n 20 -P 16` through the delay proxy (issue 11): the
wall time, the UID STORE commands and how many messages each one carried, and every other
command the mount sent meanwhile (Dovecot's rawlog). Reports; never fails for a slow figure.

Run: IMAPFS_BIN=build/fs/imapfs IMAPFS_SRC=$PWD /usr/bin/python3 tests/bench/bench_flags.py
     [--n 1000] [--rtt-ms 20] [--runs 3]"""

import argparse
import collections
import datetime
import os
import re
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import common as C  # noqa: E402
from common import D, I, G  # noqa: E402
from proxy import Proxy  # noqa: E402


def messages(n):
    base = datetime.datetime(2023, 1, 1, tzinfo=datetime.timezone.utc)
    out = []
    for k in range(n):
        dt = base + datetime.timedelta(hours=k)
        key = "flags-%05d" % k
        raw = G.simple(key, "Flags %d" % k, dt.strftime("%a, %d %b %Y %H:%M:%S +0000"),
                       "Body %d.\r\n" % k)
        out.append(G.Msg(key, "F", raw, "Flags %d" % k, dt.strftime("%Y-%m-%d"), dt))
    return out


def set_size(s):
    n = 0
    for part in s.split(","):
        a, _, b = part.partition(":")
        n += abs(int(b) - int(a)) + 1 if b else 1
    return n


def settle(mark, quiet=0.6, timeout=15):
    last, t = None, time.monotonic()
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        n = len(mark.lines())
        if n != last:
            last, t = n, time.monotonic()
        elif time.monotonic() - t >= quiet:
            return
        time.sleep(0.1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--rtt-ms", type=float, default=20)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    I.check_bin()
    srv = D.Dovecot(rawlog=True).start()
    proxy = m = None
    try:
        c = srv.client()
        c.create("F")
        G.multiappend(c, "F", messages(a.n))
        c.logout()
        proxy = Proxy(srv.imaps_port).start()
        proxy.set_delay(a.rtt_ms / 2000.0)
        m = C.mount_of(srv, proxy.port)
        m.mount(foreground=True)
        d = os.path.join(m.mp, "F")
        assert len(os.listdir(d)) == a.n
        times = []
        flags = ["\\Flagged", "$Done", "\\Seen"]
        for run in range(a.runs):
            mark = C.RawlogMark(srv)
            settle(mark)
            mark = C.RawlogMark(srv)
            cmd = "ls | xargs -d '\\n' -n 20 -P 16 setfattr -n user.imap.flags -v '%s'" % flags[run % 3]
            t0 = time.monotonic()
            r = subprocess.run(["sh", "-c", cmd], cwd=d, capture_output=True, timeout=600)
            dt = time.monotonic() - t0
            assert r.returncode == 0, r.stderr
            settle(mark)
            kinds = collections.Counter()
            sizes = []
            for l in mark.lines():
                mm = re.match(r"^[A-Za-z0-9.]+ (UID \w+|\w+)", l)
                if not mm:
                    continue
                kinds[mm.group(1).upper()] += 1
                st = re.match(r"^\S+ UID STORE (\S+)", l)
                if st:
                    sizes.append(set_size(st.group(1)))
            times.append(dt)
            print("run %d: %.2f s, %d UID STORE (messages per STORE: mean %.1f, max %d), commands: %s"
                  % (run + 1, dt, len(sizes), statistics.mean(sizes) if sizes else 0,
                     max(sizes) if sizes else 0, dict(kinds)))
        print("setfattr of %d, xargs -n 20 -P 16, %.0f ms RTT: median %.2f s"
              % (a.n, a.rtt_ms, statistics.median(times)))
    finally:
        if proxy:
            proxy.set_delay(None)
        C.teardown([m] if m else [], servers=[srv], proxy=proxy, unmount=m is not None)


if __name__ == "__main__":
    main()
