#!/usr/bin/python3
"""Races between our own changes and what imapfs learns from the server (issue 7,
findings 8 and 9).

- After `mv F/msg.eml G/typed.eml` the message sits in G under its own name, but the name
  the user typed must keep finding it (same inode) for a while: GNU mv stats it after the
  rename, and the kernel's entry may run out first. Then the typed name goes.
- A LIST that left before one of our folder changes and comes back after it must not undo
  it: `mkdir -p a/b` must not lose `a`, a removed folder must not come back. Driven by a
  mount that re-lists the tree every second (-o poll=1) through a proxy that holds every
  LIST answer back for a second, so that a LIST is on its way most of the time."""

import errno
import os
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tap  # noqa: E402
import common as C  # noqa: E402
from common import D, I, G, sh, wait_for  # noqa: E402
from proxy import Proxy  # noqa: E402

SRV = None
PROXY = None
M = None        # direct
MS = None       # through the slow proxy, poll=1
TMP = None
DELAY = 1.0     # seconds a LIST answer is held back
WATCH = 1.5     # seconds a folder change is watched for being undone
ROUNDS = 5


class SlowProxy(Proxy):
    """Holds back each chunk of a LIST answer for DELAY seconds."""

    def _pump(self, conn, src, dst, direction):
        try:
            while not conn.closed.is_set():
                try:
                    data = src.recv(64 * 1024)
                except OSError:
                    break
                if not data:
                    break
                if direction == "down" and b"* LIST " in data:
                    time.sleep(DELAY)
                try:
                    dst.sendall(data)
                except OSError:
                    break
        finally:
            conn.close()
            with self.lock:
                self.conns.discard(conn)


def setUpModule():
    global SRV, PROXY, M, MS, TMP
    I.check_bin()
    TMP = tempfile.mkdtemp(prefix="itq", dir="/tmp")
    try:
        # Plain IMAP, so that the proxy can see which answers are LISTs.
        SRV = D.Dovecot(ssl=False)
        SRV.start()
        c = SRV.client()
        for name in ("Src", "Dst", "Typed"):
            c.create(name)
        G.multiappend(c, "Src", G.bulk_messages(60, "Src"))
        c.logout()
        M = I.Mount("imap://alice@127.0.0.1:%d" % SRV.imap_port,
                    opts={"password_file": SRV.password_file, "allow_plaintext": None})
        M.mount(foreground=True)
        PROXY = SlowProxy(SRV.imap_port).start()
        MS = I.Mount("imap://alice@127.0.0.1:%d" % PROXY.port,
                     opts={"password_file": SRV.password_file, "allow_plaintext": None,
                           "poll": 1, "timeout": 20})
        MS.mount(foreground=True)
    except Exception:
        tearDownModule(cleanup_only=True)
        raise


def tearDownModule(cleanup_only=False):
    C.teardown([M, MS], servers=[SRV], proxy=PROXY, tmp=TMP, unmount=not cleanup_only)


def server_folders():
    c = SRV.client()
    try:
        return C.mailbox_names(c)
    finally:
        c.logout()


class TypedName(unittest.TestCase):
    def test_typed_name_finds_the_moved_message(self):
        src = os.path.join(M.mp, "Src")
        name = sorted(os.listdir(src))[0]
        ino = os.stat(os.path.join(src, name)).st_ino
        typed = os.path.join(M.mp, "Typed", "typed.eml")
        os.rename(os.path.join(src, name), typed)
        # For 3 s (past the kernel's own short memory of the name), the typed name
        # keeps finding the same message.
        end = time.monotonic() + 3
        while time.monotonic() < end:
            try:
                st = os.stat(typed)
            except OSError as e:
                self.fail("the typed name stopped working %.1f s before the end: %s"
                          % (end - time.monotonic(), e))
            self.assertEqual(st.st_ino, ino, "the typed name finds another inode")
            time.sleep(0.05)
        # The message shows under its own name, and the typed name is not listed.
        listing = os.listdir(os.path.join(M.mp, "Typed"))
        self.assertNotIn("typed.eml", listing)
        self.assertEqual(len(listing), 1, listing)
        # Then the typed name goes.
        wait_for(lambda: not os.path.exists(typed), 15, what="the typed name to go")

    def test_mv_of_many_files_succeeds(self):
        src = os.path.join(M.mp, "Src")
        names = sorted(os.listdir(src))[:40]
        p = sh(["mv"] + [os.path.join(src, n) for n in names] + [os.path.join(M.mp, "Dst")],
               timeout=120)
        self.assertEqual(p.returncode, 0, p.stderr.decode(errors="replace"))


class TreeRace(unittest.TestCase):
    def test_mkdir_p_keeps_the_parent(self):
        failures = []
        for i in range(ROUNDS):
            top = os.path.join(MS.mp, "Race%d" % i)
            p = sh(["mkdir", "-p", os.path.join(top, "Sub")], timeout=60)
            if p.returncode != 0:
                failures.append("mkdir -p Race%d/Sub: %s" % (i, p.stderr.decode(errors="replace")))
                continue
            # The daemon's own listing of the root (readdir is not cached by the kernel)
            # must go on holding it while the poller re-lists the tree.
            end = time.monotonic() + WATCH
            while time.monotonic() < end:
                if "Race%d" % i not in os.listdir(MS.mp):
                    failures.append("Race%d vanished from the listing" % i)
                    break
                time.sleep(0.05)
        self.assertEqual(failures, [], "\n".join(failures))
        names = server_folders()
        for i in range(ROUNDS):
            self.assertIn("Race%d/Sub" % i, names)

    def test_rmdir_stays_removed(self):
        for i in range(ROUNDS):
            os.mkdir(os.path.join(MS.mp, "Gone%d" % i))
        failures = []
        for i in range(ROUNDS):
            os.rmdir(os.path.join(MS.mp, "Gone%d" % i))
            end = time.monotonic() + WATCH
            while time.monotonic() < end:
                if "Gone%d" % i in os.listdir(MS.mp):
                    failures.append("Gone%d came back after rmdir" % i)
                    break
                time.sleep(0.05)
        self.assertEqual(failures, [], "\n".join(failures))


if __name__ == "__main__":
    tap.main()
