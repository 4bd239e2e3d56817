#!/usr/bin/python3
"""Live sync without NOTIFY at scale (issue 18): what a poll round costs.

    /usr/bin/python3 tests/bench/bench_poll.py [--folders N] [--poll S] [--window S]
        [--trials N] [--bin PATH] [--label NAME] [--delays 0,0.01] [--variants plain,liststatus]

A throwaway Dovecot (tests/integration/dovecot.py, rawlog on) whose `imap_capability` hides
NOTIFY ("plain" also hides LIST-STATUS, as Microsoft 365 and Yahoo; "liststatus" keeps it),
N folders (default 1,000), each visited once with `ls` on the mount (`-o poll=S`, default
10, default configuration: persistent cache and live sync on); then the proxy (tests/integration/proxy.py) delays every chunk by DELAY
seconds each way (0.01: 20 ms RTT) and, from Dovecot's timestamped rawlog:

  round time     from the round's LIST reaching the server to the watcher's next IDLE (the
                 round is over) reaching it, median of the rounds in the window;
  commands/min   every command the server read during --window seconds (default 60), per
                 minute;
  --settle S     wait S seconds after the visits before measuring (default 2 x poll; 330
                 shows the slower pace of folders not used in the last 5 minutes);
  notice         another client (imaplib, straight to Dovecot) appends a message to a visited
                 folder that is not the watched one; seconds until the mount SELECTs it to
                 re-list it (nothing touches the mount meanwhile), median of --trials (3).

Run it with the imapfs of main's parent commit (--bin, --label before) and with this one to
compare. Prints one row per (variant, delay). Stdlib only."""

import argparse
import os
import re
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(SRC, "tests", "integration"))

import dovecot as D  # noqa: E402
import imapfs as I  # noqa: E402
import mailgen as G  # noqa: E402
import proxy as P  # noqa: E402

CAPS = ("IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT SORT=DISPLAY THREAD=REFERENCES "
        "THREAD=REFS THREAD=ORDEREDSUBJECT MULTIAPPEND URL-PARTIAL CATENATE UNSELECT CHILDREN "
        "NAMESPACE UIDPLUS LIST-EXTENDED I18NLEVEL=1 CONDSTORE QRESYNC ESEARCH ESORT SEARCHRES "
        "WITHIN CONTEXT=SEARCH LIST-STATUS BINARY MOVE SNIPPET=FUZZY PREVIEW=FUZZY PREVIEW "
        "STATUS=SIZE SAVEDATE LITERAL+ NOTIFY")
HIDE = {"plain": ("NOTIFY", "LIST-STATUS"), "liststatus": ("NOTIFY",)}
TS_LINE = re.compile(r"^(\d+\.\d+) (\S+) (.*)$")


def commands(srv, since, until=None):
    out = []
    d = srv.rawlog_dir()
    for f in os.listdir(d):
        if not f.endswith(".in"):
            continue
        with open(os.path.join(d, f), "rb") as fh:
            for line in fh.read().decode("utf-8", "replace").split("\n"):
                m = TS_LINE.match(line.rstrip("\r"))
                if m and float(m.group(1)) >= since and (until is None or float(m.group(1)) < until):
                    out.append((float(m.group(1)), f, m.group(3)))
    out.sort()
    return out


def wait_for(cond, timeout, interval=0.1):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = cond()
        if v:
            return v
        time.sleep(interval)
    return None


def run(binary, variant, delay, a):
    srv = D.Dovecot(rawlog=True, extra_conf="protocol imap {\n  imap_capability = %s\n}\n"
                    % " ".join(c for c in CAPS.split() if c not in HIDE[variant]))
    proxy = m = None
    try:
        srv.start()
        c = srv.client()
        folders = ["F%04d" % i for i in range(a.folders)]
        for f in folders:
            c.create(f)
        c.logout()
        proxy = P.Proxy(srv.imaps_port).start()
        os.environ["IMAPFS_BIN"] = binary
        m = I.Mount("imaps://%s@127.0.0.1:%d" % (srv.user, proxy.port),
                    opts={"cafile": srv.cafile, "password_file": srv.password_file,
                          "poll": a.poll})
        m.mount(foreground=True)
        for f in folders:
            os.listdir(os.path.join(m.mp, f))
        proxy.set_delay(delay or None)
        # The rounds running when the delay began are over; with --settle past 300 the
        # folders are no longer "used recently" and are polled at the slower pace.
        time.sleep(a.settle if a.settle is not None else 2 * a.poll)
        t0 = time.time()
        time.sleep(a.window)
        cmds = commands(srv, t0, t0 + a.window)
        per_min = len(cmds) * 60.0 / a.window
        lists = [t for t, _, c in cmds if c.startswith('LIST "" "*"')]
        rounds = []
        for t in lists:
            idle = [u for u, _, c in cmds if u > t and c == "IDLE"]
            if idle:
                rounds.append(idle[0] - t)
        notice = []
        for k in range(a.trials):
            target = folders[k]
            c = srv.client()
            t1 = time.time()
            D.append(c, target, G.simple("b%d" % k, "Bench %d" % k,
                                         "Fri, 01 Mar 2024 10:00:00 +0000", b"x\r\n"))
            c.logout()
            want = 'SELECT "%s"' % target
            hit = wait_for(lambda: [u for u, _, cmd in commands(srv, t1) if cmd.startswith(want)],
                           20 * a.poll + 120)
            notice.append(hit[0] - t1 if hit else float("inf"))
        return {
            "round": statistics.median(rounds) if rounds else float("inf"),
            "rounds": len(rounds),
            "per_min": per_min,
            "notice": statistics.median(notice),
            "notice_max": max(notice),
        }
    finally:
        if m is not None:
            try:
                m.unmount()
            finally:
                m.cleanup()
        if proxy is not None:
            proxy.stop()
        srv.cleanup()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--folders", type=int, default=1000)
    ap.add_argument("--poll", type=int, default=10)
    ap.add_argument("--window", type=float, default=60)
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--settle", type=float, default=None,
                    help="seconds between the visits and the measurements (default 2 x poll; "
                    "330: the folders are no longer used recently)")
    ap.add_argument("--bin", default=os.environ.get("IMAPFS_BIN") or
                    os.path.join(SRC, "build", "fs", "imapfs"))
    ap.add_argument("--label", default="this")
    ap.add_argument("--delays", default="0,0.01")
    ap.add_argument("--variants", default="plain,liststatus")
    a = ap.parse_args()
    print("| build | server | RTT | folders | poll | round (s) | commands/min | notice median "
          "(s) | notice max (s) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for variant in a.variants.split(","):
        for delay in (float(x) for x in a.delays.split(",")):
            r = run(os.path.abspath(a.bin), variant, delay, a)
            print("| %s | %s | %d ms | %d | %d | %.3f (%d rounds) | %.0f | %.1f | %.1f |" % (
                a.label + (" (settle %.0f s)" % a.settle if a.settle else ""), variant, round(2000 * delay), a.folders, a.poll, r["round"],
                r["rounds"], r["per_min"], r["notice"], r["notice_max"]), flush=True)


if __name__ == "__main__":
    main()
