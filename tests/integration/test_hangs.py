#!/usr/bin/python3
"""Hangs (issue #7, findings 1-3): nothing may wait without a deadline.

1. A folder renamed while its listing is being fetched: the listing of the new name must
   finish, not wait forever for a refresh that nobody will end.
2. A foreground read of a message that read-ahead has only queued must not wait behind
   the queued batches.
3. Unmount returns, and the daemon exits, within timeout + 5 s whatever the sync thread
   or a worker is waiting on (a stalled server).

The mounts go through proxy.py, which adds latency or limits the rate (tests 1, 2) or
stalls (test 3)."""

import datetime
import os
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tap  # noqa: E402
import common as C  # noqa: E402
from common import D, I, G, sh, mount_files, wait_for  # noqa: E402
from proxy import Proxy  # noqa: E402

TIMEOUT = 4            # -o timeout= of every mount here
UNMOUNT_BOUND = TIMEOUT + 5.0
BIG_N = 3000           # messages in the folder renamed while listed
SCAN_N = 150           # messages of the read-ahead test
SCAN_SIZE = 200 * 1024  # each: one read-ahead "head" (4 blocks) holds all of it
SCAN_RATE = 3 << 20    # bytes/s per connection in the read-ahead test
QUIET_N = 60

# After SIGTERM with a file open, the kernel never releases that file handle, so the
# daemon exits with it allocated: not a leak LSan should report. ASan's other checks stay.
NO_LEAK_CHECK = {"ASAN_OPTIONS": ":".join(
    o for o in (os.environ.get("ASAN_OPTIONS", ""), "detect_leaks=0") if o)}

SRV = None
PROXY = None
M = None


def scan_messages():
    out = []
    base = datetime.datetime(2022, 1, 1, tzinfo=datetime.timezone.utc)
    filler = ("0123456789abcdef" * 4 + "\r\n") * (SCAN_SIZE // 66)
    for k in range(SCAN_N):
        dt = base + datetime.timedelta(hours=k)
        key = "scan-%04d" % k
        raw = G.simple(key, "Scan %04d" % k, dt.strftime("%a, %d %b %Y %H:%M:%S +0000"),
                       G._body_text(key, filler))
        out.append(G.Msg(key, "Scan", raw, "Scan %04d" % k, dt.strftime("%Y-%m-%d"), dt))
    return out


def setUpModule():
    global SRV, PROXY, M
    I.check_bin()
    try:
        SRV = D.Dovecot(rawlog=True).start()
        c = SRV.client()
        for name in ("Big", "Scan", "Quiet"):
            c.create(name)
        G.multiappend(c, "Big", G.bulk_messages(BIG_N, "Big"))
        G.multiappend(c, "Scan", scan_messages(), chunk=50)
        G.multiappend(c, "Quiet", G.bulk_messages(QUIET_N, "Quiet"))
        c.logout()
        PROXY = Proxy(SRV.imaps_port).start()
        M = new_mount(PROXY)
        M.mount(foreground=True)
    except Exception:
        tearDownModule(cleanup_only=True)
        raise


def new_mount(proxy, env=None, **extra):
    opts = {"cafile": SRV.cafile, "password_file": SRV.password_file, "timeout": TIMEOUT,
            "cache": "no"}
    opts.update(extra)
    return I.Mount("imaps://%s@127.0.0.1:%d" % (SRV.user, proxy.port), opts=opts, env=env)


def tearDownModule(cleanup_only=False):
    def release():
        if PROXY:
            PROXY.resume()
            PROXY.set_delay(None)
            PROXY.set_rate(None)
    C.teardown([M], servers=[SRV], proxy=PROXY, unmount=not cleanup_only,
               before=None if cleanup_only else release)


def log_tail(m=None):
    return "\n--- imapfs log (tail) ---\n" + (m or M).read_log()[-3000:]


def idling_on(mark, mailbox):
    """True if a connection opened after mark (a RawlogMark) selected mailbox last and
    is in IDLE now (its last command is IDLE, with no DONE after it)."""
    for f in os.listdir(mark.dir):
        if not f.endswith(".in") or f in mark.sizes:
            continue
        with open(os.path.join(mark.dir, f), "rb") as fh:
            lines = [l for l in mark.TS.sub(b"", fh.read()).split(b"\r\n") if l.strip()]
        sel = [l for l in lines if b" SELECT " in l]
        if (lines and lines[-1].upper().endswith(b" IDLE") and sel
                and sel[-1].endswith(b'"%s"' % mailbox.encode())):
            return True
    return False


class Background:
    """A command run in a thread: .result is (returncode, stdout, stderr) or None while it
    runs; .done is set when it ends. A command still blocked at the end is killed."""

    def __init__(self, argv, timeout=120):
        self.result = None
        self.t0 = time.monotonic()
        self.t1 = None
        self.done = threading.Event()
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=dict(os.environ, LC_ALL="C.UTF-8"))
        threading.Thread(target=self._run, args=(timeout,), daemon=True).start()

    def _run(self, timeout):
        try:
            out, err = self.proc.communicate(timeout=timeout)
            self.result = (self.proc.returncode, out, err)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.result = (None, b"", b"killed")
        self.t1 = time.monotonic()
        self.done.set()

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()


class Hangs(unittest.TestCase):
    def tearDown(self):
        PROXY.resume()
        PROXY.set_delay(None)
        PROXY.set_rate(None)

    def test_1_rename_while_listing(self):
        """mv X X2 while `ls X` is fetching the listing; `ls X2` must finish."""
        big = os.path.join(M.mp, "Big")
        big2 = os.path.join(M.mp, "Big2")
        # Latency on every chunk: the listing of BIG_N messages takes seconds.
        PROXY.set_delay(0.03)
        PROXY.reset()
        ls1 = Background(["ls", big], timeout=120)
        # The listing is flowing once the server has sent a good part of it.
        wait_for(lambda: PROXY.counts()[1] > 64 * 1024 or ls1.done.is_set(), 60,
                 what="the listing of Big to flow")
        self.assertFalse(ls1.done.is_set(), "the listing finished before the rename: "
                         "make it slower (more messages or more delay)")
        os.rename(big, big2)
        ls1.done.wait(120)
        t0 = time.monotonic()
        ls2 = Background(["ls", big2], timeout=60)
        finished = ls2.done.wait(2 * TIMEOUT + 10)
        secs = time.monotonic() - t0
        ls2.kill()
        self.assertTrue(finished, "ls of the renamed folder still blocked after %.0f s" % secs
                        + log_tail())
        rc, out, err = ls2.result
        self.assertEqual(rc, 0, err)
        self.assertEqual(len(out.split(b"\n")) - 1, BIG_N)
        # And the folder is whole under its new name on a fresh look too.
        self.assertEqual(len(mount_files(big2)), BIG_N)

    def test_2b_read_not_behind_queued_readahead(self):
        """cat of a message that queued read-ahead covers does not wait for the queue."""
        scan = os.path.join(M.mp, "Scan")
        files = mount_files(scan)
        names = sorted(files.values(), key=lambda n: n.encode())
        self.assertEqual(len(names), SCAN_N)
        PROXY.set_rate(SCAN_RATE)
        # A scan in name order, from the first name right after the listing: a probing
        # batch (1 MiB: 5 of these messages), then one of 8 MiB (about 40: up to
        # names[45]), whose answer is still arriving when a reader at names[29] has less
        # than half of it ahead and the next batch (about names[46:87]) is queued.
        for n in names[:30]:
            with open(os.path.join(scan, n), "rb") as f:
                f.read()
        # A message in that queued batch. It goes out behind the running one only near
        # the running one's end (cache/ahead.c CHAIN_AHEAD_BYTES): until then it has
        # claimed nothing, and this cat fetches its file alone (~0.1 s) instead of
        # waiting for ~3 MB still to come of the running batch and ~7 MB of its own
        # before the target, about 3 s at this rate.
        target = os.path.join(scan, names[80])
        t0 = time.monotonic()
        r = sh(["cat", target], timeout=60)
        secs = time.monotonic() - t0
        self.assertEqual(r.returncode, 0, r.stderr.decode(errors="replace") + log_tail())
        self.assertEqual(len(r.stdout), os.stat(target).st_size)
        self.assertLess(secs, 3.0, "cat waited %.1f s behind queued read-ahead" % secs)

    def test_2a_scan_still_reads_ahead(self):
        """Claiming at the start of a job still makes a scan cheap: `cat` of every message
        in name order costs a few batched fetches, not one per file. (Runs before 2b: a
        read-ahead worker still busy with 2b's batches would let this fast reader fetch
        the files itself, which is right, but not what this test counts.)"""
        quiet = os.path.join(M.mp, "Quiet")
        names = sorted(mount_files(quiet).values(), key=lambda n: n.encode())
        mark = C.RawlogMark(SRV)
        r = sh(["cat"] + [os.path.join(quiet, n) for n in names], timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        fetches = mark.wait_commands(r"UID FETCH \S+ \(UID BODY\.PEEK\[\]")
        print("# %d content fetches for %d messages" % (len(fetches), QUIET_N))
        self.assertGreater(len(fetches), 0, "no content fetch seen in the rawlog")
        # One per file without read-ahead; with it, 5: the first three files, then
        # batches of 16 and 41.
        self.assertLess(len(fetches), QUIET_N // 4, "%d content fetches for %d messages read "
                        "in name order" % (len(fetches), QUIET_N))

    def _unmount_timed(self, m, lazy=False):
        """fusermount3 -u (or -uz); returns (seconds until fusermount returned, seconds
        until the daemon exited)."""
        pid = m.daemon_pid
        t0 = time.monotonic()
        r = subprocess.run(["fusermount3", "-uz" if lazy else "-u", m.mp],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
        t_fm = time.monotonic() - t0
        self.assertEqual(r.returncode, 0, r.stdout)
        try:
            m.proc.wait(60)
            exited = True
        except subprocess.TimeoutExpired:
            exited = False
        t_exit = time.monotonic() - t0
        if not exited:
            os.kill(pid, 9)
            m.proc.wait()
        m.proc = None
        m.daemon_pid = None
        self.assertEqual(m.sanitizer_reports(), [])
        print("# fusermount3 returned after %.2f s, the daemon exited after %s" % (
            t_fm, "%.2f s" % t_exit if exited else "never"))
        return t_fm, t_exit if exited else None

    def _stalled_mount(self, env=None, **extra):
        p = Proxy(SRV.imaps_port).start()
        m = new_mount(p, env, **extra)
        self.addCleanup(p.stop)
        self.addCleanup(m.cleanup)
        m.mount(foreground=True)
        return p, m

    def test_3a_unmount_while_idle_stalled(self):
        """The sync thread sits in IDLE on a server that stopped answering."""
        mark = C.RawlogMark(SRV)
        p, m = self._stalled_mount()
        self.assertTrue(os.listdir(os.path.join(m.mp, "Quiet")))
        # The sync thread watches Quiet now (the folder opened last): wait until a
        # connection of this mount is in IDLE on it.
        wait_for(lambda: idling_on(mark, "Quiet"), 20, what="IDLE on Quiet")
        p.stall()
        t_fm, t_exit = self._unmount_timed(m)
        self.assertLess(t_fm, UNMOUNT_BOUND, "fusermount3 -u took %.1f s" % t_fm)
        self.assertIsNotNone(t_exit, "the daemon did not exit within 60 s" + log_tail(m))
        self.assertLess(t_exit, UNMOUNT_BOUND, "the daemon exited %.1f s after unmount" % t_exit
                        + log_tail(m))

    def test_3b_unmount_while_polling_stalled(self):
        """The sync thread polls every second; the server stalls mid-poll."""
        p, m = self._stalled_mount(poll=1)
        for d in ("Quiet", "Scan", "INBOX"):
            os.listdir(os.path.join(m.mp, d))
        time.sleep(1.5)
        p.stall()
        time.sleep(1.5)  # a poll is now waiting on the server
        t_fm, t_exit = self._unmount_timed(m)
        self.assertLess(t_fm, UNMOUNT_BOUND, "fusermount3 -u took %.1f s" % t_fm)
        self.assertIsNotNone(t_exit, "the daemon did not exit within 60 s" + log_tail(m))
        self.assertLess(t_exit, UNMOUNT_BOUND, "the daemon exited %.1f s after unmount" % t_exit
                        + log_tail(m))

    def test_3b1_unmount_while_shared_poll_stalled(self):
        """connections=1: live sync shares the pool's one connection (no IDLE), checking the
        folder in use every few seconds and polling every second; the server stalls while
        it does. Unmount and exit stay within the bound."""
        p, m = self._stalled_mount(poll=1, connections=1)
        for d in ("Quiet", "Scan", "INBOX"):
            os.listdir(os.path.join(m.mp, d))
        time.sleep(1.5)
        p.stall()
        time.sleep(1.5)  # a poll round is now waiting on the server, on the pool's connection
        t_fm, t_exit = self._unmount_timed(m)
        self.assertLess(t_fm, UNMOUNT_BOUND, "fusermount3 -u took %.1f s" % t_fm)
        self.assertIsNotNone(t_exit, "the daemon did not exit within 60 s" + log_tail(m))
        self.assertLess(t_exit, UNMOUNT_BOUND, "the daemon exited %.1f s after unmount" % t_exit
                        + log_tail(m))

    def test_3c_unmount_while_worker_blocked(self):
        """A read and a listing wait on a stalled server; lazy unmount, then the daemon
        must exit within the bound."""
        # The daemon abandons the worker stuck on the server when it exits: what that
        # thread holds is not a leak LSan should report (as after SIGTERM above).
        p, m = self._stalled_mount(env=NO_LEAK_CHECK)
        scan = os.path.join(m.mp, "Scan")
        names = sorted(mount_files(scan).values(), key=lambda n: n.encode())
        p.stall()
        cat = Background(["cat", os.path.join(scan, names[77])], timeout=120)
        ls = Background(["ls", os.path.join(m.mp, "Quiet")], timeout=120)
        time.sleep(0.5)  # both are in the daemon, waiting on the server
        self.assertFalse(cat.done.is_set() or ls.done.is_set(),
                         "did not block on the stall: %r %r" % (cat.result, ls.result) + log_tail(m))
        t_fm, t_exit = self._unmount_timed(m, lazy=True)
        self.assertLess(t_fm, UNMOUNT_BOUND, "fusermount3 -uz took %.1f s" % t_fm)
        self.assertIsNotNone(t_exit, "the daemon did not exit within 60 s" + log_tail(m))
        self.assertLess(t_exit, UNMOUNT_BOUND, "the daemon exited %.1f s after unmount" % t_exit
                        + log_tail(m))
        for b in (cat, ls):
            self.assertTrue(b.done.wait(10), "a call is still blocked after the daemon exited")
        print("# cat returned after %.2f s, ls after %.2f s: %r %r" % (
            cat.t1 - cat.t0, ls.t1 - ls.t0, cat.result[2][-80:], ls.result[2][-80:]))

    def test_3d_sigterm_while_worker_blocked(self):
        """The same with SIGTERM: the daemon unmounts and exits within the bound."""
        p, m = self._stalled_mount(env=NO_LEAK_CHECK)
        scan = os.path.join(m.mp, "Scan")
        names = sorted(mount_files(scan).values(), key=lambda n: n.encode())
        p.stall()
        cat = Background(["cat", os.path.join(scan, names[90])], timeout=120)
        time.sleep(0.5)
        self.assertFalse(cat.done.is_set(), "did not block on the stall")
        t0 = time.monotonic()
        m.proc.terminate()
        try:
            m.proc.wait(60)
            t_exit = time.monotonic() - t0
        except subprocess.TimeoutExpired:
            t_exit = None
            m.proc.kill()
            m.proc.wait()
        m.proc = None
        m.daemon_pid = None
        self.assertEqual(m.sanitizer_reports(), [])
        print("# the daemon exited %s after SIGTERM" % ("%.2f s" % t_exit if t_exit else "never"))
        self.assertIsNotNone(t_exit, "the daemon did not exit within 60 s of SIGTERM" + log_tail(m))
        self.assertLess(t_exit, UNMOUNT_BOUND, "the daemon exited %.1f s after SIGTERM" % t_exit
                        + log_tail(m))
        wait_for(lambda: not I.is_mounted(m.mp), 5, what="the mount to go")
        self.assertTrue(cat.done.wait(10), "cat is still blocked after the daemon exited")

    def test_3e_sigterm_while_reader_waits_for_readahead(self):
        """A reader waits for a block that a slow (flowing, not stalled) read-ahead batch
        brings: each of its waits is within the timeout, but together they are not. SIGTERM
        must still end the daemon within the bound."""
        p, m = self._stalled_mount(env=NO_LEAK_CHECK)
        scan = os.path.join(m.mp, "Scan")
        names = sorted(mount_files(scan).values(), key=lambda n: n.encode())
        p.set_rate(150 * 1024)
        # Three opens in name order queue a batch of the next 16 (3.2 MB: ~20 s here).
        for n in names[:3]:
            with open(os.path.join(scan, n), "rb") as f:
                f.read(1)
        time.sleep(0.5)  # the batch is on the wire
        cat = Background(["cat", os.path.join(scan, names[16])], timeout=120)
        time.sleep(1.0)
        self.assertFalse(cat.done.is_set(), "cat did not wait for the batch: %r" % (cat.result,))
        t0 = time.monotonic()
        m.proc.terminate()
        try:
            m.proc.wait(60)
            t_exit = time.monotonic() - t0
        except subprocess.TimeoutExpired:
            t_exit = None
            m.proc.kill()
            m.proc.wait()
        m.proc = None
        m.daemon_pid = None
        self.assertEqual(m.sanitizer_reports(), [])
        print("# the daemon exited %s after SIGTERM" % ("%.2f s" % t_exit if t_exit else "never"))
        self.assertIsNotNone(t_exit, "the daemon did not exit within 60 s of SIGTERM" + log_tail(m))
        self.assertLess(t_exit, UNMOUNT_BOUND, "the daemon exited %.1f s after SIGTERM" % t_exit
                        + log_tail(m))
        wait_for(lambda: not I.is_mounted(m.mp), 5, what="the mount to go")
        self.assertTrue(cat.done.wait(10), "cat is still blocked after the daemon exited")


if __name__ == "__main__":
    tap.main()
