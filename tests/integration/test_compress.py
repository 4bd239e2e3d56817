#!/usr/bin/python3
"""COMPRESS=DEFLATE (RFC 4978, issue 11): against a Dovecot with its imap_zlib plugin.

- test_compressed: `-o compress=yes` sends `COMPRESS DEFLATE` right after login on every
  session (Dovecot's rawlog, which records what its imap process read: the command in clear,
  then only compressed bytes), logs that it is on, and reading (every message against
  imaplib's BODY[]), copying in and moving work; the bytes that went through a counting proxy
  are far fewer than the message bytes read.
- test_compress_no: `-o compress=no` never sends COMPRESS; the same reads then move at least
  the message bytes.
- test_auto_fast_link: the default (compress=auto) over loopback never sends COMPRESS: there
  the server's deflate would be the bottleneck, not the link.
- test_auto_slow_link: the default through a proxy limited to 2 MB/s (16 Mbit/s) sends
  COMPRESS once a big answer showed the link slow, on the session that saw it and on the
  others, after commands in clear; the log says so, and every message still reads right.
The two figures are printed as TAP comments (bytes on the wire for `ls -l` + `cat` of N
messages, with and without).
- test_at_most_connections: with `-o connections=2`, reads, listings and live sync at once
  never have more than 2 connections open at the proxy (live sync's is one of them).

Run: IMAPFS_BIN=build/fs/imapfs IMAPFS_SRC=$PWD /usr/bin/python3 tests/integration/test_compress.py"""

import os
import re
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tap  # noqa: E402
import common as C  # noqa: E402
import proxy as P  # noqa: E402
from common import D, I, G  # noqa: E402

N = 300
SRV = None
PROXY = None
MSGS = []


def diag(text):
    sys.stdout.write("# " + text + "\n")
    sys.stdout.flush()


def body(k):
    # Mail-like text: it compresses as mail does, not as a run of one byte.
    lines = ["Line %d of message %d: the quarterly figures for region %d are attached, "
             "see the notes below and reply before Friday." % (i, k, (k * 7 + i) % 13)
             for i in range(60)]
    return "\r\n".join(lines) + "\r\n"


def setUpModule():
    global SRV, PROXY
    I.check_bin()
    SRV = D.Dovecot(compress=True, rawlog=True)
    try:
        SRV.start()
        c = SRV.client()
        G.create_mailboxes(c, ["Box", "Dst", "Side"], [])
        for k in range(N):
            raw = G.simple("z%04d" % k, "Compressible %d" % k, "Fri, 01 Mar 2024 10:00:00 +0000",
                           body(k))
            MSGS.append(G.Msg("z%04d" % k, "Box", raw, "Compressible %d" % k, "2024-03-01",
                              G.datetime.datetime(2024, 3, 1, tzinfo=G.UTC)))
        G.multiappend(c, "Box", MSGS)
        G.multiappend(c, "Side", [G.Msg("s%02d" % k, "Side", G.simple(
            "s%02d" % k, "Side %d" % k, "Fri, 01 Mar 2024 10:00:00 +0000", body(k)), "Side %d" % k,
            "2024-03-01", G.datetime.datetime(2024, 3, 1, tzinfo=G.UTC)) for k in range(50)])
        caps = c.capability()[1][0].decode().upper().split()
        c.logout()
        if "COMPRESS=DEFLATE" not in caps:
            raise RuntimeError("Dovecot with imap_zlib does not offer COMPRESS=DEFLATE: %r" % (caps,))
        PROXY = P.Proxy(SRV.imaps_port).start()
    except Exception:
        tearDownModule()
        raise


def tearDownModule():
    if PROXY is not None:
        PROXY.stop()
    if SRV is not None:
        SRV.cleanup()


def rawlog_files():
    """{file: what the imap process read} for the sessions of imapfs (its tags are A<n>;
    imaplib's, of the checks, are letters)."""
    d = SRV.rawlog_dir()
    out = {}
    for f in sorted(os.listdir(d)):
        if f.endswith(".in"):
            data = open(os.path.join(d, f), "rb").read()
            if re.match(rb"^\d+\.\d+ A\d+ ", data):
                out[f] = data
    return out


class TestCompress(unittest.TestCase):
    def mount(self, opts):
        o = {"cafile": SRV.cafile, "password_file": SRV.password_file}
        o.update(opts)
        m = I.Mount("imaps://%s@127.0.0.1:%d" % (SRV.user, PROXY.port), opts=o)
        self.addCleanup(m.cleanup)
        m.mount(debug=True)
        return m

    def read_all(self, m):
        """ls -l and cat of every message: (bytes down, bytes up, message bytes read)."""
        PROXY.reset()
        box = os.path.join(m.mp, "Box")
        C.sh(["ls", "-l", box], check=True)
        files = C.mount_files(box)
        self.assertEqual(len(files), N)
        read = 0
        c = SRV.client()
        D.select(c, "Box")
        server = D.fetch_bodies(c)
        c.logout()
        for uid, name in files.items():
            data = C.read_file(os.path.join(box, name))
            self.assertEqual(data, server[uid], name)
            read += len(data)
        up, down = PROXY.counts()
        return down, up, read

    def test_compressed(self):
        before = set(rawlog_files())
        m = self.mount({"compress": "yes"})
        down, up, read = self.read_all(m)
        # Writes through the compressed stream: cp in, mv out.
        src = os.path.join(m.workdir, "new.eml")
        with open(src, "wb") as f:
            f.write(G.simple("znew", "Copied in", "Fri, 01 Mar 2024 11:00:00 +0000", body(9999)))
        C.sh(["cp", src, os.path.join(m.mp, "Box")], check=True)
        name = sorted(C.mount_files(os.path.join(m.mp, "Box")).values())[0]
        C.sh(["mv", os.path.join(m.mp, "Box", name), os.path.join(m.mp, "Dst")], check=True)
        c = SRV.client()
        self.assertEqual(D.select(c, "Dst"), 1)
        self.assertEqual(D.select(c, "Box"), N)
        typ, data = c.uid("SEARCH", None, "SUBJECT", '"Copied in"')
        self.assertTrue(data[0].split(), "the copied message is not on the server")
        c.logout()
        m.unmount()
        sessions = {f: d for f, d in rawlog_files().items() if f not in before}
        self.assertTrue(sessions, "no rawlog of the mount's sessions")
        for f, data in sessions.items():
            self.assertIn(b"COMPRESS DEFLATE\r\n", data, f)
            # After COMPRESS the imap process read no command in clear.
            after = data.split(b"COMPRESS DEFLATE\r\n", 1)[1]
            self.assertNotIn(b"UID FETCH", after, f)
            self.assertNotIn(b"SELECT", after, f)
        self.assertIn("COMPRESS=DEFLATE on", m.read_log())
        diag("compress=yes: ls -l + cat of %d messages (%d bytes read): %d bytes down, %d up"
             % (N, read, down, up))
        self.assertLess(down, read * 0.5, "the wire carried more than half the bytes read")

    def test_compress_no(self):
        before = set(rawlog_files())
        m = self.mount({"compress": "no"})
        down, up, read = self.read_all(m)
        m.unmount()
        sessions = {f: d for f, d in rawlog_files().items() if f not in before}
        self.assertTrue(sessions)
        for f, data in sessions.items():
            self.assertNotIn(b"COMPRESS", data, f)
        self.assertNotIn("COMPRESS=DEFLATE on", m.read_log())
        diag("compress=no: ls -l + cat of %d messages (%d bytes read): %d bytes down, %d up"
             % (N, read, down, up))
        self.assertGreater(down, read)

    def test_auto_fast_link(self):
        before = set(rawlog_files())
        m = self.mount({})
        down, up, read = self.read_all(m)
        m.unmount()
        sessions = {f: d for f, d in rawlog_files().items() if f not in before}
        self.assertTrue(sessions)
        # The read-ahead's answers were big enough to measure the link.
        seen = re.findall(r"link brought (\d+) kB in (\d+) ms", m.read_log())
        self.assertTrue(seen, "no answer was big enough to measure the link")
        diag("compress=auto over loopback: answers of %s" % ", ".join(
            "%s kB in %s ms" % x for x in seen))
        # A machine loaded enough to bring an answer slower than 8 MB/s even over
        # loopback has measured a slow link, and compressing is then right: only
        # the other case is checked (no COMPRESS sent without a slow answer).
        if any(int(kb) * 1000 < 8 * 1024 * int(ms) for kb, ms in seen):
            diag("a slow answer over loopback (a loaded machine): switching allowed")
            return
        for f, data in sessions.items():
            self.assertNotIn(b"COMPRESS", data, f)
        self.assertGreater(down, read)

    def test_auto_slow_link(self):
        before = set(rawlog_files())
        PROXY.set_rate(2 * 1000 * 1000)
        self.addCleanup(PROXY.set_rate, 0)
        m = self.mount({})
        self.read_all(m)
        # Another folder after the switch: its reads go compressed.
        PROXY.reset()
        side = os.path.join(m.mp, "Side")
        read = sum(len(C.read_file(os.path.join(side, n)))
                   for n in C.mount_files(side).values())
        up, down = PROXY.counts()
        m.unmount()
        log = m.read_log()
        self.assertIn("compressing (COMPRESS=DEFLATE", log)
        sessions = {f: d for f, d in rawlog_files().items() if f not in before}
        switched = [f for f, d in sessions.items() if b"COMPRESS DEFLATE\r\n" in d]
        self.assertTrue(switched, "no session turned compression on")
        # The session that measured the link read in clear first (it switches at
        # its next command, if it gets one), and no session read a command in
        # clear after its switch.
        self.assertTrue(any(b"UID FETCH" in d.split(b"COMPRESS DEFLATE\r\n")[0]
                            for d in sessions.values()), "nothing was read in clear first")
        for f in switched:
            after = sessions[f].split(b"COMPRESS DEFLATE\r\n", 1)[1]
            self.assertNotIn(b"UID FETCH", after, f)
        diag("compress=auto at 2 MB/s: the Side folder (%d bytes read) took %d bytes down"
             % (read, down))
        self.assertLess(down, read * 0.6, "Side's reads were not compressed")


class TestConnections(unittest.TestCase):
    """At most `connections` connections, live sync's included (issue 11: big providers
    count every connection of an account)."""

    def test_at_most_connections(self):
        import threading
        o = {"cafile": SRV.cafile, "password_file": SRV.password_file, "connections": "2",
             "compress": "no"}
        m = I.Mount("imaps://%s@127.0.0.1:%d" % (SRV.user, PROXY.port), opts=o)
        self.addCleanup(m.cleanup)
        m.mount()
        peak = [0]
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                peak[0] = max(peak[0], PROXY.open_connections())
                time.sleep(0.005)
        t = threading.Thread(target=sample)
        t.start()
        try:
            # Work in several folders at once: reads (bulk), listings (meta), live sync.
            procs = [subprocess.Popen(["sh", "-c", 'cat "$1"/* >/dev/null', "sh",
                                       os.path.join(m.mp, "Box")]),
                     subprocess.Popen(["ls", "-lR", m.mp], stdout=subprocess.DEVNULL),
                     subprocess.Popen(["sh", "-c", 'cat "$1"/* >/dev/null', "sh",
                                       os.path.join(m.mp, "Side")])]
            for p in procs:
                self.assertEqual(p.wait(120), 0)
            time.sleep(1.0)  # live sync settles on its folder
        finally:
            stop.set()
            t.join()
        m.unmount()
        diag("connections=2: at most %d open at once" % peak[0])
        self.assertGreaterEqual(peak[0], 1)
        self.assertLessEqual(peak[0], 2)


if __name__ == "__main__":
    tap.main()
