#!/usr/bin/python3
"""Searches as directories (issue 9): FOLDER/.search/QUERY and MOUNT/.search/QUERY against a
real Dovecot. Every result is compared with imaplib's own UID SEARCH of the equivalent keys
(and, so that no comparison passes empty, with the UIDs this file expects); acting through
a search directory (mv, rm, setfattr) is checked with imaplib; a message appended by another
client must show after the sync window; hostile queries are checked in Dovecot's rawlog to
be one command each. The corpus part is skipped, saying so, if ../shared/corpus is absent.

Run: IMAPFS_BIN=build/fs/imapfs IMAPFS_SRC=$PWD /usr/bin/python3 tests/integration/test_search.py"""

import calendar
import errno
import glob
import os
import re
import shutil
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tap  # noqa: E402
import common as C  # noqa: E402
from common import D, I, G  # noqa: E402

SRV = None
M = None
UID = {}     # key → (mailbox, uid)
WINDOW = 5   # the sync window (revalidation), seconds
CORPUS = os.path.normpath(os.path.join(I.SRC, "..", "shared", "corpus"))
CORPUS_FILES = sorted(glob.glob(os.path.join(CORPUS, "**", "*.eml"), recursive=True))


def noon(y, m, d):
    return calendar.timegm((y, m, d, 12, 0, 0))


def msg(key, frm, subject, body, date="Fri, 01 Mar 2024 12:00:00 +0000"):
    return (b"From: " + frm + b"\r\nTo: alice@example.org\r\nSubject: " + subject +
            b"\r\nDate: " + date.encode() + b"\r\nMessage-ID: <" + key.encode() +
            b"@test>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
            b"Content-Transfer-Encoding: 8bit\r\n\r\n" + body + b"\r\n")


# key: (mailbox, from, subject, body, flags, internaldate)
MESSAGES = {
    "invoice": ("INBOX", b"Alice <alice@example.org>", b"Invoice 2024-001",
                b"Please pay the invoice.", ("\\Seen",), noon(2024, 1, 15)),
    "reply": ("INBOX", b"Bob <bob@example.org>", b"Re: Invoice", b"Paid yesterday.",
              ("\\Seen", "\\Answered"), noon(2024, 2, 10)),
    "lunch": ("INBOX", b"carol@example.org", b"Lunch?", b"pizza", ("\\Flagged",),
              noon(2024, 2, 29)),
    "cafe": ("INBOX", b"zoe@example.org", b"=?UTF-8?Q?Caf=C3=A9_menu?=",
             "crème brûlée".encode(), (), noon(2024, 3, 10)),
    "hostile": ("INBOX", b"eve@example.org", b'Say "hi" {5} 100%* a/b done', b"back\\slash",
                (), noon(2024, 3, 30)),
    "big": ("INBOX", b"dave@example.org", b"Big report", b"report\r\n" + b"x" * 76 * 2000,
            (), noon(2024, 3, 20)),
    "work1": ("Work", b"Alice <alice@example.org>", b"Invoice for work", b"work invoice",
              (), noon(2024, 1, 20)),
    "work2": ("Work", b"bob@example.org", b"Standup", b"notes", (), noon(2024, 1, 21)),
    "alpha1": ("Projects/Alpha", b"Alice <alice@example.org>", b"Alpha invoice",
               b"alpha", (), noon(2024, 1, 22)),
    "beta1": ("Projects/Beta", b"bob@example.org", b"Beta notes", b"beta", (),
              noon(2024, 1, 23)),
    "mv1": ("Moves", b"mover@example.org", b"moveme one", b"m1", (), noon(2024, 1, 1)),
    "mv2": ("Moves", b"mover@example.org", b"moveme two", b"m2", (), noon(2024, 1, 2)),
    "stay": ("Moves", b"mover@example.org", b"stays here", b"s", (), noon(2024, 1, 3)),
    "rm1": ("Removes", b"remover@example.org", b"removeme", b"r1", (), noon(2024, 1, 4)),
    "fl1": ("Flags", b"flagger@example.org", b"flagme", b"f1", (), noon(2024, 1, 5)),
    "rootrm": ("Projects/Beta", b"x@example.org", b"rootremove", b"rr", (), noon(2024, 1, 6)),
}


def setUpModule():
    global SRV, M
    I.check_bin()
    try:
        SRV = D.Dovecot(rawlog=True, special_use={"Trash": "\\Trash"})
        SRV.start()
        c = SRV.client()
        for mb in ("Work", "Projects", "Projects/Alpha", "Projects/Beta", "Moves", "Archive",
                   "Removes", "Flags", "Live", "Live2", "Trash"):
            c.create(D.imap_quote(mb))
        for key, (mb, frm, subj, body, flags, date) in MESSAGES.items():
            UID[key] = (mb, D.append(c, mb, msg(key, frm, subj, body), flags, date))
        if CORPUS_FILES:
            c.create("Corpus")
            msgs = []
            for i, f in enumerate(CORPUS_FILES):
                with open(f, "rb") as fh:
                    msgs.append(G.Msg(f, "Corpus", fh.read(), None, None, G._idate(i)))
            G.multiappend(c, "Corpus", msgs, chunk=100)
        c.logout()
        M = I.Mount("imaps://%s@127.0.0.1:%d" % (SRV.user, SRV.imaps_port),
                    opts={"cafile": SRV.cafile, "password_file": SRV.password_file})
        M.mount(foreground=True)
    except Exception:
        tearDownModule()
        raise


def tearDownModule():
    if M:
        M.unmount()
        M.cleanup()
    if SRV:
        SRV.cleanup()


def P(*parts):
    return os.path.join(M.mp, *parts)


def uids_in(path):
    """The UIDs of the message files in a directory ("... [UID].eml")."""
    out = set()
    for n in os.listdir(path):
        m = re.search(r"\[(\d+)\]\.eml$", n)
        if m:
            out.add(int(m.group(1)))
    return out


def server_search(mailbox, keys, literal=None):
    c = SRV.client()
    try:
        D.select(c, mailbox, readonly=True)
        if literal is not None:
            c.literal = literal
        typ, data = c.uid("SEARCH", keys)
        assert typ == "OK", (keys, data)
        return {int(x) for x in data[0].split()}
    finally:
        c.logout()


def commands(data):
    """The commands in rawlog data (timestamps stripped), each whole: a literal's bytes
    ({n} or {n+} at the end of a line, then n bytes) belong to the command they are in,
    whatever they hold (a CR LF inside a literal starts no command)."""
    out, i, cur = [], 0, b""
    spec = re.compile(rb"\{(\d+)\+?\}$")
    while i < len(data):
        j = data.find(b"\r\n", i)
        if j < 0:
            break
        line = data[i:j]
        i = j + 2
        cur += line
        m = spec.search(line)
        if m:
            n = int(m.group(1))
            cur += b"\r\n" + data[i:i + n]
            i += n
            continue
        out.append(cur)
        cur = b""
    return out


def keys_of(*keys):
    return {UID[k][1] for k in keys}


def dirname(query):
    return query.replace("%", "%25").replace("/", "%2F")


class Search(unittest.TestCase):
    def check(self, mailbox, query, hand_keys, expect, literal=None):
        got = uids_in(P(mailbox, ".search", dirname(query)))
        want = server_search(mailbox, hand_keys, literal)
        self.assertEqual(got, want, "%r vs %s" % (query, hand_keys))
        self.assertEqual(got, keys_of(*expect), query)

    def test_queries_match_server(self):
        self.check("INBOX", "from:alice invoice", "FROM alice TEXT invoice", ["invoice"])
        self.check("INBOX", "invoice", "TEXT invoice", ["invoice", "reply"])
        self.check("INBOX", "is:unread", "UNSEEN", ["lunch", "cafe", "hostile", "big"])
        self.check("INBOX", "is:flagged OR is:answered", "OR FLAGGED ANSWERED",
                   ["lunch", "reply"])
        self.check("INBOX", "before:2024-02-29 -from:bob", "BEFORE 29-Feb-2024 NOT FROM bob",
                   ["invoice"])
        self.check("INBOX", "larger:100k", "LARGER 102400", ["big"])
        self.check("INBOX", "subject:café", "CHARSET UTF-8 SUBJECT", ["cafe"],
                   literal="café".encode())
        self.check("INBOX", "imap:OR FROM carol FROM eve", "OR FROM carol FROM eve",
                   ["lunch", "hostile"])
        self.check("INBOX", "nothing-matches-this", "TEXT nothing-matches-this", [])
        self.check("Work", "invoice", "TEXT invoice", ["work1"])

    def test_hidden_from_readdir(self):
        self.assertNotIn(".search", os.listdir(P("INBOX")))
        self.assertNotIn(".search", os.listdir(M.mp))
        self.assertTrue(os.path.isdir(P("INBOX", ".search")))
        self.assertTrue(os.path.isdir(P(".search")))
        found = C.sh(["find", M.mp, "-name", "*.eml"], timeout=60).stdout
        self.assertNotIn(b"/.search/", found)

    def test_recent_queries_listed(self):
        os.listdir(P("Work", ".search", "standup"))
        os.stat(P("Work", ".search", "a%2Fb"))
        self.assertIn("standup", os.listdir(P("Work", ".search")))
        self.assertIn("a%2Fb", os.listdir(P("Work", ".search")))
        self.assertNotIn("standup", os.listdir(P("INBOX", ".search")))

    def test_entry_is_the_message(self):
        d = P("INBOX", ".search", "pizza")
        names = os.listdir(d)
        self.assertEqual(len(names), 1, names)
        a, b = os.stat(os.path.join(d, names[0])), os.stat(P("INBOX", names[0]))
        self.assertEqual((a.st_ino, a.st_size, a.st_mtime, a.st_mode),
                         (b.st_ino, b.st_size, b.st_mtime, b.st_mode))
        self.assertEqual(C.read_file(os.path.join(d, names[0])), C.read_file(P("INBOX", names[0])))
        self.assertEqual(os.getxattr(os.path.join(d, names[0]), "user.imap.uid"),
                         str(UID["lunch"][1]).encode())

    def test_bad_query_is_einval(self):
        for q in ["(((a", 'subject:"open', "imap:FROB 1", "%00"]:
            with self.assertRaises(OSError) as cm:
                os.listdir(P("INBOX", ".search", q))
            self.assertEqual(cm.exception.errno, errno.EINVAL, q)
        C.wait_for(lambda: "(((a" in M.read_log(), 5, what="the log line")
        self.assertEqual(len([ln for ln in M.read_log().splitlines() if "(((a" in ln]), 1)

    def test_gmail_without_x_gm_ext_1(self):
        with self.assertRaises(OSError) as cm:
            os.listdir(P("INBOX", ".search", "gmail:has:attachment"))
        self.assertEqual(cm.exception.errno, errno.ENOTSUP)

    def test_creating_inside_is_eperm(self):
        d = P("INBOX", ".search", "invoice")
        os.listdir(d)
        for fn in (lambda: open(os.path.join(d, "new.eml"), "wb"),
                   lambda: os.mkdir(os.path.join(d, "sub")),
                   lambda: os.mkdir(P("INBOX", ".search", "x", "y"))):
            with self.assertRaises(OSError) as cm:
                fn()
            self.assertEqual(cm.exception.errno, errno.EPERM)
        with self.assertRaises(OSError) as cm:
            os.rename(P("INBOX", ".search", "invoice"), P("INBOX", ".search", "other"))
        self.assertEqual(cm.exception.errno, errno.EPERM)

    def test_mv_through_search(self):
        d = P("Moves", ".search", "subject:moveme")
        self.assertEqual(uids_in(d), keys_of("mv1", "mv2"))
        r = C.sh(["sh", "-c", 'mv "$0"/* "$1"/', d, P("Archive")])
        self.assertEqual(r.returncode, 0, r.stderr)
        c = SRV.client()
        try:
            D.select(c, "Moves", readonly=True)
            self.assertEqual(set(D.fetch_meta(c)), {UID["stay"][1]})
            D.select(c, "Archive", readonly=True)
            subjects = [b for b in D.fetch_bodies(c).values()]
            self.assertEqual(len(subjects), 2)
            self.assertTrue(all(b"moveme" in b for b in subjects))
        finally:
            c.logout()
        self.assertEqual(uids_in(d), set())

    def test_rm_through_search(self):
        d = P("Removes", ".search", "removeme")
        names = os.listdir(d)
        self.assertEqual(len(names), 1)
        os.unlink(os.path.join(d, names[0]))
        c = SRV.client()
        try:
            D.select(c, "Removes", readonly=True)
            self.assertEqual(D.fetch_meta(c), {})
            D.select(c, "Trash", readonly=True)  # the trash rule of rm in a folder
            self.assertTrue(any(b"removeme" in b for b in D.fetch_bodies(c).values()))
        finally:
            c.logout()
        self.assertFalse(os.path.exists(os.path.join(d, names[0])))
        self.assertNotIn(names[0], os.listdir(P("Removes")))

    def test_setfattr_through_search(self):
        d = P("Flags", ".search", "flagme")
        names = os.listdir(d)
        self.assertEqual(len(names), 1)
        os.setxattr(os.path.join(d, names[0]), "user.imap.flags", b"\\Flagged $Done")
        c = SRV.client()
        try:
            D.select(c, "Flags", readonly=True)
            flags = D.fetch_meta(c)[UID["fl1"][1]]["flags"]
        finally:
            c.logout()
        self.assertEqual(C.flags_set(flags), {"\\Flagged", "$Done"})
        self.assertEqual(set(os.getxattr(P("Flags", names[0]), "user.imap.flags").decode()
                             .split()), {"\\Flagged", "$Done"})

    def test_new_message_shows_after_window(self):
        d = P("Live", ".search", "livetoken")
        self.assertEqual(uids_in(d), set())
        c = SRV.client()
        uid = D.append(c, "Live", msg("live", b"x@example.org", b"livetoken arrives", b"b"),
                       (), noon(2024, 4, 1))
        c.logout()
        t0 = time.monotonic()
        C.wait_for(lambda: uids_in(d) == {uid}, WINDOW + 10, interval=0.25,
                   what="the new message in the search directory")
        TIMINGS.append(("new message in .search", time.monotonic() - t0))
        # and an expunged one leaves
        c = SRV.client()
        D.select(c, "Live", readonly=False)
        c.uid("STORE", str(uid), "+FLAGS.SILENT", "(\\Deleted)")
        c.expunge()
        c.logout()
        C.wait_for(lambda: uids_in(d) == set(), WINDOW + 10, interval=0.25,
                   what="the expunged message to leave the search directory")

    def test_expunged_elsewhere_leaves_at_once(self):
        """Opening Live2/.search/QUERY watches Live2 (IDLE). An entry the kernel holds (for
        5 s after a stat) must go as soon as another client expunges the message: seen
        before those 5 s are up, it can only be the daemon telling the kernel."""
        d = P("Live2", ".search", "leaveme")
        c = SRV.client()
        uid = D.append(c, "Live2", msg("leave", b"x@example.org", b"leaveme now", b"b"), (),
                       noon(2024, 4, 2))
        c.logout()
        C.wait_for(lambda: uids_in(d) == {uid}, WINDOW + 10, interval=0.25,
                   what="the message in the search directory")
        path = os.path.join(d, os.listdir(d)[0])
        os.stat(path)
        t0 = time.monotonic()
        c = SRV.client()
        D.select(c, "Live2", readonly=False)
        c.uid("STORE", str(uid), "+FLAGS.SILENT", "(\\Deleted)")
        c.expunge()
        c.logout()
        C.wait_for(lambda: not os.path.exists(path), max(0.5, 4.7 - (time.monotonic() - t0)),
                   what="the kernel to be told the entry is gone")
        TIMINGS.append(("expunged entry gone from .search", time.monotonic() - t0))

    def test_root_tree(self):
        d = P(".search", "from:alice")
        corpus = CORPUS_FILES and server_search("Corpus", "FROM alice")
        want = ["INBOX", "Projects", "Work"] + (["Corpus"] if corpus else [])
        self.assertEqual(sorted(os.listdir(d)), sorted(want))
        self.assertEqual(os.listdir(os.path.join(d, "Projects")), ["Alpha"])
        for mb in ("INBOX", "Work", "Projects/Alpha"):
            self.assertEqual(uids_in(os.path.join(d, mb)), server_search(mb, "FROM alice"), mb)
        self.assertEqual(uids_in(os.path.join(d, "Projects", "Alpha")), keys_of("alpha1"))
        a = os.stat(os.path.join(d, "Work", os.listdir(os.path.join(d, "Work"))[0]))
        self.assertEqual(a.st_ino, os.stat(P("Work", os.listdir(os.path.join(d, "Work"))[0]))
                         .st_ino)
        self.assertFalse(os.path.exists(os.path.join(d, "Moves")))
        self.assertIn("from:alice", os.listdir(P(".search")))

    def test_rm_and_setfattr_through_the_root_tree(self):
        d = P(".search", "subject:rootremove", "Projects", "Beta")
        names = os.listdir(d)
        self.assertEqual(uids_in(d), keys_of("rootrm"))
        f = os.path.join(d, names[0])
        os.setxattr(f, "user.imap.flags", b"\\Seen")
        with self.assertRaises(OSError) as cm:
            os.unlink(P(".search", "subject:rootremove", "Projects"))
        self.assertIn(cm.exception.errno, (errno.EISDIR, errno.EPERM))
        os.unlink(f)
        c = SRV.client()
        try:
            D.select(c, "Projects/Beta", readonly=True)
            self.assertNotIn(UID["rootrm"][1], D.fetch_meta(c))
            D.select(c, "Trash", readonly=True)
            moved = [m for m in D.fetch_meta(c).values()]
            self.assertTrue(any(b"rootremove" in b for b in D.fetch_bodies(c).values()))
            self.assertTrue(any("\\Seen" in m["flags"] for m in moved))
        finally:
            c.logout()

    def test_hostile_queries_one_command_each(self):
        mark = C.RawlogMark(SRV)
        hostile = ['"x%0D%0AQK99 CREATE pwned1"', 'subject:a" CREATE pwned2 x"y',
                   '{5}%0D%0Ahello', 'imap:TEXT {13}%0D%0ACREATE pwned5', "100%*",
                   'subject:"a%2Fb"', '"say \\"hi\\""']
        for q in hostile:
            os.listdir(P("INBOX", ".search", q))
        C.wait_for(lambda: len([c for c in commands(mark.data()) if b" UID SEARCH " in c])
                   >= len(hostile), 5, what="every search in the rawlog")
        cmds = commands(mark.data())
        searches = [c for c in cmds if re.match(rb"^\S+ UID SEARCH ", c)]
        self.assertEqual(len(searches), len(hostile), cmds)
        # nothing but SELECT/UID SEARCH (and the mount's own listing and sync) was sent
        others = [c for c in cmds if not re.match(rb"^\S+ (UID SEARCH|SELECT|UID FETCH|NOOP|IDLE"
                                                  rb"|DONE|STATUS|LIST|ENABLE)", c, re.I)
                  and c != b"DONE"]
        self.assertEqual(others, [])
        self.assertFalse(any(re.match(rb"^\S+ CREATE", c) for c in cmds))
        c = SRV.client()
        names = repr(D.list_mailboxes(c))
        c.logout()
        self.assertNotIn("pwned", names)
        # the "/" one found what it says
        self.assertEqual(uids_in(P("INBOX", ".search", 'subject:"a%2Fb"')), keys_of("hostile"))
        self.assertEqual(uids_in(P("INBOX", ".search", '"say \\"hi\\""')), keys_of("hostile"))

    def test_same_meaning_same_search(self):
        """Two spellings of one query in the sync window: one UID SEARCH, the same files."""
        mark = C.RawlogMark(SRV)
        a = uids_in(P("Work", ".search", "from:Alice  invoice"))
        C.wait_for(lambda: [c for c in commands(mark.data()) if b" UID SEARCH " in c], 5,
                   what="the search in the rawlog")
        b = uids_in(P("Work", ".search", "invoice from:alice"))
        self.assertEqual(a, keys_of("work1"))
        self.assertEqual(a, b)
        # A third query as a marker: the rawlog is in order, so once its search is there, a
        # second search of the first query would be too.
        uids_in(P("Work", ".search", "subject:marker-xyz"))
        C.wait_for(lambda: any(b"marker-xyz" in c for c in commands(mark.data())), 5,
                   what="the marker search in the rawlog")
        searches = [c for c in commands(mark.data()) if b" UID SEARCH " in c]
        self.assertEqual(len(searches), 2, searches)
        self.assertIn("invoice from:alice", os.listdir(P("Work", ".search")))

    @unittest.skipUnless(CORPUS_FILES, "corpus not found at %s" % CORPUS)
    def test_corpus(self):
        for q, keys in [("boundary", "TEXT boundary"), ("from:example", "FROM example"),
                        ("subject:re", "SUBJECT re"), ("larger:20k", "LARGER 20480"),
                        ("linux OR PGP", "OR TEXT linux TEXT PGP")]:
            got = uids_in(P("Corpus", ".search", q))
            want = server_search("Corpus", keys)
            self.assertEqual(got, want, q)
        self.assertTrue(want)


TIMINGS = []

if __name__ == "__main__":
    tap.main()
