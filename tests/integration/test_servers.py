#!/usr/bin/python3
"""The same read/write/sync scenarios against three real servers (issue 15):

  - Dovecot 2.3 (dovecot.py; a \\Trash folder),
  - Cyrus IMAP 3.6 (cyrus.py; altnamespace, SASL PLAIN, special-use Trash), and Cyrus with
    `altnamespace: no` (every folder under the personal namespace prefix "INBOX/"),
  - GNU Mailutils imap4d 3.15 (mailutils.py; no UIDPLUS, no MOVE, no SPECIAL-USE, logins
    like alice@example.test).

Cyrus and Mailutils are Debian packages unpacked into the build directory; a server that
can't run here skips its class saying why. Each class mounts once (imaps) and runs, in
order: listing (nested and non-ASCII folders, exact sizes, bytes), mkdir, cp (the new
message listed at once), setfattr (another client sees the flags), mv, rm (to the \\Trash
folder, or expunged where the server has none), rmdir, live sync (another client appends),
a STARTTLS mount, unmount. What a server lacks by its capabilities is skipped visibly.
Every check is made with an independent client (imaplib)."""

import email.utils
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tap  # noqa: E402
import common as C  # noqa: E402
from common import D, I, G, sh, mount_files, read_file  # noqa: E402
import debpkg  # noqa: E402

NESTED = "Projekte/2024/Q1"
UNI = "Ünïcødé Ordner"
FOLDERS = {"INBOX": 2, "Work": 3, NESTED: 1, UNI: 2}


def make_msg(key, i):
    dt = G._idate(i)
    raw = G.simple(key, "Server test %s" % key, email.utils.format_datetime(dt),
                   G._body_text(key, "x" * (37 * i)))
    return raw


def sname(srv, name):
    """The server's name of the folder the mount shows as name."""
    f = getattr(srv, "server_name", None)
    return f(name) if f else name


def caps(srv):
    c = srv.client()
    try:
        typ, data = c.capability()
        return set(x.upper() for x in data[0].decode().split())
    finally:
        c.logout()


class Scenarios:
    """Mixed into one unittest.TestCase per server; subclasses set make_server()."""

    srv = None
    mnt = None
    caps = set()
    msgs = {}  # folder → [raw]

    @classmethod
    def make_server(cls):
        raise NotImplementedError

    @classmethod
    def setUpClass(cls):
        I.check_bin()
        try:
            cls.srv = cls.make_server()
        except debpkg.Unavailable as e:
            raise unittest.SkipTest(str(e))
        try:
            cls.srv.start()
            cls.caps = caps(cls.srv)
            c = cls.srv.client()
            n = 0
            cls.msgs = {}
            for f, count in FOLDERS.items():
                if f != "INBOX":
                    parts = f.split("/")
                    for k in range(1, len(parts) + 1):
                        c.create(D.imap_quote(D.mutf7_encode(sname(cls.srv, "/".join(parts[:k])))))
                cls.msgs[f] = []
                for _ in range(count):
                    n += 1
                    raw = make_msg("%s-%d" % (cls.__name__, n), n)
                    D.append(c, sname(cls.srv, f), raw)
                    cls.msgs[f].append(raw)
                if hasattr(cls.srv, "settle"):
                    cls.srv.settle(c, sname(cls.srv, f))
            for f in ("Empty", "Gone"):
                c.create(D.imap_quote(sname(cls.srv, f)))
            c.logout()
            cls.mnt = C.mount_of(cls.srv, poll=2)
            cls.mnt.mount(debug=bool(os.environ.get("IMAPFS_TEST_DEBUG")), foreground=True)
        except Exception:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        C.teardown([cls.mnt], servers=[cls.srv], unmount=False)

    # -- helpers ----------------------------------------------------------------------
    def p(self, *parts):
        return os.path.join(self.mnt.mp, *parts)

    def server(self, folder, bodies=True):
        """(meta, bodies) of folder on the server. Mailutils may answer a message's body as
        "" while another session renames its maildir file (a flag change): such a read is
        taken again, until a deadline, so that every listed message has its body."""
        deadline = time.monotonic() + 10
        while True:
            meta, b = C.server_messages(self.srv, sname(self.srv, folder), bodies)
            if not bodies or set(b) == set(meta) or time.monotonic() > deadline:
                return meta, b
            time.sleep(0.1)

    def server_names(self):
        c = self.srv.client()
        try:
            return set(C.mailbox_names(c))
        finally:
            c.logout()

    def cp_in(self, folder, name, raw):
        """cp of a file holding raw (named name, in the mount's work directory) into folder;
        then settle(folder)."""
        src = os.path.join(self.mnt.workdir, name)
        with open(src, "wb") as f:
            f.write(raw)
        sh(["cp", src, self.p(folder) + "/"], check=True)
        self.settle(folder)

    def settle(self, folder):
        """Mailutils: one SELECT of our own gives what was just appended its UID for good
        (see mailutils.py); the mount's sessions then agree on it. Nothing elsewhere."""
        if hasattr(self.srv, "settle"):
            c = self.srv.client()
            try:
                self.srv.settle(c, sname(self.srv, folder))
            finally:
                c.logout()

    def need(self, *capabilities, why=""):
        missing = [x for x in capabilities if x not in self.caps]
        if missing:
            self.skipTest("%s has no %s%s" % (self.srv.name, " ".join(missing),
                                              ": " + why if why else ""))

    def log(self):
        lines = [l for l in self.mnt.read_log().splitlines() if l.startswith("imapfs")]
        return "\n" + "\n".join(lines[-80:])

    # -- scenarios, in order ------------------------------------------------------------
    def test_01_tree(self):
        """The folder tree: nested and non-ASCII folders, no namespace prefix level."""
        self.assertTrue(os.path.isdir(self.p("INBOX")))
        for f in FOLDERS:
            self.assertTrue(os.path.isdir(self.p(f)), "%s missing: %r" % (f, os.listdir(self.mnt.mp)))
        top = set(os.listdir(self.mnt.mp))
        self.assertIn("Empty", top)
        # a namespace prefix ("INBOX/" on Cyrus with altnamespace: no) is not a level
        self.assertEqual([d for d in os.listdir(self.p("INBOX"))
                          if os.path.isdir(self.p("INBOX", d))], [])

    def test_02_listing_sizes_bytes(self):
        for f in FOLDERS:
            meta, bodies = self.server(f)
            files = mount_files(self.p(f))
            self.assertEqual(set(files), set(meta), f)
            for uid, name in files.items():
                st = os.stat(self.p(f, name))
                self.assertEqual(st.st_size, meta[uid]["size"], (f, name))
                self.assertEqual(read_file(self.p(f, name)), bodies[uid], (f, name))
            self.assertEqual(sorted(bodies.values()), sorted(C.crlf(m) for m in self.msgs[f]))

    def test_03_mkdir(self):
        os.mkdir(self.p("Made"))
        os.makedirs(self.p("Made", "Deep", "Er"))
        names = self.server_names()
        for f in ("Made", "Made/Deep", "Made/Deep/Er"):
            self.assertIn(sname(self.srv, f), names)
        if self.srv.prefix():
            self.assertNotIn("Made", names, "created outside the personal namespace")

    def test_04_cp_in_listed_at_once(self):
        """cp returns 0, the server has the message and ls shows it at once (issue 15 #1:
        Mailutils has no UIDPLUS and sends the appending session no * EXISTS)."""
        raw = make_msg("copied-in", 99)
        before = set(mount_files(self.p("Work")))
        self.cp_in("Work", "new.eml", raw)
        # the mount lists first: on Mailutils' maildir two sessions scanning a new message
        # at once can give it two UIDs (see mailutils.py)
        files = mount_files(self.p("Work"))
        meta, bodies = self.server("Work")
        new = set(meta) - before
        self.assertEqual(len(new), 1, meta)
        uid = new.pop()
        self.assertEqual(bodies[uid], C.crlf(raw))
        self.assertIn(uid, files, "the copied message is not listed: %r%s" % (files, self.log()))
        self.assertEqual(read_file(self.p("Work", files[uid])), C.crlf(raw))

    def test_04b_cp_in_again_and_again(self):
        """ls, cp, ls three times: each copy is listed at once, also when the session that
        APPENDs has the folder selected (no APPENDUID, no * EXISTS on Mailutils)."""
        for i in range(3):
            before = set(mount_files(self.p("INBOX")))
            raw = make_msg("again-%d" % i, 50 + i)
            self.cp_in("INBOX", "again-%d.eml" % i, raw)
            files = mount_files(self.p("INBOX"))
            self.assertEqual(len(set(files) - before), 1,
                             "copy %d not listed: %r%s" % (i, files, self.log()))

    def test_04c_cp_then_flag_and_move_at_once(self):
        """A message just copied in is flagged and moved at once (the session that
        APPENDed may not have heard of it: no * EXISTS on Mailutils)."""
        for i in range(3):
            before = set(mount_files(self.p("Work")))
            raw = make_msg("flagmove-%d" % i, 60 + i)
            self.cp_in("Work", "fm-%d.eml" % i, raw)
            files = mount_files(self.p("Work"))
            new = set(files) - before
            self.assertEqual(len(new), 1, files)
            path = self.p("Work", files[new.pop()])
            r = sh(["setfattr", "-n", "user.imap.flags", "-v", "\\Seen", path])
            self.assertEqual(r.returncode, 0, r.stderr.decode(errors="replace") + self.log())
            r = sh(["mv", path, self.p("Made") + "/"])
            self.assertEqual(r.returncode, 0, r.stderr.decode(errors="replace") + self.log())
        _, bodies = self.server("Made")
        self.assertEqual(len(bodies), 3)

    def test_05_setfattr_flags_on_server(self):
        """A flag change that returned success is seen by another client at once (issue 15
        #3: Mailutils keeps a STORE's flags to the session until it leaves the mailbox)."""
        files = mount_files(self.p("Work"))
        uid = min(files)
        sh(["setfattr", "-n", "user.imap.flags", "-v", "\\Flagged \\Answered",
            self.p("Work", files[uid])], check=True)
        meta, _ = self.server("Work", bodies=False)
        self.assertEqual(C.flags_set(meta[uid]["flags"]), {"\\Flagged", "\\Answered"}, self.log())

    def test_06_mv(self):
        # Mailutils writes test_05's flags by renaming the message's maildir file, and a
        # session scanning meanwhile may number messages anew (see mailutils.py): a CI run
        # found the mount's second UID gone from the server, another the file gone from the
        # mount as it followed. Wait until the mount and the server list the same.
        deadline = time.monotonic() + 15
        while True:
            files = mount_files(self.p("Work"))
            before, bodies = self.server("Work")
            if set(files) == set(before) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        # one of the messages loaded (and settled) before the mount, not test_04's copy,
        # whose UID may still change
        both = sorted(set(files) & set(before))
        self.assertGreaterEqual(len(both), 2, "mount %s, server %s" % (sorted(files),
                                                                      sorted(before)))
        uid = both[1]
        body = bodies[uid]
        dst_before = set(self.server("Empty", bodies=False)[0])
        r = sh(["mv", self.p("Work", files[uid]), self.p("Empty") + "/"])
        self.assertEqual(r.returncode, 0, r.stderr.decode(errors="replace") + self.log())
        after, _ = self.server("Work", bodies=False)
        self.assertNotIn(uid, after)
        self.assertEqual(set(after), set(before) - {uid}, "another message went too")
        dmeta, dbodies = self.server("Empty")
        new = set(dmeta) - dst_before
        self.assertEqual([dbodies[u] for u in new], [body])
        self.assertIn(list(new)[0], mount_files(self.p("Empty")))

    def test_07_rm(self):
        """rm: to the \\Trash folder where the server marks one, else expunged — and a
        message another client marked \\Deleted stays."""
        f = "INBOX"
        files = mount_files(self.p(f))
        meta, bodies = self.server(f)
        keep, gone = sorted(files)[:2]
        c = self.srv.client()
        D.select(c, sname(self.srv, f), readonly=False)
        c.uid("STORE", str(keep), "+FLAGS.SILENT", r"(\Deleted)")
        c.logout()
        r = sh(["rm", self.p(f, files[gone])])
        guarded = "UIDPLUS" not in self.caps and not ("MOVE" in self.caps and
                                                       "SPECIAL-USE" in self.caps)
        if guarded:
            # the guarded plain EXPUNGE refuses while another message carries \Deleted
            self.assertNotEqual(r.returncode, 0, "rm expunged beside a \\Deleted message")
            self.assertIn("Operation not permitted", r.stderr.decode(errors="replace"))
            after, _ = self.server(f, bodies=False)
            self.assertEqual(set(after), set(meta))
            self.assertNotIn("\\Deleted", after[gone]["flags"], "our \\Deleted flag stayed")
            c = self.srv.client()
            D.select(c, sname(self.srv, f), readonly=False)
            c.uid("STORE", str(keep), "-FLAGS.SILENT", r"(\Deleted)")
            c.logout()
            r = sh(["rm", self.p(f, files[gone])])
        self.assertEqual(r.returncode, 0, r.stderr.decode(errors="replace") + self.log())
        after, _ = self.server(f, bodies=False)
        self.assertEqual(set(after), set(meta) - {gone})
        self.assertNotIn(gone, mount_files(self.p(f)))
        if "SPECIAL-USE" in self.caps:
            tmeta, tbodies = self.server("Trash")
            self.assertIn(bodies[gone], tbodies.values())

    def test_08_rmdir(self):
        """rmdir of a folder a session of the mount has selected (it lists it first): the
        session leaves it with UNSELECT (both Cyrus and Mailutils refuse EXAMINE "")."""
        self.assertEqual(mount_files(self.p("Gone")), {})
        os.rmdir(self.p("Gone"))
        self.assertNotIn(sname(self.srv, "Gone"), self.server_names())
        self.assertFalse(os.path.exists(self.p("Gone")))
        self.assertIn("Work", os.listdir(self.mnt.mp))
        self.assertEqual(len(mount_files(self.p("Work"))), len(self.server("Work", False)[0]))

    def test_09_live_sync(self):
        """Another client appends to a folder the mount has listed: it shows within the
        poll interval (IDLE on the watched folder, polling for the rest). Found by its
        subject, not its UID: Mailutils' maildir can give a new message one UID per
        session that scans it first (see mailutils.py)."""
        for f in ("INBOX", NESTED):
            mount_files(self.p(f))
            key = "live-" + f.replace("/", "-")
            raw = make_msg(key, 7)
            c = self.srv.client()
            D.append(c, sname(self.srv, f), raw)
            if hasattr(self.srv, "settle"):
                self.srv.settle(c, sname(self.srv, f))
            c.logout()
            _, bodies = self.server(f)
            self.assertIn(C.crlf(raw), bodies.values())

            def listed():
                return [n for n in mount_files(self.p(f)).values() if ("test " + key) in n]
            try:
                name = C.wait_for(listed, 15, 0.1, "message appended elsewhere in %s listed" % f)[0]
            except TimeoutError as e:
                self.fail("%s%s" % (e, self.log()))
            if self.srv.name != "mailutils":
                self.assertEqual(read_file(self.p(f, name)), C.crlf(raw))
                continue

            # Mailutils: the session that lists and the one that reads may have given
            # the new message different UIDs (its maildir race); it settles
            def readable():
                try:
                    n = [n for n in os.listdir(self.p(f)) if ("test " + key) in n]
                    return n and read_file(self.p(f, n[0])) == C.crlf(raw)
                except OSError:
                    return False
            C.wait_for(readable, 15, 0.2, "message appended elsewhere in %s readable" % f)

    def test_10_starttls(self):
        m = I.Mount("imap://%s@127.0.0.1:%d" % (self.srv.user, self.srv.imap_port),
                    opts={"cafile": self.srv.cafile, "password_file": self.srv.password_file,
                          "cache": "no"})
        try:
            m.mount(foreground=True)
            self.assertIn("Work", os.listdir(m.mp))
            m.unmount()
        finally:
            m.cleanup()

    def test_11_unmount(self):
        self.mnt.unmount()
        self.assertFalse(I.is_mounted(self.mnt.mp))


class Dovecot(Scenarios, unittest.TestCase):
    @classmethod
    def make_server(cls):
        d = D.Dovecot(special_use={"Trash": "\\Trash"})
        d.name = "dovecot"
        d.prefix = lambda: ""
        orig = d.start

        def start():
            orig()
            d.create_mailbox("Trash")
            return d
        d.start = start
        return d


class Cyrus(Scenarios, unittest.TestCase):
    @classmethod
    def make_server(cls):
        import cyrus
        return cyrus.Cyrus()


class CyrusPrefix(Scenarios, unittest.TestCase):
    """Cyrus with altnamespace: no: every personal folder is under "INBOX/"."""

    @classmethod
    def make_server(cls):
        import cyrus
        return cyrus.Cyrus(altnamespace=False)


class Mailutils(Scenarios, unittest.TestCase):
    @classmethod
    def make_server(cls):
        import mailutils
        return mailutils.Mailutils()


class DovecotPrefixOffline(unittest.TestCase):
    """A personal namespace with a prefix ("INBOX.", as Courier and Cyrus without
    altnamespace have it; here a Dovecot set up so, cheaper than Cyrus) and an offline
    mount: started without the server, from the persistent cache, it shows the same tree
    (folders at the top, the prefix no level of its own) and the same listing."""

    USER = "pfx"

    @classmethod
    def setUpClass(cls):
        I.check_bin()
        cls.srv = D.Dovecot()
        cls.mounts = []
        try:
            cls.srv.start()
            cls.srv.add_user(cls.USER, "pfxpass", "userdb_namespace/inbox/prefix=INBOX. "
                             "userdb_namespace/inbox/separator=.")
            c = cls.srv.client(cls.USER, "pfxpass")
            try:
                for f in ("INBOX.Work", "INBOX.Work.Sub"):
                    c.create(f)
                D.append(c, "INBOX.Work", make_msg("pfx-1", 3))
                D.append(c, "INBOX", make_msg("pfx-2", 4))
                cls.server_names = set(C.mailbox_names(c))
            finally:
                c.logout()
            cls.cache = os.path.join(cls.srv.dir, "imapfs-cache")
        except Exception:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            for m in cls.mounts:
                m.cleanup()
        finally:
            cls.srv.cleanup()

    def mount(self):
        m = I.Mount("imaps://%s@127.0.0.1:%d" % (self.USER, self.srv.imaps_port),
                    opts={"cafile": self.srv.cafile,
                          "password_file": self.srv.password_file_for(self.USER),
                          "cache_dir": self.cache})
        self.mounts.append(m)
        m.mount(foreground=True)
        return m

    def tree(self, m):
        return sorted(os.path.relpath(os.path.join(d, x), m.mp)
                      for d, dirs, _ in os.walk(m.mp) for x in dirs)

    def files(self, m):
        return sorted(mount_files(os.path.join(m.mp, "Work")).values())

    def test_offline_mount_keeps_the_prefix(self):
        self.assertIn("INBOX.Work.Sub", self.server_names, "the server has no INBOX. prefix")
        m = self.mount()
        tree, files = self.tree(m), self.files(m)
        m.unmount()
        self.assertEqual(tree, ["INBOX", "Work", "Work/Sub"], "online tree")
        self.assertEqual(len(files), 1, files)
        self.srv.stop()
        m = self.mount()
        self.assertIn("mounting offline from the cache", m.stderr)
        self.assertEqual(self.tree(m), tree, "the offline mount shows another tree")
        self.assertEqual(self.files(m), files, "the offline mount lists another Work")
        m.unmount()


if __name__ == "__main__":
    tap.main()
