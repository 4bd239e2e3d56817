#!/usr/bin/python3
"""Faults: the server stopped in the middle of a read, the server down and back, a
stalled connection, dropped connections, and a slow read next to an `ls` of another
folder. The mount goes through a counting/stalling proxy with -o timeout=5; no call may
wait longer than the deadline, and the same mount must work again afterwards."""

import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tap  # noqa: E402
import common as C  # noqa: E402
from common import D, I, G, sh, mount_files, read_file, wait_for  # noqa: E402
from proxy import Proxy  # noqa: E402

TIMEOUT = 5          # -o timeout=
LIMIT = 10.0         # a failing call must return within this many seconds
RECOVER = 30.0       # after the fault is gone, the mount must work again within this

SRV = None
PROXY = None
M = None
BIG = None           # (uid, size)
INBOX = {}           # uid → name
BODIES = {}
FRESH = []           # INBOX UIDs not read yet (each test reads fresh ones: no cache hits)
OTHER = {}


def setUpModule():
    global SRV, PROXY, M, BIG
    I.check_bin()
    try:
        SRV = D.Dovecot().start()
        c = SRV.client()
        c.create("Big")
        c.create("Other")
        G.multiappend(c, "INBOX", G.bulk_messages(400))
        G.multiappend(c, "Other", G.bulk_messages(30, "Other"))
        big = G.big_message()
        BIG = (D.append(c, "Big", big, [], G._idate(0)), len(big))
        del big
        D.select(c, "INBOX")
        BODIES.update(D.fetch_bodies(c))
        c.logout()
        PROXY = Proxy(SRV.imaps_port).start()
        M = C.mount_of(SRV, PROXY.port, timeout=TIMEOUT)
        M.mount(foreground=True)
        INBOX.update(mount_files(os.path.join(M.mp, "INBOX")))
        # Every 20th message in name order: imapfs reads ahead when files are
        # opened near each other in name order (within 16 names, in any order:
        # cache/ahead.c), so "never read" must also mean "never near one that
        # was read". Never the first or last name either: opened right after a
        # listing, it starts a scan at once (a probing batch of 64).
        names = sorted(INBOX, key=lambda u: INBOX[u].encode())
        FRESH.extend(names[i] for i in range(10, len(names) - 1, 20))
    except Exception:
        tearDownModule(cleanup_only=True)
        raise


def tearDownModule(cleanup_only=False):
    def release():
        if PROXY:
            PROXY.resume()
            PROXY.set_rate(None)
        if SRV and not SRV.started:
            SRV.start()
    C.teardown([M], servers=[SRV], proxy=PROXY, unmount=not cleanup_only,
               before=None if cleanup_only else release)


def fresh():
    uid = FRESH.pop(0)
    return uid, os.path.join(M.mp, "INBOX", INBOX[uid])


def timed_cat(path, timeout=60):
    """(returncode, stdout, stderr, seconds) of `cat path`."""
    t = time.monotonic()
    try:
        r = sh(["cat", path], timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, b"", b"timed out", time.monotonic() - t
    return r.returncode, r.stdout, r.stderr, time.monotonic() - t


def log_tail():
    return "\n--- imapfs log (tail) ---\n" + M.read_log()[-3000:]


class Faults(unittest.TestCase):
    def tearDown(self):
        PROXY.resume()
        PROXY.set_rate(None)
        if not SRV.started:
            SRV.start()

    def assert_mounted_and_alive(self):
        self.assertTrue(I.is_mounted(M.mp), "the mount went away" + log_tail())
        r = sh(["ls", M.mp], timeout=LIMIT + 5)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(b"INBOX", r.stdout)

    def assert_fails_in_time(self, path, what):
        rc, out, err, secs = timed_cat(path)
        self.assertIsNotNone(rc, "%s: cat still blocked after 60 s" % what + log_tail())
        self.assertNotEqual(rc, 0, "%s: read succeeded" % what)
        self.assertIn(b"Input/output error", err, "%s: not EIO: %r" % (what, err))
        self.assertLess(secs, LIMIT, "%s: the error took %.1fs (timeout=%d)" % (what, secs, TIMEOUT) + log_tail())

    def assert_recovers(self, what):
        """Fresh reads work again (the same mount, no remount) within RECOVER seconds."""
        deadline = time.monotonic() + RECOVER
        failures = []
        uid, path = fresh()
        while True:
            rc, out, err, secs = timed_cat(path)
            if rc == 0:
                break
            failures.append(err)
            if time.monotonic() > deadline:
                self.fail("%s: still failing %.0fs later: %r" % (what, RECOVER, failures[-3:]) + log_tail())
            time.sleep(0.2)
        self.assertEqual(out, BODIES[uid], "%s: wrong bytes after recovery" % what)
        uid, path = fresh()
        rc, out, err, secs = timed_cat(path)
        self.assertEqual(rc, 0, "%s: second read after recovery failed: %r" % (what, err))
        self.assertEqual(out, BODIES[uid])
        return failures

    def test_baseline_reads_work(self):
        uid, path = fresh()
        self.assertEqual(read_file(path), BODIES[uid])

    def test_server_stopped_in_the_middle_of_a_read(self):
        files = mount_files(os.path.join(M.mp, "Big"))
        path = os.path.join(M.mp, "Big", files[BIG[0]])
        PROXY.set_rate(2 * 1024 * 1024)  # 25 MB take ~12 s: plenty of time to stop the server mid-read
        PROXY.reset()
        dd = subprocess.Popen(["dd", "if=" + path, "of=/dev/null", "bs=1M"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
        try:
            wait_for(lambda: PROXY.counts()[1] > 1024 * 1024 or dd.poll() is not None, 30,
                     what="the big read to be under way")
            self.assertIsNone(dd.poll(), "the read ended before the server was stopped")
            t = time.monotonic()
            SRV.stop()
            try:
                dd.wait(60)
            except subprocess.TimeoutExpired:
                self.fail("dd still blocked 60 s after the server stopped" + log_tail())
            secs = time.monotonic() - t
            err = dd.stderr.read()
            self.assertNotEqual(dd.returncode, 0, "dd succeeded although the server stopped mid-read")
            self.assertIn(b"Input/output error", err)
            self.assertLess(secs, LIMIT, "the read failed %.1fs after the server stopped" % secs + log_tail())
        finally:
            if dd.poll() is None:
                dd.kill()
                dd.wait()
            dd.stderr.close()
        self.assert_mounted_and_alive()
        PROXY.set_rate(None)
        SRV.start()
        self.assert_recovers("after the server restarted")

    def test_server_down_then_back(self):
        SRV.stop()
        uid, path = fresh()
        self.assert_fails_in_time(path, "server down")
        uid, path = fresh()
        self.assert_fails_in_time(path, "server still down")
        self.assert_mounted_and_alive()
        SRV.start()
        self.assert_recovers("server back")
        self.assert_mounted_and_alive()

    def test_stalled_connection(self):
        PROXY.stall()
        uid, path = fresh()
        self.assert_fails_in_time(path, "stalled connection")
        PROXY.resume()
        self.assert_recovers("proxy resumed")
        self.assert_mounted_and_alive()

    def test_dropped_connections(self):
        uid, path = fresh()
        self.assertEqual(read_file(path), BODIES[uid])  # a live connection to drop
        PROXY.drop()
        failures = self.assert_recovers("connections dropped")
        self.assertLessEqual(len(failures), 1, "more than one call failed after a drop: %r" % failures)

    def test_slow_read_does_not_block_other_folder(self):
        files = mount_files(os.path.join(M.mp, "Big"))
        path = os.path.join(M.mp, "Big", files[BIG[0]])
        PROXY.set_rate(1024 * 1024)
        PROXY.reset()
        dd = subprocess.Popen(["dd", "if=" + path, "of=/dev/null", "bs=1M", "skip=3"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for(lambda: PROXY.counts()[1] > 300 * 1024 or dd.poll() is not None, 30,
                     what="the big read to be under way")
            self.assertIsNone(dd.poll())
            t = time.monotonic()
            r = sh(["ls", "-l", os.path.join(M.mp, "Other")], timeout=60)
            ls_secs = time.monotonic() - t
            self.assertEqual(r.returncode, 0, r.stderr)
            other = mount_files(os.path.join(M.mp, "Other"))
            self.assertEqual(len(other), 30)
            rc, out, err, cat_secs = timed_cat(os.path.join(M.mp, "Other", other[min(other)]))
            self.assertEqual(rc, 0, err)
            self.assertIsNone(dd.poll(), "the slow read finished too early to prove anything")
            self.assertLess(ls_secs, 5, "ls -l of another folder waited %.1fs behind a slow read" % ls_secs)
            self.assertLess(cat_secs, 5, "cat in another folder waited %.1fs behind a slow read" % cat_secs)
        finally:
            dd.kill()
            dd.wait()


if __name__ == "__main__":
    tap.main()
