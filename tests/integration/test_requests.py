#!/usr/bin/python3
"""What the kernel asks the daemon for during a scan of a folder (issue 13's second grep -r
over cached mail), counted in libfuse's -d log:

- test_grep_r_sends_no_lookups: `grep -r` over a folder of 800 messages on a fresh mount
  opens every file through the entries READDIRPLUS brought (a LOOKUP for a handful at
  most, not one per file past the first 64 KiB of entries), sends no FLUSH for the
  read-only opens, and finds what the server holds;
- test_cached_grep_remount: after a remount with the same cache_dir, the same grep finds the
  same files with no content FETCH (rawlog) and, again, no LOOKUP per file.

Run: IMAPFS_BIN=build/fs/imapfs IMAPFS_SRC=$PWD /usr/bin/python3 tests/integration/test_requests.py"""

import collections
import os
import re
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tap  # noqa: E402
import common as C  # noqa: E402
from common import D, I, G  # noqa: E402

N = 800
TOKEN = "pelican-harbour-token"
SRV = None
TMP = None
HITS = set()  # Message-ID keys of the messages that hold TOKEN


def diag(text):
    sys.stdout.write("# " + text + "\n")
    sys.stdout.flush()


def setUpModule():
    global SRV, TMP
    I.check_bin()
    TMP = tempfile.mkdtemp(prefix="itq", dir="/tmp")
    SRV = D.Dovecot(rawlog=True)
    try:
        SRV.start()
        c = SRV.client()
        G.create_mailboxes(c, ["Scan"], [])
        msgs = []
        for k in range(N):
            key = "q%04d" % k
            extra = ("here is the %s\r\n" % TOKEN) if k % 7 == 3 else ""
            if extra:
                HITS.add(key)
            # Long subjects: long names, fewer entries per READDIRPLUS reply.
            subj = "Scan message %d about the quarterly review of the harbour project" % k
            raw = G.simple(key, subj, "Fri, 01 Mar 2024 10:00:00 +0000",
                           "Hello,\r\n\r\nline of text %d\r\n%sRegards\r\n" % (k, extra))
            msgs.append(G.Msg(key, "Scan", raw, subj, "2024-03-01",
                              G.datetime.datetime(2024, 3, 1, tzinfo=G.UTC)))
        G.multiappend(c, "Scan", msgs)
        c.logout()
    except Exception:
        tearDownModule()
        raise


def tearDownModule():
    C.teardown(servers=[SRV], tmp=TMP)


def requests_after(log, start):
    """{opcode: count} of the requests in log after offset start."""
    return collections.Counter(re.findall(r"opcode: (\w+)", log[start:]))


def grep_keys(m):
    """Message-ID keys of the files grep -rl finds in Scan."""
    out = C.sh(["grep", "-r", "-l", "-e", TOKEN, "Scan"], cwd=m.mp).stdout
    keys = set()
    for name in out.decode().splitlines():
        data = C.read_file(os.path.join(m.mp, name))
        mid = re.search(rb"Message-ID: <(\w+)@", data)
        keys.add(mid.group(1).decode() if mid else name)
    return keys


class TestRequests(unittest.TestCase):
    def mount(self, **opts):
        m = C.mount_of(SRV, **opts)
        self.addCleanup(m.cleanup)
        m.mount(debug=True)
        return m

    def scan(self, m, what):
        """grep -rl on m; returns the requests it caused."""
        C.sh(["ls", "-d", os.path.join(m.mp, "Scan")], check=True)  # the tree, before counting
        start = len(m.read_log())
        out = C.sh(["grep", "-r", "-l", "-e", TOKEN, "Scan"], cwd=m.mp)
        self.assertEqual(out.returncode, 0, out.stderr)
        counts = requests_after(m.read_log(), start)
        diag("%s: %s" % (what, ", ".join("%s %d" % kv for kv in sorted(counts.items()))))
        self.assertEqual(len(out.stdout.decode().splitlines()), len(HITS))
        return counts

    def test_grep_r_sends_no_lookups(self):
        m = self.mount(cache_dir=os.path.join(TMP, "c1"))
        counts = self.scan(m, "grep -r, fresh mount, empty cache")
        self.assertEqual(counts["OPEN"], N)
        # Before: the kernel's readdirplus_auto answered every batch but the first with plain
        # READDIR, and grep's open of each of those files cost a LOOKUP.
        self.assertLessEqual(counts["LOOKUP"], 5)
        self.assertEqual(counts["FLUSH"], 0)
        self.assertEqual(grep_keys(m), HITS)
        m.unmount()

    def test_cached_grep_remount(self):
        cdir = os.path.join(TMP, "c2")
        m = self.mount(cache_dir=cdir)
        self.scan(m, "grep -r, filling the cache")
        m.unmount()
        rl = C.RawlogMark(SRV)
        m = self.mount(cache_dir=cdir)
        counts = self.scan(m, "grep -r again after a remount")
        self.assertLessEqual(counts["LOOKUP"], 5)
        self.assertEqual(rl.commands(r"UID FETCH .*BODY"), [])
        self.assertEqual(grep_keys(m), HITS)
        m.unmount()


if __name__ == "__main__":
    tap.main()
