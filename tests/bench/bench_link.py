#!/usr/bin/python3
"""imapfs on a real link (issues 11 and 12): every row of issue 11's table, at 0 ms and
20 ms of added round-trip time, with and without COMPRESS=DEFLATE, against python3 imaplib
doing the same work in the fewest commands on one logged-in connection through the same
link.

    /usr/bin/python3 tests/bench/bench_link.py [--quick] [--reps N] [--rtt MS,MS] [--mbit N]
                                               [--only ROW,ROW] [--nc] [--bin PATH] [--keep]

One invocation starts a throwaway Dovecot (tests/integration/dovecot.py: rawlog on, the
imap_zlib plugin so that COMPRESS=DEFLATE is offered, a \\Trash folder), loads deterministic
mail (tests/bench/bench.py's generator, MULTIAPPEND + LITERAL+) and puts a latency proxy
between every client and Dovecot: each chunk is forwarded RTT/2 after it arrived, in each
direction, without limiting the bandwidth (tests/integration/proxy.py's set_delay sleeps per
chunk and so also caps the throughput; this benchmark subclasses it). imapfs runs in the
default configuration (persistent cache on, live sync on), each run on a fresh mount with a
fresh, empty cache directory: that includes -o compress=auto, which compresses only once the
link has shown itself slower than 64 Mbit/s, so on the unlimited link the default runs go
uncompressed and only --mbit runs show compression; "compress=no" runs add -o compress=no.
Rows:

  ls -l      of a 10,000-message folder      vs  SELECT + UID FETCH 1:* (the listing items)
  cat        of 1,000 messages                vs  UID FETCH 1:* BODY.PEEK[]
  head -n 20 of each of 300 messages          vs  UID FETCH 1:300 BODY.PEEK[HEADER]
             (also: bytes moved against the bytes of those headers; issue 12)
  grep -rl TOKEN / rg -l TOKEN over 2,000     vs  UID FETCH 1:* BODY.PEEK[]
  mv of 200 messages (one mv)                 vs  UID MOVE of the 200
  rm of 200 messages (to the \\Trash folder)  vs  UID MOVE of the 200 to Trash
  cp of 50 files in                           vs  50 imaplib APPENDs (synchronizing literals)
  ls | xargs -d '\\n' -n 20 -P 16 mv -t ../Dst, 1,000 messages   vs  UID MOVE 1:*
  ls | xargs -d '\\n' -n 20 -P 16 rm, 1,000 messages             vs  UID MOVE 1:* Trash

The folder of each row is listed untimed first (the listing has its own row), except for
ls -l itself. Figures are medians of --reps runs (default 3; --quick: one run of smaller
counts). Bytes are counted at the proxy (both directions). Commands and round trips per file
come from Dovecot's rawlog, for the uncompressed runs only: after COMPRESS the rawlog holds
compressed bytes, and compression changes no command. --mbit N also limits each connection
to N Mbit/s each way (without it the link is as fast as loopback, where compression can only
cost CPU time). --nc runs imapfs with -o compress=no only (half the time; the read rows of
issue 11 are measured that way). The read rows (cat, head, grep, rg) also run the same
command on a local copy of the messages (column "local": what the tools themselves cost,
e.g. starting 300 head processes, which no file system can go below). It reports; it never fails for a
slow figure (the exit status is non-zero only if something broke: a mount, a tool, a check).
Stdlib only.
"""

import argparse
import collections
import datetime
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(SRC, "tests", "integration"))
sys.path.insert(0, HERE)

import dovecot as D  # noqa: E402
import imapfs as I  # noqa: E402
import mailgen as G  # noqa: E402
import proxy as P  # noqa: E402
import bench as B  # noqa: E402
import bench_write as BW  # noqa: E402

UTC = datetime.timezone.utc
LIST_ITEMS = B.LIST_ITEMS
TOKEN = b"zqxjvtoken"
TOOL_TIMEOUT = 600
ENV = dict(os.environ, LC_ALL="C.UTF-8")
Broken = B.Broken
T0 = time.monotonic()

# folder: (full count, --quick count)
COUNTS = {
    "List": (10000, 2000),
    "Read": (1000, 300),
    "Grep": (2000, 500),
    "MvSrc": (200, 100),
    "RmSrc": (200, 100),
    "BulkSrc": (1000, 300),
    "BulkRm": (1000, 300),
}
N_HEAD = (300, 100)
N_CP = (50, 20)
EMPTY = ("MvDst", "BulkDst", "CpDst", "Trash")


def log(*a):
    print("[bench_link %6.1fs]" % (time.monotonic() - T0), *a, file=sys.stderr, flush=True)


class LinkProxy(P.Proxy):
    """The counting proxy with pure latency: a chunk read at t goes out at t + delay, and
    reading goes on meanwhile (proxy.py's own delay sleeps per chunk, which also caps the
    bandwidth at one chunk per delay). With rate (bytes/s, each direction and connection) a
    chunk also waits for the link to carry the chunks before it."""

    def _pump(self, conn, src, dst, direction):
        q = collections.deque()
        cv = threading.Condition()
        done = [False]

        free_at = [0.0]  # when the link is free again (bandwidth)

        def sender():
            try:
                while True:
                    with cv:
                        while not q and not done[0]:
                            cv.wait()
                        if not q:
                            return
                        due, data = q.popleft()
                    rate = self.rate  # bytes per second per direction, or None
                    if rate:
                        # The chunk leaves once the link has sent what came before it.
                        start = max(due - (self.delay or 0), free_at[0])
                        free_at[0] = start + len(data) / float(rate)
                        due = max(due, free_at[0] + (self.delay or 0))
                    left = due - time.monotonic()
                    if left > 0:
                        time.sleep(left)
                    dst.sendall(data)
                    with self.lock:
                        if direction == "up":
                            self.up += len(data)
                        else:
                            self.down += len(data)
            except OSError:
                pass
            finally:
                conn.close()

        t = threading.Thread(target=sender, daemon=True)
        t.start()
        try:
            while not conn.closed.is_set():
                try:
                    data = src.recv(P.CHUNK)
                except OSError:
                    break
                if not data:
                    break
                with cv:
                    q.append((time.monotonic() + (self.delay or 0), data))
                    cv.notify()
        finally:
            with cv:
                done[0] = True
                cv.notify()
            t.join(30)
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            conn.close()
            with self.lock:
                self.conns.discard(conn)


class Bench:
    def __init__(self, d, proxy, workdir):
        self.d = d
        self.proxy = proxy
        self.srv = BW.Server(d)
        self.workdir = workdir
        self.runs = []
        self.failures = []
        self.nmount = 0

    def timed(self, case, who, rep, fn):
        r = BW.Run(case, who, rep)
        time.sleep(0.05)  # keeps the rawlog windows apart
        self.proxy.reset()
        r.t0 = time.time()
        p0 = time.perf_counter()
        r.result = fn()
        r.secs = time.perf_counter() - p0
        r.t1 = time.time()
        time.sleep(max(0.05, (self.proxy.delay or 0) * 2 + 0.02))  # what is still in flight
        r.up, r.down = self.proxy.counts()
        self.runs.append(r)
        return r

    def tool(self, argv, cwd=None, input=None, shell=False):
        p = subprocess.run(argv, input=input, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd,
                           env=ENV, timeout=TOOL_TIMEOUT, shell=shell)
        no_match = not shell and argv[0] in ("grep", "rg") and p.returncode == 1
        if p.returncode != 0 and not no_match:
            raise Broken("%s exited %d: %s" % (argv if shell else argv[0], p.returncode,
                                               p.stderr.decode(errors="replace")[:500]))
        return p.stdout

    def mount(self, compress):
        self.nmount += 1
        wd = os.path.join(self.workdir, "m%d" % self.nmount)
        os.makedirs(wd)
        opts = {"cafile": self.d.cafile, "password_file": self.d.password_file}
        if not compress:
            opts["compress"] = "no"
        # A fresh workdir is a fresh XDG_CACHE_HOME: the persistent cache starts empty.
        m = I.Mount("imaps://%s@127.0.0.1:%d" % (self.d.user, self.proxy.port),
                    mountpoint=os.path.join(self.workdir, "mnt"), workdir=wd, opts=opts)
        m.mount(foreground=True)
        return m

    def unmount(self, m, what):
        try:
            m.unmount()
        except Exception as e:  # noqa: BLE001
            self.failures.append("unmount after %s: %s" % (what, e))
            m.cleanup_mount()
        tail = m.read_log()
        if "AddressSanitizer" in tail or "runtime error" in tail:
            self.failures.append("sanitizer output in daemon log: %s" % m.logfile)

    def client(self):
        import imaplib
        c = imaplib.IMAP4_SSL("127.0.0.1", self.proxy.port, ssl_context=self.d.ssl_context(), timeout=300)
        c.login(self.d.user, self.d.password)
        return c


# ------------------------------------------------------------------------------------
# the rows: fs_X(b, rep, compress) on a fresh mount, base_X(b, rep) on imaplib
# ------------------------------------------------------------------------------------
class Rows:
    def __init__(self, b, n, msgs, cp_dir, head_bytes, grep_hits):
        self.b, self.n, self.msgs, self.cp_dir = b, n, msgs, cp_dir
        self.head_bytes, self.grep_hits = head_bytes, grep_hits

    def _fs(self, case, compress, rep, prep, run, after=None):
        b = self.b
        m = b.mount(compress)
        who = "fs" if compress else "fs-nc"
        try:
            ctx = prep(m)
            r = b.timed(case, who, rep, lambda: run(m, ctx))
            if after:
                r.problems += after(m, ctx, r)
        finally:
            b.unmount(m, case)
        return r

    def _base(self, case, rep, prep, run):
        c = self.b.client()
        try:
            ctx = prep(c)
            return self.b.timed(case, "base", rep, lambda: run(c, ctx))
        finally:
            c.logout()

    @staticmethod
    def _select(c, box, ro=True):
        typ, data = c.select(box, readonly=ro)
        B.fetch_ok(typ, data, "SELECT " + box)

    # -- ls -l --------------------------------------------------------------------------
    def fs_ls(self, rep, compress):
        def after(m, ctx, r):
            n = len(os.listdir(os.path.join(m.mp, "List")))
            return [] if n == self.n["List"] else ["ls shows %d files, wanted %d" % (n, self.n["List"])]
        return self._fs("ls", compress, rep, lambda m: None,
                        lambda m, _: self.b.tool(["ls", "-l", os.path.join(m.mp, "List")]), after)

    def base_ls(self, rep):
        def run(c, _):
            self._select(c, "List")
            typ, data = c.uid("FETCH", "1:*", LIST_ITEMS)
            B.fetch_ok(typ, data, "UID FETCH")
        return self._base("ls", rep, lambda c: None, run)

    # -- the same read commands on local files (the tools' own cost) ----------------------
    def local(self, case, box, argv_of):
        d = os.path.join(self.b.workdir, "local", box)
        names = sorted(os.listdir(d))

        def run(rep):
            return self.b.timed(case, "local", rep, lambda: self.b.tool(argv_of(names), cwd=d))
        return run

    # -- cat ----------------------------------------------------------------------------
    def fs_cat(self, rep, compress):
        def prep(m):
            folder = os.path.join(m.mp, "Read")
            return folder, sorted(os.listdir(folder))
        return self._fs("cat", compress, rep, prep,
                        lambda m, ctx: self.b.tool(["cat", "--"] + ctx[1], cwd=ctx[0]))

    def base_fetch_all(self, case, box):
        def prep(c):
            self._select(c, box)

        def run(c, _):
            typ, data = c.uid("FETCH", "1:*", "(UID BODY.PEEK[])")
            B.fetch_ok(typ, data, "UID FETCH BODY[]")
        return lambda rep: self._base(case, rep, prep, run)

    # -- head -n 20 ---------------------------------------------------------------------
    def fs_head(self, rep, compress):
        def prep(m):
            folder = os.path.join(m.mp, "Read")
            return folder, sorted(os.listdir(folder))[:self.n["head"]]

        def run(m, ctx):
            script = 'for f in "$@"; do head -n 20 -- "$f"; done'
            return self.b.tool(["sh", "-c", script, "sh"] + ctx[1], cwd=ctx[0])
        return self._fs("head", compress, rep, prep, run)

    def base_head(self, rep):
        def run(c, _):
            typ, data = c.uid("FETCH", "1:%d" % self.n["head"], "(UID BODY.PEEK[HEADER])")
            B.fetch_ok(typ, data, "UID FETCH BODY[HEADER]")
        return self._base("head", rep, lambda c: self._select(c, "Read"), run)

    # -- grep -rl / rg -l ---------------------------------------------------------------
    def fs_grep(self, rep, compress, tool):
        argv = ["grep", "-rl", TOKEN.decode(), "."] if tool == "grep" else ["rg", "-l", TOKEN.decode(), "."]

        def prep(m):
            folder = os.path.join(m.mp, "Grep")
            os.listdir(folder)
            return folder

        def after(m, folder, r):
            hits = len([x for x in r.result.split(b"\n") if x])
            return [] if hits == self.grep_hits else ["%s found %d files, wanted %d" % (tool, hits, self.grep_hits)]
        return self._fs(tool, compress, rep, prep, lambda m, folder: self.b.tool(argv, cwd=folder), after)

    # -- mv / rm (one process, or xargs -P16) -------------------------------------------
    def _restore(self, src, dst, n):
        c = self.b.srv.admin()
        try:
            probs = []
            got, left = self.b.srv.count(c, dst), self.b.srv.count(c, src)
            if got != n or left:
                probs.append("%s has %d of %d messages, %d left in %s" % (dst, got, n, left, src))
            self.b.srv.move_all(c, dst, src)
            if self.b.srv.count(c, src) != n:
                raise Broken("could not move the messages back to %s" % src)
            return probs
        finally:
            c.logout()

    def fs_change(self, case, rep, compress, src, dst, rm, par):
        n = self.n[src]

        def prep(m):
            s = os.path.join(m.mp, src)
            names = sorted(os.listdir(s))
            if dst != "Trash":
                os.listdir(os.path.join(m.mp, dst))
            if len(names) != n:
                raise Broken("mount lists %d files in %s, server has %d" % (len(names), src, n))
            return s, names

        def run(m, ctx):
            s, names = ctx
            if par:
                cmd = "ls | xargs -d '\\n' -n 20 -P 16 " + ("rm --" if rm else "mv -t ../%s --" % dst)
                return self.b.tool(cmd, cwd=s, shell=True)
            argv = ["rm", "--"] + names if rm else ["mv", "--"] + names + [os.path.join(m.mp, dst) + "/"]
            return self.b.tool(argv, cwd=s)

        def after(m, ctx, r):
            left = os.listdir(ctx[0])
            return ["mount still lists %d files in %s" % (len(left), src)] if left else []
        try:
            r = self._fs(case, compress, rep, prep, run, after)
        finally:
            probs = self._restore(src, dst, n)  # the next run starts from the same data
        r.problems += probs
        return r

    def base_move(self, case, rep, src, dst, n):
        def prep(c):
            self._select(c, src, ro=False)
            typ, data = c.uid("SEARCH", "ALL")
            uids = data[0].split()
            return b",".join(uids[:n]).decode()

        def run(c, uidset):
            typ, data = c.uid("MOVE", uidset, dst)
            B.fetch_ok(typ, data, "UID MOVE")
        try:
            r = self._base(case, rep, prep, run)
        finally:
            probs = self._restore(src, dst, n)
        r.problems += probs
        return r

    # -- cp -----------------------------------------------------------------------------
    def _after_cp(self):
        c = self.b.srv.admin()
        try:
            n = self.b.srv.count(c, "CpDst")
            self.b.srv.empty(c, "CpDst")
            return [] if n == self.n["cp"] else ["CpDst has %d messages, wanted %d" % (n, self.n["cp"])]
        finally:
            c.logout()

    def fs_cp(self, rep, compress):
        files = sorted(os.listdir(self.cp_dir))

        def prep(m):
            return os.path.join(m.mp, "CpDst") if not os.listdir(os.path.join(m.mp, "CpDst")) else None

        def run(m, dst):
            if dst is None:
                raise Broken("CpDst is not empty before cp")
            return self.b.tool(["cp", "--"] + files + [dst + "/"], cwd=self.cp_dir)
        r = self._fs("cp", compress, rep, prep, run)
        r.problems += self._after_cp()
        return r

    def base_cp(self, rep):
        raws = [open(os.path.join(self.cp_dir, f), "rb").read() for f in sorted(os.listdir(self.cp_dir))]

        def run(c, _):
            for raw in raws:
                typ, data = c.append("CpDst", None, None, raw)
                B.fetch_ok(typ, data, "APPEND")
        r = self._base("cp", rep, lambda c: None, run)
        r.problems += self._after_cp()
        return r


# ------------------------------------------------------------------------------------
# loading
# ------------------------------------------------------------------------------------
def load(b, n, workdir):
    t = time.monotonic()
    msgs = {}
    for k, (box, cnt) in enumerate((bx, n[bx]) for bx in COUNTS):
        ms = B.gen_messages(cnt, box, box.lower())
        for i, m in enumerate(ms):
            m.raw = re.sub(rb"(?<!\r)\n", b"\r\n", m.raw)
            # Unique subjects: a moved message's new name must not collide (bench_write.py).
            m.raw = re.sub(rb"^(Subject: [^\r\n]*)", lambda x: x.group(1) + b" #%d" % i, m.raw, count=1,
                           flags=re.M)
            if box == "Grep" and i % 50 == 7:
                m.raw += b"the token " + TOKEN + b" is here\r\n"
        msgs[box] = ms
    now = datetime.datetime.now(UTC).replace(microsecond=0)
    cp = [G.Msg(m.key, "CpDst", re.sub(rb"(?<!\r)\n", b"\r\n", m.raw), None, None, now, [])
          for m in B.gen_messages(n["cp"], "CpDst", "cp")]
    cp_dir = os.path.join(workdir, "cpsrc")
    os.makedirs(cp_dir)
    for k, m in enumerate(cp):
        with open(os.path.join(cp_dir, "msg-%04d.eml" % k), "wb") as f:
            f.write(m.raw)
    c = b.srv.admin()
    try:
        for box in list(COUNTS) + list(EMPTY):
            typ, data = c.create(box)
            if typ != "OK":
                raise Broken("CREATE %s: %r" % (box, data))
        for box, ms in msgs.items():
            b.srv.load(c, box, ms)
        # Dovecot builds its caches on the first access to a folder: pay that here, not in
        # whichever timed run comes first.
        for box in COUNTS:
            D.select(c, box)
            c.uid("FETCH", "1:*", LIST_ITEMS)
            c.uid("FETCH", "1:*", "(BODY.PEEK[] BODY.PEEK[HEADER])")
            c.close()
        D.select(c, "Read")
        typ, data = c.uid("FETCH", "1:%d" % n["head"], "(RFC822.HEADER)")
        head_bytes = sum(len(i[1]) for i in data if isinstance(i, tuple))
        c.close()
    finally:
        c.logout()
    grep_hits = sum(1 for m in msgs["Grep"] if TOKEN in m.raw)
    # The read rows' floor: the same tools on local files of the same bytes.
    for box in ("Read", "Grep"):
        d = os.path.join(workdir, "local", box)
        os.makedirs(d)
        for k, m in enumerate(msgs[box]):
            with open(os.path.join(d, "%05d.eml" % k), "wb") as f:
                f.write(m.raw)
    log("loaded %d messages (%.1f MB) in %.1fs" % (sum(len(v) for v in msgs.values()),
                                                   sum(len(m.raw) for v in msgs.values() for m in v) / 1e6,
                                                   time.monotonic() - t))
    return cp_dir, head_bytes, grep_hits


def set_aside_compressed(d, workdir):
    """Moves the rawlogs of compressed sessions out of the way: after COMPRESS they hold
    deflate output, not commands (bench_write.py's parser reads the rest)."""
    rd, aside = d.rawlog_dir(), os.path.join(workdir, "rawlog-compressed")
    os.makedirs(aside, exist_ok=True)
    for name in os.listdir(rd):
        if not name.endswith(".in"):
            continue
        with open(os.path.join(rd, name), "rb") as f:
            if b" COMPRESS DEFLATE\r\n" not in f.read():
                continue
        for ext in (".in", ".out"):
            p = os.path.join(rd, name[:-3] + ext)
            if os.path.exists(p):
                os.rename(p, os.path.join(aside, name[:-3] + ext))


# ------------------------------------------------------------------------------------
# report
# ------------------------------------------------------------------------------------
def report(b, args, n, rtts, reps, head_bytes):
    fmt_t, med, fmt_b = B.fmt_t, B.med, B.fmt_b
    rows = [
        ("ls", "ls -l of %s messages" % format(n["List"], ","), n["List"]),
        ("cat", "cat of %s messages" % format(n["Read"], ","), n["Read"]),
        ("head", "head -n 20 of each of %d messages" % n["head"], n["head"]),
        ("grep", "grep -rl TOKEN over %s messages" % format(n["Grep"], ","), n["Grep"]),
        ("rg", "rg -l TOKEN over %s messages" % format(n["Grep"], ","), n["Grep"]),
        ("mv", "mv of %d messages (one mv)" % n["MvSrc"], n["MvSrc"]),
        ("rm", "rm of %d messages (to Trash)" % n["RmSrc"], n["RmSrc"]),
        ("cp", "cp of %d files in" % n["cp"], n["cp"]),
        ("mv-p16", "xargs -n 20 -P 16 mv of %s" % format(n["BulkSrc"], ","), n["BulkSrc"]),
        ("rm-p16", "xargs -n 20 -P 16 rm of %s" % format(n["BulkRm"], ","), n["BulkRm"]),
    ]
    base_of = {"rg": "grep"}
    head = ("operation", "RTT", "imapfs", "imapfs nc", "raw", "local", "ratio", "ratio nc", "down", "down nc",
            "raw down", "cmds/file", "RTs/file", "raw cmds", "raw RTs", "check")
    table = [head]

    def runs(case, who, rtt):
        return [r for r in b.runs if r.case == case and r.who == who and r.rtt == rtt]

    for rtt in rtts:
        for case, label, cnt in rows:
            fs, nc, bs = runs(case, "fs", rtt), runs(case, "fs-nc", rtt), runs(base_of.get(case, case), "base", rtt)
            if not (fs or nc):
                continue
            t_fs, t_nc, t_b = (med(r.secs for r in x) for x in (fs, nc, bs))
            t_l = med(r.secs for r in runs(case, "local", rtt))
            d_fs, d_nc, d_b = (med(r.down for r in x) for x in (fs, nc, bs))
            cm = med(len(r.cmds) for r in nc if r.cmds is not None)
            rt = med(r.rts for r in nc if r.rts is not None)
            bcm = med(len(r.cmds) for r in bs if r.cmds is not None)
            brt = med(r.rts for r in bs if r.rts is not None)
            allr = fs + nc + bs
            bad = sum(1 for r in allr if r.problems)
            table.append((label, "%d ms" % rtt, fmt_t(t_fs), fmt_t(t_nc), fmt_t(t_b), fmt_t(t_l),
                          "%.1f×" % (t_fs / t_b) if t_fs and t_b else "-",
                          "%.1f×" % (t_nc / t_b) if t_nc and t_b else "-",
                          fmt_b(d_fs), fmt_b(d_nc), fmt_b(d_b),
                          "%.2f" % (cm / cnt) if cm is not None else "-",
                          "%.2f" % (rt / cnt) if rt is not None else "-",
                          "%d" % bcm if bcm is not None else "-", "%d" % brt if brt is not None else "-",
                          ("ok %d" % len(allr)) if not bad else "FAIL %d/%d" % (bad, len(allr))))
    widths = [max(len(r[i]) for r in table) for i in range(len(head))]
    line = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    print()
    print("imapfs on a link (%s%s): median of %d run%s; imapfs = default options (cache on, live sync on, "
          "compress=auto), nc = -o compress=no; raw = python3 imaplib, one logged-in connection"
          % ("quick" if args.quick else "full", ", %g Mbit/s" % args.mbit if args.mbit else "", reps,
             "" if reps == 1 else "s"))
    print(line)
    for i, r in enumerate(table):
        print("| " + " | ".join(c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(r, widths)))
              + " |")
        if i == 0:
            print(line)
    print(line)
    print("head -n 20 of %d messages: the headers are %s; bytes moved (server→client) above." % (
        n["head"], fmt_b(head_bytes)))
    print("commands imapfs sent (first uncompressed run of each row, Dovecot's rawlog):")
    for rtt in rtts[:1]:
        for case, label, cnt in rows:
            nc = runs(case, "fs-nc", rtt)
            if nc and nc[0].cmds:
                print("  %-36s %s" % (label + ":", BW.shapes(nc[0].cmds)))
    print("notes: down = bytes server→client through the proxy during the timed window (TLS included).")
    print("  RTs = round trips: commands sent while none of that connection's commands was outstanding,")
    print("  plus synchronizing literals. raw cmds/RTs are for the whole operation. The folder of each row")
    print("  but ls -l is listed untimed first; imaplib's SELECT is untimed except for ls -l.")
    probs = [(r, p) for r in b.runs for p in r.problems]
    if probs:
        print("check problems:")
        for r, p in probs[:20]:
            print("  %s %s %d ms run %d: %s" % (r.who, r.case, r.rtt, r.rep + 1, p))


# ------------------------------------------------------------------------------------
def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="one run of smaller counts")
    ap.add_argument("--reps", type=int, help="timed runs per figure (default 3, --quick 1)")
    ap.add_argument("--rtt", default="0,20", help="added round-trip times in ms (default 0,20)")
    ap.add_argument("--mbit", type=float, help="also limit each connection to this many Mbit/s "
                    "each way (default: no limit)")
    ap.add_argument("--bin", help="imapfs binary (default $IMAPFS_BIN or build/fs/imapfs)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--nc", action="store_true", help="imapfs with -o compress=no only")
    ap.add_argument("--only", help="comma-separated rows to run (ls,cat,head,grep,rg,mv,rm,cp,mv-p16,rm-p16)")
    args = ap.parse_args()
    q = 1 if args.quick else 0
    n = {box: c[q] for box, c in COUNTS.items()}
    n["head"], n["cp"] = N_HEAD[q], N_CP[q]
    reps = args.reps or (1 if args.quick else 3)
    rtts = [int(x) for x in args.rtt.split(",") if x.strip()]

    def on_term(signum, frame):
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)

    workdir = tempfile.mkdtemp(prefix="ifsl", dir="/tmp")
    os.chmod(workdir, 0o755)
    d = b = proxy = None
    rc = 0
    try:
        os.environ["IMAPFS_BIN"] = B.find_bin(args.bin, workdir)
        log("daemon: %s" % os.environ["IMAPFS_BIN"])
        d = D.Dovecot(rawlog=True, compress=True, special_use={"Trash": "\\Trash"})
        d.start()
        proxy = LinkProxy(d.imaps_port).start()
        if args.mbit:
            proxy.set_rate(args.mbit * 1e6 / 8)
        b = Bench(d, proxy, workdir)
        cp_dir, head_bytes, grep_hits = load(b, n, workdir)
        R = Rows(b, n, None, cp_dir, head_bytes, grep_hits)
        have_rg = subprocess.run(["sh", "-c", "command -v rg"], stdout=subprocess.DEVNULL).returncode == 0
        head_sh = 'for f in "$@"; do head -n 20 -- "$f"; done'
        steps = [
            ("ls", R.fs_ls, R.base_ls),
            ("cat", R.fs_cat, R.base_fetch_all("cat", "Read"),
             R.local("cat", "Read", lambda names: ["cat", "--"] + names)),
            ("head", R.fs_head, R.base_head,
             R.local("head", "Read", lambda names: ["sh", "-c", head_sh, "sh"] + names[:n["head"]])),
            ("grep", lambda rep, cz: R.fs_grep(rep, cz, "grep"), R.base_fetch_all("grep", "Grep"),
             R.local("grep", "Grep", lambda names: ["grep", "-rl", TOKEN.decode(), "."])),
        ]
        if have_rg:
            steps.append(("rg", lambda rep, cz: R.fs_grep(rep, cz, "rg"), None,
                          R.local("rg", "Grep", lambda names: ["rg", "-l", TOKEN.decode(), "."])))
        else:
            log("rg not installed: no rg row")
        steps += [
            ("mv", lambda rep, cz: R.fs_change("mv", rep, cz, "MvSrc", "MvDst", False, 0),
             lambda rep: R.base_move("mv", rep, "MvSrc", "MvDst", n["MvSrc"])),
            ("rm", lambda rep, cz: R.fs_change("rm", rep, cz, "RmSrc", "Trash", True, 0),
             lambda rep: R.base_move("rm", rep, "RmSrc", "Trash", n["RmSrc"])),
            ("cp", R.fs_cp, R.base_cp),
            ("mv-p16", lambda rep, cz: R.fs_change("mv-p16", rep, cz, "BulkSrc", "BulkDst", False, 16),
             lambda rep: R.base_move("mv-p16", rep, "BulkSrc", "BulkDst", n["BulkSrc"])),
            ("rm-p16", lambda rep, cz: R.fs_change("rm-p16", rep, cz, "BulkRm", "Trash", True, 16),
             lambda rep: R.base_move("rm-p16", rep, "BulkRm", "Trash", n["BulkRm"])),
        ]
        if args.only:
            keep = set(args.only.split(","))
            steps = [st for st in steps if st[0] in keep]
        for rtt in rtts:
            proxy.set_delay(rtt / 2000.0)
            for rep in range(reps):
                log("%d ms RTT, round %d of %d" % (rtt, rep + 1, reps))
                for i, step in enumerate(steps):
                    name, fs, base = step[:3]
                    loc = step[3] if len(step) > 3 else None
                    order = [("fs", lambda: fs(rep, True)), ("fs-nc", lambda: fs(rep, False)),
                             ("base", (lambda: base(rep)) if base else None),
                             ("local", (lambda: loc(rep)) if loc else None)]
                    k0 = (rep + i) % len(order)  # who goes first rotates
                    for who, fn in order[k0:] + order[:k0]:
                        if fn is None or (args.nc and who == "fs"):
                            continue
                        k = len(b.runs)
                        try:
                            fn()
                        except Exception as e:  # noqa: BLE001  (recorded; the other rows still run)
                            b.failures.append("%s (%s) at %d ms, round %d: %s" % (name, who, rtt, rep + 1, e))
                            log("FAILED: %s" % b.failures[-1])
                        for r in b.runs[k:]:
                            r.rtt = rtt
                            log("  %-7s %-6s %s  down %s" % (name, who, B.fmt_t(r.secs), B.fmt_b(r.down)))
        time.sleep(0.3)
        set_aside_compressed(d, workdir)
        # Continuations ("+" lines) are left out: bench_write.py's parser also takes message
        # body lines that start with "+" (base64) for them. imapfs sends no synchronizing
        # literal to a server with LITERAL+; imaplib's APPEND waits for one each.
        sessions = {k: (cm, done, []) for k, (cm, done, _) in BW.rawlog_sessions(d).items()}
        BW.attribute([r for r in b.runs if r.who not in ("fs", "local")], sessions)
        for r in b.runs:
            if r.who == "base" and r.cmds:
                r.rts += sum(1 for c in r.cmds if c[3].upper().startswith("APPEND"))
        report(b, args, n, rtts, reps, head_bytes)
        for r in b.runs:
            if r.problems:
                b.failures.append("%s %s %d ms run %d: %s" % (r.who, r.case, r.rtt, r.rep + 1, r.problems[0]))
    except BaseException as e:  # noqa: BLE001
        rc = B.exit_status("bench_link", e)
    finally:
        cleaned = B.clean_up("bench_link", workdir, b.failures if b is not None else [], proxy, d, args.keep)
        rc = rc or cleaned
    return rc


if __name__ == "__main__":
    sys.exit(main())
