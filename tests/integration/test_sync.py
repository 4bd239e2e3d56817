#!/usr/bin/python3
"""Live sync (issue 4): another client (python3 imaplib on its own connection: the
"second device") changes the account while it is mounted, and the mount must follow
within the sync window without being remounted:

- the watched folder (the directory opened most recently; INBOX until then) within
  WATCH_WINDOW seconds (IDLE);
- any other folder listed on this mount, and the folder tree, within POLL + 3 seconds
  (one STATUS per folder / one LIST every `-o poll=POLL`).

Changes: APPEND, expunge (also of a message whose bytes the kernel has cached), flags
(\\Flagged, keywords; CONDSTORE's HIGHESTMODSEQ for folders that are not watched), CREATE,
RENAME and DELETE of folders, UIDVALIDITY (mailbox deleted and recreated with other
messages under the same UIDs), and switching the watched folder (`-o poll=30`: IDLE, not
the poll, must deliver).

How a wait proves the push. Opening a directory revalidates it when its listing is older
than 5 s, and so does the lookup of a name the listing lacks; the kernel keeps names
(found or not) for 5 s. So the mount is watched only with os.stat / os.path.exists /
os.getxattr on given names, never by opening the watched directory, and most waits start
with a stat of the name still to come: the kernel then caches "no such file" for 5 s, and
seeing the file before that can only come from the daemon telling the kernel to drop the
entry (fuse notify_inval_entry) after it learned of the change by itself. Such a wait
ends at NEG_PROOF seconds after that stat, inside the 5 s. (Checked by hand: without a
push, such a name shows 5.0 s after the stat, even when the daemon's own listing would
have been revalidated earlier.)

Run: IMAPFS_BIN=build/fs/imapfs IMAPFS_SRC=$PWD /usr/bin/python3 tests/integration/test_sync.py"""

import errno
import os
import re
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tap  # noqa: E402
import common as C  # noqa: E402
from common import D, I, G, sh, read_file  # noqa: E402

POLL = 2                  # -o poll= of the main mount
WATCH_WINDOW = 3.0        # the watched folder (IDLE)
POLL_WINDOW = POLL + 3.0  # other listed folders and the tree
NEG_PROOF = 4.7           # < the kernel's 5 s entry timeout (see above)
SWITCH_POLL = 30          # -o poll= of the mount that proves IDLE on a switched folder

DATE_HDR = "Fri, 01 Mar 2024 10:00:00 +0000"
DATE = "2024-03-01"       # what names_message() makes of DATE_HDR

SRV = None
M = None                  # poll=POLL, user alice
FIX = {}                  # key → Msg with .uid, loaded before the mount
TIMINGS = []              # (what, seconds) printed at the end

# mailbox → [(key, subject, flags)]
FOLDERS = {
    "INBOX": [("in-%d" % i, "Inbox seed %d" % i, ()) for i in range(3)],
    "Other": [("other-%d" % i, "Other seed %d" % i, ()) for i in range(2)],
    "OtherExp": [("otherexp-%d" % i, "Other expunge %d" % i, ()) for i in range(3)],
    "OtherFlags": [("otherflags-%d" % i, "Other flags %d" % i, [r"\Seen"]) for i in range(2)],
    "Recreate": [("recreate-old-1", "Recreated one", ()), ("recreate-old-2", "Old only two", ())],
    "RecreateW": [("recreatew-old-1", "Recreated one", ()), ("recreatew-old-2", "Old only two", ())],
    "FolderRen": [("folderren-0", "Moves with its folder", ())],
    "FolderRen/Kid": [],
    "FolderDel": [],
    "Tree": [],
}


def make_raw(key, subject, body=None):
    return G.simple(key, subject, DATE_HDR, body if body is not None else G._body_text(key))


def msg_name(subject, uid):
    """The file name a message of make_raw() gets (fs/names.h)."""
    return "%s %s [%d].eml" % (DATE, subject, uid)


def new_mount(user, password_file, poll):
    m = I.Mount("imaps://%s@127.0.0.1:%d" % (user, SRV.imaps_port),
                opts={"cafile": SRV.cafile, "password_file": password_file, "poll": poll})
    # a persistent cache, if this build has one, lives and dies with the mount's work dir
    m.env["XDG_CACHE_HOME"] = os.path.join(m.workdir, "xdg-cache")
    return m


def setUpModule():
    global SRV, M
    I.check_bin()
    try:
        SRV = D.Dovecot(rawlog=True)
        SRV.add_user("bob", "b0b-s3cret-pw")
        SRV.start()
        for user in ("alice", "bob"):
            c = SRV.client(user)
            if user == "bob":
                for name in ("SwitchB", "SwitchC", "SwitchD", "SwitchE"):
                    c.create(name)
                c.logout()
                continue
            for mailbox, items in FOLDERS.items():
                if mailbox != "INBOX":
                    typ, data = c.create(D.imap_quote(D.mutf7_encode(mailbox)))
                    assert typ == "OK", (mailbox, data)
                for key, subject, flags in items:
                    m = G.Msg(key, mailbox, make_raw(key, subject), subject, DATE, None, flags)
                    m.uid = D.append(c, mailbox, m.raw, flags, G._idate(0))
                    FIX[key] = m
            c.logout()
        M = new_mount("alice", SRV.password_file, POLL)
        M.mount(foreground=True)
        # the names this file predicts are the names the mount shows
        m = FIX["in-0"]
        names = os.listdir(os.path.join(M.mp, "INBOX"))
        assert msg_name(m.subject, m.uid) in names, (msg_name(m.subject, m.uid), names)
    except Exception:
        tearDownModule(cleanup_only=True)
        raise


def tearDownModule(cleanup_only=False):
    if TIMINGS:
        sys.stdout.write("# timings (change → visible in the mount):\n")
        for what, t in TIMINGS:
            sys.stdout.write("#   %-62s %.2fs\n" % (what, t))
        sys.stdout.flush()
    C.teardown([M], servers=[SRV], unmount=not cleanup_only)


# -- the second device -------------------------------------------------------------------------
class Other:
    """A client of its own: `with Other() as c:` (logs out, never CLOSEs)."""

    def __init__(self, user=None):
        self.user = user

    def __enter__(self):
        self.c = SRV.client(self.user)
        return self.c

    def __exit__(self, *a):
        try:
            self.c.logout()
        except Exception:
            pass


def status(c, mailbox, what="UIDNEXT"):
    typ, data = c.status(D.imap_quote(D.mutf7_encode(mailbox)), "(%s)" % what)
    assert typ == "OK", data
    return int(re.search(r"%s (\d+)" % what, data[0].decode()).group(1))


def expunge(c, mailbox, uid):
    D.select(c, mailbox, readonly=False)
    typ, data = c.uid("STORE", str(uid), "+FLAGS.SILENT", r"(\Deleted)")
    assert typ == "OK", data
    typ, data = c.uid("EXPUNGE", str(uid))
    assert typ == "OK", data


def store(c, mailbox, uid, op, flags):
    D.select(c, mailbox, readonly=False)
    typ, data = c.uid("STORE", str(uid), op, "(%s)" % " ".join(flags))
    assert typ == "OK", data


def server_flags(mailbox, uid):
    return C.flags_set(C.server_messages(SRV, mailbox, bodies=False)[0][uid]["flags"])


def recreate(c, mailbox, msgs):
    """DELETE and CREATE mailbox, then APPEND msgs [(key, subject, body)]; returns
    (new UIDVALIDITY, {uid: (name, raw)})."""
    q = D.imap_quote(D.mutf7_encode(mailbox))
    typ, data = c.delete(q)
    assert typ == "OK", data
    typ, data = c.create(q)
    assert typ == "OK", data
    out = {}
    for key, subject, body in msgs:
        raw = make_raw(key, subject, body)
        uid = D.append(c, mailbox, raw, (), G._idate(0))
        out[uid] = (msg_name(subject, uid), raw)
    return status(c, mailbox, "UIDVALIDITY"), out


# -- the mount side -----------------------------------------------------------------------------
def P(*parts, m=None):
    return os.path.join((m or M).mp, *parts)


def lookup(path):
    """os.stat without opening anything: None if ENOENT, else the stat result."""
    try:
        return os.stat(path)
    except FileNotFoundError:
        return None


def xflags(path):
    return set(os.getxattr(path, "user.imap.flags").decode().split())


def sync_file_state(srv, user=None):
    """(last SELECTed mailbox, idling) of the newest rawlog of a connection that has sent
    IDLE: the sync thread's connection."""
    d = srv.rawlog_dir(user)
    best = None
    for f in os.listdir(d):
        if not f.endswith(".in"):
            continue
        p = os.path.join(d, f)
        with open(p, "rb") as fh:
            text = C.RawlogMark.TS.sub(b"", fh.read()).decode("utf-8", "replace")
        lines = [l for l in text.split("\r\n") if l]
        if not any(re.match(r"^\S+ IDLE$", l) for l in lines):
            continue
        mt = os.path.getmtime(p)
        if best is None or mt > best[0]:
            best = (mt, lines)
    if best is None:
        return None, False
    sel, idling = None, False
    for l in best[1]:
        if re.match(r"^\S+ IDLE$", l):
            idling = True
        elif l == "DONE" or re.match(r"^\S+ [A-Z]", l):
            idling = False
            m = re.match(r'^\S+ (?:SELECT|EXAMINE) "?(.*?)"?$', l)
            if m:
                sel = m.group(1)
    return sel, idling


def wait_idle_on(mailbox, user=None, timeout=10):
    """Waits until the sync connection is in IDLE with mailbox selected (rawlog)."""
    try:
        C.wait_for(lambda: sync_file_state(SRV, user) == (mailbox, True), timeout,
                   what="sync connection idling on " + mailbox)
    except TimeoutError:
        raise AssertionError("the sync connection did not IDLE on %s within %ds (last: %r)"
                             % (mailbox, timeout, sync_file_state(SRV, user)))


class Base(unittest.TestCase):
    mount = None  # a test class with a mount of its own sets it

    @property
    def m(self):
        return self.mount or M

    def watch(self, mailbox, user=None):
        """Opens mailbox's directory (it becomes the watched one) and waits until the
        sync connection idles on it, so that a change right after is not racing the
        switch (TestSwitch looks at that race on purpose)."""
        os.listdir(P(mailbox, m=self.m))
        wait_idle_on(mailbox, user)

    def log_tail(self):
        return "\n--- imapfs log (tail) ---\n" + self.m.read_log()[-3000:]

    def until(self, cond, what, deadline, t_change):
        """Polls cond() (no directory is opened) until true or the monotonic deadline;
        returns the seconds since t_change, or fails."""
        while True:
            v = cond()
            now = time.monotonic()
            if v:
                TIMINGS.append((what, now - t_change))
                return now - t_change
            if now > deadline:
                self.fail("%s: not seen %.2fs after the change (deadline %.2fs)%s"
                          % (what, now - t_change, deadline - t_change, self.log_tail()))
            time.sleep(0.02)

    def appears_after_negative(self, path, change, window, what):
        """stat(path) must say ENOENT now (the kernel caches that for 5 s); then
        change() runs; path must exist within window seconds and before the kernel's
        negative entry would have expired by itself."""
        t0 = time.monotonic()
        self.assertIsNone(lookup(path), "%s exists before the change" % path)
        change()
        t_change = time.monotonic()
        deadline = min(t_change + window, t0 + NEG_PROOF)
        self.assertGreater(deadline - t_change, 1.0, "the change took %.2fs: can't prove the push"
                           % (t_change - t0))
        return self.until(lambda: lookup(path) is not None, what, deadline, t_change)

    def assertGone(self, path):
        e = C.errno_of(lambda: os.stat(path))
        self.assertEqual(e, errno.ENOENT, "stat %s: %s" % (path, C.ename(e)))
        e = C.errno_of(lambda: open(path, "rb").close())
        self.assertEqual(e, errno.ENOENT, "open %s: %s" % (path, C.ename(e)))
        r = sh(["cat", path])
        self.assertNotEqual(r.returncode, 0, "cat of an expunged message gave %d bytes" % len(r.stdout))
        self.assertEqual(r.stdout, b"")
        self.assertIn(b"No such file", r.stderr)


# -- new mail -------------------------------------------------------------------------------------
class TestAppend(Base):
    def append_elsewhere(self, mailbox, key, subject, window, what):
        with Other() as c:
            uid = status(c, mailbox)
            raw = make_raw(key, subject)
            path = P(mailbox, msg_name(subject, uid))
            got = []
            self.appears_after_negative(
                path, lambda: got.append(D.append(c, mailbox, raw, (), G._idate(0))), window, what)
        self.assertEqual(got, [uid], "APPENDUID")
        st = os.stat(path)
        self.assertEqual(st.st_size, len(raw))
        r = sh(["cat", path], check=True)
        self.assertEqual(r.stdout, raw)
        self.assertEqual(os.getxattr(path, "user.imap.uid").decode(), str(uid))
        self.assertIn(msg_name(subject, uid), os.listdir(P(mailbox)))
        return uid, path

    def test_append_to_watched_inbox(self):
        self.watch("INBOX")
        self.append_elsewhere("INBOX", "live-inbox", "Arrived while mounted", WATCH_WINDOW,
                              "APPEND to the watched INBOX")

    def test_append_to_listed_folder(self):
        os.listdir(P("Other"))   # listed on this mount ...
        self.watch("INBOX")      # ... but not the watched one
        self.append_elsewhere("Other", "live-other", "Arrived in Other", POLL_WINDOW,
                              "APPEND to a listed, not watched folder")

    def test_append_twice_each_shows(self):
        """A second message right after the first: the refresh of the first must not
        swallow the second."""
        self.watch("INBOX")
        with Other() as c:
            uid = status(c, "INBOX")
            raws = [make_raw("twice-%d" % i, "Twice %d" % i) for i in range(2)]
            paths = [P("INBOX", msg_name("Twice %d" % i, uid + i)) for i in range(2)]
            t0 = time.monotonic()
            for p in paths:
                self.assertIsNone(lookup(p))
            D.append(c, "INBOX", raws[0], (), G._idate(0))
            t1 = time.monotonic()
            self.until(lambda: lookup(paths[0]) is not None, "first of two APPENDs (watched)",
                       min(t1 + WATCH_WINDOW, t0 + NEG_PROOF), t1)
            D.append(c, "INBOX", raws[1], (), G._idate(0))
            t2 = time.monotonic()
            self.until(lambda: lookup(paths[1]) is not None, "second of two APPENDs (watched)",
                       min(t2 + WATCH_WINDOW, t0 + NEG_PROOF), t2)
        for p, raw in zip(paths, raws):
            self.assertEqual(read_file(p), raw)


# -- expunge --------------------------------------------------------------------------------------
class TestExpunge(Base):
    def test_expunge_in_watched_inbox_after_cat(self):
        self.watch("INBOX")
        with Other() as c:
            uid = status(c, "INBOX")
            raw = make_raw("exp-w", "Soon expunged")
            path = P("INBOX", msg_name("Soon expunged", uid))
            self.assertIsNone(lookup(path))
            D.append(c, "INBOX", raw, (), G._idate(0))
            t = time.monotonic()
            self.until(lambda: lookup(path) is not None, "APPEND before the expunge (watched)",
                       t + WATCH_WINDOW, t)
            # that stat looked the name up just now: the kernel keeps it for 5 s
            t_lookup = time.monotonic()
            self.assertEqual(sh(["cat", path], check=True).stdout, raw)  # now in the page cache
            self.assertEqual(read_file(path), raw)
            expunge(c, "INBOX", uid)
            t_exp = time.monotonic()
        self.until(lambda: lookup(path) is None, "expunge in the watched INBOX (read before)",
                   min(t_exp + WATCH_WINDOW, t_lookup + NEG_PROOF), t_exp)
        self.assertGone(path)
        self.assertNotIn(msg_name("Soon expunged", uid), os.listdir(P("INBOX")))

    def test_expunge_seed_message_in_watched_inbox(self):
        m = FIX["in-1"]
        path = P("INBOX", msg_name(m.subject, m.uid))
        self.assertEqual(read_file(path), m.raw)
        self.watch("INBOX")
        with Other() as c:
            expunge(c, "INBOX", m.uid)
            t = time.monotonic()
        self.until(lambda: lookup(path) is None, "expunge of a seed message (watched)",
                   t + WATCH_WINDOW, t)
        self.assertGone(path)

    def test_expunge_in_listed_folder_after_cat(self):
        m = FIX["otherexp-1"]
        path = P("OtherExp", msg_name(m.subject, m.uid))
        self.assertIn(os.path.basename(path), os.listdir(P("OtherExp")))
        self.assertEqual(sh(["cat", path], check=True).stdout, m.raw)
        self.watch("INBOX")
        with Other() as c:
            expunge(c, "OtherExp", m.uid)
            t = time.monotonic()
        self.until(lambda: lookup(path) is None, "expunge in a listed folder (read before)",
                   t + POLL_WINDOW, t)
        self.assertGone(path)
        others = {msg_name(FIX[k].subject, FIX[k].uid) for k in ("otherexp-0", "otherexp-2")}
        self.assertEqual(set(os.listdir(P("OtherExp"))), others)
        for k in ("otherexp-0", "otherexp-2"):
            self.assertEqual(read_file(P("OtherExp", msg_name(FIX[k].subject, FIX[k].uid))), FIX[k].raw)


# -- flags ----------------------------------------------------------------------------------------
class TestFlags(Base):
    def test_flags_in_watched_inbox(self):
        m = FIX["in-2"]
        path = P("INBOX", msg_name(m.subject, m.uid))
        self.assertEqual(xflags(path), set())
        self.watch("INBOX")
        with Other() as c:
            store(c, "INBOX", m.uid, "+FLAGS.SILENT", [r"\Flagged", "$Work"])
            t = time.monotonic()
        self.until(lambda: xflags(path) == {r"\Flagged", "$Work"}, "flags set (watched)",
                   t + WATCH_WINDOW, t)
        with Other() as c:
            store(c, "INBOX", m.uid, "-FLAGS.SILENT", [r"\Flagged"])
            t = time.monotonic()
        self.until(lambda: xflags(path) == {"$Work"}, "flag removed (watched)", t + WATCH_WINDOW, t)
        self.assertEqual(xflags(path), server_flags("INBOX", m.uid))
        r = sh(["getfattr", "-n", "user.imap.flags", "--only-values", path], check=True)
        self.assertEqual(set(r.stdout.decode().split()), {"$Work"})

    def test_flags_in_listed_folder(self):
        """Not watched: only the poll's STATUS HIGHESTMODSEQ (CONDSTORE) can tell."""
        m = FIX["otherflags-1"]
        path = P("OtherFlags", msg_name(m.subject, m.uid))
        self.assertIn(os.path.basename(path), os.listdir(P("OtherFlags")))
        self.assertEqual(xflags(path), {r"\Seen"})
        self.watch("INBOX")
        with Other() as c:
            store(c, "OtherFlags", m.uid, "FLAGS.SILENT", [r"\Answered", "$Label2"])
            t = time.monotonic()
        self.until(lambda: xflags(path) == {r"\Answered", "$Label2"},
                   "flags set in a listed folder (HIGHESTMODSEQ poll)", t + POLL_WINDOW, t)
        self.assertEqual(xflags(path), server_flags("OtherFlags", m.uid))
        m0 = FIX["otherflags-0"]
        self.assertEqual(xflags(P("OtherFlags", msg_name(m0.subject, m0.uid))), {r"\Seen"})


# -- folders --------------------------------------------------------------------------------------
class TestFolders(Base):
    def root_matches_server(self):
        with Other() as c:
            tree = C.server_tree(c)
        top = {k for k in tree if "/" not in k}
        self.assertEqual(set(os.listdir(M.mp)), top)

    def test_create_folder_and_child(self):
        os.listdir(M.mp)
        with Other() as c:
            self.appears_after_negative(P("LiveNew"), lambda: c.create("LiveNew"), POLL_WINDOW,
                                        "CREATE of a top-level folder (negative entry cached)")
            self.assertTrue(os.path.isdir(P("LiveNew")))
            self.assertEqual(os.getxattr(P("LiveNew"), "user.imap.mailbox"), b"LiveNew")
            self.appears_after_negative(P("Tree", "Kid"), lambda: c.create("Tree/Kid"), POLL_WINDOW,
                                        "CREATE of a subfolder (negative entry cached)")
        self.assertTrue(os.path.isdir(P("Tree", "Kid")))
        self.assertEqual(os.listdir(P("LiveNew")), [])
        self.assertEqual(os.listdir(P("Tree")), ["Kid"])
        self.assertIn("LiveNew", os.listdir(M.mp))
        self.root_matches_server()

    def test_rename_folder(self):
        kid_before = os.listdir(P("FolderRen"))
        self.assertIn("Kid", kid_before)
        old = P("FolderRen")
        new = P("FolderRenamed")
        with Other() as c:
            self.appears_after_negative(new, lambda: c.rename("FolderRen", "FolderRenamed"),
                                        POLL_WINDOW, "RENAME of a listed folder: new name")
            t = time.monotonic()
        self.until(lambda: not os.path.exists(old), "RENAME of a listed folder: old name gone",
                   t + POLL_WINDOW, t)
        self.assertFalse(os.path.exists(os.path.join(old, "Kid")))
        self.assertTrue(os.path.isdir(os.path.join(new, "Kid")))
        self.assertEqual(os.getxattr(new, "user.imap.mailbox"), b"FolderRenamed")
        m = FIX["folderren-0"]
        name = msg_name(m.subject, m.uid)
        self.assertEqual(sorted(os.listdir(new)), sorted(["Kid", name]))
        self.assertEqual(read_file(os.path.join(new, name)), m.raw)
        self.root_matches_server()

    def test_delete_folder(self):
        self.assertEqual(os.listdir(P("FolderDel")), [])
        self.assertTrue(os.path.isdir(P("FolderDel")))
        with Other() as c:
            typ, data = c.delete("FolderDel")
            self.assertEqual(typ, "OK", data)
            t = time.monotonic()
        self.until(lambda: not os.path.exists(P("FolderDel")), "DELETE of a listed folder",
                   t + POLL_WINDOW, t)
        self.assertNotIn("FolderDel", os.listdir(M.mp))
        self.root_matches_server()


# -- UIDVALIDITY ----------------------------------------------------------------------------------
class TestUidvalidity(Base):
    """The mailbox is deleted and recreated elsewhere: UIDs start again at 1. The new
    UID 1 has the same name (same subject and date) and the same size as the old one,
    but other bytes: whatever is cached for the old one (listing, content blocks, the
    kernel's inode and page cache) must not be served for the new one."""

    def run_recreate(self, mailbox, watched, window):
        olds = {k: FIX[k] for k in FIX if FIX[k].mailbox == mailbox}
        one = [m for m in olds.values() if m.subject == "Recreated one"][0]
        one_path = P(mailbox, msg_name(one.subject, one.uid))
        self.assertEqual(set(os.listdir(P(mailbox))),
                         {msg_name(m.subject, m.uid) for m in olds.values()})
        self.assertEqual(sh(["cat", one_path], check=True).stdout, one.raw)  # in the page cache
        uv_old = int(os.getxattr(P(mailbox), "user.imap.uidvalidity"))
        if watched:
            self.watch(mailbox)
        else:
            self.watch("INBOX")
        old_body = G._body_text(one.key)
        new_body = old_body.replace("this is", "THIS IS")
        self.assertEqual(len(new_body), len(old_body))
        with Other() as c:
            uv_new, new = recreate(c, mailbox, [
                (one.key, "Recreated one", new_body),           # same name, size, Message-ID
                (mailbox + "-new-2", "New only two", None),
                (mailbox + "-new-3", "New only three", None)])
            t = time.monotonic()
        self.assertNotEqual(uv_new, uv_old)
        self.assertEqual(msg_name("Recreated one", 1), os.path.basename(one_path))
        gone = [P(mailbox, msg_name(m.subject, m.uid)) for m in olds.values() if m is not one]
        come = [P(mailbox, name) for name, raw in new.values()]

        def done():
            try:
                uv = int(os.getxattr(P(mailbox), "user.imap.uidvalidity"))
            except OSError:
                return False
            return uv == uv_new and all(lookup(p) is None for p in gone) and \
                all(lookup(p) is not None for p in come)
        self.until(done, "UIDVALIDITY change (%s)" % ("watched" if watched else "listed"),
                   t + window, t)
        self.assertEqual(set(os.listdir(P(mailbox))), {name for name, raw in new.values()})
        for uid, (name, raw) in sorted(new.items()):
            with self.subTest(uid=uid):
                p = P(mailbox, name)
                self.assertEqual(os.stat(p).st_size, len(raw))
                self.assertEqual(os.getxattr(p, "user.imap.uid").decode(), str(uid))
                got = sh(["cat", p], check=True).stdout
                if got != raw and uid == 1:
                    self.fail("UID 1 of the new mailbox reads as the old UID 1 (%s)"
                              % ("old bytes" if got == one.raw else "other bytes %r" % got[:200]))
                self.assertEqual(got, raw)

    def test_recreate_listed_folder(self):
        self.run_recreate("Recreate", False, POLL_WINDOW)

    def test_recreate_watched_folder(self):
        self.run_recreate("RecreateW", True, WATCH_WINDOW)


# -- switching the watched folder -------------------------------------------------------------------
class TestSwitch(Base):
    """A mount of its own with -o poll=30 (user bob): nothing is polled during these
    tests (the rawlog shows no STATUS), so only IDLE on the folder opened last can bring
    a change within WATCH_WINDOW."""

    @classmethod
    def setUpClass(cls):
        cls.mount = new_mount("bob", SRV.password_file_for("bob"), SWITCH_POLL)
        try:
            cls.mount.mount(foreground=True)
            # INBOX (the watched folder at first) and the others, listed
            os.listdir(cls.mount.mp)
            for b in ("SwitchB", "SwitchC", "SwitchD", "SwitchE"):
                os.listdir(os.path.join(cls.mount.mp, b))
            os.listdir(os.path.join(cls.mount.mp, "INBOX"))
            cls.t_mount = time.monotonic()
            # the sync thread's first round (it checks everything once it has connected)
            # is over once it idles
            wait_idle_on("INBOX", "bob")
        except Exception:
            cls.mount.cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            cls.mount.unmount()
        finally:
            cls.mount.cleanup()

    def setUp(self):
        self.mark = C.RawlogMark(SRV, "bob")

    def tearDown(self):
        # the proof needs the poll not to have run meanwhile
        self.assertEqual(self.mark.commands(r'STATUS \S+ \(MESSAGES'), [], "a poll ran during the test")
        self.assertLess(time.monotonic() - self.t_mount, SWITCH_POLL - 1,
                        "TestSwitch ran so long that the first poll may have come")

    def append_and_wait(self, mailbox, key, subject, open_when, what):
        """stat the coming name (negative entry), then APPEND; open_when: open mailbox's
        directory (it becomes the watched one) "before" or "after" the APPEND, or None."""
        with Other("bob") as c:
            uid = status(c, mailbox)
            raw = make_raw(key, subject)
            path = P(mailbox, msg_name(subject, uid), m=self.mount)

            def change():
                if open_when == "before":
                    os.listdir(P(mailbox, m=self.mount))
                D.append(c, mailbox, raw, (), G._idate(0))
                if open_when == "after":
                    os.listdir(P(mailbox, m=self.mount))
            self.appears_after_negative(path, change, WATCH_WINDOW, what)
        self.assertEqual(read_file(path), raw)
        return uid, path

    def test_switch_then_change_at_once(self):
        """The change lands right after the directory is opened, possibly before the
        sync connection has SELECTed it: that must not lose it."""
        self.append_and_wait("SwitchB", "switch-b", "Right after open", "before",
                             "APPEND right after opening the folder (poll=30)")

    def test_change_just_before_open(self):
        """The folder's listing is fresh (a lookup fetched it just now), the change
        lands, then the directory is opened: the open itself doesn't ask the server
        (the listing is < 5 s old) and IDLE starts after the change, so only comparing
        what SELECT says with the listing can find it."""
        self.append_and_wait("SwitchE", "switch-e", "Just before open", "after",
                             "APPEND between listing and opening (poll=30)")

    def test_switch_then_change_while_idling(self):
        self.watch("SwitchC", "bob")
        self.append_and_wait("SwitchC", "switch-c", "While idling", None,
                             "APPEND to the newly watched folder (poll=30)")
        uid, path = self.append_and_wait("SwitchC", "switch-c2", "While idling 2", None,
                                         "second APPEND to the newly watched folder (poll=30)")
        with Other("bob") as c:
            store(c, "SwitchC", uid, "+FLAGS.SILENT", [r"\Flagged"])
            t = time.monotonic()
        self.until(lambda: xflags(path) == {r"\Flagged"}, "flags in the newly watched folder (poll=30)",
                   t + WATCH_WINDOW, t)


if __name__ == "__main__":
    tap.main()
