#!/usr/bin/python3
"""Changes made elsewhere that reach the mount only as untagged responses to our own commands
(issue 7, finding 7): no NOTIFY, no IDLE, a poll too slow to matter. Whatever a connection
of the pool hears (`* VANISHED`, `* EXPUNGE`, `* EXISTS`, `* FETCH`) while it runs a `cat`'s
UID FETCH or our own APPEND must make the next revalidation of that folder show the truth,
although the connection keeps the folder selected and its SELECT is answered from memory.

Two servers: Dovecot with CONDSTORE and QRESYNC (expunges come as VANISHED), and Dovecot
with neither (EXPUNGE by sequence number). Both hide NOTIFY and IDLE (`imap_capability`),
and each mount uses one pooled connection (`-o connections=2`: live sync's and one more),
so the connection that listed the folder is the one that reads and writes in it.

Each test: `ls` the folder; another client (imaplib) changes it; the mount acts in the
folder (a `cat` of a third message, or a `cp` into it); then `ls` is polled until it shows
exactly the server's messages (or flags), and must do so within HEARD_WINDOW seconds:
the mount heard of the change, so it must not wait for the 5 s revalidation (nor, as it
did, let a SELECT answered from memory confirm the old listing for as long as the
connection keeps the folder selected).

Run: IMAPFS_BIN=build/fs/imapfs IMAPFS_SRC=$PWD /usr/bin/python3 tests/integration/test_events.py"""

import os
import re
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tap  # noqa: E402
import common as C  # noqa: E402
from common import D, I, G, sh  # noqa: E402

# The mount heard the change, so the very next revalidation must show it: sooner than the
# 5 s after which a listing is checked again anyway (that would prove nothing).
HEARD_WINDOW = 2.0
DATE_HDR = "Fri, 01 Mar 2024 10:00:00 +0000"
DATE = "2024-03-01"  # what names_message() makes of DATE_HDR

# What Dovecot 2.3.19 offers after login (as in test_write.py).
CAPS = ("IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT SORT=DISPLAY THREAD=REFERENCES "
        "THREAD=REFS THREAD=ORDEREDSUBJECT MULTIAPPEND URL-PARTIAL CATENATE UNSELECT CHILDREN NAMESPACE "
        "UIDPLUS LIST-EXTENDED I18NLEVEL=1 CONDSTORE QRESYNC ESEARCH ESORT SEARCHRES WITHIN "
        "CONTEXT=SEARCH LIST-STATUS BINARY MOVE SNIPPET=FUZZY PREVIEW=FUZZY PREVIEW STATUS=SIZE "
        "SAVEDATE LITERAL+ NOTIFY")
VARIANTS = {
    "qresync": ("NOTIFY", "IDLE"),
    "plain": ("NOTIFY", "IDLE", "CONDSTORE", "QRESYNC"),
}
# One user per test, each with its own INBOX: the folder the sync thread watches from the
# start, so that (without IDLE, with a poll of an hour) it never acts on it again.
USERS = ("cat", "cp", "flag")
FOLDER = "INBOX"

SRV = {}
FIX = {}  # (variant, user) → {key: uid}


def caps_without(drop):
    return " ".join(c for c in CAPS.split() if c not in drop)


def make_raw(key, subject):
    return G.simple(key, subject, DATE_HDR, G._body_text(key))


def msg_name(subject, uid):
    return "%s %s [%d].eml" % (DATE, subject, uid)


def setUpModule():
    I.check_bin()
    try:
        for v, drop in VARIANTS.items():
            srv = D.Dovecot(rawlog=True, extra_conf="protocol imap {\n  imap_capability = %s\n}\n"
                            % caps_without(drop))
            SRV[v] = srv
            for user in USERS:
                srv.add_user(user, user + "-s3cret-pw")
            srv.start()
            for user in USERS:
                c = srv.client(user)
                FIX[(v, user)] = {}
                for i in range(4):
                    key = "%s-%s-%d" % (v, user, i)
                    FIX[(v, user)][key] = D.append(c, "INBOX", make_raw(key, "Seed %d" % i), (),
                                                   G._idate(i))
                c.logout()
    except Exception:
        tearDownModule()
        raise


def tearDownModule():
    for s in SRV.values():
        s.cleanup()


def server_names(srv, user, folder):
    """The names the mount must show for folder: from the server's UIDs and subjects."""
    c = srv.client(user)
    try:
        D.select(c, folder)
        typ, data = c.uid("FETCH", "1:*", "(UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert typ == "OK", data
        out = set()
        for item in data:
            if isinstance(item, tuple):
                uid = int(re.search(rb"UID (\d+)", item[0]).group(1))
                subj = re.search(rb"Subject: (.*?)\r\n", item[1]).group(1).decode()
                out.add(msg_name(subj, uid))
        return out
    finally:
        c.logout()


def sync_settled(srv, user):
    """True once the sync thread's connection has SELECTed INBOX and answered its one
    wake-up (the first opendir) with a NOOP: without IDLE it then waits out the hour-long
    poll and sends nothing more. Until then it could see the change itself and hide what
    this file tests. Its rawlog is the one that never fetched anything."""
    d = srv.rawlog_dir(user)
    for f in os.listdir(d):
        if not f.endswith(".in"):
            continue
        with open(os.path.join(d, f), "rb") as fh:
            text = C.RawlogMark.TS.sub(b"", fh.read()).decode("utf-8", "replace")
        cmds = [l.split(" ", 1)[1] for l in text.split("\r\n") if " " in l]
        if any(c.startswith("UID FETCH") for c in cmds):
            continue
        if cmds[-2:] == ['SELECT "INBOX"', "NOOP"]:
            return True
    return False


class Base(unittest.TestCase):
    """Each test mounts afresh: what the sync thread learned in an earlier test (it polls
    the folder it watched before when it switches) would send the pooled connection to
    another folder and hide what the test looks at."""
    variant = None
    user = None  # set by each test before setUp: see run()
    m = None

    def run(self, result=None):
        self.user = self._testMethodName.split("_")[1]  # test_cat_... → "cat"
        return super().run(result)

    def setUp(self):
        srv = self.srv
        self.m = I.Mount("imaps://%s@127.0.0.1:%d" % (self.user, srv.imaps_port),
                         opts={"cafile": srv.cafile,
                               "password_file": srv.password_file_for(self.user),
                               "poll": 3600, "connections": 2, "cache": "no"})
        try:
            self.m.mount(debug=bool(os.environ.get("EVENTS_DEBUG")), foreground=True)
        except Exception:
            self.m.cleanup()
            raise

    def tearDown(self):
        if os.environ.get("EVENTS_DEBUG"):  # the daemon's -d log, to see the protocol
            with open("/tmp/events-%s-%s.log" % (self.variant, self.id().split(".")[-1]),
                      "w") as f:
                f.write(self.m.read_log())
        try:
            self.m.unmount()
        finally:
            self.m.cleanup()

    @property
    def srv(self):
        return SRV[self.variant]

    def P(self, *parts):
        return os.path.join(self.m.mp, *parts)

    def names(self, folder):
        return FIX[(self.variant, self.user)]

    def start(self, folder):
        """Lists folder on the mount and waits until the sync connection is done with it."""
        self.assertEqual(set(os.listdir(self.P(folder))), server_names(self.srv, self.user, folder))
        C.wait_for(lambda: sync_settled(self.srv, self.user), 10,
                   what="the sync connection settled")

    def ls_until_truth(self, folder, t_change):
        """Polls ls (which revalidates) from now for HEARD_WINDOW seconds."""
        want = server_names(self.srv, self.user, folder)
        deadline = time.monotonic() + HEARD_WINDOW
        while True:
            got = set(os.listdir(self.P(folder)))
            if got == want:
                return time.monotonic() - t_change
            if time.monotonic() > deadline:
                self.fail("ls %s %.1fs after the change: missing %s, extra %s\n--- log tail ---\n%s"
                          % (folder, time.monotonic() - t_change, sorted(want - got),
                             sorted(got - want), self.m.read_log()[-3000:]))
            time.sleep(0.1)

    def change_elsewhere(self, folder, gone_key, new_key):
        """Another client expunges one message and appends one."""
        c = self.srv.client(self.user)
        try:
            D.select(c, folder, readonly=False)
            uid = self.names(folder)[gone_key]
            typ, data = c.uid("STORE", str(uid), "+FLAGS.SILENT", r"(\Deleted)")
            assert typ == "OK", data
            typ, data = c.uid("EXPUNGE", str(uid))
            assert typ == "OK", data
            D.append(c, folder, make_raw(new_key, "Arrived elsewhere"), (), G._idate(9))
        finally:
            c.logout()
        return time.monotonic()

    def test_cat_hears_changes_ls_follows(self):
        """A cat's UID FETCH receives the expunge and the new message as untagged data; the
        count is what it was, and the connection keeps the folder selected."""
        folder = FOLDER
        self.start(folder)
        keys = sorted(self.names(folder))
        t = self.change_elsewhere(folder, keys[0], self.variant + "-cat-new")
        uid = self.names(folder)[keys[2]]
        r = sh(["cat", self.P(folder, msg_name("Seed 2", uid))], check=True)
        self.assertEqual(r.stdout, make_raw(keys[2], "Seed 2"))
        self.ls_until_truth(folder, t)

    def test_cp_amid_changes_ls_follows(self):
        """Our APPEND (cp) runs on the connection that has the folder selected, so its
        answer also carries another client's expunge and new message: what our APPEND
        doesn't explain is news."""
        folder = FOLDER
        self.start(folder)
        keys = sorted(self.names(folder))
        t = self.change_elsewhere(folder, keys[1], self.variant + "-cp-new")
        src = os.path.join(self.m.workdir, "own.eml")
        with open(src, "wb") as f:
            f.write(make_raw(self.variant + "-own", "Own copy"))
        sh(["cp", src, self.P(folder, "own.eml")], check=True)
        self.ls_until_truth(folder, t)

    def test_flag_heard_by_cat_xattr_follows(self):
        """A flag change heard during a cat's UID FETCH (no count changes at all)."""
        folder = FOLDER
        self.start(folder)
        keys = sorted(self.names(folder))
        uid0, uid1 = self.names(folder)[keys[0]], self.names(folder)[keys[1]]
        path0 = self.P(folder, msg_name("Seed 0", uid0))
        self.assertNotIn(r"\Flagged", os.getxattr(path0, "user.imap.flags").decode().split())
        c = self.srv.client(self.user)
        try:
            D.select(c, folder, readonly=False)
            typ, data = c.uid("STORE", str(uid0), "+FLAGS.SILENT", r"(\Flagged)")
            assert typ == "OK", data
        finally:
            c.logout()
        t = time.monotonic()
        r = sh(["cat", self.P(folder, msg_name("Seed 1", uid1))], check=True)
        self.assertEqual(r.stdout, make_raw(keys[1], "Seed 1"))
        deadline = time.monotonic() + HEARD_WINDOW
        while True:
            os.listdir(self.P(folder))  # revalidates the listing
            flags = os.getxattr(path0, "user.imap.flags").decode().split()
            if r"\Flagged" in flags:
                break
            if time.monotonic() > deadline:
                self.fail("flags of %s %.1fs after the change: %r\n--- log tail ---\n%s"
                          % (path0, time.monotonic() - t, flags, self.m.read_log()[-3000:]))
            time.sleep(0.1)


class TestQresync(Base):
    variant = "qresync"


class TestPlain(Base):
    variant = "plain"


del Base  # only its subclasses are tests

if __name__ == "__main__":
    tap.main()
