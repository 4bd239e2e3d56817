#!/usr/bin/python3
"""Writes are never repeated blindly (issue 7, finding 5).

A proxy holds back what the server answers (the server→client direction only), so a
command reaches Dovecot and is carried out, but imapfs never hears the answer; then every
connection is dropped. Before the fix, imapfs took the quick failure on a reused
connection for "the server closed it while idle" and ran the command again: cp left two
copies, mkdir answered EEXIST for a folder it had just made. Now a change that may have
reached the server is checked with the server, never repeated: cp and mkdir succeed
(the server has exactly one copy) or fail, and never duplicate.

A connection that the server closed while it sat idle is still replaced without the
caller noticing, for writes too: imapfs sees the closed socket before it sends."""

import os
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tap  # noqa: E402
import common as C  # noqa: E402
from common import D, I, G, sh, wait_for  # noqa: E402
from proxy import Proxy  # noqa: E402

TIMEOUT = 10

SRV = None
PROXY = None
M = None
TMP = None


class HoldDownProxy(Proxy):
    """Proxy that can hold back the server's answers (server→client) while the client's
    commands still reach the server."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.down_ok = threading.Event()
        self.down_ok.set()

    def hold_down(self):
        self.down_ok.clear()

    def release_down(self):
        self.down_ok.set()

    def _pump(self, conn, src, dst, direction):
        try:
            while not conn.closed.is_set():
                try:
                    data = src.recv(16 * 1024)
                except OSError:
                    break
                if not data:
                    break
                if direction == "down":
                    while not self.down_ok.wait(0.05):
                        if conn.closed.is_set():
                            return
                if conn.closed.is_set():
                    return
                try:
                    dst.sendall(data)
                except OSError:
                    break
        finally:
            conn.close()
            with self.lock:
                self.conns.discard(conn)


def setUpModule():
    global SRV, PROXY, M, TMP
    I.check_bin()
    TMP = tempfile.mkdtemp(prefix="itr", dir="/tmp")
    try:
        SRV = D.Dovecot()
        SRV.start()
        c = SRV.client()
        c.create("Work")
        G.multiappend(c, "Work", G.bulk_messages(3, "Work"))
        c.logout()
        PROXY = HoldDownProxy(SRV.imaps_port).start()
        M = C.mount_of(SRV, PROXY.port, timeout=TIMEOUT)
        M.mount(foreground=True, debug=True)
    except Exception:
        tearDownModule(cleanup_only=True)
        raise


def tearDownModule(cleanup_only=False):
    C.teardown([M], servers=[SRV], proxy=PROXY, tmp=TMP, unmount=not cleanup_only,
               before=lambda: PROXY and PROXY.release_down())


def count_msgid(mailbox, msgid):
    c = SRV.client()
    try:
        c.select('"%s"' % mailbox, readonly=True)
        typ, data = c.uid("SEARCH", None, "HEADER", "Message-ID", msgid)
        return len(data[0].split()) if typ == "OK" and data and data[0] else 0
    finally:
        c.logout()


def server_folders():
    c = SRV.client()
    try:
        return C.mailbox_names(c)
    finally:
        c.logout()


def log_tail():
    return "\n--- imapfs log (tail) ---\n" + M.read_log()[-4000:]


class Result:
    def __init__(self):
        self.proc = None
        self.exc = None


def in_thread(argv):
    res = Result()

    def run():
        try:
            res.proc = sh(argv, timeout=6 * TIMEOUT)
        except Exception as e:  # noqa: BLE001
            res.exc = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, res


class LostAnswer(unittest.TestCase):
    """The server carries out the command; its answer is lost with the connection."""

    def setUp(self):
        # Warm: the sessions are reused ones, as in daily use.
        os.listdir(os.path.join(M.mp, "Work"))
        os.listdir(M.mp)

    def tearDown(self):
        PROXY.release_down()

    def lose_answer(self, argv, done_on_server):
        PROXY.hold_down()
        t, res = in_thread(argv)
        try:
            wait_for(done_on_server, 15, what="the server to carry out the command")
        finally:
            PROXY.drop()
            PROXY.release_down()
        t.join(6 * TIMEOUT)
        self.assertFalse(t.is_alive(), "the call hung")
        if res.exc:
            raise res.exc
        return res.proc

    def test_cp_is_not_appended_twice(self):
        key = "lost-append-%d" % os.getpid()
        mid = "<%s@mailgen.example>" % key
        src = os.path.join(TMP, "lost.eml")
        with open(src, "wb") as f:
            f.write(G.simple(key, "Lost answer", "Mon, 04 Mar 2024 10:00:00 +0000",
                             "body\r\n" * 100))
        p = self.lose_answer(["cp", src, os.path.join(M.mp, "Work", "new.eml")],
                             lambda: count_msgid("Work", mid) >= 1)
        n = count_msgid("Work", mid)
        self.assertEqual(n, 1, "the server holds %d copies of a message copied once%s"
                         % (n, log_tail()))
        # The server has it: cp must say so.
        self.assertEqual(p.returncode, 0, "cp failed although the server has the message: %s%s"
                         % (p.stderr.decode(errors="replace"), log_tail()))

    def test_mkdir_is_not_repeated(self):
        name = "Made%d" % os.getpid()
        p = self.lose_answer(["mkdir", os.path.join(M.mp, name)],
                             lambda: name in server_folders())
        err = p.stderr.decode(errors="replace")
        self.assertNotIn("File exists", err, "mkdir ran CREATE twice%s" % log_tail())
        self.assertEqual(p.returncode, 0, "mkdir failed although the server made it: %s%s"
                         % (err, log_tail()))
        wait_for(lambda: os.path.isdir(os.path.join(M.mp, name)), 10,
                 what="the new folder to show")
        self.assertEqual(M.read_log().count('CREATE "%s"' % name) +
                         M.read_log().count("CREATE %s\r" % name), 1,
                         "CREATE was sent more than once%s" % log_tail())


class IdleClose(unittest.TestCase):
    """A connection the server closed while idle is replaced before a write is sent."""

    def test_write_after_idle_close(self):
        os.listdir(os.path.join(M.mp, "Work"))
        PROXY.drop()  # on loopback, the FIN is in imapfs's sockets when drop() returns
        name = "AfterDrop%d" % os.getpid()
        t0 = time.monotonic()
        p = sh(["mkdir", os.path.join(M.mp, name)], timeout=6 * TIMEOUT)
        self.assertEqual(p.returncode, 0, "mkdir on a fresh connection failed: %s%s"
                         % (p.stderr.decode(errors="replace"), log_tail()))
        self.assertLess(time.monotonic() - t0, TIMEOUT, "mkdir waited for a timeout")
        self.assertIn(name, server_folders())


if __name__ == "__main__":
    tap.main()
