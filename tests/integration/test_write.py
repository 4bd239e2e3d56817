#!/usr/bin/python3
"""The write path (issue 3), checked with real tools and an independent client:
mkdir/rmdir/rename of folders (nested, non-ASCII, INBOX, \\NoInferiors, not empty),
rm -r, rm of a message (expunge: this server has no \\Trash, see test_trash.py), mv of
messages between folders (one, 200 with flags), cp / cat > / cp -p into a folder (CRLF,
INTERNALDATE, flags set before close, empty file, the corpus), messages as files
(EACCES, EPERM, utimens, -o ro), user.imap.flags, hostile folder names, and servers
without MOVE, without UIDPLUS, or with a folder the user may read but not change (ACL).

Every change is checked on the server through imaplib on its own connection (and the
Dovecot rawlog for what was sent), and in the mount's own view right after it."""

import email
import email.utils
import errno
import glob
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tap  # noqa: E402
import common as C  # noqa: E402
from common import D, I, G, sh, mount_files, read_file, errno_of, ename  # noqa: E402

SRV = None
M = None
TMP = None
FIX = {}        # key → Msg (mailbox, uid, raw, flags) loaded before the mount
MANY_N = 200
CORPUS = os.path.normpath(os.path.join(I.SRC, "..", "shared", "corpus"))
HAVE_CORPUS = bool(glob.glob(os.path.join(CORPUS, "**", "*.eml"), recursive=True))

# mailbox → [(key, flags)] (an empty list: an empty mailbox). Parents of nested names
# that are not listed themselves are \Noselect on the server.
FOLDERS = {
    "INBOX": [("inbox-%d" % i, ()) for i in range(3)],
    "Exists": [],
    "RmEmpty": [], "RmLate": [], "RmParent": [], "RmParent/Kid": [],
    "RmFull": [("rmfull-%d" % i, ()) for i in range(2)],
    "NsParent/Kid": [],
    "Proj": [("proj-%d" % i, [r"\Seen"] if i == 0 else []) for i in range(3)],
    "Proj/Sub": [("projsub-%d" % i, ()) for i in range(2)], "Proj/Sub/Deep": [],
    "Projects": [("projects-0", ())], "Proj2": [("proj2-0", ())],
    "RenA": [("rena-%d" % i, ()) for i in range(2)], "RenA/Kid": [("renakid-0", [r"\Flagged"])],
    "Mover": [("mover-0", ())], "Dest": [], "Alt": [("alt-0", ())],
    "RenX": [("renx-0", ())], "RenY": [], "RenZ": [("renz-0", ())],
    "RmMsgs": [("rmmsgs-%d" % i, ()) for i in range(3)],
    "Keep": [("keep-a", ()), ("keep-b", ())],
    "MvSrc": [("mvsrc-0", [r"\Seen", "$Label1"]), ("mvsrc-1", [r"\Flagged"]), ("mvsrc-2", ()),
              ("mvsrc-3", [r"\Answered"])],
    "MvDst": [("mvdst-%d" % i, ()) for i in range(5)],
    "Archive": [("archive-seed-%d" % i, ()) for i in range(7)],
    "Files": [("files-%d" % i, [r"\Seen"]) for i in range(4)],
    "Flags": [("flags-%d" % i, [r"\Seen", "$Old"]) for i in range(6)],
    "Hostile": [("hostile-%d" % i, ()) for i in range(2)],
    "Canary": [("canary-0", ())],
    "CpIn": [], "CpMany": [], "Corpus": [], "CorpusRef": [],
    "RoEmpty": [],
}


def many_flags(k):
    f = []
    if k % 2 == 0:
        f.append(r"\Seen")
    if k % 3 == 0:
        f.append(r"\Flagged")
    if k % 5 == 0:
        f.append("$Label1")
    if k % 7 == 0:
        f.append(r"\Answered")
    return f


def make_msg(key, mailbox, flags=(), i=0, eol=b"\r\n", subject=None):
    dt = G._idate(i % 300)
    raw = G.simple(key, subject or "Write test %s" % key, email.utils.format_datetime(dt),
                   G._body_text(key), eol=eol)
    return G.Msg(key, mailbox, raw, subject or "Write test %s" % key, dt.strftime("%Y-%m-%d"), dt, flags)


def setUpModule():
    global SRV, M, TMP
    I.check_bin()
    TMP = tempfile.mkdtemp(prefix="itw", dir="/tmp")
    os.chmod(TMP, 0o755)
    try:
        SRV = D.Dovecot(rawlog=True)
        SRV.add_user("dot", "dot-pw", extra="userdb_namespace/inbox/separator=.")
        # mbox: a mailbox is a file, so it can't have children (LIST shows \NoInferiors)
        SRV.add_user("mbx", "mbx-pw", extra="userdb_mail=mbox:~/mbox:INBOX=~/mbox/inbox")
        SRV.start()
        c = SRV.client()
        n = 0
        for mailbox, items in FOLDERS.items():
            msgs = []
            for key, flags in items:
                n += 1
                msgs.append(make_msg(key, mailbox, flags, n))
            C.create_and_append(c, mailbox, msgs)
            for m in msgs:
                FIX[m.key] = m
        c.create("Many")
        many = [make_msg("many-%03d" % k, "Many", many_flags(k), k) for k in range(MANY_N)]
        G.multiappend(c, "Many", many)
        for m in many:
            FIX[m.key] = m
        c.logout()
        c = SRV.client("mbx")
        for name in ("Leaf", "Box/"):
            typ, data = c.create(D.imap_quote(name))
            assert typ == "OK", (name, data)
        c.logout()
        M = C.mount_of(SRV)
        M.mount(foreground=True)
    except Exception:
        tearDownModule(cleanup_only=True)
        raise


def tearDownModule(cleanup_only=False):
    C.teardown([M], servers=[SRV], tmp=TMP, unmount=not cleanup_only)


# -- helpers ---------------------------------------------------------------------------------
def P(*parts):
    return os.path.join(M.mp, *parts)


def fx(key):
    return FIX[key]


def mpath(m, mp=None):
    base = mp or M.mp
    files = mount_files(os.path.join(base, m.mailbox))
    if m.uid not in files:
        raise AssertionError("%s (UID %d) not in the mount's %s: %r" % (m.key, m.uid, m.mailbox, files))
    return os.path.join(base, m.mailbox, files[m.uid])


def srv(mailbox, bodies=True, user=None):
    """(meta, bodies) of a mailbox on the server, on a connection of its own."""
    return C.server_messages(SRV, mailbox, bodies, user)


def srv_names(user=None):
    c = SRV.client(user)
    try:
        return C.mailbox_names(c)
    finally:
        c.logout()


def log_tail():
    return "\n--- imapfs log (tail) ---\n" + M.read_log()[-3000:]


def local_file(name, data, mtime=None):
    d = tempfile.mkdtemp(dir=TMP)
    p = os.path.join(d, name)
    with open(p, "wb") as f:
        f.write(data)
    if mtime is not None:
        os.utime(p, (mtime, mtime))
    return p


def walk_dirs(root):
    res = set()
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            res.add(os.path.relpath(os.path.join(dirpath, d), root))
    return res


def non_uid_names(path):
    return sorted(n for n in os.listdir(path) if not os.path.isdir(os.path.join(path, n))
                  and C.uid_of(n) is None)


def only_new(before, after):
    new = sorted(set(after) - set(before))
    return new


def set_flags_elsewhere(mailbox, uid, flags):
    c = SRV.client()
    try:
        D.select(c, mailbox, readonly=False)
        typ, data = c.uid("STORE", str(uid), "+FLAGS.SILENT", "(%s)" % " ".join(flags))
        assert typ == "OK", data
    finally:
        c.logout()  # LOGOUT, not CLOSE: nothing is expunged


class Base(unittest.TestCase):
    def assertErrno(self, fn, expected, what):
        """fn() must fail with one of expected (an errno or a tuple of them)."""
        exp = expected if isinstance(expected, tuple) else (expected,)
        e = errno_of(fn)
        self.assertIn(e, exp, "%s: got %s, want %s" % (what, ename(e), "/".join(map(ename, exp))))
        return e

    def assertNoPlainExpunge(self, mark):
        bad = mark.commands(r"EXPUNGE|CLOSE")
        self.assertEqual(bad, [], "plain EXPUNGE/CLOSE sent: they also remove what other clients "
                                  "marked \\Deleted")


# -- folders -------------------------------------------------------------------------------------
class TestFolders(Base):
    def test_mkdir_creates_mailbox(self):
        os.mkdir(P("NewTop"))
        names = srv_names()
        self.assertIn("NewTop", names)
        self.assertFalse(C.is_noselect(names["NewTop"][0]), names["NewTop"])
        self.assertIn("NewTop", os.listdir(M.mp))
        self.assertTrue(stat.S_ISDIR(os.stat(P("NewTop")).st_mode))
        self.assertEqual(os.getxattr(P("NewTop"), "user.imap.mailbox"), b"NewTop")
        self.assertEqual(os.listdir(P("NewTop")), [])
        # a folder made here is usable at once: a message can be copied into it
        r = sh(["cp", local_file("m.eml", make_msg("newtop-0", None).raw), P("NewTop") + "/"])
        self.assertEqual(r.returncode, 0, r.stderr)
        meta, _ = srv("NewTop", bodies=False)
        self.assertEqual(len(meta), 1)

    def test_mkdir_p_nested(self):
        r = sh(["mkdir", "-p", P("Deep1", "a", "b", "c")])
        self.assertEqual(r.returncode, 0, r.stderr)
        names = srv_names()
        for n in ("Deep1", "Deep1/a", "Deep1/a/b", "Deep1/a/b/c"):
            self.assertIn(n, names)
            self.assertFalse(C.is_noselect(names[n][0]), (n, names[n]))
        self.assertEqual(walk_dirs(P("Deep1")), {"a", "a/b", "a/b/c"})
        self.assertEqual(os.getxattr(P("Deep1", "a", "b", "c"), "user.imap.mailbox"), b"Deep1/a/b/c")

    def test_mkdir_in_existing_folders(self):
        os.mkdir(P("INBOX", "Child"))
        os.mkdir(P("Exists", "Kid"))
        names = srv_names()
        self.assertIn("INBOX/Child", names)
        self.assertIn("Exists/Kid", names)
        self.assertIn("Child", os.listdir(P("INBOX")))
        # INBOX's messages are still there and still listed next to the new folder
        self.assertEqual(set(mount_files(P("INBOX"))), set(srv("INBOX", bodies=False)[0]))

    def test_mkdir_non_ascii(self):
        names = ["Entwürfe 2", "日本語フォルダ", "Emoji 📬 box", "R&D Ünïcödé", "Ελληνικά"]
        for n in names:
            os.mkdir(P(n))
        os.mkdir(P("Ελληνικά", "Υποφάκελος"))
        got = srv_names()
        for n in names + ["Ελληνικά/Υποφάκελος"]:
            with self.subTest(name=n):
                self.assertIn(n, got)
                raw = got[n][2]
                # the raw LIST name, independently encoded
                self.assertEqual(raw, "/".join(D.mutf7_encode(p) for p in n.split("/")))
                self.assertEqual(os.getxattr(P(n), "user.imap.mailbox").decode(), raw)
        root = os.listdir(M.mp)
        for n in names:
            self.assertIn(n, root)
        self.assertEqual(os.listdir(P("Ελληνικά")), ["Υποφάκελος"])

    def test_mkdir_existing_is_eexist(self):
        before = set(srv_names())
        self.assertErrno(lambda: os.mkdir(P("Exists")), errno.EEXIST, "mkdir Exists")
        self.assertErrno(lambda: os.mkdir(P("INBOX")), errno.EEXIST, "mkdir INBOX")
        # IMAP's INBOX is case-insensitive: Dovecot answers OK to CREATE inbox, and nothing is new
        self.assertErrno(lambda: os.mkdir(P("inbox")), errno.EEXIST, "mkdir inbox")
        self.assertNotIn("inbox", os.listdir(M.mp))
        # created by another client a moment ago: the server has it, so it exists
        c = SRV.client()
        c.create("Sneaky")
        c.logout()
        self.assertErrno(lambda: os.mkdir(P("Sneaky")), errno.EEXIST, "mkdir of a folder made elsewhere")
        self.assertEqual(set(srv_names()), before | {"Sneaky"})
        self.assertIn("Sneaky", os.listdir(M.mp))

    def test_mkdir_under_noinferiors_is_eperm(self):
        m = I.Mount("imaps://mbx@127.0.0.1:%d" % SRV.imaps_port,
                    opts={"cafile": SRV.cafile, "password_file": SRV.password_file_for("mbx")})
        try:
            m.mount(foreground=True)
            names = srv_names("mbx")
            self.assertIn("\\noinferiors", [f.lower() for f in names["Leaf"][0]],
                          "fixture: Leaf should be \\NoInferiors: %r" % (names,))
            self.assertTrue(os.path.isdir(os.path.join(m.mp, "Leaf")))
            e = errno_of(lambda: os.mkdir(os.path.join(m.mp, "Leaf", "child")))
            self.assertEqual(e, errno.EPERM, "mkdir under \\NoInferiors: %s" % ename(e))
            self.assertEqual(set(srv_names("mbx")), set(names))
            self.assertEqual(os.listdir(os.path.join(m.mp, "Leaf")), [])
            # a child of a \Noselect folder in the same account still works
            os.mkdir(os.path.join(m.mp, "Box", "Sub"))
            self.assertIn("Box/Sub", srv_names("mbx"))
            m.unmount()
        finally:
            m.cleanup()

    def test_rmdir_empty(self):
        os.listdir(P("RmEmpty"))
        os.rmdir(P("RmEmpty"))
        self.assertNotIn("RmEmpty", srv_names())
        self.assertNotIn("RmEmpty", os.listdir(M.mp))
        self.assertFalse(os.path.exists(P("RmEmpty")))

    def test_rmdir_with_messages_is_enotempty(self):
        # not listed through the mount first: the check must not rely on an unfilled cache
        e = errno_of(lambda: os.rmdir(P("RmFull")))
        self.assertEqual(e, errno.ENOTEMPTY, "rmdir of a folder with 2 messages: %s" % ename(e))
        self.assertIn("RmFull", srv_names())
        self.assertEqual(len(srv("RmFull", bodies=False)[0]), 2)
        self.assertEqual(len(mount_files(P("RmFull"))), 2)
        r = sh(["rmdir", P("RmFull")])
        self.assertNotEqual(r.returncode, 0)
        self.assertEqual(len(srv("RmFull", bodies=False)[0]), 2)

    def test_rmdir_of_folder_that_got_mail_elsewhere(self):
        self.assertEqual(os.listdir(P("RmLate")), [])  # the mount has seen it empty
        c = SRV.client()
        D.append(c, "RmLate", make_msg("rmlate-0", "RmLate").raw)
        c.logout()
        e = errno_of(lambda: os.rmdir(P("RmLate")))
        self.assertEqual(e, errno.ENOTEMPTY, "rmdir must ask the server, not trust an old empty listing "
                                             "(Dovecot's DELETE would delete the message): %s" % ename(e))
        self.assertIn("RmLate", srv_names())
        self.assertEqual(len(srv("RmLate", bodies=False)[0]), 1)

    def test_rmdir_with_subfolder_is_enotempty(self):
        e = errno_of(lambda: os.rmdir(P("RmParent")))
        self.assertEqual(e, errno.ENOTEMPTY, "rmdir of a folder with a subfolder: %s" % ename(e))
        names = srv_names()
        self.assertIn("RmParent", names)
        self.assertIn("RmParent/Kid", names)
        self.assertEqual(os.listdir(P("RmParent")), ["Kid"])

    def test_rmdir_inbox_is_eperm(self):
        self.assertErrno(lambda: os.rmdir(P("INBOX")), errno.EPERM, "rmdir INBOX")
        self.assertIn("INBOX", srv_names())
        self.assertIn("INBOX", os.listdir(M.mp))

    def test_rmdir_child_then_noselect_parent(self):
        os.rmdir(P("NsParent", "Kid"))
        names = srv_names()
        self.assertNotIn("NsParent/Kid", names)
        # Dovecot keeps the \Noselect parent; the mount shows what the server has
        self.assertEqual("NsParent" in os.listdir(M.mp), "NsParent" in names)
        self.assertEqual(os.listdir(P("NsParent")) if "NsParent" in names else [], [])
        if "NsParent" in names:
            os.rmdir(P("NsParent"))
            self.assertNotIn("NsParent", srv_names())
            self.assertNotIn("NsParent", os.listdir(M.mp))

    def test_rm_r_removes_exactly_the_subtree(self):
        mark = C.RawlogMark(SRV)
        skip = {"Many", "Corpus", "CorpusRef", "CpIn"}
        before = C.account_state(SRV, skip=skip)
        self.assertEqual(len(before["Proj/Sub"]), 2)
        r = sh(["rm", "-r", P("Proj")], timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr + log_tail().encode())
        after = C.account_state(SRV, skip=skip)
        gone = {n for n in before if n == "Proj" or n.startswith("Proj/")}
        self.assertEqual(gone, {"Proj", "Proj/Sub", "Proj/Sub/Deep"})
        self.assertEqual({n for n in after if n == "Proj" or n.startswith("Proj/")}, set())
        self.assertNotIn("Proj", srv_names())
        expected = {n: v for n, v in before.items() if n not in gone}
        self.assertEqual(after, expected, "something else changed on the server")
        root = os.listdir(M.mp)
        self.assertNotIn("Proj", root)
        self.assertIn("Projects", root)
        self.assertIn("Proj2", root)
        self.assertEqual(len(mount_files(P("Projects"))), 1)
        self.assertNoPlainExpunge(mark)

    def test_rename_folder_with_subtree(self):
        # warm every cache first: the listing, a message's content, the child
        files = mount_files(P("RenA"))
        kid = mount_files(P("RenA", "Kid"))
        self.assertEqual(len(files), 2)
        read_file(P("RenA", "Kid", list(kid.values())[0]))
        before_a = srv("RenA")[1]
        before_kid = srv("RenA/Kid")[1]
        r = sh(["mv", P("RenA"), P("RenB")])
        self.assertEqual(r.returncode, 0, r.stderr)
        names = srv_names()
        self.assertNotIn("RenA", names)
        self.assertNotIn("RenA/Kid", names)
        self.assertIn("RenB", names)
        self.assertIn("RenB/Kid", names)
        self.assertEqual(sorted(srv("RenB")[1].values()), sorted(before_a.values()))
        after_kid = srv("RenB/Kid")[1]
        self.assertEqual(sorted(after_kid.values()), sorted(before_kid.values()))
        root = os.listdir(M.mp)
        self.assertNotIn("RenA", root)
        self.assertIn("RenB", root)
        self.assertFalse(os.path.exists(P("RenA")))
        self.assertFalse(os.path.exists(P("RenA", "Kid")))
        self.assertEqual(os.listdir(P("RenB")).count("Kid"), 1)
        self.assertEqual(os.getxattr(P("RenB", "Kid"), "user.imap.mailbox"), b"RenB/Kid")
        self.assertEqual(os.getxattr(P("RenB"), "user.imap.mailbox"), b"RenB")
        # the messages are read from the renamed mailbox
        kid_files = mount_files(P("RenB", "Kid"))
        self.assertEqual(set(kid_files), set(after_kid))
        for uid, name in kid_files.items():
            self.assertEqual(read_file(P("RenB", "Kid", name)), after_kid[uid])
        self.assertEqual(len(mount_files(P("RenB"))), 2)

    def test_rename_folder_into_other_parent(self):
        os.rename(P("Mover"), P("Dest", "Mover"))
        names = srv_names()
        self.assertNotIn("Mover", names)
        self.assertIn("Dest/Mover", names)
        self.assertEqual(len(srv("Dest/Mover", bodies=False)[0]), 1)
        self.assertEqual(os.listdir(P("Dest")), ["Mover"])
        self.assertEqual(len(mount_files(P("Dest", "Mover"))), 1)
        self.assertFalse(os.path.exists(P("Mover")))

    def test_rename_folder_non_ascii(self):
        new = "Ältere Sachen ✉"
        os.rename(P("Alt"), P(new))
        names = srv_names()
        self.assertNotIn("Alt", names)
        self.assertIn(new, names)
        self.assertEqual(names[new][2], D.mutf7_encode(new))
        self.assertEqual(len(srv(new, bodies=False)[0]), 1)
        self.assertIn(new, os.listdir(M.mp))
        self.assertEqual(os.getxattr(P(new), "user.imap.mailbox").decode(), D.mutf7_encode(new))

    def test_rename_inbox_is_eperm(self):
        before = srv("INBOX", bodies=False)[0]
        self.assertErrno(lambda: os.rename(P("INBOX"), P("OldInbox")), errno.EPERM, "rename INBOX")
        r = sh(["mv", P("INBOX"), P("OldInbox2")])
        self.assertNotEqual(r.returncode, 0)
        names = srv_names()
        self.assertNotIn("OldInbox", names)
        self.assertNotIn("OldInbox2", names)
        self.assertEqual(set(srv("INBOX", bodies=False)[0]), set(before))
        self.assertIn("INBOX", os.listdir(M.mp))

    def test_rename_folder_onto_existing(self):
        # Onto an empty folder, rename replaces it, as POSIX says (issue 17; test_errors.py).
        self.assertErrno(lambda: os.rename(P("RenY"), P("RenX")), (errno.EEXIST, errno.ENOTEMPTY),
                         "rename onto an existing folder with a message")
        names = srv_names()
        self.assertIn("RenX", names)
        self.assertIn("RenY", names)
        self.assertEqual(len(srv("RenX", bodies=False)[0]), 1)
        self.assertEqual(len(mount_files(P("RenX"))), 1)
        self.assertTrue(os.path.isdir(P("RenY")))

    def test_rename_folder_onto_one_made_elsewhere(self):
        os.listdir(M.mp)
        c = SRV.client()
        c.create("RenTaken")
        c.logout()
        self.assertErrno(lambda: os.rename(P("RenZ"), P("RenTaken")), (errno.EEXIST, errno.ENOTEMPTY),
                         "rename onto a folder another client just made")
        names = srv_names()
        self.assertIn("RenZ", names)
        self.assertEqual(len(srv("RenZ", bodies=False)[0]), 1)
        self.assertEqual(len(srv("RenTaken", bodies=False)[0]), 0)
        self.assertEqual(len(mount_files(P("RenZ"))), 1)


# -- messages: rm and mv -------------------------------------------------------------------------
class TestMessages(Base):
    def test_rm_expunges_one_message(self):
        mark = C.RawlogMark(SRV)
        m = fx("rmmsgs-1")
        path = mpath(m)
        r = sh(["rm", path])
        self.assertEqual(r.returncode, 0, r.stderr)
        meta, _ = srv("RmMsgs", bodies=False)
        self.assertEqual(set(meta), {fx("rmmsgs-0").uid, fx("rmmsgs-2").uid})
        self.assertFalse(os.path.exists(path))
        self.assertEqual(set(mount_files(P("RmMsgs"))), set(meta))
        self.assertTrue(mark.wait_commands(r"UID EXPUNGE %d\b" % m.uid),
                        "no UID EXPUNGE %d in %r" % (m.uid, mark.lines()[-20:]))
        self.assertTrue(mark.wait_commands(r"UID STORE %d \+FLAGS(\.SILENT)? \(\\Deleted\)" % m.uid),
                        "no UID STORE %d +FLAGS (\\Deleted)" % m.uid)
        self.assertNoPlainExpunge(mark)
        self.assertErrno(lambda: os.unlink(path), errno.ENOENT, "second unlink")

    def test_rm_keeps_message_another_client_marked_deleted(self):
        a, b = fx("keep-a"), fx("keep-b")
        pb = mpath(b)
        set_flags_elsewhere("Keep", a.uid, [r"\Deleted"])
        mark = C.RawlogMark(SRV)
        os.unlink(pb)
        meta, _ = srv("Keep", bodies=False)
        self.assertIn(a.uid, meta, "the message another client marked \\Deleted was expunged too")
        self.assertIn(r"\Deleted", meta[a.uid]["flags"])
        self.assertNotIn(b.uid, meta)
        self.assertNoPlainExpunge(mark)
        self.assertFalse(os.path.exists(pb))

    def check_moved(self, m, typed_name, src_path):
        """m moved from its folder to MvDst: returns (new uid, new path)."""
        seed = {fx("mvdst-%d" % i).uid for i in range(5)}
        src_meta, _ = srv(m.mailbox, bodies=False)
        self.assertNotIn(m.uid, src_meta, "still in the source on the server")
        meta, bodies = srv("MvDst")
        arrived = [u for u, b in bodies.items() if b == m.raw]
        self.assertEqual(len(arrived), 1, "%s arrived %d times in MvDst" % (m.key, len(arrived)))
        new = arrived[0]
        self.assertNotIn(new, seed)
        self.assertEqual(C.flags_set(meta[new]["flags"]), set(m.flags), "flags not kept")
        # the mount: gone from the source, in the target under its regular name only
        self.assertFalse(os.path.exists(src_path), "source name still there")
        self.assertNotIn(m.uid, mount_files(P(m.mailbox)))
        files = mount_files(P("MvDst"))  # raises on a name without [UID]
        self.assertEqual(set(files), set(meta))
        np = P("MvDst", files[new])
        if files[new] != typed_name:
            self.assertNotIn(typed_name, os.listdir(P("MvDst")))
            # GNU mv stats the target after the rename; a name that still resolves for a
            # while is fine if it is the moved message itself, not a ghost
            try:
                st = os.lstat(P("MvDst", typed_name))
                self.assertEqual(st.st_ino, os.stat(np).st_ino,
                                 "the typed name %r resolves to something else than the moved message"
                                 % typed_name)
            except FileNotFoundError:
                pass
        self.assertEqual(G.check_name(files[new], new, m.subject, m.date, 0), [])
        self.assertEqual(read_file(np), bodies[new])
        self.assertEqual(os.getxattr(np, "user.imap.uid").decode(), str(new))
        self.assertEqual(set(os.getxattr(np, "user.imap.flags").decode().split()), set(m.flags))
        self.assertEqual(os.stat(np).st_size, meta[new]["size"])
        return new, np

    def test_mv_message_to_folder(self):
        m = fx("mvsrc-0")
        src = mpath(m)
        mount_files(P("MvDst"))  # the target's listing is cached: it must not go stale
        r = sh(["mv", src, P("MvDst") + "/"])
        self.assertEqual(r.returncode, 0, r.stderr + log_tail().encode())
        self.check_moved(m, os.path.basename(src), src)

    def test_mv_message_with_a_typed_name(self):
        m = fx("mvsrc-1")
        src = mpath(m)
        os.rename(src, P("MvDst", "my own name.eml"))
        self.check_moved(m, "my own name.eml", src)

    def test_rename_message_in_its_folder_is_eperm(self):
        m = fx("mvsrc-2")
        src = mpath(m)
        self.assertErrno(lambda: os.rename(src, P("MvSrc", "renamed.eml")), errno.EPERM, "rename in folder")
        self.assertTrue(os.path.exists(src))
        self.assertFalse(os.path.exists(P("MvSrc", "renamed.eml")))
        self.assertIn(m.uid, srv("MvSrc", bodies=False)[0])

    def test_mv_onto_existing_message_is_eexist(self):
        m = fx("mvsrc-3")
        src = mpath(m)
        target = mpath(fx("mvdst-0"))
        before = srv("MvDst")[1]
        self.assertErrno(lambda: os.rename(src, target), errno.EEXIST, "rename onto a message")
        self.assertIn(m.uid, srv("MvSrc", bodies=False)[0])
        after = srv("MvDst")[1]
        self.assertEqual({u: b for u, b in after.items() if u in before}, before)
        self.assertNotIn(m.raw, after.values())
        self.assertTrue(os.path.exists(src))
        self.assertEqual(read_file(target), before[fx("mvdst-0").uid])

    def test_mv_200_messages_with_flags(self):
        expected = {fx("many-%03d" % k).raw: set(many_flags(k)) for k in range(MANY_N)}
        seed = set(srv("Archive", bodies=False)[0])
        self.assertEqual(len(mount_files(P("Many"))), MANY_N)
        t = time.monotonic()
        r = sh(["sh", "-c", 'cd "$1" && mv -- *.eml ../Archive/', "sh", P("Many")], timeout=240)
        secs = time.monotonic() - t
        sys.stdout.write("# mv of %d messages: %.2fs\n" % (MANY_N, secs))
        err = r.stderr.decode("utf-8", "replace")
        if r.returncode != 0 and "cannot stat" in err:
            err = ("GNU mv (coreutils 9.1) with several sources lstat()s each target name right "
                   "after its rename (to refuse to overwrite a file it just made); it fails with "
                   "'cannot stat' when that name is already gone. %d such errors, e.g.\n%s"
                   % (err.count("cannot stat"), "\n".join(err.splitlines()[:3])))
        self.assertEqual(r.returncode, 0, err[-3000:] + log_tail())
        meta, _ = srv("Many", bodies=False)
        self.assertEqual(meta, {}, "%d messages stayed behind" % len(meta))
        meta, bodies = srv("Archive")
        new = {u: b for u, b in bodies.items() if u not in seed}
        self.assertEqual(len(new), MANY_N, "%d arrived, want %d" % (len(new), MANY_N))
        problems = []
        got = {}
        for u, b in new.items():
            if b in got:
                problems.append("arrived twice: UID %d and %d" % (got[b], u))
            got[b] = u
            if b not in expected:
                problems.append("UID %d: not one of the moved messages" % u)
            elif C.flags_set(meta[u]["flags"]) != expected[b]:
                problems.append("UID %d: flags %r, want %r" % (u, meta[u]["flags"], sorted(expected[b])))
        self.assertEqual(problems[:20], [])
        self.assertEqual(mount_files(P("Many")), {})
        self.assertEqual(set(mount_files(P("Archive"))), set(meta))


# -- creating messages ---------------------------------------------------------------------------
def append_literal_sizes(mark):
    return [int(x) for x in re.findall(r"\{(\d+)\+?\}$", "\n".join(mark.wait_commands("APPEND")), re.M)]


class TestCopyIn(Base):
    def cp_and_find(self, folder, argv_or_fn, created_names, expect_n=1):
        """Runs a copy into folder; returns {new uid: (meta, body)} from the server and
        checks the mount's view right away."""
        before, _ = srv(folder, bodies=False)
        if callable(argv_or_fn):
            argv_or_fn()
        else:
            r = sh(argv_or_fn, timeout=120)
            self.assertEqual(r.returncode, 0, "%s: %r" % (argv_or_fn[0], r.stderr) + log_tail())
        meta, bodies = srv(folder)
        new = only_new(before, meta)
        self.assertEqual(len(new), expect_n, "%d new messages on the server, want %d" % (len(new), expect_n))
        listing = os.listdir(P(folder))
        for n in created_names:
            self.assertNotIn(n, listing, "the created name is still listed after close")
            self.assertFalse(os.path.exists(P(folder, n)), "the created name %r still resolves" % n)
        files = mount_files(P(folder))
        self.assertEqual(set(files), set(meta))
        for u in new:
            self.assertEqual(read_file(P(folder, files[u])), bodies[u])
            self.assertEqual(os.stat(P(folder, files[u])).st_size, meta[u]["size"])
        return {u: (meta[u], bodies[u], P(folder, files[u])) for u in new}

    def test_cp_lf_file_becomes_crlf(self):
        data = make_msg("cp-lf", None, eol=b"\n").raw
        self.assertNotIn(b"\r", data)
        src = local_file("lf message.eml", data)
        mark = C.RawlogMark(SRV)
        t = time.time()
        new = self.cp_and_find("CpIn", ["cp", src, P("CpIn") + "/"], ["lf message.eml"])
        (meta, body, path), = new.values()
        self.assertEqual(body, C.crlf(data))
        # cp without -p: the message's own Date header (issue 12), not now
        want = email.utils.parsedate_to_datetime(email.message_from_bytes(data)["Date"]).timestamp()
        self.assertEqual(meta["internaldate"], want, "INTERNALDATE is not the Date header: %s"
                         % meta["internaldate_raw"])
        self.assertEqual(meta["flags"], [], "flags set although none were asked for")
        # what went over the wire: Dovecot stores either form, the APPEND literal shows which
        self.assertIn(len(C.crlf(data)), append_literal_sizes(mark),
                      "APPEND literal is not the CRLF form (%d bytes): %r" % (
                          len(C.crlf(data)), mark.commands("APPEND")))

    def test_cp_crlf_file_kept(self):
        data = make_msg("cp-crlf", None).raw + b"trailing line without newline"
        src = local_file("crlf.eml", data)
        mark = C.RawlogMark(SRV)
        new = self.cp_and_find("CpIn", ["cp", src, P("CpIn") + "/"], ["crlf.eml"])
        (meta, body, path), = new.values()
        self.assertEqual(body, data)
        self.assertIn(len(data), append_literal_sizes(mark))

    def test_cat_redirect(self):
        data = make_msg("cat-redirect", None, eol=b"\n").raw
        before, _ = srv("CpIn", bodies=False)
        r = sh(["sh", "-c", 'cat > "$1"', "sh", P("CpIn", "typed by cat.eml")], input=data)
        self.assertEqual(r.returncode, 0, r.stderr)
        meta, bodies = srv("CpIn")
        new = only_new(before, meta)
        self.assertEqual(len(new), 1)
        self.assertEqual(bodies[new[0]], C.crlf(data))
        self.assertNotIn("typed by cat.eml", os.listdir(P("CpIn")))
        self.assertIn(new[0], mount_files(P("CpIn")))

    def test_cp_p_sets_internaldate(self):
        t = 1620285189  # 2021-05-06 07:13:09 UTC
        src = local_file("old.eml", make_msg("cp-p", None).raw, mtime=t)
        new = self.cp_and_find("CpIn", ["cp", "-p", src, P("CpIn") + "/"], ["old.eml"])
        (meta, body, path), = new.values()
        self.assertEqual(meta["internaldate"], t, "INTERNALDATE %s" % meta["internaldate_raw"])
        self.assertEqual(int(os.stat(path).st_mtime), t)

    def test_flags_and_mtime_set_on_the_open_file(self):
        t = 1300000000  # 2011-03-13 07:06:40 UTC
        data = make_msg("py-fd", None).raw
        target = P("CpIn", "from python.eml")

        def write():
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                os.write(fd, data[:100])
                os.write(fd, data[100:])
                os.setxattr(fd, "user.imap.flags", b"\\Flagged $Label1")
                os.utime(fd, (t, t))
            finally:
                os.close(fd)  # raises if the APPEND failed
        new = self.cp_and_find("CpIn", write, ["from python.eml"])
        (meta, body, path), = new.values()
        self.assertEqual(body, data)
        self.assertEqual(C.flags_set(meta["flags"]), {"\\Flagged", "$Label1"})
        self.assertEqual(meta["internaldate"], t, meta["internaldate_raw"])
        self.assertEqual(set(os.getxattr(path, "user.imap.flags").decode().split()), {"\\Flagged", "$Label1"})

    def test_setfattr_and_touch_d_by_path_before_close(self):
        data = make_msg("by-path", None).raw
        target = P("CpIn", "by path.eml")
        before, _ = srv("CpIn", bodies=False)
        # another process holds the file open while tools change it by its path
        holder = subprocess.Popen([sys.executable, "-c", (
            "import os, sys\n"
            "fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)\n"
            "os.write(fd, open(sys.argv[2], 'rb').read())\n"
            "print('written', flush=True)\n"
            "sys.stdin.read()\n"  # until the test closes our stdin
            "os.close(fd)\n"), target, local_file("by-path.eml", data)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            self.assertEqual(holder.stdout.readline().strip(), b"written", "the writer failed")
            self.assertTrue(os.path.exists(target), "the file being written is not visible by its name")
            r = sh(["setfattr", "-n", "user.imap.flags", "-v", r"\Seen \Answered", target])
            self.assertEqual(r.returncode, 0, r.stderr)
            r = sh(["touch", "-d", "2020-02-03 04:05:06 UTC", target])
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(set(srv("CpIn", bodies=False)[0]), set(before), "appended before close")
            out, err = holder.communicate(timeout=60)  # closes its stdin: it closes the file
        finally:
            if holder.poll() is None:
                holder.kill()
                holder.wait()
        self.assertEqual(holder.returncode, 0, err)
        meta, bodies = srv("CpIn")
        new = only_new(before, meta)
        self.assertEqual(len(new), 1)
        self.assertEqual(bodies[new[0]], data)
        self.assertEqual(C.flags_set(meta[new[0]]["flags"]), {"\\Seen", "\\Answered"})
        self.assertEqual(meta[new[0]]["internaldate"], 1580702706, meta[new[0]]["internaldate_raw"])
        self.assertNotIn("by path.eml", os.listdir(P("CpIn")))

    def test_empty_file_is_not_appended(self):
        before, _ = srv("CpIn", bodies=False)
        r = sh(["touch", P("CpIn", "empty.eml")])
        self.assertEqual(r.returncode, 0, r.stderr)
        fd = os.open(P("CpIn", "empty2.eml"), os.O_WRONLY | os.O_CREAT, 0o644)
        os.close(fd)
        self.assertEqual(set(srv("CpIn", bodies=False)[0]), set(before), "an empty file was appended")
        listing = os.listdir(P("CpIn"))
        self.assertNotIn("empty.eml", listing)
        self.assertNotIn("empty2.eml", listing)

    def test_cp_large_message(self):
        data = G.big_message(6 * 1024 * 1024, seed="write-large")
        src = local_file("large.eml", data)
        new = self.cp_and_find("CpIn", ["cp", src, P("CpIn") + "/"], ["large.eml"])
        (meta, body, path), = new.values()
        self.assertEqual(len(body), len(C.crlf(data)))
        self.assertTrue(body == C.crlf(data), "the 6 MB message differs on the server")

    def test_cp_several_files_in_one_command(self):
        srcdir = tempfile.mkdtemp(dir=TMP)
        expected = []
        for k in range(20):
            data = make_msg("several-%d" % k, None, eol=b"\n" if k % 2 else b"\r\n").raw
            with open(os.path.join(srcdir, "s%02d.eml" % k), "wb") as f:
                f.write(data)
            expected.append(C.crlf(data))
        names = sorted(os.listdir(srcdir))
        new = self.cp_and_find("CpMany", ["cp", "-t", P("CpMany")] + [os.path.join(srcdir, n) for n in names],
                               names, expect_n=20)
        self.assertEqual(sorted(b for _, b, _ in new.values()), sorted(expected))

    @unittest.skipUnless(HAVE_CORPUS, "corpus not found at %s (it is there in CI; a fresh clone may not have it)"
                         % CORPUS)
    def test_cp_corpus(self):
        files = sorted(glob.glob(os.path.join(CORPUS, "**", "*.eml"), recursive=True))
        stage = tempfile.mkdtemp(dir=TMP)
        origin = {}
        refs = []
        not_msg = []
        for i, f in enumerate(files):
            name = "%04d %s" % (i, os.path.basename(f))
            shutil.copyfile(f, os.path.join(stage, name))
            origin[name] = os.path.relpath(f, CORPUS)
            with open(f, "rb") as fh:
                raw = fh.read()
            # issue 12: a file that doesn't start like a message (a header field or an
            # mbox "From " line, after an optional UTF-8 BOM) fails with EINVAL at close
            if not re.match(rb"(\xef\xbb\xbf)?(From |[\x21-\x39\x3b-\x7e]+[ \t]*:)", raw):
                not_msg.append(name)
                continue
            refs.append(G.Msg(name, "CorpusRef", C.crlf(raw), None, None, G._idate(0)))
        # the reference: the same bytes (CRLF) appended by imaplib, so both went through
        # whatever Dovecot does to NUL bytes and bare CR
        c = SRV.client()
        G.multiappend(c, "CorpusRef", refs, chunk=100)
        c.logout()
        names = sorted(os.listdir(stage))
        t = time.monotonic()
        r = sh(["cp", "-t", P("Corpus")] + [os.path.join(stage, n) for n in names], timeout=600)
        secs = time.monotonic() - t
        sys.stdout.write("# cp of %d corpus messages: %.1fs\n" % (len(names), secs))
        self.assertEqual(r.returncode, 1 if not_msg else 0, r.stderr[-3000:] + log_tail().encode())
        failed = re.findall(rb"failed to close '[^']*/([^'/]*)': Invalid argument", r.stderr)
        self.assertEqual(sorted(n.decode() for n in failed), sorted(not_msg), r.stderr[-3000:])
        meta, bodies = srv("Corpus")
        ref_meta, ref_bodies = srv("CorpusRef")
        self.assertEqual(len(bodies), len(files) - len(not_msg))
        ref_of = {m.uid: m.key for m in refs}
        missing = dict()
        for u, b in ref_bodies.items():
            missing.setdefault(b, []).append(ref_of[u])
        extra = []
        for u, b in bodies.items():
            if missing.get(b):
                missing[b].pop()
            else:
                extra.append(u)
        lost = [origin[k] for ks in missing.values() for k in ks]
        self.assertEqual((lost[:20], len(lost), extra[:20]), ([], 0, []),
                         "corpus messages whose server copy differs from the file (with LF → CRLF)")
        # and where Dovecot changes nothing (no NUL, no bare CR), byte for byte the file with CRLF
        direct = set(bodies.values())
        differ = [origin[m.key] for m in refs
                  if b"\0" not in m.raw and not re.search(rb"\r(?!\n)", m.raw) and m.raw not in direct]
        self.assertEqual(differ[:20], [], "%d messages differ from the file with LF → CRLF" % len(differ))
        self.assertEqual(set(mount_files(P("Corpus"))), set(meta))  # no created name left behind
        self.assertEqual(non_uid_names(P("Corpus")), [])


# -- messages as files ---------------------------------------------------------------------------
class TestMessageFiles(Base):
    def test_mode_0644(self):
        for key in ("files-0", "inbox-0"):
            st = os.stat(mpath(fx(key)))
            self.assertEqual(stat.S_IMODE(st.st_mode), 0o644, key)
            self.assertTrue(stat.S_ISREG(st.st_mode))

    def test_open_for_writing_without_writing_changes_nothing(self):
        # issue 12: writing a message makes a new one that replaces it at close (see
        # test_scratch.py); opened for writing and closed unwritten (or emptied, which is no
        # message) nothing changes. truncate() without an open file is still EACCES.
        m = fx("files-1")
        path = mpath(m)
        before = srv("Files")
        for name, flags in (("O_WRONLY", os.O_WRONLY), ("O_RDWR", os.O_RDWR),
                            ("O_WRONLY|O_TRUNC", os.O_WRONLY | os.O_TRUNC),
                            ("O_WRONLY|O_APPEND", os.O_WRONLY | os.O_APPEND),
                            ("O_RDWR|O_CREAT (exists)", os.O_RDWR | os.O_CREAT)):
            self.assertErrno(lambda: os.close(os.open(path, flags)), None, "open " + name)
            self.assertEqual(srv("Files"), before, name)
        self.assertErrno(lambda: os.truncate(path, 0), errno.EACCES, "truncate to 0")
        self.assertErrno(lambda: os.truncate(path, 10), errno.EACCES, "truncate to 10")
        self.assertEqual(srv("Files"), before)
        self.assertEqual(read_file(path), before[1][m.uid])
        self.assertEqual(os.stat(path).st_size, before[0][m.uid]["size"])

    def test_chmod_chown_are_eperm(self):
        path = mpath(fx("files-2"))
        self.assertErrno(lambda: os.chmod(path, 0o600), errno.EPERM, "chmod 600")
        self.assertErrno(lambda: os.chmod(path, 0o755), errno.EPERM, "chmod 755")
        self.assertErrno(lambda: os.chown(path, 1234, 1234), errno.EPERM, "chown")
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o644)

    def test_touch_existing_changes_nothing(self):
        m = fx("files-3")
        path = mpath(m)
        before = srv("Files", bodies=False)[0]
        st = os.stat(path)
        for argv in (["touch", path], ["touch", "-d", "2001-02-03 04:05:06", path], ["touch", "-m", path]):
            r = sh(argv)
            self.assertEqual(r.returncode, 0, "%s: %r" % (" ".join(argv[:-1]), r.stderr))
        os.utime(path, (0, 0))
        self.assertEqual(srv("Files", bodies=False)[0], before)
        st2 = os.stat(path)
        self.assertEqual(int(st2.st_mtime), before[m.uid]["internaldate"], "mtime changed locally")
        self.assertEqual((st2.st_size, st2.st_ino), (st.st_size, st.st_ino))
        self.assertEqual(D.parse_internaldate(os.getxattr(path, "user.imap.internaldate").decode()),
                         before[m.uid]["internaldate"])

    def test_ro_mount_is_erofs(self):
        before = C.account_state(SRV, skip={"Many", "Archive", "Corpus", "CorpusRef"})
        m = C.mount_of(SRV, ro=None)
        try:
            m.mount(foreground=True)
            f = mpath(fx("files-0"), m.mp)
            other = mpath(fx("inbox-1"), m.mp)
            Q = lambda *p: os.path.join(m.mp, *p)  # noqa: E731
            self.assertEqual(stat.S_IMODE(os.stat(f).st_mode), 0o444)
            ops = {
                "mkdir": lambda: os.mkdir(Q("RoNew")),
                "rmdir": lambda: os.rmdir(Q("RoEmpty")),
                "rename dir": lambda: os.rename(Q("RoEmpty"), Q("RoRenamed")),
                "create": lambda: os.close(os.open(Q("INBOX", "new.eml"), os.O_WRONLY | os.O_CREAT, 0o644)),
                "open for writing": lambda: os.close(os.open(f, os.O_WRONLY)),
                "truncate": lambda: os.truncate(f, 0),
                "unlink": lambda: os.unlink(f),
                "rename to other folder": lambda: os.rename(f, Q("Dest", "x.eml")),
                "rename over file": lambda: os.rename(f, other),
                "chmod": lambda: os.chmod(f, 0o600),
                "utime": lambda: os.utime(f, (0, 0)),
                "setxattr": lambda: os.setxattr(f, "user.imap.flags", b"\\Flagged"),
                "removexattr": lambda: os.removexattr(f, "user.imap.flags"),
            }
            problems = []
            for name, op in ops.items():
                e = errno_of(op)
                if e != errno.EROFS:
                    problems.append("%s: %s" % (name, ename(e)))
            self.assertEqual(problems, [])
            m.unmount()
        finally:
            m.cleanup()
        self.assertEqual(C.account_state(SRV, skip={"Many", "Archive", "Corpus", "CorpusRef"}), before)


# -- flags ---------------------------------------------------------------------------------------
class TestFlags(Base):
    def flags_on_server(self, m):
        return C.flags_set(srv(m.mailbox, bodies=False)[0][m.uid]["flags"])

    def flags_in_mount(self, path):
        return set(os.getxattr(path, "user.imap.flags").decode().split())

    def test_setxattr_replaces_the_flags(self):
        m = fx("flags-0")
        path = mpath(m)
        self.assertEqual(self.flags_in_mount(path), {"\\Seen", "$Old"})
        os.setxattr(path, "user.imap.flags", b"\\Flagged $Label1")
        self.assertEqual(self.flags_on_server(m), {"\\Flagged", "$Label1"})
        self.assertEqual(self.flags_in_mount(path), {"\\Flagged", "$Label1"})
        os.setxattr(path, "user.imap.flags", b"\\Answered  \\Draft   Junk")
        self.assertEqual(self.flags_on_server(m), {"\\Answered", "\\Draft", "Junk"})
        self.assertEqual(self.flags_in_mount(path), {"\\Answered", "\\Draft", "Junk"})
        self.assertEqual(read_file(path), m.raw)  # content untouched, and it is still the same file

    def test_setfattr_getfattr_tools(self):
        m = fx("flags-1")
        path = mpath(m)
        r = sh(["setfattr", "-n", "user.imap.flags", "-v", r"\Seen \Flagged $Work", path])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.flags_on_server(m), {"\\Seen", "\\Flagged", "$Work"})
        r = sh(["getfattr", "-n", "user.imap.flags", "--only-values", path], check=True)
        self.assertEqual(set(r.stdout.decode().split()), {"\\Seen", "\\Flagged", "$Work"})

    def test_removexattr_clears_the_flags(self):
        m = fx("flags-2")
        path = mpath(m)
        os.removexattr(path, "user.imap.flags")
        self.assertEqual(self.flags_on_server(m), set())
        try:
            v = os.getxattr(path, "user.imap.flags").decode()
        except OSError as e:
            self.assertEqual(e.errno, errno.ENODATA)
            v = ""
        self.assertEqual(v.split(), [])
        r = sh(["setfattr", "-x", "user.imap.flags", path])
        self.assertEqual(r.returncode, 0, "removing the flags of a message without flags: %r" % r.stderr)

    def test_recent_is_einval(self):
        m = fx("flags-3")
        path = mpath(m)
        for v in (b"\\Recent", b"\\Seen \\Recent", b"\\recent"):
            self.assertErrno(lambda: os.setxattr(path, "user.imap.flags", v), errno.EINVAL, repr(v))
        self.assertEqual(self.flags_on_server(m), {"\\Seen", "$Old"})
        self.assertEqual(self.flags_in_mount(path), {"\\Seen", "$Old"})

    def test_invalid_keywords_are_einval(self):
        m = fx("flags-4")
        path = mpath(m)
        bad = [b"a(b", b"a)b", b'x"y', b"{3}", b"a{3}", b"a%b", b"a*b", b"a]b", b"\\Seen a\\b",
               b"ctl\x01x", b"del\x7fx", "Umlaut-ü".encode(), b"\\Seen )", b"\\Bogus", b"\\"]
        problems = []
        for v in bad:
            e = errno_of(lambda: os.setxattr(path, "user.imap.flags", v))
            if e != errno.EINVAL:
                problems.append("%r: %s" % (v, ename(e)))
        self.assertEqual(problems, [], "want EINVAL")
        self.assertEqual(self.flags_on_server(m), {"\\Seen", "$Old"})
        self.assertEqual(self.flags_in_mount(path), {"\\Seen", "$Old"})

    def test_other_xattrs_are_not_writable(self):
        m = fx("flags-5")
        path = mpath(m)
        for name in ("user.imap.uid", "user.imap.size", "user.imap.internaldate", "user.other"):
            e = errno_of(lambda: os.setxattr(path, name, b"1"))
            self.assertIsNotNone(e, "setxattr %s succeeded" % name)
        self.assertEqual(os.getxattr(path, "user.imap.uid").decode(), str(m.uid))
        self.assertEqual(self.flags_on_server(m), {"\\Seen", "$Old"})


# -- hostile folder names ------------------------------------------------------------------------
# typed name → the decoded server name it must give (mount escapes: %25 before two hex digits)
HOSTILE_OK = {
    "with space": "with space",
    " leading and trailing ": " leading and trailing ",
    'quo"te': 'quo"te',
    '""': '""',
    "back\\slash": "back\\slash",
    "trailing\\": "trailing\\",
    '\\"': '\\"',
    "{brace}": "{brace}",
    "{5}": "{5}",
    "{3+}": "{3+}",
    "pct%": "pct%",
    "pct%2525": "pct%25",
    "R&D": "R&D",
    "&AOQ-": "&AOQ-",
    "NIL": "NIL",
    "(paren) [bracket] <angle>": "(paren) [bracket] <angle>",
    "star* query?": "star* query?",
    "emoji 🎉📬": "emoji 🎉📬",
    "~tilde #hash": "~tilde #hash",
    "apos'trophe": "apos'trophe",
}
# names IMAP servers refuse (control characters) or that try to inject a command
HOSTILE_BAD = [
    "cr\rname",
    "lf\nname",
    "tab\tname",
    'x"\r\nA1 CREATE Injected1\r\nA2 NOOP',
    "y\r\nA3 DELETE Canary\r\n",
    "{4}\r\nA4 CREATE Injected2",
    "z\nA5 CREATE Injected3",
    'w" "\r\nA6 RENAME Canary Injected4',
]


class TestHostileNames(Base):
    def test_mkdir_hostile_names(self):
        before = set(srv_names())
        inbox_before = srv("INBOX", bodies=False)[0]
        made = {}
        problems = []
        for typed, want in HOSTILE_OK.items():
            e = errno_of(lambda: os.mkdir(P(typed)))
            if e is not None:
                problems.append("mkdir %r: %s (Dovecot accepts this name)" % (typed, ename(e)))
            else:
                made[typed] = want
        refused = {}
        for typed in HOSTILE_BAD:
            e = errno_of(lambda: os.mkdir(P(typed)))
            refused[typed] = e
            if e is None:
                problems.append("mkdir %r succeeded (Dovecot refuses control characters)" % typed)
            elif e == errno.EIO:
                problems.append("mkdir %r: EIO is not a clear error" % typed)
        names = srv_names()
        self.assertEqual(problems, [])
        self.assertIn("Canary", names)
        self.assertEqual([n for n in names if "Injected" in n], [], "an injected command ran")
        self.assertEqual(set(names), before | set(made.values()),
                         "the server's mailboxes are not the old ones plus exactly those made")
        self.assertEqual(srv("INBOX", bodies=False)[0], inbox_before)
        self.assertEqual(len(srv("Canary", bodies=False)[0]), 1)
        root = os.listdir(M.mp)
        for typed, want in made.items():
            with self.subTest(name=typed):
                raw = names[want][2]
                self.assertEqual(raw, D.mutf7_encode(want))
                self.assertIn(typed, root)
                self.assertEqual(os.getxattr(P(typed), "user.imap.mailbox").decode(), raw)
                self.assertEqual(os.listdir(P(typed)), [])
        for typed in HOSTILE_BAD:
            self.assertNotIn(typed, root)
            self.assertFalse(os.path.exists(P(typed)), "ghost of a refused mkdir: %r" % typed)
        sys.stdout.write("# refused names: %s\n" % ", ".join("%r: %s" % (k, ename(v)) for k, v in refused.items()))

    def test_mkdir_percent_that_is_not_an_escape(self):
        """A bare '%' stands for itself. A typed name with a '%' that is not an escape either fails
        or makes the folder; then the mount's view must not keep a name that the listing
        doesn't have."""
        before = set(srv_names())
        for typed in ("100%", "bad%zz", "%41"):
            e = errno_of(lambda: os.mkdir(P(typed)))
            names = set(srv_names())
            listing = os.listdir(M.mp)
            if e is not None:
                self.assertEqual(names, before, "mkdir %r failed (%s) but changed the server" % (typed, ename(e)))
                self.assertNotEqual(e, errno.EIO, "mkdir %r: EIO" % typed)
            else:
                new = names - before
                self.assertEqual(len(new), 1, "mkdir %r made %r" % (typed, new))
                shown = C.escape_component(D.mutf7_decode(list(new)[0]))
                self.assertIn(shown, listing)
                self.assertEqual(os.path.exists(P(typed)), typed in listing,
                                 "mkdir %r: the name resolves but is not listed (the listing shows %r)"
                                 % (typed, shown))
                before = names

    def test_rename_and_rmdir_hostile(self):
        a, b = 'ren "me" \\ {1}', 'renamed "it" \\ {2} 🎉 %2525'
        os.mkdir(P(a))
        self.assertIn(a, srv_names())
        os.rename(P(a), P(b))
        names = srv_names()
        self.assertNotIn(a, names)
        want = 'renamed "it" \\ {2} 🎉 %25'
        self.assertIn(want, names)
        self.assertEqual(names[want][2], D.mutf7_encode(want))
        self.assertIn(b, os.listdir(M.mp))
        os.rmdir(P(b))
        self.assertNotIn(want, srv_names())
        self.assertNotIn(b, os.listdir(M.mp))

    def test_mv_and_cp_into_hostile_folder(self):
        folder = 'msgs "q" \\ {9} &'
        os.mkdir(P(folder))
        m = fx("hostile-0")
        src = mpath(m)
        r = sh(["mv", src, P(folder) + "/"])
        self.assertEqual(r.returncode, 0, r.stderr)
        data = make_msg("hostile-cp", None).raw
        r = sh(["cp", local_file('we"ird {3}\\ name.eml', data), P(folder) + "/"])
        self.assertEqual(r.returncode, 0, r.stderr)
        meta, bodies = srv(folder)
        self.assertEqual(sorted(bodies.values()), sorted([m.raw, data]))
        self.assertNotIn(m.uid, srv("Hostile", bodies=False)[0])
        self.assertEqual(set(mount_files(P(folder))), set(meta))

    def test_dot_separator_server(self):
        """User 'dot' has '.' as the hierarchy separator."""
        m = I.Mount("imaps://dot@127.0.0.1:%d" % SRV.imaps_port,
                    opts={"cafile": SRV.cafile, "password_file": SRV.password_file_for("dot")})
        Q = lambda *p: os.path.join(m.mp, *p)  # noqa: E731
        try:
            m.mount(foreground=True)
            before = set(srv_names("dot"))
            os.mkdir(Q("a%2Fb"))  # '/' inside a name: escaped in the mount
            os.mkdir(Q("Sub"))
            os.mkdir(Q("Sub", "Child"))
            # the separator inside one component: the server would make x and x.y, which
            # the mount shows as x/y, not as the x.y that mkdir made: refused
            e = errno_of(lambda: os.mkdir(Q("x.y")))
            names = srv_names("dot")
            self.assertIn("a/b", names)
            self.assertIn("Sub.Child", names)
            self.assertIsNotNone(e, "mkdir 'x.y' on a '.' server made %r" % (set(names) - before))
            self.assertNotEqual(e, errno.EIO, "EIO is not a clear error")
            self.assertNotIn("x", names)
            self.assertNotIn("x.y", names)
            self.assertEqual(walk_dirs(m.mp), {"INBOX", "a%2Fb", "Sub", "Sub/Child"})
            self.assertEqual(os.getxattr(Q("a%2Fb"), "user.imap.mailbox"), b"a/b")
            m.unmount()
        finally:
            m.cleanup()


# -- servers without MOVE, without UIDPLUS, and a folder the user may not change -----------------
CAPS = ("IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT SORT=DISPLAY THREAD=REFERENCES "
        "THREAD=REFS THREAD=ORDEREDSUBJECT MULTIAPPEND URL-PARTIAL CATENATE UNSELECT CHILDREN NAMESPACE "
        "UIDPLUS LIST-EXTENDED I18NLEVEL=1 CONDSTORE QRESYNC ESEARCH ESORT SEARCHRES WITHIN "
        "CONTEXT=SEARCH LIST-STATUS BINARY MOVE SNIPPET=FUZZY PREVIEW=FUZZY PREVIEW STATUS=SIZE "
        "SAVEDATE LITERAL+ NOTIFY")  # what Dovecot 2.3.19 offers after login


def caps_without(*drop):
    return " ".join(c for c in CAPS.split() if c not in drop)


class TestServerVariants(Base):
    """NOMOVE: a server that doesn't offer MOVE (mv is UID COPY, then STORE \\Deleted +
    UID EXPUNGE), with an ACL that makes folder "Locked" read-only for the user (rights
    lrsi: PERMANENTFLAGS (\\Seen), no expunge). NOUIDPLUS: no UIDPLUS: rm is the guarded plain
    EXPUNGE (issue 15). Dovecot still runs the commands; only the CAPABILITY changes."""
    servers = {}
    mounts = {}
    fix = {}

    @classmethod
    def setUpClass(cls):
        try:
            nomove = D.Dovecot(rawlog=True)
            acl = os.path.join(nomove.dir, "global-acl")
            with open(acl, "w") as f:
                f.write("Locked user=alice lrsi\n")
            os.chmod(acl, 0o644)
            nomove.extra_conf = ("mail_plugins = $mail_plugins acl\nplugin {\n  acl = vfile:%s\n}\n"
                                 "protocol imap {\n  imap_capability = %s\n}\n" % (acl, caps_without("MOVE")))
            nouidplus = D.Dovecot(rawlog=True, extra_conf="protocol imap {\n  imap_capability = %s\n}\n"
                                  % caps_without("UIDPLUS"))
            cls.servers = {"nomove": nomove, "nouidplus": nouidplus}
            folders = {"nomove": {"Src": [("nm-src-0", [r"\Seen", "$Label1"]), ("nm-src-1", [r"\Flagged"])],
                                  "Dst": [("nm-dst-0", ())],
                                  "Locked": [("locked-0", [r"\Seen"]), ("locked-1", ()), ("locked-2", ())]},
                       "nouidplus": {"INBOX": [("nu-0", ()), ("nu-1", ())], "Dst": []}}
            for name, srv_ in cls.servers.items():
                srv_.start()
                c = srv_.client()
                n = 0
                for mailbox, items in folders[name].items():
                    if mailbox != "INBOX":
                        c.create(mailbox)
                    msgs = []
                    for key, flags in items:
                        n += 1
                        msgs.append(make_msg(key, mailbox, flags, n))
                    if msgs:
                        G.multiappend(c, mailbox, msgs)
                    for mm in msgs:
                        cls.fix[mm.key] = mm
                c.logout()
                m = I.Mount("imaps://alice@127.0.0.1:%d" % srv_.imaps_port,
                            opts={"cafile": srv_.cafile, "password_file": srv_.password_file})
                cls.mounts[name] = m
                m.mount(foreground=True)
        except Exception:
            cls.cleanup()
            raise

    @classmethod
    def cleanup(cls):
        for m in cls.mounts.values():
            m.cleanup()
        for s_ in cls.servers.values():
            s_.cleanup()

    @classmethod
    def tearDownClass(cls):
        try:
            for m in cls.mounts.values():
                m.unmount()
        finally:
            cls.cleanup()

    def path(self, name, key):
        return mpath(self.fix[key], self.mounts[name].mp)

    def server_meta(self, name, mailbox, bodies=False):
        return C.server_messages(self.servers[name], mailbox, bodies=bodies)

    def test_mv_without_move_is_copy_then_uid_expunge(self):
        m = self.fix["nm-src-0"]
        src = self.path("nomove", m.key)
        mark = C.RawlogMark(self.servers["nomove"])
        r = sh(["mv", src, os.path.join(self.mounts["nomove"].mp, "Dst") + "/"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn(m.uid, self.server_meta("nomove", "Src")[0])
        meta, bodies = self.server_meta("nomove", "Dst", bodies=True)
        arrived = [u for u, b in bodies.items() if b == m.raw]
        self.assertEqual(len(arrived), 1)
        self.assertEqual(C.flags_set(meta[arrived[0]]["flags"]), set(m.flags))
        self.assertEqual(mark.commands(r"(UID )?MOVE"), [], "MOVE sent to a server that doesn't offer it")
        self.assertTrue(mark.wait_commands(r"UID COPY %d " % m.uid), "no UID COPY")
        self.assertTrue(mark.wait_commands(r"UID EXPUNGE %d\b" % m.uid), "no UID EXPUNGE")
        self.assertNoPlainExpunge(mark)
        files = mount_files(os.path.join(self.mounts["nomove"].mp, "Dst"))
        self.assertEqual(set(files), set(meta))

    def test_rm_without_uidplus_is_guarded(self):
        """Without UIDPLUS (issue 15): \\Deleted on ours, UID SEARCH DELETED, and a plain
        EXPUNGE only while no other message carries \\Deleted; else EPERM, flag taken back."""
        m, other = self.fix["nu-0"], self.fix["nu-1"]
        path = self.path("nouidplus", m.key)
        c = self.servers["nouidplus"].client()
        c.select("INBOX")
        c.uid("STORE", str(other.uid), "+FLAGS.SILENT", r"(\Deleted)")
        mark = C.RawlogMark(self.servers["nouidplus"])
        e = errno_of(lambda: os.unlink(path))
        self.assertEqual(e, errno.EPERM, "rm beside another \\Deleted message: %s" % ename(e))
        meta = self.server_meta("nouidplus", "INBOX")[0]
        self.assertIn(m.uid, meta)
        self.assertNotIn("\\Deleted", meta[m.uid]["flags"], "our \\Deleted flag stayed")
        self.assertIn(m.uid, mount_files(os.path.join(self.mounts["nouidplus"].mp, "INBOX")))
        self.assertEqual(mark.commands(r"(UID )?EXPUNGE|CLOSE"), [])
        self.assertIn("\\Deleted", self.mounts["nouidplus"].read_log(), "the log doesn't say why")
        c.uid("STORE", str(other.uid), "-FLAGS.SILENT", r"(\Deleted)")
        c.logout()
        mark = C.RawlogMark(self.servers["nouidplus"])
        e = errno_of(lambda: os.unlink(path))
        self.assertIsNone(e, "rm without UIDPLUS: %s" % ename(e))
        meta = self.server_meta("nouidplus", "INBOX")[0]
        self.assertNotIn(m.uid, meta)
        self.assertIn(other.uid, meta)
        cmds = mark.wait_commands(r"EXPUNGE")
        self.assertEqual(len(cmds), 1, cmds)
        sent = [l for l in mark.lines() if l.split(" ", 1)[-1].startswith(("UID SEARCH DELETED",
                                                                           "EXPUNGE", "CLOSE"))]
        self.assertEqual([l.split(" ", 1)[1] for l in sent][-2:], ["UID SEARCH DELETED", "EXPUNGE"])

    def test_locked_folder_keyword_is_eperm(self):
        m = self.fix["locked-0"]
        path = self.path("nomove", m.key)
        e = errno_of(lambda: os.setxattr(path, "user.imap.flags", b"\\Seen $Label1"))
        self.assertEqual(e, errno.EPERM, "a keyword where PERMANENTFLAGS is (\\Seen): %s" % ename(e))
        self.assertEqual(C.flags_set(self.server_meta("nomove", "Locked")[0][m.uid]["flags"]), {"\\Seen"})
        self.assertEqual(os.getxattr(path, "user.imap.flags").decode().split(), ["\\Seen"])

    def test_locked_folder_rm_fails_and_keeps_the_message(self):
        m = self.fix["locked-1"]
        path = self.path("nomove", m.key)
        e = errno_of(lambda: os.unlink(path))
        meta = self.server_meta("nomove", "Locked")[0]
        self.assertIn(m.uid, meta, "the message is gone although the user may not expunge")
        self.assertIsNotNone(e, "rm reported success but the server still has the message "
                                "(Dovecot ignores STORE \\Deleted without the right to)")
        self.assertIn(m.uid, mount_files(os.path.join(self.mounts["nomove"].mp, "Locked")))
        self.assertTrue(os.path.exists(path))

    def test_locked_folder_mv_out_fails_without_a_duplicate(self):
        m = self.fix["locked-2"]
        path = self.path("nomove", m.key)
        before = self.server_meta("nomove", "Dst", bodies=True)[1]
        e = errno_of(lambda: os.rename(path, os.path.join(self.mounts["nomove"].mp, "Dst", "x.eml")))
        self.assertIn(m.uid, self.server_meta("nomove", "Locked")[0])
        after = self.server_meta("nomove", "Dst", bodies=True)[1]
        copies = [u for u, b in after.items() if b == m.raw]
        self.assertIsNotNone(e, "mv reported success but the message is still in Locked")
        self.assertEqual(copies, [], "mv failed (%s) but left a copy in Dst" % ename(e))
        self.assertEqual(set(after), set(before))
        self.assertTrue(os.path.exists(path))


# -- issue 7: \\Deleted taken back after a failed removal; long PERMANENTFLAGS and STORE answers --
def kw_list(n, prefix="kwlong"):
    return ["%s%04d" % (prefix, i) for i in range(n)]


class TestFloorFindings(Base):
    """A server without MOVE whose folder "NoExp" lets the user set \\Deleted but not expunge
    (ACL lrswit, no 'e'): rm and mv out of it fail, and the message, the only copy, must not
    keep the \\Deleted flag they set (the next client's EXPUNGE would remove it) -- unless
    another client had set it before. Folder "Tags" holds a message with 120 keywords, so
    PERMANENTFLAGS (every keyword, then \\* last) and the STORE answer pass 512 and 1024 bytes."""
    srv = None
    mount = None
    fix = {}

    @classmethod
    def setUpClass(cls):
        try:
            srv_ = D.Dovecot(rawlog=True)
            cls.srv = srv_
            acl = os.path.join(srv_.dir, "global-acl")
            with open(acl, "w") as f:
                f.write("NoExp user=alice lrswit\n")
            os.chmod(acl, 0o644)
            srv_.extra_conf = ("mail_plugins = $mail_plugins acl\nplugin {\n  acl = vfile:%s\n}\n"
                               "protocol imap {\n  imap_capability = %s\n}\n" % (acl, caps_without("MOVE")))
            srv_.start()
            c = srv_.client()
            n = 0
            for mailbox, items in {"NoExp": [("ne-%d" % i, [r"\Seen"] if i == 0 else []) for i in range(4)],
                                   "NeDst": [("nedst-0", ())],
                                   "Tags": [("tags-%d" % i, [r"\Seen"]) for i in range(3)]}.items():
                c.create(mailbox)
                msgs = []
                for key, flags in items:
                    n += 1
                    msgs.append(make_msg(key, mailbox, flags, n))
                G.multiappend(c, mailbox, msgs)
                for mm in msgs:
                    cls.fix[mm.key] = mm
            # 120 keywords on one message: the folder's PERMANENTFLAGS lists them all.
            D.select(c, "Tags", readonly=False)
            typ, data = c.uid("STORE", str(cls.fix["tags-0"].uid), "+FLAGS.SILENT",
                              "(%s)" % " ".join(kw_list(120)))
            assert typ == "OK", data
            c.logout()
            cls.mount = I.Mount("imaps://alice@127.0.0.1:%d" % srv_.imaps_port,
                                opts={"cafile": srv_.cafile, "password_file": srv_.password_file})
            cls.mount.mount(foreground=True)
        except Exception:
            cls.cleanup()
            raise

    @classmethod
    def cleanup(cls):
        if cls.mount is not None:
            cls.mount.cleanup()
        if cls.srv is not None:
            cls.srv.cleanup()

    @classmethod
    def tearDownClass(cls):
        try:
            if cls.mount is not None:
                cls.mount.unmount()
        finally:
            cls.cleanup()

    def path(self, key):
        return mpath(self.fix[key], self.mount.mp)

    def server_flags(self, key):
        m = self.fix[key]
        meta = C.server_messages(self.srv, m.mailbox, bodies=False)[0]
        self.assertIn(m.uid, meta, "%s is gone from the server" % key)
        return C.flags_set(meta[m.uid]["flags"])

    def set_flags_on_server(self, key, flags):
        m = self.fix[key]
        c = self.srv.client()
        try:
            D.select(c, m.mailbox, readonly=False)
            typ, data = c.uid("STORE", str(m.uid), "+FLAGS.SILENT", "(%s)" % " ".join(flags))
            assert typ == "OK", data
        finally:
            c.logout()  # LOGOUT, not CLOSE: nothing is expunged

    def test_failed_rm_leaves_no_deleted_flag(self):
        mark = C.RawlogMark(self.srv)
        e = errno_of(lambda: os.unlink(self.path("ne-0")))
        self.assertIsNotNone(e, "rm reported success but the user may not expunge")
        self.assertTrue(mark.wait_commands(r"UID STORE %d \+FLAGS" % self.fix["ne-0"].uid), "no STORE")
        self.assertEqual(self.server_flags("ne-0"), {"\\Seen"},
                         "the message kept the \\Deleted of a failed rm" + log_tail())
        self.assertNoPlainExpunge(mark)
        self.assertTrue(os.path.exists(self.path("ne-0")))

    def test_failed_rm_keeps_a_deleted_flag_set_elsewhere(self):
        self.set_flags_on_server("ne-1", [r"\Deleted"])
        e = errno_of(lambda: os.unlink(self.path("ne-1")))
        self.assertIsNotNone(e, "rm reported success but the user may not expunge")
        self.assertEqual(self.server_flags("ne-1"), {"\\Deleted"},
                         "rm took away a \\Deleted another client had set")

    def test_failed_mv_copy_fallback_leaves_one_unflagged_message(self):
        m = self.fix["ne-2"]
        before = C.server_messages(self.srv, "NeDst", bodies=True)[1]
        mark = C.RawlogMark(self.srv)
        e = errno_of(lambda: os.rename(self.path("ne-2"), os.path.join(self.mount.mp, "NeDst", "x.eml")))
        self.assertIsNotNone(e, "mv reported success but the message is still in NoExp")
        self.assertTrue(mark.wait_commands(r"UID COPY %d " % m.uid), "no UID COPY (MOVE is off)")
        after = C.server_messages(self.srv, "NeDst", bodies=True)[1]
        self.assertEqual(set(after), set(before), "mv failed (%s) but left a copy in NeDst" % ename(e))
        self.assertEqual(self.server_flags("ne-2"), set(),
                         "the only copy kept the \\Deleted of a failed mv" + log_tail())
        self.assertNoPlainExpunge(mark)
        self.assertTrue(os.path.exists(self.path("ne-2")))

    def test_new_keyword_where_permanentflags_is_long(self):
        # PERMANENTFLAGS (\Answered ... kwlong0000 ... kwlong0119 \*): some 1,300 bytes, \* last.
        path = self.path("tags-1")
        os.setxattr(path, "user.imap.flags", b"\\Seen $BrandNew")
        self.assertEqual(self.server_flags("tags-1"), {"\\Seen", "$BrandNew"})
        self.assertEqual(set(os.getxattr(path, "user.imap.flags").decode().split()),
                         {"\\Seen", "$BrandNew"})

    def test_store_answer_longer_than_1k_kept_whole(self):
        path = self.path("tags-2")
        want = {"\\Seen"} | set(kw_list(120)) | {"$Extra"}
        os.setxattr(path, "user.imap.flags", " ".join(sorted(want)).encode())
        self.assertEqual(self.server_flags("tags-2"), want)
        got = os.getxattr(path, "user.imap.flags").decode()
        self.assertGreater(len(got), 1024)
        self.assertEqual(set(got.split()), want, "the mount's flags were cut")


if __name__ == "__main__":
    tap.main()
