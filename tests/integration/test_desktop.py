#!/usr/bin/python3
"""Desktop and shell tools against the mount (issue 12, findings 1, 4, 8, 9), checked on the
server with imaplib:

  - `gio trash` (GIO, so Nautilus/pcmanfm/Thunar's gvfs) of a message ends with it in the
    server's \\Trash folder and no `.Trash-*` folder on the server; `gio trash --list` names
    it with its original path; `gio trash --restore` brings it back; removing it from the
    trash (gvfsd-trash's delete, as emptying does) expunges it from \\Trash; a folder and a
    mount without a trash folder answer "not supported" and change nothing;
  - a folder's mtime/ctime move when a message arrives from another client, goes (expunged
    elsewhere, or our own rm), or its flags change; inotify watchers of the folder hear of it;
  - access(): `find -executable` lists no message, `test -w` is false with `-o ro`;
  - statfs: `df` shows the QUOTA STORAGE limit and usage (Dovecot's quota plugin with
    imap_quota), and something non-zero on a server without QUOTA.

gio needs gvfs (gvfsd-trash) and a session bus: each gio step runs under `dbus-run-session`
with HOME and XDG_* pointing into the test's temp dir, so the user's own trash is never
touched. Without gio/gvfs the trash tests are skipped, saying so."""

import email.utils
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
from common import D, I, G, sh, mount_files  # noqa: E402

SRV = None     # Dovecot with Trash as \Trash and the quota plugin (100 MiB)
PLAIN = None   # Dovecot without QUOTA
MOUNTS = {}
SPECS = {}
FIX = {}       # key → Msg
TMP = None

FOLDERS = {
    "INBOX": ["in-%d" % i for i in range(6)],
    "Work": ["work-%d" % i for i in range(4)],
    "Watch": ["watch-%d" % i for i in range(3)],
    "Trash": ["old-trash-0"],
    "Proj": ["proj-0"],
}

GVFSD_TRASH = [p for p in ("/usr/libexec/gvfsd-trash", "/usr/lib/gvfs/gvfsd-trash")
               if os.path.exists(p)]
HAVE_GIO = bool(shutil.which("gio") and shutil.which("dbus-run-session") and GVFSD_TRASH)
NO_GIO = "gio, dbus-run-session or gvfsd-trash missing (apt-get install libglib2.0-bin dbus gvfs)"

QUOTA_CONF = """\
protocol imap {
  mail_plugins = $mail_plugins imap_quota
}
plugin {
  quota_rule = *:storage=100M
}
"""


def make_msg(key, mailbox, i):
    dt = G._idate(i)
    raw = G.simple(key, "Desktop test %s" % key, email.utils.format_datetime(dt),
                   G._body_text(key))
    return G.Msg(key, mailbox, raw, "Desktop test %s" % key, dt.strftime("%Y-%m-%d"), dt, ())


def load(srv, folders):
    c = srv.client()
    try:
        n = 0
        for mailbox, keys in folders.items():
            msgs = []
            for key in keys:
                n += 1
                msgs.append(make_msg(key, mailbox, n))
            C.create_and_append(c, mailbox, msgs)
            for m in msgs:
                FIX[(srv, m.key)] = m
    finally:
        c.logout()


def mount(name):
    return C.mount_once(MOUNTS, SPECS, name)


def setUpModule():
    global SRV, PLAIN, TMP
    I.check_bin()
    TMP = tempfile.mkdtemp(prefix="desk", dir="/tmp")
    try:
        SRV = D.Dovecot(special_use={"Trash": "\\Trash"}, quota=True,
                        extra_conf=QUOTA_CONF).start()
        PLAIN = D.Dovecot().start()
        load(SRV, FOLDERS)
        load(PLAIN, {"INBOX": ["plain-%d" % i for i in range(3)]})
        SPECS.update({
            "default": (SRV, {}),
            "none": (SRV, {"trash": "none"}),
            "ro": (SRV, {"ro": None}),
            "plain": (PLAIN, {}),
        })
    except Exception:
        tearDownModule(cleanup_only=True)
        raise


def tearDownModule(cleanup_only=False):
    C.teardown(MOUNTS, servers=[SRV, PLAIN], tmp=TMP, unmount=not cleanup_only)


def log_tail(name):
    return "\n--- imapfs log (tail) ---\n" + mount(name).read_log()[-3000:]


def server_find(srv, key):
    """{mailbox: [uid...]} holding the message whose body names key (needle-KEY)."""
    c = srv.client()
    try:
        res = {}
        for name, (flags, delim, raw) in C.mailbox_names(c).items():
            if C.is_noselect(flags):
                continue
            typ, data = c.select(D.imap_quote(raw), readonly=True)
            assert typ == "OK", (name, data)
            typ, data = c.uid("SEARCH", None, "BODY", '"needle-%s"' % key)
            assert typ == "OK", data
            uids = [int(u) for u in data[0].split()]
            if uids:
                res[name] = uids
        return res
    finally:
        c.logout()


def trash_folders(srv):
    """Server folders whose name starts with .Trash (there must never be any)."""
    c = srv.client()
    try:
        return sorted(n for n in C.mailbox_names(c) if n.split("/")[-1].startswith(".Trash")
                      or n.startswith(".Trash"))
    finally:
        c.logout()


def msg_path(mount_name, key, srv=None):
    srv = srv or SPECS[mount_name][0]
    m = FIX[(srv, key)]
    where = server_find(srv, key)
    (mailbox, uids), = where.items()
    d = os.path.join(mount(mount_name).mp, mailbox)
    files = mount_files(d)
    return os.path.join(d, files[uids[0]]), mailbox, m


def gio(script, timeout=90):
    """Runs a shell script under its own session bus (gvfsd started on demand), with a
    home of its own: the user's trash is never touched. Returns CompletedProcess (text)."""
    home = os.path.join(TMP, "home")
    os.makedirs(home, exist_ok=True)
    env = dict(os.environ)
    env.update({"HOME": home, "XDG_DATA_HOME": os.path.join(home, "data"),
                "XDG_CONFIG_HOME": os.path.join(home, "config"),
                "XDG_CACHE_HOME": os.path.join(home, "cache"),
                "XDG_RUNTIME_DIR": os.path.join(TMP, "run"), "LC_ALL": "C.UTF-8",
                "GIO_USE_VFS": "gvfs"})
    os.makedirs(env["XDG_RUNTIME_DIR"], mode=0o700, exist_ok=True)
    env.pop("DBUS_SESSION_BUS_ADDRESS", None)
    return subprocess.run(["dbus-run-session", "--", "sh", "-c", script], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=timeout, env=env, text=True)


def q(s):
    return "'" + s.replace("'", "'\\''") + "'"


def trash_list(mp):
    """[(uri, original path)] of `gio trash --list` lines for this mount."""
    r = gio("gio trash --list")
    out = []
    for line in r.stdout.splitlines():
        uri, _, orig = line.partition("\t")
        if orig.startswith(mp + "/"):
            out.append((uri, orig))
    return out


@unittest.skipUnless(HAVE_GIO, NO_GIO)
class TestGioTrash(unittest.TestCase):
    def test_trash_list_restore(self):
        mp = mount("default").mp
        path, mailbox, m = msg_path("default", "in-0")
        r = gio("gio trash %s" % q(path))
        self.assertEqual(r.returncode, 0, r.stderr + log_tail("default"))
        self.assertFalse(os.path.exists(path))
        where = C.wait_for(lambda: server_find(SRV, "in-0"), 10, what="the message on the server")
        self.assertEqual(list(where), ["Trash"], "not (only) in the server's \\Trash: %r" % where)
        self.assertEqual(trash_folders(SRV), [], "a .Trash folder reached the server")
        # the Trash Can shows it, with where it came from
        items = trash_list(mp)
        self.assertEqual([o for _, o in items], [path], r.stdout)
        # and can put it back
        r = gio("gio trash --restore %s" % q(items[0][0]))
        self.assertEqual(r.returncode, 0, r.stderr + log_tail("default"))
        self.assertEqual(list(server_find(SRV, "in-0")), ["INBOX"])
        self.assertEqual(trash_list(mp), [])
        names = os.listdir(os.path.join(mp, "INBOX"))
        self.assertTrue(any(C.read_file(os.path.join(mp, "INBOX", n)) == m.raw for n in names
                            if n.endswith(".eml")), "restored message not listed with its bytes")
        self.assertEqual(trash_folders(SRV), [])

    def test_trash_then_delete_from_trash(self):
        mp = mount("default").mp
        path, mailbox, m = msg_path("default", "work-1")
        r = gio("gio trash %s" % q(path))
        self.assertEqual(r.returncode, 0, r.stderr + log_tail("default"))
        self.assertEqual(list(server_find(SRV, "work-1")), ["Trash"])
        items = trash_list(mp)
        self.assertEqual([o for _, o in items], [path])
        # what emptying the trash does per item (gvfsd-trash: move to expunged/, delete);
        # only this mount's item, so that nothing else on the machine is emptied
        r = gio("gio remove %s" % q(items[0][0]))
        self.assertEqual(r.returncode, 0, r.stderr + log_tail("default"))
        self.assertEqual(server_find(SRV, "work-1"), {}, "still on the server")
        self.assertEqual(trash_list(mp), [])
        self.assertEqual(list(server_find(SRV, "old-trash-0")), ["Trash"],
                         "another message of the trash folder went too")
        self.assertEqual(trash_folders(SRV), [])

    def test_trash_folder_not_supported(self):
        mp = mount("default").mp
        before = C.account_state(SRV, bodies=False)
        r = gio("gio trash %s" % q(os.path.join(mp, "Proj")))
        self.assertNotEqual(r.returncode, 0, "a folder can't go to the trash folder")
        self.assertIn("filesystem boundaries", r.stderr)  # G_IO_ERROR_NOT_SUPPORTED
        self.assertEqual(C.account_state(SRV, bodies=False), before)
        self.assertEqual(trash_folders(SRV), [])

    def test_no_trash_folder_not_supported(self):
        path, mailbox, m = msg_path("none", "in-1")
        before = C.account_state(SRV, bodies=False)
        r = gio("gio trash %s" % q(path))
        self.assertNotEqual(r.returncode, 0, r.stdout)
        self.assertIn("trash directory", r.stderr)  # "Unable to find or create trash directory"
        self.assertEqual(C.account_state(SRV, bodies=False), before)
        self.assertEqual(trash_folders(SRV), [])
        self.assertTrue(os.path.exists(path))

    def test_mkdir_trash_names_never_reach_server(self):
        mp = mount("default").mp
        for name in (".Trash", ".Trash-4242"):
            self.assertEqual(C.errno_of(lambda: os.mkdir(os.path.join(mp, name))), 1,  # EPERM
                             name)
        self.assertEqual(trash_folders(SRV), [])


def append_elsewhere(srv, mailbox, key):
    m = make_msg(key, mailbox, 50)
    c = srv.client()
    try:
        typ, data = c.append(D.imap_quote(D.mutf7_encode(mailbox)), None, None, m.raw)
        assert typ == "OK", data
    finally:
        c.logout()
    FIX[(srv, key)] = m
    return m


def with_uid(srv, mailbox, key, fn):
    """Runs fn(client, uid) with mailbox selected read-write, uid: the message of key."""
    c = srv.client()
    try:
        typ, data = c.select(D.imap_quote(D.mutf7_encode(mailbox)))
        assert typ == "OK", data
        typ, data = c.uid("SEARCH", None, "BODY", '"needle-%s"' % key)
        (uid,) = data[0].split()
        return fn(c, uid)
    finally:
        c.logout()


class TestFolderTimes(unittest.TestCase):
    """A folder's mtime and ctime move when its content changes, seen by live sync or made
    here, so that notmuch, make and backup tools (and file managers that poll) see it."""

    def setUp(self):
        self.mp = mount("default").mp
        self.dir = os.path.join(self.mp, "Watch")
        os.listdir(self.dir)
        self.t0 = os.stat(self.dir)

    def assert_moved(self, what):
        def moved():
            st = os.stat(self.dir)
            return st if st.st_mtime_ns > self.t0.st_mtime_ns else None
        try:
            st = C.wait_for(moved, 10, interval=0.05, what="the folder's mtime to move")
        except TimeoutError:
            self.fail("mtime of Watch still %d after %s%s" % (self.t0.st_mtime_ns, what,
                                                             log_tail("default")))
        self.assertGreater(st.st_ctime_ns, self.t0.st_ctime_ns, "ctime did not move")
        self.assertLessEqual(st.st_mtime, time.time() + 1, "mtime in the future")
        return st

    def listed(self, key, present=True):
        def look():
            names = os.listdir(self.dir)
            return any(("needle-%s" % key).encode() in C.read_file(os.path.join(self.dir, n))
                       for n in names if n.endswith(".eml")) == present
        C.wait_for(look, 40, interval=0.2, what="ls to show the change")

    def test_append_elsewhere(self):
        append_elsewhere(SRV, "Watch", "watch-new")
        self.listed("watch-new")
        self.assert_moved("an APPEND by another client")

    def test_expunge_elsewhere(self):
        def expunge(c, uid):
            c.uid("STORE", uid, "+FLAGS.SILENT", "(\\Deleted)")
            c.uid("EXPUNGE", uid)
        with_uid(SRV, "Watch", "watch-0", expunge)
        self.listed("watch-0", present=False)
        self.assert_moved("an expunge by another client")

    def test_flags_elsewhere(self):
        with_uid(SRV, "Watch", "watch-1", lambda c, uid: c.uid("STORE", uid, "+FLAGS",
                                                                "(\\Flagged)"))
        self.assert_moved("a flag change by another client")

    def test_own_rm(self):
        path = msg_path("default", "watch-2")[0]
        os.unlink(path)
        self.assert_moved("rm here")

    def test_own_mv(self):
        path = msg_path("default", "in-4")[0]
        other = os.path.join(self.mp, "Work")
        w0 = os.stat(other)
        self.dir = os.path.dirname(path)
        os.listdir(self.dir)
        self.t0 = os.stat(self.dir)
        r = sh(["mv", path, other + "/"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assert_moved("mv out of the folder here")
        self.dir, self.t0 = other, w0
        self.assert_moved("mv into the folder here")

    def test_own_flags(self):
        path = msg_path("default", "work-2")[0]
        self.dir = os.path.dirname(path)
        os.listdir(self.dir)
        self.t0 = os.stat(self.dir)
        os.setxattr(path, "user.imap.flags", b"\\Seen")
        self.assert_moved("setfattr user.imap.flags here")


class TestAccess(unittest.TestCase):
    """access() agrees with the modes and with what the operations answer."""

    def test_find_executable_lists_no_message(self):
        mp = mount("default").mp
        r = sh(["find", os.path.join(mp, "INBOX"), os.path.join(mp, "Work"), "-type", "f",
                "-executable"], check=True)
        self.assertEqual(r.stdout, b"", "messages reported executable")
        r = sh(["find", mp, "-maxdepth", "1", "-type", "d", "-executable"], check=True)
        self.assertIn(os.path.join(mp, "INBOX").encode(), r.stdout.split(b"\n"),
                      "folders must stay searchable")

    def test_access_rw(self):
        path = msg_path("default", "in-3")[0]
        self.assertTrue(os.access(path, os.R_OK))
        self.assertFalse(os.access(path, os.X_OK), "a message is not executable")
        # 0644: it can be removed, renamed and flagged (rm does not ask first)
        self.assertTrue(os.access(path, os.W_OK))
        self.assertTrue(os.access(os.path.dirname(path), os.W_OK | os.X_OK))

    def test_test_w_false_read_only(self):
        path = msg_path("ro", "in-3")[0]
        for p in (path, os.path.dirname(path)):
            r = sh(["sh", "-c", 'test -w "$1"', "_", p])
            self.assertNotEqual(r.returncode, 0, "test -w true under -o ro: %s" % p)
            r = sh(["sh", "-c", 'test -r "$1"', "_", p])
            self.assertEqual(r.returncode, 0, p)
        self.assertFalse(os.access(path, os.X_OK))
        self.assertEqual(C.errno_of(lambda: open(path, "ab")), 30)  # EROFS, as access says


def df(mp):
    """(size, used, avail) in bytes from df -B1."""
    r = sh(["df", "-B1", "--output=size,used,avail", mp], check=True)
    return tuple(int(x) for x in r.stdout.decode().splitlines()[1].split())


class TestStatfs(unittest.TestCase):
    def test_df_shows_quota(self):
        mp = mount("default").mp
        c = SRV.client()
        try:
            typ, data = c.getquotaroot("INBOX")
            self.assertEqual(typ, "OK", data)
            quota = [d for d in data[1] if d]
        finally:
            c.logout()
        # e.g. b'"User quota" (STORAGE 7 102400)'
        words = quota[0].decode().split("(STORAGE ")[1].rstrip(")").split()
        used_kib, limit_kib = int(words[0]), int(words[1])
        self.assertEqual(limit_kib, 100 * 1024)
        size, used, avail = df(mp)
        self.assertEqual(size, limit_kib * 1024, "df size is not the QUOTA STORAGE limit")
        self.assertGreater(used, 0)
        # usage changes as the tests run; the two answers were taken a moment apart
        self.assertLess(abs(used - used_kib * 1024), 256 * 1024, (used, used_kib))
        self.assertEqual(avail, size - used)

    def test_df_without_quota(self):
        mp = mount("plain").mp
        inbox = os.path.join(mp, "INBOX")
        known = sum(os.stat(os.path.join(inbox, n)).st_size for n in os.listdir(inbox))
        self.assertGreater(known, 0)
        # an earlier answer (before the listing) stands for a few seconds
        size, used, avail = C.wait_for(lambda: (lambda t: t if t[1] >= known else None)(df(mp)),
                                       15, interval=0.5, what="df to count the listing")
        self.assertGreater(size, 0, "df shows size 0")
        self.assertGreater(avail, 0, "no free space: copy tools would refuse")
        # what the listings know, in whole blocks
        self.assertGreaterEqual(used, known)
        self.assertLess(used, known + 4096 * 16)


    def test_df_with_server_away_answers_at_once(self):
        """A server that stopped answering costs one call the operation's timeout; the
        df and ls of the next seconds answer from the cache at once rather than each
        waiting for the server again (a file manager asks every few seconds)."""
        from proxy import Proxy
        p = Proxy(SRV.imaps_port).start()
        self.addCleanup(p.stop)
        m = I.Mount("imaps://%s@127.0.0.1:%d" % (SRV.user, p.port),
                    opts={"cafile": SRV.cafile, "password_file": SRV.password_file,
                          "timeout": 2})
        self.addCleanup(m.cleanup)
        m.mount(foreground=True)
        self.assertTrue(os.listdir(os.path.join(m.mp, "INBOX")))
        p.stall()
        self.addCleanup(p.resume)
        t0 = time.monotonic()
        size, _, avail = df(m.mp)  # the first one waits for the server, within bounds
        self.assertLess(time.monotonic() - t0, 20)
        self.assertGreater(avail, 0)
        took = []
        for k in range(12):
            t0 = time.monotonic()
            df(m.mp)
            os.listdir(os.path.join(m.mp, "INBOX"))
            took.append(round(time.monotonic() - t0, 2))
            time.sleep(0.5)
        print("# df times: %r" % took)
        # the server counts as away for 15 s after the failure: no call waits for it again
        self.assertLess(max(took), 1.0, "df and ls with the server away: %r s" % took)
        p.resume()
        m.unmount()


if __name__ == "__main__":
    tap.main()
