#!/usr/bin/python3
"""APPEND that doesn't go through (issue 3): a quota that is full ([OVERQUOTA] → EDQUOT),
a message larger than the server takes ([LIMIT]), the server stopped, a connection that
stalls in the middle of the APPEND literal (-o timeout=5), and the server killed in the
middle of it. Each time: close() — and so cp — fails, in time, with the right error; the
server has nothing new, in particular no partial message (checked with imaplib on its
own connection, not through the proxy); and the same mount copies the next file.

Quotas: Dovecot's quota plugin with the count backend (dovecot.py quota=True); user
"full" has storage=100K and quota_max_mail_size=40K (userdb extra fields)."""

import errno
import os
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tap  # noqa: E402
import common as C  # noqa: E402
from common import D, I, G, sh, mount_files, errno_of, ename, wait_for  # noqa: E402
from proxy import Proxy  # noqa: E402

TIMEOUT = 5      # -o timeout=
LIMIT = 15.0     # a failing close must return within this many seconds
RECOVER = 30.0   # after the fault is gone, a copy must work again within this

SRV = None
PROXY = None
M = None         # alice, through the proxy
MF = None        # full, direct
TMP = None


class TripProxy(Proxy):
    """Proxy that stalls (both ways) as soon as a given number of further client→server
    bytes has passed: the connection then hangs in the middle of what the client sends."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.trip_at = None
        self.tripped = threading.Event()

    def trip_after(self, n):
        with self.lock:
            self.trip_at = self.up + n
            self.tripped.clear()

    def _pump(self, conn, src, dst, direction):
        try:
            while not conn.closed.is_set():
                try:
                    data = src.recv(16 * 1024)
                except OSError:
                    break
                if not data:
                    break
                while data:
                    while not self.flowing.wait(0.05):
                        if conn.closed.is_set():
                            return
                    if conn.closed.is_set():
                        return
                    part = data
                    trip = False
                    with self.lock:
                        if direction == "up" and self.trip_at is not None:
                            room = self.trip_at - self.up
                            if room <= len(data):
                                part = data[:max(room, 0)]
                                trip = True
                    try:
                        if part:
                            dst.sendall(part)
                    except OSError:
                        return
                    with self.lock:
                        if direction == "up":
                            self.up += len(part)
                        else:
                            self.down += len(part)
                        if trip:
                            self.trip_at = None
                            self.flowing.clear()
                            self.tripped.set()
                    data = data[len(part):]
        finally:
            conn.close()
            with self.lock:
                self.conns.discard(conn)


def setUpModule():
    global SRV, PROXY, M, MF, TMP
    I.check_bin()
    TMP = tempfile.mkdtemp(prefix="ita", dir="/tmp")
    try:
        SRV = D.Dovecot(quota=True)
        SRV.add_user("full", "full-pw", extra="userdb_quota_rule=*:storage=100K "
                                              "userdb_quota_max_mail_size=40K")
        SRV.start()
        c = SRV.client()
        for name in ("Drop", "Stall", "Kill"):
            c.create(name)
        G.multiappend(c, "Drop", G.bulk_messages(3, "Drop"))
        c.logout()
        c = SRV.client("full")
        # 3 × 25 KB: about 76 KB of 100 KB used
        for i in range(3):
            D.append(c, "INBOX", message(25000, "fill-%d" % i))
        c.logout()
        PROXY = TripProxy(SRV.imaps_port).start()
        M = C.mount_of(SRV, PROXY.port, timeout=TIMEOUT)
        M.mount(foreground=True)
        MF = I.Mount("imaps://full@127.0.0.1:%d" % SRV.imaps_port,
                     opts={"cafile": SRV.cafile, "password_file": SRV.password_file_for("full"),
                           "timeout": TIMEOUT})
        MF.mount(foreground=True)
    except Exception:
        tearDownModule(cleanup_only=True)
        raise


def tearDownModule(cleanup_only=False):
    def release():
        if PROXY:
            PROXY.resume()
        if SRV and not SRV.started and not cleanup_only:
            SRV.start()
    C.teardown([M, MF], servers=[SRV], proxy=PROXY, tmp=TMP, unmount=not cleanup_only,
               before=release)


_n = [0]


def message(size, key=None):
    """A CRLF message of about size bytes with a unique body."""
    _n[0] += 1
    key = key or "fault-%d" % _n[0]
    head = G.simple(key, "Append fault %s" % key, "Mon, 04 Mar 2024 10:00:00 +0000", "")
    line = b"%s filler line to make the message bigger, 0123456789\r\n" % key.encode()
    return head + line * max(1, (size - len(head)) // len(line))


def local(data, name=None):
    d = tempfile.mkdtemp(dir=TMP)
    p = os.path.join(d, name or "msg.eml")
    with open(p, "wb") as f:
        f.write(data)
    return p


def server(user, mailbox):
    return C.server_messages(SRV, mailbox, bodies=True, user=user)


def timed(argv, timeout=120):
    t = time.monotonic()
    try:
        r = sh(argv, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, time.monotonic() - t
    return r, time.monotonic() - t


def log_tail(m):
    return "\n--- imapfs log (tail) ---\n" + m.read_log()[-3000:]


class Base(unittest.TestCase):
    def tearDown(self):
        PROXY.resume()
        if not SRV.started:
            SRV.start()

    def assert_unchanged(self, user, mailbox, before):
        meta, bodies = server(user, mailbox)
        self.assertEqual(set(meta), set(before[0]), "the server has new (or lost) messages in %s: %r" % (
            mailbox, {u: meta[u]["size"] for u in set(meta) ^ set(before[0]) if u in meta}))
        self.assertEqual(bodies, before[1])

    def assert_copies_again(self, m, mailbox, user=None, deadline=RECOVER):
        """The same mount copies a new message into mailbox (retrying while it recovers);
        exactly that message arrives, once, and is listed under its regular name."""
        before = server(user, mailbox)
        data = message(3000)
        end = time.monotonic() + deadline
        errors = []
        while True:
            r = sh(["cp", local(data, "again.eml"), os.path.join(m.mp, mailbox) + "/"], timeout=60)
            if r.returncode == 0:
                break
            errors.append(r.stderr.decode(errors="replace").strip())
            if time.monotonic() > end:
                self.fail("cp still fails %.0fs after the fault: %r" % (deadline, errors[-3:]) + log_tail(m))
            time.sleep(0.2)
        meta, bodies = server(user, mailbox)
        new = {u: b for u, b in bodies.items() if u not in before[0]}
        self.assertEqual(list(new.values()), [data],
                         "after %d failed attempts, %d new messages arrived" % (len(errors), len(new)))
        files = mount_files(os.path.join(m.mp, mailbox))
        self.assertEqual(set(files), set(meta))
        self.assertTrue(I.is_mounted(m.mp))
        return errors


class TestRefused(Base):
    """The server answers NO to the APPEND."""

    def test_over_quota_cp_fails_with_edquot(self):
        before = server("full", "INBOX")
        r = sh(["cp", local(message(30000), "big.eml"), os.path.join(MF.mp, "INBOX") + "/"])
        self.assertNotEqual(r.returncode, 0, "cp succeeded over quota")
        self.assertIn(b"Disk quota exceeded", r.stderr, "not EDQUOT: %r" % r.stderr + log_tail(MF))
        self.assert_unchanged("full", "INBOX", before)
        self.assertEqual(set(mount_files(os.path.join(MF.mp, "INBOX"))), set(before[0]))
        self.assert_copies_again(MF, "INBOX", "full", deadline=0)

    def test_over_quota_close_returns_edquot(self):
        before = server("full", "INBOX")
        path = os.path.join(MF.mp, "INBOX", "direct.eml")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(fd, message(30000))
        e = errno_of(lambda: os.close(fd))
        self.assertEqual(e, errno.EDQUOT, "close() over quota: %s" % ename(e))
        self.assert_unchanged("full", "INBOX", before)

    def test_too_large_cp_fails(self):
        before = server("full", "INBOX")
        r = sh(["cp", local(message(45000), "huge.eml"), os.path.join(MF.mp, "INBOX") + "/"])
        self.assertNotEqual(r.returncode, 0, "cp of a message over quota_max_mail_size succeeded")
        self.assertTrue(b"File too large" in r.stderr or b"Input/output error" in r.stderr,
                        "[LIMIT] should give EFBIG (or EIO): %r" % r.stderr)
        sys.stdout.write("# [LIMIT]: %s\n" % r.stderr.decode(errors="replace").strip())
        self.assert_unchanged("full", "INBOX", before)
        self.assert_copies_again(MF, "INBOX", "full", deadline=0)


class TestServerFaults(Base):
    """The server goes away, or the connection stalls, while the file is appended."""

    def test_server_stopped(self):
        before = server(None, "Drop")
        mount_files(os.path.join(M.mp, "Drop"))
        SRV.stop()
        r, secs = timed(["cp", local(message(5000)), os.path.join(M.mp, "Drop") + "/"])
        self.assertIsNotNone(r, "cp still blocked after 120 s" + log_tail(M))
        self.assertNotEqual(r.returncode, 0, "cp succeeded with the server stopped")
        # EIO when close() finds the server gone; EROFS when imapfs already knew it was
        # offline (issue 4: changes while the server can't be reached are EROFS).
        self.assertTrue(b"Input/output error" in r.stderr or b"Read-only file system" in r.stderr,
                        "want EIO or EROFS: %r" % r.stderr)
        self.assertLess(secs, LIMIT, "cp failed only after %.1fs (timeout=%d)" % (secs, TIMEOUT))
        self.assertTrue(I.is_mounted(M.mp))
        SRV.start()
        self.assert_unchanged(None, "Drop", before)
        self.assert_copies_again(M, "Drop")

    def start_stalled_cp(self, mailbox, size):
        """cp of a size-byte message that stalls after 1 MB of it went out."""
        data = message(size)
        mount_files(os.path.join(M.mp, mailbox))
        src = local(data, "stalled.eml")
        PROXY.trip_after(1024 * 1024)
        t = time.monotonic()
        p = subprocess.Popen(["cp", src, os.path.join(M.mp, mailbox) + "/"], stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
        try:
            wait_for(lambda: PROXY.tripped.is_set() or p.poll() is not None, 60, what="the APPEND under way")
        except TimeoutError:
            p.kill()
            p.wait()
            raise
        return p, t

    def test_stall_in_the_middle_of_append(self):
        before = server(None, "Stall")
        p, t = self.start_stalled_cp("Stall", 8 * 1024 * 1024)
        try:
            self.assertTrue(PROXY.tripped.is_set(), "cp ended before 1 MB went out: the stall proves nothing")
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                self.fail("cp still blocked 60 s into a stalled APPEND" + log_tail(M))
            secs = time.monotonic() - t
            err = p.stderr.read()
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
            p.stderr.close()
        self.assertNotEqual(p.returncode, 0, "cp succeeded although the APPEND stalled")
        self.assertIn(b"Input/output error", err)
        self.assertLess(secs, LIMIT, "cp failed only after %.1fs (timeout=%d)" % (secs, TIMEOUT) + log_tail(M))
        # throw away what the proxy held back: the server only ever got part of the literal
        PROXY.drop()
        PROXY.resume()
        self.assert_unchanged(None, "Stall", before)
        self.assert_copies_again(M, "Stall")

    def test_server_killed_in_the_middle_of_append(self):
        before = server(None, "Kill")
        p, t = self.start_stalled_cp("Kill", 8 * 1024 * 1024)
        try:
            self.assertTrue(PROXY.tripped.is_set(), "cp ended before 1 MB went out")
            t = time.monotonic()
            SRV.stop()  # the server goes away while the literal is half sent
            PROXY.drop()  # and so does the connection (the proxy would hold it while stalled)
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                self.fail("cp still blocked 60 s after the server stopped" + log_tail(M))
            secs = time.monotonic() - t
            err = p.stderr.read()
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
            p.stderr.close()
        self.assertNotEqual(p.returncode, 0, "cp succeeded although the server died")
        self.assertIn(b"Input/output error", err)
        self.assertLess(secs, LIMIT, "cp failed %.1fs after the server stopped" % secs + log_tail(M))
        PROXY.resume()
        SRV.start()
        self.assert_unchanged(None, "Kill", before)
        self.assert_copies_again(M, "Kill")


if __name__ == "__main__":
    tap.main()
