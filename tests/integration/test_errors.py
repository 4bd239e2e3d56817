#!/usr/bin/python3
"""What the server says becomes the right errno, and folder changes that race with other
clients or with our own sessions (issue 17, findings 3-6; issue 7, finding 6):

- `mv -T a b` over an empty folder b replaces it (DELETE b, then RENAME); a b with
  messages or subfolders stays, and so does everything else; if the RENAME fails, b is
  created again; RENAME_NOREPLACE is EEXIST.
- rmdir (and mv) of a folder another client has just deleted is ENOENT, not EIO, and the
  folder leaves the mount at once.
- rmdir and mv of a folder just listed (selected on a pool session, watched with IDLE):
  every session of ours has left it (UNSELECT, or IDLE moved to INBOX) before the server
  gets the DELETE/RENAME (checked on the rawlog's time stamps), and none was dropped.
- a folder name too long for the server is ENAMETOOLONG.
- with APPENDLIMIT announced, a larger file fails with EFBIG at write(), and nothing is
  appended.
- a folder whose STATUS keeps failing ([UNAVAILABLE], injected by a rewriting proxy) is
  polled with back-off, and polled normally again once the server answers; so is the
  watched folder whose SELECT fails.
- a rename into a folder that a tree refresh drops while the RENAME is in flight (issue 7,
  finding 6: a use after free, seen under ASan).

The server is Dovecot with NOTIFY hidden from the capability list (so that a folder deleted
elsewhere stays in the mount's tree until it asks, which makes the races deterministic),
APPENDLIMIT=10240 announced, and the quota plugin enforcing that size. Every outcome is
checked on the server with imaplib on its own connection."""

import ctypes
import errno
import os
import re
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tap  # noqa: E402
import common as C  # noqa: E402
from common import D, I, sh, mount_files, errno_of, ename, wait_for  # noqa: E402
from proxy import Proxy  # noqa: E402

CAPS = ("IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT SORT=DISPLAY THREAD=REFERENCES "
        "THREAD=REFS THREAD=ORDEREDSUBJECT MULTIAPPEND URL-PARTIAL CATENATE UNSELECT CHILDREN NAMESPACE "
        "UIDPLUS LIST-EXTENDED I18NLEVEL=1 CONDSTORE QRESYNC ESEARCH ESORT SEARCHRES WITHIN "
        "CONTEXT=SEARCH LIST-STATUS BINARY MOVE SNIPPET=FUZZY PREVIEW=FUZZY PREVIEW STATUS=SIZE "
        "SAVEDATE LITERAL+")  # Dovecot 2.3.19 after login, without NOTIFY
APPENDLIMIT = 10240

SRV = None
M = None
TMP = None
N = [0]


def setUpModule():
    global SRV, M, TMP
    I.check_bin()
    TMP = tempfile.mkdtemp(prefix="ite", dir="/tmp")
    os.chmod(TMP, 0o755)
    try:
        SRV = D.Dovecot(rawlog=True, quota=True, extra_conf=(
            "plugin {\n  quota_max_mail_size = %d\n}\n"
            "protocol imap {\n  imap_capability = %s APPENDLIMIT=%d\n}\n" % (APPENDLIMIT, CAPS, APPENDLIMIT)))
        SRV.start()
        M = C.mount_of(SRV, poll=3600)
        M.mount(debug=True)
    except Exception:
        tearDownModule(cleanup_only=True)
        raise


def tearDownModule(cleanup_only=False):
    C.teardown([M], servers=[SRV], tmp=TMP, unmount=not cleanup_only)


# -- helpers ---------------------------------------------------------------------------------
def P(*parts):
    return os.path.join(M.mp, *parts)


def msg(key, size=0):
    body = "Body of %s.\r\n" % key + "x" * size
    return ("From: a@example.org\r\nTo: b@example.org\r\nSubject: %s\r\n"
            "Date: Mon, 01 Jan 2024 10:00:00 +0000\r\nMessage-ID: <%s@example.org>\r\n\r\n%s"
            % (key, key, body)).encode()


def server(fn):
    c = SRV.client()
    try:
        return fn(c)
    finally:
        c.logout()


def srv_names():
    return server(C.mailbox_names)


def srv_bodies(mailbox):
    return sorted(C.server_messages(SRV, mailbox)[1].values())


def make(name, n=0):
    """Creates folder name through the mount (so that the mount knows it at once), then
    n messages in it from another client; returns their bodies."""
    os.mkdir(P(name))
    def go(c):
        bodies = []
        for i in range(n):
            raw = msg("%s-%d" % (name.replace("/", "-"), i))
            D.append(c, name, raw)
            bodies.append(raw)
        return bodies
    return server(go)


def unique(prefix):
    N[0] += 1
    return "%s%d" % (prefix, N[0])


def log_tail():
    return "\n--- imapfs log (tail) ---\n" + M.read_log()[-3000:]


def byes():
    """Sessions Dovecot dropped, from its log and from the mount's log."""
    out = [l for l in SRV.log().splitlines() if "inconsistent" in l.lower()]
    out += [l for l in M.read_log().splitlines() if "says BYE" in l and "Logged out" not in l]
    return out


def sessions_in_at(mailbox, verb, deadline=None):
    """From the rawlog (one .in file per session, each line time-stamped): the sessions
    that still had mailbox selected when `verb "mailbox"` (DELETE, RENAME) arrived."""
    deadline = deadline or time.monotonic() + 5
    d = SRV.rawlog_dir()
    cmd = re.compile(r'^(\d+\.\d+) \S+ (SELECT|EXAMINE|UNSELECT|CLOSE|DELETE|RENAME|LOGOUT)\b ?"?([^"\r]*)"?',
                     re.I)
    events = {}
    for f in sorted(os.listdir(d)):
        if f.endswith(".in"):
            with open(os.path.join(d, f), "rb") as fh:
                for line in fh.read().decode("utf-8", "replace").split("\n"):
                    m = cmd.match(line)
                    if m:
                        events.setdefault(f, []).append((float(m.group(1)), m.group(2).upper(),
                                                         m.group(3)))
    at = [t for ev in events.values() for t, v, arg in ev if v == verb and arg == mailbox]
    if not at:  # the imap process writes its rawlog as it reads: give it a moment
        if time.monotonic() < deadline:
            time.sleep(0.05)
            return sessions_in_at(mailbox, verb, deadline)
        raise AssertionError("no %s %s in the rawlog" % (verb, mailbox))
    t_cmd = max(at)
    still = []
    for f, ev in events.items():
        sel = None
        for t, v, arg in ev:
            if t >= t_cmd:
                break
            if v in ("SELECT", "EXAMINE"):
                sel = arg
            elif v in ("UNSELECT", "CLOSE", "LOGOUT"):
                sel = None
        if sel == mailbox:
            still.append(f)
    return still


def renameat2_noreplace(a, b):
    libc = ctypes.CDLL(None, use_errno=True)
    AT_FDCWD = -100
    if libc.renameat2(AT_FDCWD, a.encode(), AT_FDCWD, b.encode(), 1) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


class Base(unittest.TestCase):
    def assertErrno(self, fn, want, what):
        e = errno_of(fn)
        want = want if isinstance(want, tuple) else (want,)
        self.assertIn(e, want, "%s: %s, want %s%s" % (what, ename(e), "/".join(map(ename, want)),
                                                       log_tail()))


# -- mv -T over a folder ---------------------------------------------------------------------
class TestRenameOver(Base):
    def test_mv_T_over_empty_folder_replaces_it(self):
        src, dst = unique("TSrc"), unique("TDst")
        bodies = make(src, 2)
        make(dst)
        self.assertEqual(os.listdir(P(dst)), [])
        r = sh(["mv", "-T", P(src), P(dst)])
        self.assertEqual(r.returncode, 0, r.stderr.decode() + log_tail())
        names = srv_names()
        self.assertNotIn(src, names)
        self.assertIn(dst, names)
        self.assertEqual(srv_bodies(dst), sorted(bodies))
        self.assertEqual(len(mount_files(P(dst))), 2)
        self.assertNotIn(src, os.listdir(M.mp))

    def test_mv_T_over_folder_with_messages_changes_nothing(self):
        src, dst = unique("TSrc"), unique("TFull")
        sb, db = make(src, 1), make(dst, 1)
        os.listdir(P(dst))
        self.assertErrno(lambda: os.rename(P(src), P(dst)), (errno.ENOTEMPTY, errno.EEXIST),
                         "rename over a folder with a message")
        self.assertEqual(srv_bodies(src), sb)
        self.assertEqual(srv_bodies(dst), db)

    def test_mv_T_over_folder_with_subfolder_changes_nothing(self):
        src, dst = unique("TSrc"), unique("TPar")
        sb = make(src, 1)
        make(dst)
        make(dst + "/Kid")
        self.assertErrno(lambda: os.rename(P(src), P(dst)), (errno.ENOTEMPTY, errno.EEXIST),
                         "rename over a folder with a subfolder")
        names = srv_names()
        self.assertIn(dst, names)
        self.assertIn(dst + "/Kid", names)
        self.assertEqual(srv_bodies(src), sb)

    def test_mv_T_over_folder_that_got_mail_elsewhere(self):
        src, dst = unique("TSrc"), unique("TLate")
        sb = make(src, 1)
        make(dst)
        self.assertEqual(os.listdir(P(dst)), [])  # the mount has seen it empty
        late = msg("late-" + dst)
        server(lambda c: D.append(c, dst, late))
        self.assertErrno(lambda: os.rename(P(src), P(dst)), (errno.ENOTEMPTY, errno.EEXIST),
                         "rename over a folder that got a message elsewhere")
        self.assertEqual(srv_bodies(dst), [late])
        self.assertEqual(srv_bodies(src), sb)

    def test_mv_T_over_empty_folder_deleted_elsewhere(self):
        src, dst = unique("TSrc"), unique("TGoneDst")
        sb = make(src, 1)
        make(dst)
        server(lambda c: c.delete(D.imap_quote(dst)))  # the mount still shows it
        r = sh(["mv", "-T", P(src), P(dst)])
        self.assertEqual(r.returncode, 0, r.stderr.decode() + log_tail())
        self.assertEqual(srv_bodies(dst), sb)
        self.assertNotIn(src, srv_names())

    def test_rename_noreplace_is_eexist(self):
        src, dst = unique("TSrc"), unique("TDst")
        sb = make(src, 1)
        make(dst)
        self.assertErrno(lambda: renameat2_noreplace(P(src), P(dst)), errno.EEXIST,
                         "RENAME_NOREPLACE over an empty folder")
        names = srv_names()
        self.assertIn(src, names)
        self.assertIn(dst, names)
        self.assertEqual(srv_bodies(src), sb)

    def test_mv_T_whose_rename_fails_recreates_the_target(self):
        src, dst = unique("TGone"), unique("TDst")
        make(src, 1)
        make(dst)
        os.listdir(M.mp)          # the tree knows both
        os.listdir(P(dst))
        server(lambda c: c.delete(D.imap_quote(src)))  # gone, but the mount doesn't know yet
        self.assertIn(src, os.listdir(M.mp))
        self.assertErrno(lambda: os.rename(P(src), P(dst)), errno.ENOENT,
                         "rename of a folder deleted elsewhere")
        self.assertIn(dst, srv_names(), "the target was deleted and not re-created" + log_tail())
        self.assertNotIn(src, os.listdir(M.mp), "the folder the server says is gone is still shown")
        self.assertIn(dst, os.listdir(M.mp))


# -- answers of the server -------------------------------------------------------------------
class TestServerAnswers(Base):
    def test_rmdir_of_folder_deleted_elsewhere_is_enoent(self):
        name = unique("Gone")
        make(name)
        self.assertIn(name, os.listdir(M.mp))
        server(lambda c: c.delete(D.imap_quote(name)))
        self.assertIn(name, os.listdir(M.mp))  # the tree is younger than the revalidation
        self.assertErrno(lambda: os.rmdir(P(name)), errno.ENOENT, "rmdir of a folder deleted elsewhere")
        self.assertNotIn(name, os.listdir(M.mp), "the server said it is gone; the mount still shows it")

    def test_mkdir_with_a_name_too_long_for_the_server(self):
        # 240 bytes of UTF-8 are fine for the kernel; in modified UTF-7 they are 322
        # bytes, and Dovecot answers "[CANNOT] Mailbox name too long".
        name = "\u00e9" * 120
        self.assertErrno(lambda: os.mkdir(P(name)), errno.ENAMETOOLONG, "mkdir of a name too long in UTF-7")
        self.assertNotIn(name, srv_names())

    def test_write_over_appendlimit_is_efbig_at_write(self):
        name = unique("Lim")
        make(name)
        path = P(name, "big.eml")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
        e = None
        try:
            data = msg("big", APPENDLIMIT + 100)
            try:
                os.write(fd, data)
            except OSError as ex:
                e = ex.errno
        finally:
            ce = errno_of(lambda: os.close(fd))
        self.assertEqual(e, errno.EFBIG, "write() of %d bytes with APPENDLIMIT=%d: %s, close: %s%s"
                         % (len(data), APPENDLIMIT, ename(e), ename(ce), log_tail()))
        self.assertEqual(srv_bodies(name), [])
        # a message under the limit goes through
        small = msg("small")
        with open(P(name, "small.eml"), "wb") as f:
            f.write(small)
        self.assertEqual(srv_bodies(name), [small])


# -- our own sessions ------------------------------------------------------------------------
class TestOwnSessions(Base):
    def just_listed(self, name):
        """Lists name through the mount and waits until the live-sync session watches it
        too (its SELECT shows in the rawlog): two of our sessions have it selected."""
        mark = C.RawlogMark(SRV)
        os.listdir(P(name))
        try:
            wait_for(lambda: len(mark.commands(r'(SELECT|EXAMINE) "?%s"?' % re.escape(name))) >= 2, 10,
                     what="two sessions to select " + name)
        except TimeoutError:
            self.fail("live sync never watched %s; sessions dropped: %r%s" % (name, byes(), log_tail()))

    def test_rmdir_of_folder_just_listed_keeps_our_sessions(self):
        before = byes()
        for i in range(3):
            name = unique("Watched")
            make(name)
            self.just_listed(name)
            os.rmdir(P(name))
            self.assertNotIn(name, srv_names())
            self.assertEqual(sessions_in_at(name, "DELETE"), [],
                             "sessions still in %s when it was deleted" % name)
            os.listdir(P("INBOX"))
        time.sleep(1)  # a BYE would come within this (the IDLE session hears it at once)
        os.listdir(P("INBOX"))
        self.assertEqual(byes()[len(before):], [], "our sessions were dropped" + log_tail())

    def test_rename_of_folder_just_listed_keeps_our_sessions(self):
        before = byes()
        for i in range(3):
            name, to = unique("WatchedR"), unique("Renamed")
            bodies = make(name, 1)
            self.just_listed(name)
            os.rename(P(name), P(to))
            self.assertEqual(srv_bodies(to), bodies)
            self.assertEqual(sessions_in_at(name, "RENAME"), [],
                             "sessions still in %s when it was renamed" % name)
            os.listdir(P(to))
        time.sleep(1)
        os.listdir(P("INBOX"))
        self.assertEqual(byes()[len(before):], [], "our sessions were dropped" + log_tail())


# -- polling a folder whose STATUS fails -----------------------------------------------------
class RewriteProxy(Proxy):
    """Proxy (plain IMAP) that answers `STATUS <mailbox>` with NO [UNAVAILABLE] while
    self.fail_mailbox is set, counts the STATUS commands for self.watch, and holds a
    client command matching self.hold (regex, bytes) for self.hold_s seconds before the
    server sees it."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.fail_mailbox = None
        self.watch = None
        self.statuses = []  # monotonic times of STATUS commands for self.watch
        self.tags = set()
        self.fail_select = None  # (mailbox, answer): SELECT/EXAMINE of mailbox gets answer
        self.selects = []        # monotonic times of SELECT/EXAMINE of fail_select's mailbox
        self.select_tags = {}
        self.hold = None
        self.hold_s = 0
        self.held = threading.Event()

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
                delay = 0
                while b"\r\n" in buf:
                    line, buf = buf.split(b"\r\n", 1)
                    line, d = self._line(line, direction)
                    out += line + b"\r\n"
                    delay = max(delay, d)
                if direction == "up":  # never hold the client's bytes (literals)
                    out += buf
                    buf = b""
                if delay:
                    time.sleep(delay)
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
            w = self.watch.encode() if self.watch else None
            f = self.fail_mailbox.encode() if self.fail_mailbox else None
            if direction == "up":
                if self.hold and re.match(rb"^\S+ " + self.hold, line):
                    self.hold = None
                    self.held.set()
                    return line, self.hold_s
                m = re.match(rb'^(\S+) (?:SELECT|EXAMINE) "?([^" ]+)"?', line)
                if m and self.fail_select and m.group(2) == self.fail_select[0].encode():
                    self.selects.append(time.monotonic())
                    self.select_tags[m.group(1)] = self.fail_select[1].encode()
                m = re.match(rb'^(\S+) STATUS "?([^" ]+)"? ', line)
                if m and w and m.group(2) == w:
                    self.statuses.append(time.monotonic())
                    if f == w:
                        self.tags.add(m.group(1))
                return line, 0
            if f and line.startswith(b"* STATUS ") and f in line:
                return b"* OK dropped", 0
            tag = line.split(b" ", 1)[0]
            if tag in self.select_tags and line.startswith(tag + b" OK"):
                return tag + b" " + self.select_tags.pop(tag), 0
            if tag in self.tags:
                self.tags.discard(tag)
                return tag + b" NO [UNAVAILABLE] Backend busy, try later", 0
            return line, 0


class TestThroughProxy(Base):
    """A mount through RewriteProxy, polling every second."""
    @classmethod
    def setUpClass(cls):
        cls.srv = D.Dovecot(ssl=False, rawlog=False)
        cls.proxy = None
        cls.m = None
        try:
            cls.srv.start()
            c = cls.srv.client()
            c.create("Flaky")
            c.create("Stuck")
            c.create("UafSrc")
            c.create("UafPar")
            D.append(c, "Flaky", msg("flaky-0"))
            c.logout()
            cls.proxy = RewriteProxy(cls.srv.imap_port).start()
            cls.proxy.flowing.set()
            cls.m = I.Mount("imap://alice@127.0.0.1:%d" % cls.proxy.port,
                            opts={"password_file": cls.srv.password_file, "allow_plaintext": None,
                                  "poll": 1})
            cls.m.mount(debug=True)
        except Exception:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        C.teardown([cls.m], servers=[cls.srv], proxy=cls.proxy)

    def test_failing_status_is_polled_with_backoff(self):
        mp = self.m.mp
        self.assertEqual(len(mount_files(os.path.join(mp, "Flaky"))), 1)
        os.listdir(os.path.join(mp, "INBOX"))  # IDLE moves to INBOX: Flaky is polled
        with self.proxy.lock:
            self.proxy.watch = "Flaky"
        wait_for(lambda: len(self.proxy.statuses) >= 2, 10, what="Flaky to be polled")
        with self.proxy.lock:
            self.proxy.fail_mailbox = "Flaky"
            start = len(self.proxy.statuses)
        t0 = time.monotonic()
        time.sleep(10)
        with self.proxy.lock:
            n = len([t for t in self.proxy.statuses[start:] if t >= t0])
        sys.stdout.write("# STATUS Flaky in 10 s of [UNAVAILABLE] with poll=1: %d\n" % n)
        self.assertGreaterEqual(n, 1, "the folder is not asked about at all any more")
        self.assertLessEqual(n, 5, "STATUS kept being sent once a second: no back-off\n" +
                             self.m.read_log()[-2000:])
        warn = [l for l in self.m.read_log().splitlines() if "STATUS failed" in l]
        self.assertLessEqual(len(warn), 6, "\n".join(warn[-10:]))
        # The server answers again: within the longest back-off (8 polls) the folder
        # is asked about again.
        with self.proxy.lock:
            self.proxy.fail_mailbox = None
            again = len(self.proxy.statuses)
        wait_for(lambda: len(self.proxy.statuses) > again, 20, what="STATUS Flaky after the back-off")

    def test_watched_folder_whose_select_fails_is_retried_with_backoff(self):
        # live sync watches the folder opened last; if its SELECT keeps failing with an
        # answer the table doesn't know (EPROTO), it must not ask again at once, forever.
        mp = self.m.mp
        os.listdir(os.path.join(mp, "Stuck"))  # listed: opening it again uses the listing
        os.listdir(os.path.join(mp, "INBOX"))
        with self.proxy.lock:
            self.proxy.fail_select = ("Stuck", "NO [XODD] Something odd happened")
        os.listdir(os.path.join(mp, "Stuck"))  # watched now: its SELECT fails
        wait_for(lambda: self.proxy.selects, 10, what="live sync to select Stuck")
        t0 = time.monotonic()
        time.sleep(5)
        with self.proxy.lock:
            n = len([t for t in self.proxy.selects if t >= t0])
            self.proxy.fail_select = None
        os.listdir(os.path.join(mp, "INBOX"))
        sys.stdout.write("# SELECT Stuck in 5 s of failures: %d\n" % n)
        self.assertLessEqual(n, 5, "the watched folder's SELECT was repeated %d times in 5 s" % n)

    def test_rename_into_a_folder_that_goes_meanwhile(self):
        # Issue 7, finding 6: mv A P/B read P's cache node after the RENAME, without
        # the lock; a tree refresh meanwhile (P deleted elsewhere) had freed it. The
        # RENAME is held back by the proxy while another client deletes P and live sync
        # (poll=1) re-lists the tree. Under ASan the old code aborted here.
        mp = self.m.mp
        self.assertEqual(sorted(n for n in os.listdir(mp) if n.startswith("Uaf")), ["UafPar", "UafSrc"])
        with self.proxy.lock:
            self.proxy.held.clear()
            self.proxy.hold_s = 3
            self.proxy.hold = rb'RENAME "?UafSrc"? '
        res = {}

        def mv():
            res["e"] = errno_of(lambda: os.rename(os.path.join(mp, "UafSrc"),
                                                  os.path.join(mp, "UafPar", "Moved")))
        t = threading.Thread(target=mv)
        t.start()
        self.assertTrue(self.proxy.held.wait(10), "the RENAME never came")
        c = self.srv.client()
        c.delete("UafPar")
        c.logout()
        t.join(30)
        self.assertFalse(t.is_alive(), "mv hangs")
        c = self.srv.client()
        names = C.mailbox_names(c)
        c.logout()
        self.assertIn(res["e"], (None, errno.ENOENT), ename(res["e"]) + self.m.read_log()[-2000:])
        if res["e"] is None:
            self.assertIn("UafPar/Moved", names)
        # the mount is alive and shows what the server has
        wait_for(lambda: ("UafPar" in names) == ("UafPar" in os.listdir(mp)), 10,
                 what="the mount's tree to follow the server")
        self.assertNotIn("UafSrc", os.listdir(mp))


if __name__ == "__main__":
    tap.main()
