#!/usr/bin/python3
"""Read-ahead recognises any scan of a folder and matches what is read (issue 12, findings
5 and 6; issue 11 item 3), through the delay proxy at 20 ms round-trip time:

- rg -l (reverse name order, several threads) finds what grep -rl finds, with about as
  few content FETCH commands (Dovecot rawlog) as grep's ascending scan;
- a descending cat loop and an 8-process `xargs -P8 cat` likewise; `cat *` and grep -rl fetch
  only the first file alone, and a folder a bit bigger than one 8 MiB batch costs no small
  last batch;
- a `head -n 20` loop moves not much more than what head reads of each file (its first
  8 KiB: proxy byte count; compared with the headers' bytes too, as a figure), and the files
  it read stay whole; tar of a folder on a fresh mount archives every file whole;
- `head -c 4096` of a 25 MB message stays under 256 KiB on the wire.

Counts, not wall times: each figure is printed as a TAP comment, the assertions are on
commands and bytes. Every test uses a fresh mount (empty cache)."""

import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tap  # noqa: E402
import common as C  # noqa: E402
from common import D, I, G, sh  # noqa: E402
from proxy import Proxy  # noqa: E402

SRV = None
PROXY = None
TMP = None
SCAN_N = 400
TAIL_N = 700     # about 9.7 MB: more than one 8 MiB batch, less than 1.25 of one
HEAD_N = 300
TOKEN = "zebra-quartz-token"
RTT = 0.020
HEADERS = {}     # folder -> total bytes of the messages' headers (BODY[HEADER])
HITS = set()     # keys of the Scan messages that hold TOKEN
HEAD_RAW = {}    # key -> bytes of the Heads messages
HEAD_BUF = 8192  # what GNU head reads at once (BUFSIZ)
BIG_SIZE = 0
TAIL_BYTES = [0]


def scan_message(k, rng, token, small=6000):
    """A message with a realistic header (~1 KB: a Received chain) and a body of `small`
    to 20 KB."""
    key = "scan-%04d" % k
    h = []
    for hop in range(4):
        h.append("Received: from relay%d.example.net (relay%d.example.net [192.0.2.%d])\r\n"
                 "\tby mx%d.example.org (Postfix) with ESMTPS id %08X\r\n"
                 "\tfor <bob@example.org>; Mon, 1 Jan 2024 10:%02d:00 +0000" % (
                     hop, hop, k % 250, hop, rng.getrandbits(32), hop))
    h += ["From: Alice Example <alice@example.org>", "To: bob@example.org",
          "Subject: scan message %d" % k, "Date: Mon, 1 Jan 2024 10:00:00 +0000",
          "Message-ID: <%s@scan.example>" % key, "MIME-Version: 1.0",
          "Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: 7bit"]
    head = ("\r\n".join(h) + "\r\n\r\n").encode()
    lines = []
    size = rng.randrange(small, 20000)
    n = 0
    while n < size:
        line = " ".join(rng.choice(("alpha", "beta", "gamma", "delta", "mail", "folder", "scan"))
                        for _ in range(12))
        lines.append(line)
        n += len(line) + 2
    if token:
        lines.insert(len(lines) * 3 // 4, "here is the %s we look for" % TOKEN)
    body = ("\r\n".join(lines) + "\r\n").encode()
    return key, head + body, len(head)


def setUpModule():
    global SRV, PROXY, TMP, BIG_SIZE
    I.check_bin()
    TMP = tempfile.mkdtemp(prefix="its", dir="/tmp")
    try:
        SRV = D.Dovecot(rawlog=True).start()
        c = SRV.client()
        rng = random.Random(12)
        for folder, n in (("Scan", SCAN_N), ("Heads", HEAD_N)):
            c.create(folder)
            msgs = []
            total = 0
            for k in range(n):
                token = folder == "Scan" and k % 7 == 3
                # Heads: some messages smaller than head's first read (8 KiB)
                key, raw, hl = scan_message(k, rng, token, 6000 if folder == "Scan" else 200)
                if token:
                    HITS.add(key)
                total += hl
                if folder == "Heads":
                    HEAD_RAW[key] = raw
                msgs.append(G.Msg(key, folder, raw, "scan message %d" % k, "2024-01-01", G._idate(k)))
            G.multiappend(c, folder, msgs, chunk=100)
            HEADERS[folder] = total
        c.create("Tail")
        msgs = []
        for i in range(TAIL_N):
            key, raw, _ = scan_message(i, rng, False)
            msgs.append(G.Msg(key, "Tail", raw, "tail %d" % i, "2024-01-01", G._idate(i)))
        G.multiappend(c, "Tail", msgs, chunk=100)
        TAIL_BYTES[0] = sum(len(m.raw) for m in msgs)
        c.create("Big")
        big = G.big_message()
        BIG_SIZE = len(big)
        D.append(c, "Big", big, [], G._idate(0))
        del big
        c.logout()
        PROXY = Proxy(SRV.imaps_port).start()
        PROXY.set_delay(RTT / 2)  # each way: 20 ms round trip
    except Exception:
        tearDownModule()
        raise


def tearDownModule():
    if PROXY is not None:
        PROXY.stop()
    if SRV is not None:
        SRV.cleanup()
    if TMP:
        shutil.rmtree(TMP, ignore_errors=True)


BODY_FETCH = re.compile(r"^\S+ UID FETCH .*BODY\.PEEK\[(?:\]|HEADER\])", re.I)


def body_fetches(mark):
    """Content FETCH commands (not the listing's HEADER.FIELDS) since mark."""
    return [l for l in mark.lines() if BODY_FETCH.match(l)]


class Fresh:
    """A fresh mount (its own empty cache) through the delay proxy, listed once, so that
    what is measured afterwards is the reading alone."""

    def __init__(self, folder, debug=False):
        self.m = I.Mount("imaps://%s@127.0.0.1:%d" % (SRV.user, PROXY.port),
                         opts={"cafile": SRV.cafile, "password_file": SRV.password_file})
        self.folder = folder
        self.debug = debug

    def __enter__(self):
        self.m.mount(foreground=True, debug=self.debug)
        self.dir = os.path.join(self.m.mp, self.folder)
        self.names = sorted(os.listdir(self.dir))
        time.sleep(0)  # nothing to wait for: ls has returned the listing
        self.mark = C.RawlogMark(SRV)
        PROXY.reset()
        return self

    def __exit__(self, *exc):
        try:
            self.m.unmount()
        finally:
            self.m.cleanup()


def run(argv, cwd=None, shell=False):
    t = time.monotonic()
    r = subprocess.run(argv, cwd=cwd, shell=shell, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=300)
    return r, time.monotonic() - t


def name_key(raw):
    return re.search(rb"Message-ID: <(scan-\d+)@", raw).group(1).decode()


def hits_of(stdout):
    keys = set()
    for line in stdout.decode().splitlines():
        path = line.strip()
        if not path:
            continue
        with open(path, "rb") as f:
            m = re.search(rb"Message-ID: <(scan-\d+)@", f.read(4096))
        keys.add(m.group(1).decode() if m else path)
    return keys


class TestScan(unittest.TestCase):
    grep_fetches = None

    def grep_baseline(self):
        if TestScan.grep_fetches is None:
            with Fresh("Scan") as f:
                r, t = run(["grep", "-rl", TOKEN, f.dir])
                self.assertEqual(r.returncode, 0, r.stderr)
                n = len(body_fetches(f.mark))
                self.assertEqual(hits_of(r.stdout), HITS)
            sys.stdout.write("# grep -rl over %d messages at 20 ms: %d content FETCHes, %.2fs\n" % (
                SCAN_N, n, t))
            self.assertGreater(n, 0, "no content FETCH in the rawlog: is the rawlog working?")
            TestScan.grep_fetches = n
        return TestScan.grep_fetches

    def bound(self, readers):
        """grep's count x 1.5, plus a few first files for each extra reader at once
        (they open before any scan can be seen, and race the first batches: xargs -P8 -n4
        starts 100 cat processes, 8 at a time). A storm would be one FETCH per file.
        Six per extra reader: a CI run under ASan, on a loaded machine, saw rg -j4 send 20
        (a quiet run sends 2), where four per reader allowed 18."""
        g = self.grep_baseline()
        return max(int(g * 1.5), g + 4) + 6 * (readers - 1)

    def check_scan(self, what, argv, shell=False, expect_hits=False, readers=1):
        with Fresh("Scan") as f:
            r, t = run(argv if not shell else argv.format(dir=f.dir), cwd=f.dir, shell=shell)
            self.assertEqual(r.returncode, 0, r.stderr[:500])
            fetches = body_fetches(f.mark)
            if os.environ.get("SCAN_DEBUG"):
                sys.stdout.write("".join("# %s\n" % l[:90] for l in fetches))
            if expect_hits:
                self.assertEqual(hits_of(b"\n".join(os.path.join(f.dir, l).encode()
                                                    for l in r.stdout.decode().splitlines())), HITS)
        sys.stdout.write("# %s over %d messages at 20 ms: %d content FETCHes, %.2fs\n" % (
            what, SCAN_N, len(fetches), t))
        bound = self.bound(readers)
        self.assertLessEqual(len(fetches), bound, "%s sent %d content FETCHes (grep -rl: %d): %s" % (
            what, len(fetches), self.grep_fetches, [l[:100] for l in fetches[:8]]))

    def test_rg_like_grep(self):
        """rg -l (reverse order, 4 threads): the hits of grep -rl, about its FETCH count."""
        if not shutil.which("rg"):
            self.skipTest("ripgrep (rg) is not installed")
        self.check_scan("rg -l -j4", ["rg", "-l", "-j4", TOKEN, "."], expect_hits=True,
                        readers=4)

    def test_cat_descending(self):
        self.check_scan("descending cat loop",
                        'ls -r | while IFS= read -r f; do cat "$f"; done > /dev/null', shell=True)

    def test_cat_whole_folder_few_round_trips(self):
        """`cat *` and grep -rl of a whole folder (issue 13): once the scan shows, the rest of
        the folder comes in one batch, not in a ramp of growing ones, each a round trip: a
        first batch from the first name (opened right after the folder was listed) while the
        probe shows what the readers read, then one FETCH for all the others."""
        for what, argv in (("cat *", "cat -- * > /dev/null"),
                           ("grep -rl", "grep -rl %s . > /dev/null; test $? -le 1" % TOKEN)):
            with Fresh("Scan") as f:
                r, t = run(argv, cwd=f.dir, shell=True)
                self.assertEqual(r.returncode, 0, r.stderr[:500])
                fetches = body_fetches(f.mark)
                lists = [l for l in f.mark.lines() if re.match(r"^\S+ LIST ", l)]
            sys.stdout.write("# %s over %d messages at 20 ms: %d content FETCHes, %.2fs\n" % (
                what, SCAN_N, len(fetches), t))
            # Live sync starting on the fresh mount does not list the folder tree the
            # mount has just listed: on the pool's connection that LIST held up the
            # scan's batch for a round trip (issue 11).
            self.assertEqual(lists, [], "%s: the tree was listed again meanwhile" % what)
            self.assertGreater(len(fetches), 0, "no content FETCH in the rawlog")
            self.assertLessEqual(len(fetches), 2, "%s sent %d content FETCHes: %s" % (
                what, len(fetches), [l[:100] for l in fetches]))
            # Read-ahead starts at the first open, of the first name right after the
            # folder was listed (opendir): no file is fetched alone (issue 11: each file
            # fetched alone before the scan shows is a round trip).
            singles = [l for l in fetches if re.match(r"^\S+ UID FETCH \d+ \(", l)]
            self.assertEqual(singles, [], "%s fetched files alone" % what)

    def test_batch_sent_behind_probe(self):
        """The batch for the rest of the folder leaves while the probing batch's answer is
        still arriving, on the same connection (issue 11: a round trip per batch). Dovecot
        reads a command only after it has written the answer before it, so its rawlog can't
        show this; the daemon's debug log says how many batches went behind another."""
        with Fresh("Scan", debug=True) as f:
            r, t = run("cat -- * > /dev/null", cwd=f.dir, shell=True)
            self.assertEqual(r.returncode, 0, r.stderr[:500])
            fetches = body_fetches(f.mark)
            log = f.m.read_log()
        behind = [int(n) for n in re.findall(r"read-ahead: (\d+) batches sent behind one", log)]
        sys.stdout.write("# cat * at 20 ms: %d content FETCHes, %s sent behind another\n" % (
            len(fetches), sum(behind)))
        self.assertLessEqual(len(fetches), 3)
        self.assertGreaterEqual(sum(behind), 1, "the rest's batch waited for the probe's answer")

    def test_cat_no_small_last_batch(self):
        """`cat *` of a folder a bit bigger than one batch's 8 MiB: the batch takes the rest
        too rather than leave a small last batch, a round trip of its own at the end."""
        with Fresh("Tail") as f:
            r, t = run("cat -- * > /dev/null", cwd=f.dir, shell=True)
            self.assertEqual(r.returncode, 0, r.stderr[:500])
            fetches = body_fetches(f.mark)
        sys.stdout.write("# cat * over %d messages (%d bytes) at 20 ms: %d content FETCHes, %.2fs\n"
                         % (TAIL_N, TAIL_BYTES[0], len(fetches), t))
        self.assertLessEqual(len(fetches), 3, "cat * sent %d content FETCHes: %s" % (
            len(fetches), [l[:100] for l in fetches]))

    def test_cat_ascending(self):
        self.check_scan("ascending cat loop",
                        'for f in *; do cat "$f"; done > /dev/null', shell=True)

    def test_xargs_parallel(self):
        self.check_scan("ls | xargs -P8 -n4 cat",
                        "ls | xargs -d '\\n' -P8 -n4 cat > /dev/null", shell=True,
                        readers=8)

    def test_head_loop_moves_what_head_reads(self):
        """A head -n 20 loop over 300 messages moves at most 1.5x what head reads of them
        (+64 KiB), prints the right lines, and the files stay whole for a reader that reads
        on."""
        self.check_head("head -n 20 loop", 'for f in *; do head -n 20 "$f"; done')

    def test_head_one_process_moves_what_head_reads(self):
        """The same with one head process opening the files one after another (its
        closes reach imapfs a moment after its next opens)."""
        self.check_head("head -q -n 20 *", "head -q -n 20 *")

    def check_head(self, what, cmd):
        with Fresh("Heads") as f:
            r, t = run(cmd, cwd=f.dir, shell=True)
            self.assertEqual(r.returncode, 0, r.stderr)
            up, down = PROXY.counts()
            fetches = body_fetches(f.mark)
            if os.environ.get("SCAN_DEBUG"):
                sys.stdout.write("".join("# %s\n" % l[:120] for l in fetches))
            # Files of the header scan, read whole afterwards (cat, then Python):
            # the header answered only the first read; sizes are untouched.
            for name in f.names[100:103]:
                path = os.path.join(f.dir, name)
                whole = sh(["cat", path], check=True).stdout
                self.assertEqual(whole, HEAD_RAW[name_key(whole)])
                self.assertEqual(os.stat(path).st_size, len(whole))
                with open(path, "rb") as fh:
                    self.assertEqual(fh.read(), whole)
        # what head printed: the first 20 lines of each message
        lines = r.stdout.split(b"\n")
        got = sorted(b"\n".join(lines[i:i + 20]) for i in range(0, 20 * HEAD_N, 20))
        want = sorted(b"\n".join(raw.split(b"\n")[:20]) for raw in HEAD_RAW.values())
        self.assertEqual(len(lines), 20 * HEAD_N + 1)
        self.assertEqual(got, want)
        hdr = HEADERS["Heads"]
        read = sum(min(len(raw), HEAD_BUF) for raw in HEAD_RAW.values())
        whole = sum(len(raw) for raw in HEAD_RAW.values())
        sys.stdout.write("# %s over %d messages at 20 ms: %d bytes down (head reads %d: %.2fx; "
                         "headers %d: %.2fx; messages %d), %d content FETCHes, %.2fs\n" % (
                             what, HEAD_N, down, read, down / read, hdr, down / hdr, whole,
                             len(fetches), t))
        self.assertLessEqual(down, 1.5 * read + 65536, "%s moved %d bytes; head reads %d" % (
            what, down, read))

    def test_tar_archives_whole_files(self):
        """tar of a folder on a fresh mount (a scan, probed with direct I/O): every file
        whole, no "file shrank" (tar takes a short read for one)."""
        out = os.path.join(TMP, "tar-out")
        os.makedirs(out)
        try:
            with Fresh("Heads") as f:
                archive = os.path.join(TMP, "heads.tar")
                r, t = run(["tar", "-cf", archive, "."], cwd=f.dir)
                self.assertEqual(r.returncode, 0, r.stderr[:500])
            sh(["tar", "-xf", archive, "-C", out], check=True)
            got = {}
            for name in os.listdir(out):
                with open(os.path.join(out, name), "rb") as fh:
                    raw = fh.read()
                got[name_key(raw)] = raw
            self.assertEqual(len(got), HEAD_N)
            for key, raw in HEAD_RAW.items():
                self.assertEqual(got.get(key), raw, key)
        finally:
            shutil.rmtree(out, ignore_errors=True)

    def test_head_c_big(self):
        """head -c 4096 of a 25 MB message: under 256 KiB on the wire."""
        with Fresh("Big") as f:
            self.assertEqual(len(f.names), 1)
            r, t = run(["head", "-c", "4096", os.path.join(f.dir, f.names[0])])
            up, down = PROXY.counts()
        self.assertEqual(len(r.stdout), 4096)
        sys.stdout.write("# head -c 4096 of %d bytes: %d bytes down\n" % (BIG_SIZE, down))
        self.assertLess(down, 256 * 1024)


if __name__ == "__main__":
    tap.main()
