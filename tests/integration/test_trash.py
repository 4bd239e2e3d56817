#!/usr/bin/python3
"""What rm of a message does (issue 3), checked on the server with imaplib:

  - default, on a server with a \\Trash special-use mailbox (RFC 6154): rm outside it
    moves the message there (flags kept), rm inside it expunges; rm -r of a folder moves
    its messages (subfolders too) there and removes the folders;
  - -o trash=MAILBOX (also a non-ASCII name): that mailbox instead, whatever has \\Trash;
  - -o trash=none: expunge even though a \\Trash mailbox exists;
  - a server without \\Trash (it has a plain mailbox called "Trash"): expunge, and the
    "Trash" mailbox is left alone.

Expunging is UID STORE +FLAGS.SILENT (\\Deleted) + UID EXPUNGE: a message another client
marked \\Deleted survives, and the rawlog never shows a plain EXPUNGE or CLOSE."""

import email.utils
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tap  # noqa: E402
import common as C  # noqa: E402
from common import D, I, G, sh, mount_files, read_file  # noqa: E402

SU = None      # Dovecot with Trash as \Trash
PLAIN = None   # Dovecot without special-use; it has a mailbox named "Trash"
MOUNTS = {}    # name → Mount
FIX = {}       # (server tag, key) → Msg
DE = "Gelöschte Elemente"

SU_FOLDERS = {
    "Trash": [("trash-%d" % i, ()) for i in range(4)],
    "Bin": [("bin-0", ())],
    DE: [],
    "Junk": [],
    "D1": [("d1-0", [r"\Seen", "$Label1"]), ("d1-1", [r"\Flagged"]), ("d1-2", ())],
    "D2": [("d2-0", ()), ("d2-1", ())],
    "Proj": [("proj-%d" % i, [r"\Seen"] if i else []) for i in range(3)],
    "Proj/Sub": [("projsub-%d" % i, [r"\Answered"]) for i in range(2)],
    "Projects": [("projects-0", ())],
    "B1": [("b1-0", [r"\Flagged"]), ("b1-1", ())],
    "G1": [("g1-0", ["$Label2"])],
    "N1": [("n1-0", ()), ("n1-1", ())],
}
PLAIN_FOLDERS = {
    "Trash": [("ptrash-0", ())],
    "P1": [("p1-0", ()), ("p1-1", ()), ("p1-2", ())],
    "PProj": [("pproj-0", ())],
    "PProj/Sub": [("ppsub-0", ())],
}


def make_msg(key, mailbox, flags, i):
    dt = G._idate(i)
    raw = G.simple(key, "Trash test %s" % key, email.utils.format_datetime(dt), G._body_text(key))
    return G.Msg(key, mailbox, raw, "Trash test %s" % key, dt.strftime("%Y-%m-%d"), dt, flags)


def load(srv, tag, folders):
    c = srv.client()
    try:
        n = 0
        for mailbox, items in folders.items():
            msgs = []
            for key, flags in items:
                n += 1
                msgs.append(make_msg(key, mailbox, flags, n))
            C.create_and_append(c, mailbox, msgs)
            for m in msgs:
                FIX[(tag, m.key)] = m
    finally:
        c.logout()


MOUNT_SPECS = {}  # name → (server, options), mounted on first use so that a mount that
                 # fails (e.g. an option the daemon doesn't take) fails only its tests


def mount(name):
    return C.mount_once(MOUNTS, MOUNT_SPECS, name)


def setUpModule():
    global SU, PLAIN
    I.check_bin()
    try:
        SU = D.Dovecot(rawlog=True, special_use={"Trash": "\\Trash", "Junk": "\\Junk"}).start()
        PLAIN = D.Dovecot(rawlog=True).start()
        load(SU, "su", SU_FOLDERS)
        load(PLAIN, "plain", PLAIN_FOLDERS)
        MOUNT_SPECS.update({
            "default": (SU, {}),
            "bin": (SU, {"trash": "Bin"}),
            "de": (SU, {"trash": DE}),
            "none": (SU, {"trash": "none"}),
            "plain": (PLAIN, {}),
        })
    except Exception:
        tearDownModule(cleanup_only=True)
        raise


def tearDownModule(cleanup_only=False):
    C.teardown(MOUNTS, servers=[SU, PLAIN], unmount=not cleanup_only)


def fx(tag, key):
    return FIX[(tag, key)]


def mpath(mount_name, m):
    mp = mount(mount_name).mp
    files = mount_files(os.path.join(mp, m.mailbox))
    if m.uid not in files:
        raise AssertionError("%s (UID %d) not in %s: %r" % (m.key, m.uid, m.mailbox, files))
    return os.path.join(mp, m.mailbox, files[m.uid])


def state(srv):
    return C.account_state(srv)


def names(srv):
    c = srv.client()
    try:
        return C.mailbox_names(c)
    finally:
        c.logout()


def log_tail(name):
    return "\n--- imapfs log (tail) ---\n" + mount(name).read_log()[-3000:]


class Base(unittest.TestCase):
    def rm(self, mount_name, path):
        r = sh(["rm", path])
        self.assertEqual(r.returncode, 0, r.stderr.decode(errors="replace") + log_tail(mount_name))
        self.assertFalse(os.path.exists(path), "still there after rm")
        self.assertNotIn(os.path.basename(path), os.listdir(os.path.dirname(path)))

    def assert_moved(self, before, after, m, src, dst):
        """m went from src to dst, with its flags, and nothing else changed."""
        self.assertNotIn(m.uid, after[src], "still in %s" % src)
        gained = {u: v for u, v in after[dst].items() if u not in before[dst]}
        self.assertEqual(len(gained), 1, "%s gained %d messages" % (dst, len(gained)))
        (uid, (flags, body)), = gained.items()
        self.assertEqual(body, m.raw)
        self.assertEqual(set(flags), set(m.flags), "flags not kept")
        exp = {k: dict(v) for k, v in before.items()}
        del exp[src][m.uid]
        exp[dst][uid] = (flags, body)
        self.assertEqual(after, exp, "something else changed on the server")
        return uid

    def assert_expunged(self, before, after, m, mailbox):
        self.assertNotIn(m.uid, after[mailbox])
        exp = {k: dict(v) for k, v in before.items()}
        del exp[mailbox][m.uid]
        self.assertEqual(after, exp, "not exactly one message expunged (or moved somewhere)")

    def assert_no_plain_expunge(self, mark):
        self.assertEqual(mark.commands(r"EXPUNGE|CLOSE"), [],
                         "plain EXPUNGE/CLOSE: they also remove what other clients marked \\Deleted")

    def assert_uid_expunge(self, mark, uid):
        self.assertTrue(mark.wait_commands(r"UID EXPUNGE %d\b" % uid), "no UID EXPUNGE %d" % uid)
        self.assert_no_plain_expunge(mark)


class TestDefaultWithTrash(Base):
    def test_fixture_has_special_use(self):
        n = names(SU)
        self.assertIn("\\Trash", n["Trash"][0], n["Trash"])
        self.assertNotIn("\\Trash", n["Bin"][0])
        n = names(PLAIN)
        self.assertNotIn("\\Trash", n["Trash"][0], "the plain server must have no \\Trash")

    def test_rm_moves_to_trash(self):
        mp = mount("default").mp
        trash_before = set(mount_files(os.path.join(mp, "Trash")))  # listing cached: must not go stale
        m = fx("su", "d1-0")
        path = mpath("default", m)
        before = state(SU)
        mark = C.RawlogMark(SU)
        self.rm("default", path)
        after = state(SU)
        uid = self.assert_moved(before, after, m, "D1", "Trash")
        self.assert_no_plain_expunge(mark)
        self.assertEqual(set(mount_files(os.path.join(mp, "D1"))), set(after["D1"]))
        files = mount_files(os.path.join(mp, "Trash"))
        self.assertEqual(set(files), trash_before | {uid}, "the mount's Trash listing is stale")
        self.assertEqual(read_file(os.path.join(mp, "Trash", files[uid])), m.raw)

    def test_rm_in_trash_expunges(self):
        m = fx("su", "trash-0")
        path = mpath("default", m)
        before = state(SU)
        mark = C.RawlogMark(SU)
        self.rm("default", path)
        self.assert_expunged(before, state(SU), m, "Trash")
        self.assert_uid_expunge(mark, m.uid)

    def test_rm_in_trash_keeps_message_another_client_marked_deleted(self):
        a, b = fx("su", "trash-1"), fx("su", "trash-2")
        pb = mpath("default", b)
        c = SU.client()
        D.select(c, "Trash", readonly=False)
        typ, data = c.uid("STORE", str(a.uid), "+FLAGS.SILENT", r"(\Deleted)")
        self.assertEqual(typ, "OK", data)
        c.logout()
        mark = C.RawlogMark(SU)
        self.rm("default", pb)
        meta, _ = C.server_messages(SU, "Trash", bodies=False)
        self.assertIn(a.uid, meta, "the message another client marked \\Deleted was expunged too")
        self.assertNotIn(b.uid, meta)
        self.assert_uid_expunge(mark, b.uid)

    def test_rm_r_folder_moves_its_messages_to_trash(self):
        before = state(SU)
        moved = {}
        for mb in ("Proj", "Proj/Sub"):
            for u, v in before[mb].items():
                moved[v[1]] = v[0]
        self.assertEqual(len(moved), 5)
        r = sh(["rm", "-r", os.path.join(mount("default").mp, "Proj")])
        self.assertEqual(r.returncode, 0, r.stderr.decode(errors="replace") + log_tail("default"))
        after = state(SU)
        self.assertNotIn("Proj", names(SU))
        self.assertNotIn("Proj/Sub", names(SU))
        gained = {v[1]: v[0] for u, v in after["Trash"].items() if u not in before["Trash"]}
        self.assertEqual(gained, moved, "Trash did not gain exactly the folder's messages with their flags")
        exp = {k: v for k, v in before.items() if k not in ("Proj", "Proj/Sub", "Trash")}
        self.assertEqual({k: v for k, v in after.items() if k != "Trash"}, exp, "something else changed")
        root = os.listdir(mount("default").mp)
        self.assertNotIn("Proj", root)
        self.assertIn("Projects", root)


class TestTrashOption(Base):
    def test_trash_mailbox_option(self):
        m = fx("su", "b1-0")
        path = mpath("bin", m)
        before = state(SU)
        self.rm("bin", path)
        after = state(SU)
        self.assert_moved(before, after, m, "B1", "Bin")
        self.assertEqual(after["Trash"], before["Trash"], "went to \\Trash, not to -o trash=Bin")
        # inside the chosen trash, rm expunges
        b = fx("su", "bin-0")
        path = mpath("bin", b)
        before = after
        mark = C.RawlogMark(SU)
        self.rm("bin", path)
        self.assert_expunged(before, state(SU), b, "Bin")
        self.assert_uid_expunge(mark, b.uid)

    def test_trash_non_ascii_mailbox(self):
        m = fx("su", "g1-0")
        path = mpath("de", m)
        before = state(SU)
        self.rm("de", path)
        after = state(SU)
        self.assert_moved(before, after, m, "G1", DE)
        self.assertEqual(names(SU)[DE][2], "Gel&APY-schte Elemente")
        files = mount_files(os.path.join(mount("de").mp, DE))
        self.assertEqual(set(files), set(after[DE]))

    def test_trash_none_expunges(self):
        m = fx("su", "n1-0")
        path = mpath("none", m)
        before = state(SU)
        mark = C.RawlogMark(SU)
        self.rm("none", path)
        after = state(SU)
        self.assert_expunged(before, after, m, "N1")
        self.assert_uid_expunge(mark, m.uid)

    def test_trash_none_keeps_message_another_client_marked_deleted(self):
        a, b = fx("su", "d2-0"), fx("su", "d2-1")
        pb = mpath("none", b)
        c = SU.client()
        D.select(c, "D2", readonly=False)
        typ, data = c.uid("STORE", str(a.uid), "+FLAGS.SILENT", r"(\Deleted)")
        self.assertEqual(typ, "OK", data)
        c.logout()
        mark = C.RawlogMark(SU)
        self.rm("none", pb)
        meta, _ = C.server_messages(SU, "D2", bodies=False)
        self.assertIn(a.uid, meta, "the message another client marked \\Deleted was expunged too")
        self.assertIn("\\Deleted", meta[a.uid]["flags"])
        self.assertNotIn(b.uid, meta)
        self.assert_uid_expunge(mark, b.uid)


class TestServerWithoutTrash(Base):
    def test_rm_expunges(self):
        m = fx("plain", "p1-0")
        path = mpath("plain", m)
        before = state(PLAIN)
        mark = C.RawlogMark(PLAIN)
        self.rm("plain", path)
        after = state(PLAIN)
        self.assert_expunged(before, after, m, "P1")
        self.assertEqual(after["Trash"], before["Trash"], "moved to a mailbox that is only *named* Trash")
        self.assert_uid_expunge(mark, m.uid)

    def test_rm_keeps_message_another_client_marked_deleted(self):
        a, b = fx("plain", "p1-1"), fx("plain", "p1-2")
        pb = mpath("plain", b)
        c = PLAIN.client()
        D.select(c, "P1", readonly=False)
        c.uid("STORE", str(a.uid), "+FLAGS.SILENT", r"(\Deleted)")
        c.logout()
        self.rm("plain", pb)
        meta, _ = C.server_messages(PLAIN, "P1", bodies=False)
        self.assertIn(a.uid, meta, "the message another client marked \\Deleted was expunged too")
        self.assertNotIn(b.uid, meta)

    def test_rm_r_expunges(self):
        before = state(PLAIN)
        mark = C.RawlogMark(PLAIN)
        r = sh(["rm", "-r", os.path.join(mount("plain").mp, "PProj")])
        self.assertEqual(r.returncode, 0, r.stderr.decode(errors="replace") + log_tail("plain"))
        after = state(PLAIN)
        self.assertEqual(after, {k: v for k, v in before.items() if k not in ("PProj", "PProj/Sub")})
        self.assertNotIn("PProj", names(PLAIN))
        self.assert_no_plain_expunge(mark)


if __name__ == "__main__":
    tap.main()
