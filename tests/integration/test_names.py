#!/usr/bin/python3
"""Folder names (issue 17, findings 1 and 2), against a real Dovecot, checked with imaplib's
LIST on a connection of its own:

- escapes: a folder made with any name mkdir accepts ("p%q", "50% off", "100%") is on the
  server under exactly that name, and is listed and found under it; a server name holding
  "%XX" literally shows that '%' as "%25"; '/' inside a name (a '.' server) shows as "%2F";
  ".", "..", ".parts", ".search" show with their first dot as "%2E"; a typed name that is
  only another spelling of a listed one ("%41" for "A") is refused with EINVAL. Every
  mapping goes both ways: mkdir of a shown name makes the server name it shows.
- lengths: a name over 255 bytes (UTF-8, as typed) is ENAMETOOLONG for every operation
  that takes one (lookup, mkdir, rmdir, rename, unlink, create, mknod, symlink, link), and
  nothing reaches the server; 255 bytes are fine whatever their modified UTF-7 length."""

import errno
import os
import shutil
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tap  # noqa: E402
import common as C  # noqa: E402
from common import D, I, errno_of, ename  # noqa: E402

SRV = None
M = None      # alice: delimiter '/'
MDOT = None   # dot: delimiter '.'
TMP = None

# server name (UTF-8, as created with imaplib) → how the mount must show it
ALICE_SERVER = {
    "%41": "%2541",            # '%' before two hex digits: escaped
    "%25": "%2525",
    "a%2Fb": "a%252Fb",
    "%2e": "%252e",            # hex digits in either case
    "%00": "%2500",
    "100%": "100%",            # a bare '%' stands for itself
    "%zz": "%zz",
    "x%2g": "x%2g",
    "%": "%",
    ".parts": "%2Eparts",      # reserved for the parts view (issues 8/9)
    ".search": "%2Esearch",
    ".partsx": ".partsx",
    ".hidden": ".hidden",
    "Tree/.search": "Tree/%2Esearch",
    "Tree/p%q": "Tree/p%q",
}
DOT_SERVER = {
    "a/b": "a%2Fb",            # '/' inside one component of a '.' server
    "100%": "100%",
    "p%2Fq": "p%252Fq",
    "Sub.Child%": "Sub/Child%",
}


def setUpModule():
    global SRV, M, MDOT, TMP
    I.check_bin()
    TMP = tempfile.mkdtemp(prefix="itn", dir="/tmp")
    try:
        SRV = D.Dovecot()
        SRV.add_user("dot", "dot-pw", extra="userdb_namespace/inbox/separator=.")
        SRV.start()
        for user, names in ((None, ALICE_SERVER), ("dot", DOT_SERVER)):
            c = SRV.client(user)
            extra = ["LongSrc", "RenSrc", "Kids"] + (["Rm%41", "Rm%", "Rm/.search"] if user is None else [])
            for name in list(names) + extra:
                typ, data = c.create(D.imap_quote(D.mutf7_encode(name)))
                assert typ == "OK", (name, data)
            c.logout()
        M = I.Mount("imaps://alice@127.0.0.1:%d" % SRV.imaps_port,
                    opts={"cafile": SRV.cafile, "password_file": SRV.password_file})
        M.mount(foreground=True)
        MDOT = I.Mount("imaps://dot@127.0.0.1:%d" % SRV.imaps_port,
                       opts={"cafile": SRV.cafile, "password_file": SRV.password_file_for("dot")})
        MDOT.mount(foreground=True)
    except Exception:
        tearDownModule(cleanup_only=True)
        raise


def tearDownModule(cleanup_only=False):
    try:
        for m in (M, MDOT):
            if m is not None and not cleanup_only:
                m.unmount()
    finally:
        for m in (M, MDOT):
            if m is not None:
                m.cleanup()
        if SRV is not None:
            SRV.cleanup()
        if TMP:
            shutil.rmtree(TMP, ignore_errors=True)


def P(*parts):
    return os.path.join(M.mp, *parts)


def Q(*parts):
    return os.path.join(MDOT.mp, *parts)


def srv_names(user=None):
    """{decoded full name: (flags, delim, raw)} from LIST "" "*" on a connection of its own."""
    c = SRV.client(user)
    try:
        return C.mailbox_names(c)
    finally:
        c.logout()


def log_tail(m=None):
    return "\n--- imapfs log (tail) ---\n" + (m or M).read_log()[-3000:]


def shown_tree(mp):
    res = set()
    for dirpath, dirnames, _ in os.walk(mp):
        for d in dirnames:
            res.add(os.path.relpath(os.path.join(dirpath, d), mp))
    return res


class TestEscapes(unittest.TestCase):
    def test_mkdir_percent_names_as_typed(self):
        """The issue's examples and their kin: made, listed and found exactly as typed."""
        problems = []
        for typed in ("p%q", "50% off", "100% sure", "%%", "a%2", "%zy", "%2G", "x%",
                      "ü%", "%ü1"):
            e = errno_of(lambda: os.mkdir(P(typed)))
            if e is not None:
                problems.append("mkdir %r: %s" % (typed, ename(e)))
                continue
            names = srv_names()
            if typed not in names:
                problems.append("mkdir %r: not on the server as typed (%r)" % (
                    typed, sorted(n for n in names if "%" in n)))
            if names.get(typed, (0, 0, None))[2] != D.mutf7_encode(typed):
                problems.append("mkdir %r: server name %r" % (typed, names.get(typed)))
            if typed not in os.listdir(M.mp):
                problems.append("mkdir %r: not listed as typed" % typed)
            if not os.path.isdir(P(typed)):
                problems.append("mkdir %r: not found as typed" % typed)
                continue
            os.mkdir(P(typed, "sub"))
            if typed + "/sub" not in srv_names():
                problems.append("mkdir %r/sub: not on the server" % typed)
            if os.listdir(P(typed)) != ["sub"]:
                problems.append("%r lists %r" % (typed, os.listdir(P(typed))))
            if os.getxattr(P(typed), "user.imap.mailbox").decode() != D.mutf7_encode(typed):
                problems.append("%r: user.imap.mailbox %r" % (typed, os.getxattr(P(typed), "user.imap.mailbox")))
        self.assertEqual(problems, [], log_tail())

    def test_cd_into_percent_folder(self):
        """The issue's reproduction: mkdir 'p%q' && cd 'p%q' (in a shell)."""
        r = C.sh(["sh", "-c", "mkdir 'cd%q' && cd 'cd%q' && pwd"], cwd=M.mp)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.decode().strip(), P("cd%q"))

    def test_server_names_shown(self):
        """Names made by another client show as the table says, resolve, and name their mailbox."""
        tree = shown_tree(M.mp)
        problems = []
        for server, shown in ALICE_SERVER.items():
            if shown not in tree:
                problems.append("%r: %r not shown" % (server, shown))
                continue
            raw = os.getxattr(P(shown), "user.imap.mailbox").decode()
            if raw != D.mutf7_encode(server):
                problems.append("%r: %r is mailbox %r" % (server, shown, raw))
        # the unescaped spellings don't alias them
        for alias in ("A", "a%2Fb", "%2E", ".parts", ".search", "Tree/.search"):
            if alias in (".search", "Tree/.search", ".parts") and os.path.isdir(P(alias)):
                # The search and parts views (issues 8, 9) are found by lookup; they must
                # not be the mailbox of that name.
                try:
                    mbox = os.getxattr(P(alias), "user.imap.mailbox").decode()
                except OSError:
                    mbox = None
                if mbox is not None and mbox.endswith(".search" if "search" in alias else ".parts"):
                    problems.append("%r is mailbox %r" % (alias, mbox))
                continue
            if os.path.lexists(P(alias)):
                problems.append("%r resolves" % alias)
        self.assertEqual(problems, [], sorted(tree))

    def test_rmdir_by_shown_name(self):
        """rmdir of a shown name removes the mailbox it stands for, and only that one."""
        before = set(srv_names())
        os.rmdir(P("Rm%2541"))
        os.rmdir(P("Rm%"))
        os.rmdir(P("Rm", "%2Esearch"))
        self.assertEqual(before - set(srv_names()), {"Rm%41", "Rm%", "Rm/.search"})

    def test_dot_server_names_shown(self):
        tree = shown_tree(MDOT.mp)
        for server, shown in DOT_SERVER.items():
            self.assertIn(shown, tree)
            self.assertEqual(os.getxattr(Q(shown), "user.imap.mailbox").decode(),
                             D.mutf7_encode(server))
        self.assertEqual(os.getxattr(Q("a%2Fb"), "user.imap.delimiter").decode(), ".")

    def test_mkdir_shown_name_makes_server_name(self):
        """The other direction: mkdir of an escaped name makes the literal server name."""
        cases = {  # typed → server name
            "%2542": "%42",
            "%252F": "%2F",
            "%2500x": "%00x",
            "Kids/%2Esearch": "Kids/.search",
            "Kids/%2Eparts": "Kids/.parts",
            "Kids/%2E": "Kids/.",
            "Kids/%2E%2E": "Kids/..",
        }
        problems = []
        before = set(srv_names())
        made = set()
        for typed, server in cases.items():
            if server in before:
                problems.append("fixture: %r exists" % server)
                continue
            e = errno_of(lambda: os.mkdir(P(typed)))
            if e is not None:
                problems.append("mkdir %r: %s" % (typed, ename(e)))
                continue
            made.add(server)
            names = srv_names()
            if names.get(server, (0, 0, None))[2] != D.mutf7_encode(server):
                problems.append("mkdir %r: server has %r, want %r" % (typed, sorted(set(names) - before), server))
            parent, _, last = typed.rpartition("/")
            if last not in os.listdir(P(parent)):
                problems.append("mkdir %r: not listed as typed" % typed)
        self.assertEqual(problems, [], log_tail())
        self.assertEqual(set(srv_names()), before | made)

    def test_dot_server_mkdir_slash(self):
        before = set(srv_names("dot"))
        os.mkdir(Q("c%2Fd%"))
        after = srv_names("dot")
        self.assertEqual(set(after) - before, {"c/d%"})
        self.assertEqual(after["c/d%"][2], "c/d%")
        self.assertIn("c%2Fd%", os.listdir(MDOT.mp))
        # the delimiter itself can't be inside one component
        self.assertEqual(errno_of(lambda: os.mkdir(Q("e.f"))), errno.EINVAL)
        self.assertEqual(set(srv_names("dot")), set(after))

    def test_other_spellings_refused(self):
        """A name that is only another spelling of a listed name (or of a reserved one) would
        not be listed as typed: EINVAL, and nothing reaches the server."""
        before = set(srv_names())
        problems = []
        for typed in ("%41", "%25", "%2f", "%2e", "a%2Eb", "%2E%2E%2E", "%00", "a%00",
                      ".parts", ".search", "%%41", "%2541%41"):
            e = errno_of(lambda: os.mkdir(P(typed)))
            # The reserved names are the parts and search views where those exist (EEXIST).
            want = (errno.EINVAL, errno.EEXIST) if typed in (".parts", ".search") else (errno.EINVAL,)
            if e not in want:
                problems.append("mkdir %r: %s, want EINVAL" % (typed, ename(e)))
            if typed in os.listdir(M.mp):
                problems.append("%r listed" % typed)
        self.assertEqual(problems, [])
        self.assertEqual(set(srv_names()), before)

    def test_rename_to_percent_name(self):
        os.rename(P("RenSrc"), P("r%q 100%"))
        names = srv_names()
        self.assertIn("r%q 100%", names)
        self.assertNotIn("RenSrc", names)
        self.assertIn("r%q 100%", os.listdir(M.mp))
        self.assertTrue(os.path.isdir(P("r%q 100%")))
        self.assertEqual(errno_of(lambda: os.rename(P("r%q 100%"), P("%41"))), errno.EINVAL)
        os.rename(P("r%q 100%"), P("RenBack%2541"))
        names = srv_names()
        self.assertIn("RenBack%41", names)
        self.assertIn("RenBack%2541", os.listdir(M.mp))


N256 = "n" * 256


class TestLengths(unittest.TestCase):
    def assert_too_long(self, what, fn):
        e = errno_of(fn)
        self.assertEqual(e, errno.ENAMETOOLONG, "%s: %s, want ENAMETOOLONG" % (what, ename(e)))

    def test_every_op_enametoolong(self):
        before = set(srv_names())
        inbox_before = os.listdir(P("INBOX"))
        long_u = "ü" * 128  # 256 bytes
        ops = [
            ("stat", lambda: os.stat(P(N256))),
            ("mkdir", lambda: os.mkdir(P(N256))),
            ("mkdir ü×128", lambda: os.mkdir(P(long_u))),
            ("mkdir nested", lambda: os.mkdir(P("LongSrc", N256))),
            ("rmdir", lambda: os.rmdir(P(N256))),
            ("rename folder", lambda: os.rename(P("LongSrc"), P(N256))),
            ("rename from", lambda: os.rename(P(N256), P("LongDst"))),
            ("unlink", lambda: os.unlink(P("INBOX", N256))),
            ("open O_CREAT", lambda: os.close(os.open(P("INBOX", N256), os.O_CREAT | os.O_WRONLY))),
            ("open O_CREAT ü×128", lambda: os.close(os.open(P("INBOX", long_u), os.O_CREAT | os.O_WRONLY))),
            ("mknod", lambda: os.mknod(P("INBOX", N256))),
            ("symlink", lambda: os.symlink("x", P("INBOX", N256))),
        ]
        problems = []
        for what, fn in ops:
            e = errno_of(fn)
            if e != errno.ENAMETOOLONG:
                problems.append("%s: %s" % (what, ename(e)))
        self.assertEqual(problems, [], log_tail())
        self.assertEqual(set(srv_names()), before)
        self.assertEqual(os.listdir(P("INBOX")), inbox_before)
        self.assertTrue(os.path.isdir(P("LongSrc")))

    def test_255_bytes_fit(self):
        """The limit is on the name as typed: 255 bytes of UTF-8 are fine, whatever the
        length of their modified UTF-7 form (85 × '日' is 255 bytes, 229 in UTF-7); one
        character more is too long even though its UTF-7 form (232) would still fit."""
        for name in ("a" * 255, "日" * 85):
            os.mkdir(P(name))
            names = srv_names()
            self.assertIn(name, names)
            self.assertIn(name, os.listdir(M.mp))
            self.assertTrue(os.path.isdir(P(name)))
        self.assert_too_long("mkdir 日×86", lambda: os.mkdir(P("日" * 86)))
        self.assertNotIn("日" * 86, srv_names())

    def test_server_refuses_long_name(self):
        """127 × 'ü' is 254 bytes as typed (so imapfs sends it) but 344 in modified UTF-7,
        which Dovecot refuses ("[CANNOT] Mailbox name too long"): ENAMETOOLONG, with the
        server's text in the log."""
        name = "ü" * 127
        before = set(srv_names())
        self.assert_too_long("mkdir ü×127", lambda: os.mkdir(P(name)))
        self.assertEqual(set(srv_names()), before)
        self.assertIn("too long", M.read_log())
        self.assert_too_long("rename to ü×127", lambda: os.rename(P("LongSrc"), P(name)))


if __name__ == "__main__":
    tap.main()
