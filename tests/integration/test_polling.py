#!/usr/bin/python3
"""Live sync without NOTIFY at scale (issue 18): a poll round costs about two round trips,
however many folders have been visited.

Two Dovecots whose `imap_capability` hides NOTIFY (as Gmail, Microsoft 365, iCloud, Yahoo):
"plain" also hides LIST-STATUS (as Microsoft 365 and Yahoo), "liststatus" keeps it. Each has
N folders, all visited on the mount with `ls` (the last one visited is the watched folder,
IDLE covers it). Then, through a proxy that delays every chunk by DELAY seconds:

- test_round: Dovecot's rawlog (timestamped, what each session read) between two
  consecutive poll rounds. "plain": one `LIST` and exactly one `STATUS` of each visited
  folder but the watched one, and those STATUS commands arrive together (pipelined: their
  timestamps span less than PIPELINED_SPAN, where one after another would take at least
  N round trips of 2 × DELAY). "liststatus": one `LIST ... RETURN (... STATUS (...))` and no
  `STATUS` at all. Over several rounds no folder is asked about more than once a round.
- TestThrottled (plain IMAP through a rewriting proxy, `poll=1`, 20 visited folders):
  while the proxy answers every STATUS with Microsoft's "NO Request is throttled. Suggested
  Backoff Time: 3000 milliseconds", rounds come at least 3 s apart and less often each
  time, the log has one line about it, and no folder's failure is logged; once the proxy
  stops, rounds come back to the poll interval.
- test_notice: another client (imaplib, straight to Dovecot) appends a message to a visited
  folder that is not the watched one; the mount must re-list that folder (its `SELECT` in
  the rawlog) within POLL + 2 s, without anything touching the mount meanwhile; `ls` then
  shows the message.

Run: IMAPFS_BIN=build/fs/imapfs IMAPFS_SRC=$PWD /usr/bin/python3 tests/integration/test_polling.py"""

import os
import re
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tap  # noqa: E402
import common as C  # noqa: E402
import proxy as P  # noqa: E402
from common import D, I, G  # noqa: E402

N = 200
POLL = 2
DELAY = 0.02          # each chunk forwarded 20 ms later: a round trip is at least 40 ms
PIPELINED_SPAN = 2.0  # one STATUS after another would take >= N x 2 x DELAY = 8 s
NOTICE_WINDOW = POLL + 2.0
FOLDERS = ["F%03d" % i for i in range(N)]
DATE_HDR = "Fri, 01 Mar 2024 10:00:00 +0000"

# What Dovecot 2.3 offers after login (as in test_events.py).
CAPS = ("IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT SORT=DISPLAY THREAD=REFERENCES "
        "THREAD=REFS THREAD=ORDEREDSUBJECT MULTIAPPEND URL-PARTIAL CATENATE UNSELECT CHILDREN "
        "NAMESPACE UIDPLUS LIST-EXTENDED I18NLEVEL=1 CONDSTORE QRESYNC ESEARCH ESORT SEARCHRES "
        "WITHIN CONTEXT=SEARCH LIST-STATUS BINARY MOVE SNIPPET=FUZZY PREVIEW=FUZZY PREVIEW "
        "STATUS=SIZE SAVEDATE LITERAL+ NOTIFY")
VARIANTS = {
    "plain": ("NOTIFY", "LIST-STATUS"),
    "liststatus": ("NOTIFY",),
}

THROTTLE_FOLDERS = ["T%03d" % i for i in range(20)]
SUGGESTED_S = 3.0
THROTTLE_TEXT = b"NO Request is throttled. Suggested Backoff Time: 3000 milliseconds"

SRV = {}
TS_LINE = re.compile(r"^(\d+\.\d+) (\S+) (.*)$")


def diag(text):
    """A TAP comment line (figures for the report)."""
    sys.stdout.write("# " + text + "\n")
    sys.stdout.flush()


def caps_without(drop):
    return " ".join(c for c in CAPS.split() if c not in drop)


def setUpModule():
    I.check_bin()
    try:
        for v, drop in VARIANTS.items():
            srv = D.Dovecot(rawlog=True, extra_conf="protocol imap {\n  imap_capability = %s\n}\n"
                            % caps_without(drop))
            SRV[v] = srv
            srv.start()
            c = srv.client()
            for f in FOLDERS:
                typ, data = c.create(f)
                assert typ == "OK", data
            c.logout()
        # Plain IMAP (no TLS) so that the proxy can rewrite answers.
        srv = D.Dovecot(ssl=False, extra_conf="protocol imap {\n  imap_capability = %s\n}\n"
                        % caps_without(VARIANTS["plain"]))
        SRV["throttle"] = srv
        srv.start()
        c = srv.client()
        for f in THROTTLE_FOLDERS:
            typ, data = c.create(f)
            assert typ == "OK", data
        c.logout()
    except Exception:
        tearDownModule()
        raise


def tearDownModule():
    for s in SRV.values():
        s.cleanup()


def rawlog_commands(srv, since):
    """(timestamp, session file, command line without tag) of every command Dovecot read
    at or after the wall-clock time since, in time order."""
    out = []
    d = srv.rawlog_dir()
    for f in os.listdir(d):
        if not f.endswith(".in"):
            continue
        with open(os.path.join(d, f), "rb") as fh:
            text = fh.read().decode("utf-8", "replace")
        for line in text.split("\n"):
            m = TS_LINE.match(line.rstrip("\r"))
            if m and float(m.group(1)) >= since:
                out.append((float(m.group(1)), f, m.group(3)))
    out.sort()
    return out


def is_round_list(cmd):
    return cmd.startswith('LIST "" "*"')


class Base(unittest.TestCase):
    variant = None

    @classmethod
    def setUpClass(cls):
        srv = SRV[cls.variant]
        cls.proxy = P.Proxy(srv.imaps_port).start()
        cls.m = I.Mount("imaps://%s@127.0.0.1:%d" % (srv.user, cls.proxy.port),
                        opts={"cafile": srv.cafile, "password_file": srv.password_file,
                              "poll": POLL, "cache": "no"})
        try:
            cls.m.mount(foreground=True, debug=bool(os.environ.get("POLLING_DEBUG")))
            for f in FOLDERS:  # visited: each is listed, and counts as used
                os.listdir(os.path.join(cls.m.mp, f))
            cls.watched = FOLDERS[-1]  # the folder opened last is watched with IDLE
            cls.proxy.set_delay(DELAY)
        except Exception:
            cls.m.cleanup()
            cls.proxy.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        if os.environ.get("POLLING_DEBUG"):
            with open("/tmp/polling-%s.log" % cls.variant, "w") as f:
                f.write(cls.m.read_log())
        try:
            cls.m.unmount()
        finally:
            cls.m.cleanup()
            cls.proxy.stop()

    @property
    def srv(self):
        return SRV[self.variant]

    def rounds(self, since, count, timeout):
        """Waits until `count` poll rounds began after since; returns the rawlog commands
        and the start times of the rounds."""
        def got():
            cmds = rawlog_commands(self.srv, since)
            starts = [t for t, _, c in cmds if is_round_list(c)]
            return (cmds, starts) if len(starts) >= count else None
        return C.wait_for(got, timeout, 0.2, "%d poll rounds" % count)

    def test_round(self):
        t0 = time.time()
        cmds, starts = self.rounds(t0, 5, 5 * POLL * 3 + 10)
        watched = self.watched
        per_round = []
        for k in range(1, 4):  # the first round may have begun before t0
            lo, hi = starts[k], starts[k + 1]
            inside = [(t, f, c) for t, f, c in cmds if lo <= t < hi]
            status = [(t, c) for t, _, c in inside if c.startswith("STATUS ")]
            lists = [c for _, _, c in inside if is_round_list(c)]
            per_round.append(len(inside))
            diag("%s round %d: %d commands (%d STATUS) in %.2f s: %s" % (
                self.variant, k, len(inside), len(status), hi - lo,
                sorted(set(c.split(" ", 1)[0] for _, _, c in inside))))
            self.assertEqual(len(lists), 1, lists)
            names = [re.match(r'STATUS "?([^" ]+)"? ', c).group(1) for _, c in status]
            # Never a folder twice in a round.
            self.assertEqual(len(names), len(set(names)), names)
            if self.variant == "liststatus":
                self.assertIn("STATUS (", lists[0])
                self.assertEqual(status, [])
                self.assertLessEqual(len(inside), 4, inside)
            else:
                self.assertEqual(sorted(names), [f for f in FOLDERS if f != watched])
                span = status[-1][0] - status[0][0]
                diag("%s round %d: the STATUS commands arrived within %.3f s" % (
                    self.variant, k, span))
                self.assertLess(span, PIPELINED_SPAN)
                self.assertLessEqual(len(inside), N + 4, [c for _, _, c in inside
                                                          if not c.startswith("STATUS ")])

    def test_notice(self):
        folder = FOLDERS[0]  # visited first: no connection has it selected any more
        raw = G.simple("poll-%s" % self.variant, "Polled %s" % self.variant, DATE_HDR,
                       b"hello\r\n")
        c = self.srv.client()
        t0 = time.time()
        uid = D.append(c, folder, raw)
        c.logout()
        want = 'SELECT "%s"' % folder

        def seen():
            return [t for t, _, cmd in rawlog_commands(self.srv, t0) if cmd.startswith(want)]
        try:
            t = C.wait_for(seen, NOTICE_WINDOW + 3, 0.05, "the mount re-lists %s" % folder)[0]
        except TimeoutError:
            self.fail("no %s within %.0f s\n--- log tail ---\n%s" % (
                want, NOTICE_WINDOW + 3, self.m.read_log()[-3000:]))
        diag("%s: a message appended elsewhere was noticed after %.2f s (poll=%d)"
                 % (self.variant, t - t0, POLL))
        self.assertLessEqual(t - t0, NOTICE_WINDOW)
        names = os.listdir(os.path.join(self.m.mp, folder))
        type(self).watched = folder
        self.assertTrue(any(n.endswith("[%d].eml" % uid) for n in names), names)


class ThrottleProxy(P.Proxy):
    """Proxy (plain IMAP) that notes when each STATUS command passes and, while
    self.throttle is set, answers them as Microsoft 365 does when it throttles."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.throttle = False
        self.statuses = []  # monotonic times of STATUS commands
        self.tags = set()

    def _pump(self, conn, src, dst, direction):
        buf = b""
        try:
            while not conn.closed.is_set():
                try:
                    data = src.recv(65536)
                except OSError:
                    break
                if not data:
                    break
                buf += data
                out = b""
                while b"\r\n" in buf:
                    line, buf = buf.split(b"\r\n", 1)
                    out += self._line(line, direction) + b"\r\n"
                if direction == "up":  # never hold the client's bytes (literals)
                    out += buf
                    buf = b""
                try:
                    if out:
                        dst.sendall(out)
                except OSError:
                    break
        finally:
            conn.close()
            with self.lock:
                self.conns.discard(conn)

    def _line(self, line, direction):
        with self.lock:
            if direction == "up":
                m = re.match(rb"^(\S+) STATUS ", line)
                if m:
                    self.statuses.append(time.monotonic())
                    if self.throttle:
                        self.tags.add(m.group(1))
                return line
            if self.throttle and line.startswith(b"* STATUS "):
                return b"* OK dropped"
            tag = line.split(b" ", 1)[0]
            if tag in self.tags:
                self.tags.discard(tag)
                return tag + b" " + THROTTLE_TEXT
            return line


def bursts(times, gap=0.5):
    """Groups times (sorted) into rounds: a new one after a pause longer than gap."""
    out = []
    for t in times:
        if not out or t - out[-1][-1] > gap:
            out.append([t])
        else:
            out[-1].append(t)
    return out


class TestThrottled(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        srv = SRV["throttle"]
        cls.proxy = ThrottleProxy(srv.imap_port).start()
        cls.m = I.Mount("imap://%s@127.0.0.1:%d" % (srv.user, cls.proxy.port),
                        opts={"password_file": srv.password_file, "allow_plaintext": None,
                              "poll": 1, "cache": "no"})
        try:
            cls.m.mount(foreground=True, debug=True)
            for f in THROTTLE_FOLDERS:
                os.listdir(os.path.join(cls.m.mp, f))
        except Exception:
            cls.m.cleanup()
            cls.proxy.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            cls.m.unmount()
        finally:
            cls.m.cleanup()
            cls.proxy.stop()

    def since(self, t):
        with self.proxy.lock:
            return [u for u in self.proxy.statuses if u >= t]

    def test_throttled_rounds_slow_down(self):
        n = len(THROTTLE_FOLDERS) - 1  # the watched folder is not polled
        t = time.monotonic()
        C.wait_for(lambda: len(self.since(t)) >= 2 * n, 15, 0.1, "two normal rounds")
        with self.proxy.lock:
            self.proxy.throttle = True
        t0 = time.monotonic()
        time.sleep(12)
        with self.proxy.lock:
            self.proxy.throttle = False
        t1 = time.monotonic()
        b = bursts(self.since(t0))
        starts = [x[0] for x in b]
        gaps = [y - x for x, y in zip(starts, starts[1:])]
        diag("throttled for 12 s with poll=1: %d rounds, %s s apart"
             % (len(b), ", ".join("%.1f" % g for g in gaps)))
        # Unthrottled, 12 s would hold about 11 rounds.
        self.assertGreaterEqual(len(b), 1)
        self.assertLessEqual(len(b), 4, starts)
        for g in gaps:
            self.assertGreaterEqual(g, SUGGESTED_S - 0.2, gaps)
        self.assertEqual(sorted(gaps), gaps, "the wait does not grow while throttled")
        log = self.m.read_log().splitlines()
        slow = [l for l in log if "asks us to slow down" in l]
        self.assertEqual(len(slow), 1, slow)
        self.assertEqual([l for l in log if "STATUS failed" in l], [])
        # The server answers again: back to one round a poll interval.
        C.wait_for(lambda: len(bursts(self.since(t1))) >= 3, 16 + SUGGESTED_S + 10, 0.2,
                   "rounds at the poll interval again")
        b = bursts(self.since(t1))
        again = [y[0] - x[0] for x, y in zip(b[1:], b[2:])]
        diag("after the throttling: rounds %s s apart" % ", ".join("%.1f" % g for g in again))
        self.assertTrue(all(g < 2.5 for g in again), again)


class TestPlain(Base):
    variant = "plain"


class TestListStatus(Base):
    variant = "liststatus"


del Base  # only its subclasses are tests

if __name__ == "__main__":
    tap.main()
