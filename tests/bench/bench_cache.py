#!/usr/bin/python3
"""imapfs persistent-cache benchmark: what a warm cache saves on a remount.

    /usr/bin/python3 tests/bench/bench_cache.py [--quick] [--reps N] [--bin PATH] [--keep]

One invocation starts a throwaway Dovecot (tests/integration/dovecot.py, rawlog on), puts
the counting proxy (tests/integration/proxy.py) between imapfs and Dovecot, and measures
(`imapfs -f` in a background process, a fresh mount for every figure):

  1. mount + `ls -lR` of 10 folders x 10,000 small messages (1-3 KB; --quick: 10 x 1,000)
       cold: -o cache=no, and an empty -o cache_dir (that run fills the cache)
       warm: a remount with the cache_dir the cold run filled
     time, bytes on the wire, IMAP commands. Target (issue 13): warm within 1.5x of `ls -lR`
     over a local tree with the same names (the floor: no remount can beat ls itself).
     The ls -lR output of every run is compared with the first one.
  2. `grep -r` over 1,000 messages (bench.py's generator, 2-20 KB, ~1 % of 150-250 KB):
       a first grep on a mount with an empty cache_dir fills the content cache; then, for each
       timed run, unmount, remount with the same cache_dir, drop the page cache
       (echo 3 > /proc/sys/vm/drop_caches, if permitted) and time the second grep
     vs grep -r over the same folder in a local Maildir made by mbsync (Debian's isync;
     installed with apt-get when missing and run as root, else that row is skipped), also
     after dropping the page cache. Both again without dropping it (page cache warm).
     Target (issue 13): cached grep within 1.2x of the Maildir grep. The matches must agree.
  3. bytes on disk of the listing metadata per message (the store's msg table: pages and
     bytes of records, with and without the file name, which is made from header text) and of
     the content cache per message, and the daemon's memory: peak RSS (VmHWM) for each kind of
     mount, and anonymous memory (RssAnon) beside the map's file-backed pages (RssFile) right
     after `ls -l` of a 10,000-message folder and after the warm `ls -lR`.
  4. with --one-folder N: N small messages in one folder; `ls -l` of it on a fresh mount with
     cache=no, cache on (empty) and cache on (warm remount): the daemon's RssAnon and RssFile
     before and after, per message.
  0. (first) cold reads in the DEFAULT configuration (an empty -o cache_dir, cache on) vs the
     same with -o cache=no vs raw imaplib (the issue's targets): `cat` of the 1,000 messages of
     GrepBox (listed untimed first) vs one UID FETCH 1:* BODY.PEEK[]; `ls -l` of one
     10,000-message folder vs SELECT + UID FETCH 1:* of the listing items, both timed (imapfs's
     `ls -l` pays its SELECT too). Each on a fresh mount; imaplib logged in beforehand, on the
     same proxy.

--parts ls,cold,grep runs only some of the parts (without ls, only the first folder of
small messages is loaded).

The mail is loaded with MULTIAPPEND + LITERAL+ over 2-4 plain-text connections at once. Exits
non-zero only if something broke (a mount, a tool, a listing or grep result that differs),
never because a figure is slow. Stdlib only.
"""

import argparse
import datetime
import os
import random
import re
import shutil
import signal
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

UTC = datetime.timezone.utc
N_FOLDERS = 10
BOX_FMT = "Cache%02d"
BOX_GREP = "GrepBox"
N_GREP = 1000
GREP_PATTERN = "invoice please"   # two words of bench.py's text: a few dozen matching lines
WARM_TARGET = 1.5                 # warm remount + ls -lR at most this many times the local ls -lR
GREP_TARGET = 1.2                 # cached grep at most this many times the Maildir grep
TOOL_TIMEOUT = 300
MOUNT_TIMEOUT = 120
ENV = dict(os.environ, LC_ALL="C.UTF-8")
Broken = B.Broken
T0 = time.monotonic()
EXTRA_OPTS = {}  # --opt KEY=VALUE: added to every mount (e.g. mem_cache=4M)


def log(*a):
    print("[bench_cache %6.1fs]" % (time.monotonic() - T0), *a, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------
# mail
# ------------------------------------------------------------------------------------
def gen_small(box, n, pools):
    """n deterministic small messages (1-3 KB) for box: Date 3 h apart, bench.py's subjects
    (10 % RFC 2047), 2/3 \\Seen."""
    rng = random.Random("imapfs-bench-cache-%s-%d" % (box, n))
    base = datetime.datetime(2022, 1, 3, 9, 0, 0, tzinfo=UTC)
    out = []
    for k in range(n):
        dt = base + datetime.timedelta(hours=3 * k, seconds=rng.randrange(3600))
        h = (b"From: Person %d <p%d@example.org>\r\nTo: alice@example.org\r\nSubject: %s\r\n"
             b"Date: %s\r\nMessage-ID: <cache-%s-%d@example.org>\r\nMIME-Version: 1.0\r\n"
             b"Content-Type: text/plain; charset=utf-8\r\n\r\n"
             % (k % 97, k % 97, B._subject(rng, k).encode(),
                dt.strftime("%a, %d %b %Y %H:%M:%S +0000").encode(), box.encode(), k))
        size = rng.randint(1000, 3000)
        raw = h + pools.text_slice(rng, max(200, size - len(h)))
        out.append(G.Msg("%s-%d" % (box, k), box, raw, None, None, dt + datetime.timedelta(minutes=1),
                         ["\\Seen"] if k % 3 else []))
    return out


def status_messages(c, box):
    typ, data = c.status(box, "(MESSAGES)")
    if typ != "OK":
        raise Broken("STATUS %s: %r" % (box, data))
    return int(re.search(rb"MESSAGES (\d+)", data[0]).group(1))


def load_folders(d, per_folder, nconn, nfolders=N_FOLDERS):
    """Creates nfolders of the N_FOLDERS folders and fills each with per_folder small messages,
    nconn plain-text connections at once (MULTIAPPEND + LITERAL+, 1,000 messages per command)."""
    boxes = [BOX_FMT % i for i in range(nfolders)]
    pools = B.Pools(random.Random("imapfs-bench-cache-pools"))
    errors = []
    nbytes = [0]
    lock = threading.Lock()

    def worker(mine):
        try:
            c = d.client(plain=True)  # loading needs no TLS
            try:
                for box in mine:
                    typ, data = c.create(box)
                    if typ != "OK":
                        raise Broken("CREATE %s: %r" % (box, data))
                    msgs = gen_small(box, per_folder, pools)
                    with lock:
                        nbytes[0] += sum(len(m.raw) for m in msgs)
                    G.multiappend(c, box, msgs, chunk=1000)
            finally:
                c.logout()
        except Exception as e:  # noqa: BLE001
            errors.append("%s: %s" % (mine, e))

    t = time.monotonic()
    threads = [threading.Thread(target=worker, args=(boxes[i::nconn],)) for i in range(nconn)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    if errors:
        raise Broken("loading failed: " + "; ".join(errors))
    c = d.client(plain=True)
    try:
        counts = {b: status_messages(c, b) for b in boxes}
    finally:
        c.logout()
    bad = {b: n for b, n in counts.items() if n != per_folder}
    if bad:
        raise Broken("loaded %r, wanted %d each" % (bad, per_folder))
    secs = time.monotonic() - t
    log("loaded %d x %s messages (%.0f MB) on %d connections in %.1fs" % (
        nfolders, format(per_folder, ","), nbytes[0] / 1e6, nconn, secs))
    return secs, nbytes[0]


def load_grep_folder(d):
    msgs = B.gen_messages(N_GREP, BOX_GREP, "grep")
    c = d.client(plain=True)
    try:
        typ, data = c.create(BOX_GREP)
        if typ != "OK":
            raise Broken("CREATE %s: %r" % (BOX_GREP, data))
        G.multiappend(c, BOX_GREP, msgs, chunk=500)
        if status_messages(c, BOX_GREP) != N_GREP:
            raise Broken("%s does not hold %d messages" % (BOX_GREP, N_GREP))
    finally:
        c.logout()
    return sum(len(m.raw) for m in msgs)


def clear_rawlog(d):
    """The loading sessions' rawlog holds every appended byte; nobody needs it."""
    rd = d.rawlog_dir()
    for name in os.listdir(rd):
        try:
            os.unlink(os.path.join(rd, name))
        except OSError:
            pass


# ------------------------------------------------------------------------------------
# page cache
# ------------------------------------------------------------------------------------
def can_drop_caches():
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("1\n")
        return True
    except OSError:
        return False


def drop_caches():
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


# ------------------------------------------------------------------------------------
# measuring
# ------------------------------------------------------------------------------------
def rss_kb(pid):
    """(RssAnon, RssFile) of a process in kB, or None."""
    res = {}
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(("RssAnon:", "RssFile:")):
                    res[line.split(":")[0]] = int(line.split()[1])
    except OSError:
        return None
    return (res.get("RssAnon"), res.get("RssFile"))


class Run:
    """One measured operation: a wall-clock window (for the rawlog), times, wire bytes."""

    def __init__(self, op):
        self.op = op
        self.t0 = self.t1 = None
        self.mount_secs = None
        self.tool_secs = None
        self.up = self.down = None
        self.hwm = None     # daemon VmHWM (kB) at unmount
        self.rss = None     # (RssAnon, RssFile) kB right after the tool, and before it
        self.rss0 = None
        self.cmds = None    # filled from the rawlog at the end

    @property
    def secs(self):
        if self.tool_secs is None:
            return None
        return self.tool_secs + (self.mount_secs or 0.0)


class Bench:
    def __init__(self, d, proxy, workdir):
        self.d = d
        self.proxy = proxy
        self.workdir = workdir
        self.mp = os.path.join(workdir, "mnt")
        os.makedirs(self.mp, exist_ok=True)
        self.runs = []
        self.failures = []
        self.daemon_notes = []
        self.nmount = 0
        self.live = []

    # -- mounts -------------------------------------------------------------------------
    def mount(self, extra_opts):
        """imapfs -f in a background process; returns (Mount, seconds until it was mounted)."""
        self.nmount += 1
        wd = os.path.join(self.workdir, "m%02d" % self.nmount)
        os.makedirs(wd)
        opts = {"cafile": self.d.cafile, "password_file": self.d.password_file}
        opts.update(EXTRA_OPTS)
        opts.update(extra_opts)
        m = I.Mount("imaps://%s@127.0.0.1:%d" % (self.d.user, self.proxy.port), mountpoint=self.mp,
                    workdir=wd, opts=opts)
        argv = m.argv(foreground=True)
        m.n += 1
        m.logfile = os.path.join(wd, "imapfs.log")
        I.LIVE.add(m)
        self.live.append(m)
        with open(m.logfile, "wb") as err, open(os.path.join(wd, "imapfs.out"), "wb") as out:
            t = time.perf_counter()
            m.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=m.env)
            deadline = time.monotonic() + MOUNT_TIMEOUT
            while not I.is_mounted(self.mp):
                if m.proc.poll() is not None or time.monotonic() > deadline:
                    m.cleanup_mount()
                    raise Broken("imapfs did not mount (exit %r): %s\n%s" % (
                        m.proc.returncode if m.proc else None, " ".join(argv), m.read_log()[-3000:]))
                time.sleep(0.002)
            secs = time.perf_counter() - t
        m.daemon_pid = m.proc.pid
        return m, secs

    def unmount(self, m, run=None):
        hwm = B.vm_hwm(m.daemon_pid) if m.daemon_pid else None
        if run is not None:
            run.hwm = hwm
        try:
            m.unmount()
        except Exception as e:  # noqa: BLE001
            self.failures.append("unmount (%s): %s" % (run.op if run else "?", e))
            m.cleanup_mount()
        if m in self.live:
            self.live.remove(m)
        text = m.read_log()
        for line in text.splitlines():
            line = line.strip()
            if not line or re.match(r"imapfs: mounted \S+ on ", line):
                continue
            note = "%s: %s" % (run.op if run else "?", line)
            if note not in self.daemon_notes:
                self.daemon_notes.append(note)
        if "AddressSanitizer" in text or "runtime error" in text:
            self.failures.append("sanitizer output in daemon log: %s" % m.logfile)

    def tool(self, argv, cwd=None, out=None, ok_codes=(0,)):
        with open(out or os.devnull, "wb") as f:
            r = subprocess.run(argv, stdout=f, stderr=subprocess.PIPE, cwd=cwd, env=ENV, timeout=TOOL_TIMEOUT)
        if r.returncode not in ok_codes:
            raise Broken("%s exited %d: %s" % (" ".join(argv[:3]), r.returncode,
                                               r.stderr.decode(errors="replace")[:500]))

    def timed_mount_and(self, op, extra_opts, argv, out=None, drop_before_tool=False, ok_codes=(0,),
                        tool_cwd=None, include_mount=True, settle=0.0):
        """Mount, then run argv (cwd: the mount point or tool_cwd under it), unmount.
        The wire bytes and the rawlog window cover the mount and the tool when include_mount,
        else only the tool."""
        run = Run(op)
        time.sleep(0.02)  # keeps the rawlog windows apart
        if include_mount:
            self.proxy.reset()
            run.t0 = time.time()
        m, run.mount_secs = self.mount(extra_opts)
        try:
            if drop_before_tool:
                drop_caches()
            if not include_mount:
                time.sleep(0.05)
                self.proxy.reset()
                run.t0 = time.time()
            cwd = os.path.join(self.mp, tool_cwd) if tool_cwd else self.mp
            run.rss0 = rss_kb(m.daemon_pid)
            t = time.perf_counter()
            self.tool(argv, cwd=cwd, out=out, ok_codes=ok_codes)
            run.tool_secs = time.perf_counter() - t
            run.t1 = time.time()
            if settle:
                time.sleep(settle)  # the kernel sends RELEASEDIR after the tool has exited
            run.rss = rss_kb(m.daemon_pid)
            time.sleep(0.05)  # let the pumps count what they just forwarded
            run.up, run.down = self.proxy.counts()
            if not include_mount:
                run.mount_secs = None
        finally:
            self.unmount(m, run)
        self.runs.append(run)
        return run

    def local(self, op, argv, cwd, out=None, drop=False, ok_codes=(0,)):
        run = Run(op)
        if drop:
            drop_caches()
        t = time.perf_counter()
        self.tool(argv, cwd=cwd, out=out, ok_codes=ok_codes)
        run.tool_secs = time.perf_counter() - t
        self.runs.append(run)
        return run


# ------------------------------------------------------------------------------------
# 1. remount + ls -lR
# ------------------------------------------------------------------------------------
def lslr_files(path):
    """{directory header: sorted regular-file lines} of an ls -lR output."""
    res = {}
    cur = None
    with open(path, "rb") as f:
        for line in f:
            line = line.rstrip(b"\n")
            if line.endswith(b":") and not line.startswith(b"-"):
                cur = line
                res.setdefault(cur, [])
            elif line.startswith(b"-"):
                res.setdefault(cur, []).append(line)
    for v in res.values():
        v.sort()
    return res


class LsCheck:
    def __init__(self, total):
        self.total = total
        self.ref = None
        self.ref_op = None

    def check(self, path, op):
        files = lslr_files(path)
        n = sum(len(v) for v in files.values())
        if n != self.total:
            raise Broken("%s: ls -lR shows %d message files, the server holds %d" % (op, n, self.total))
        if self.ref is None:
            self.ref, self.ref_op = files, op
            return
        if files != self.ref:
            diff = []
            for k in sorted(set(files) | set(self.ref)):
                a, b = set(self.ref.get(k, [])), set(files.get(k, []))
                for x in sorted(a - b)[:2]:
                    diff.append("  %s only in %s: %s" % (k.decode(errors="replace"), self.ref_op,
                                                         x.decode(errors="replace")))
                for x in sorted(b - a)[:2]:
                    diff.append("  %s only in %s: %s" % (k.decode(errors="replace"), op,
                                                         x.decode(errors="replace")))
            raise Broken("%s: ls -lR differs from %s:\n%s" % (op, self.ref_op, "\n".join(diff[:10])))


def make_local_tree(lslr, top):
    """A local copy of the tree an ls -lR output shows: the same directory and file names and
    sizes (sparse files), for the ls -lR floor of this machine. Returns the number of files."""
    n = 0
    cur = top
    os.makedirs(top)
    with open(lslr, "rb") as f:
        for line in f:
            line = line.rstrip(b"\n")
            if line.endswith(b":") and not line.startswith(b"-"):
                cur = os.path.join(top, os.fsdecode(line[:-1]))
                os.makedirs(cur, exist_ok=True)
            elif line.startswith(b"-"):
                parts = line.split(None, 8)
                with open(os.path.join(cur, os.fsdecode(parts[8])), "wb") as g:
                    g.truncate(int(parts[4]))
                n += 1
    return n


def part_ls(Bn, per_folder, reps, cold_reps, cache_dir):
    total = N_FOLDERS * per_folder
    chk = LsCheck(total)
    out = os.path.join(Bn.workdir, "lslr.txt")
    argv = ["ls", "-lR", "."]

    def one(op, opts):
        try:
            Bn.timed_mount_and(op, opts, argv, out=out)
            chk.check(out, op)
        except Broken as e:
            Bn.failures.append(str(e))
            log("FAILED: %s" % e)

    log("ls -lR: first listing ever (-o cache=no; warms Dovecot's caches)")
    one("ls-first", {"cache": "no"})
    for rep in range(cold_reps):
        log("ls -lR: cold, -o cache=no (%d/%d)" % (rep + 1, cold_reps))
        one("ls-nocache", {"cache": "no"})
        log("ls -lR: cold, empty cache_dir (%d/%d)" % (rep + 1, cold_reps))
        shutil.rmtree(cache_dir, ignore_errors=True)
        one("ls-fill", {"cache_dir": cache_dir})
    for rep in range(reps):
        log("ls -lR: warm cache_dir (%d/%d)" % (rep + 1, reps))
        one("ls-warm", {"cache_dir": cache_dir})
    if chk.ref is None:
        return
    t = time.monotonic()
    tree = os.path.join(Bn.workdir, "localtree")
    try:
        n = make_local_tree(out, tree)
    except (OSError, IndexError, ValueError) as e:
        Bn.failures.append("making the local tree for ls -lR: %s" % e)
        return
    if n != total:
        Bn.failures.append("local tree holds %d files, wanted %d" % (n, total))
        return
    log("ls -lR: local tree of the same names made in %.1fs; timing ls -lR of it" % (time.monotonic() - t))
    for rep in range(reps):
        Bn.local("ls-local", argv, cwd=tree, out=out)
    shutil.rmtree(tree, ignore_errors=True)


# ------------------------------------------------------------------------------------
# 0. cold reads: the default configuration (cache on, empty) vs cache=no vs raw imaplib
# ------------------------------------------------------------------------------------
LIST_ITEMS = B.LIST_ITEMS


def raw_fetch(Bn, op, box, items, want, timed_select=False):
    """imaplib on the proxy, logged in: SELECT, then one UID FETCH 1:* items. Timed: the FETCH
    alone, or SELECT + FETCH when timed_select (imapfs's ls -l of a folder it has not opened
    yet pays its SELECT too: the same work on one logged-in connection)."""
    import imaplib
    run = Run(op)
    c = imaplib.IMAP4_SSL("127.0.0.1", Bn.proxy.port, ssl_context=Bn.d.ssl_context(), timeout=120)
    try:
        c.login(Bn.d.user, Bn.d.password)
        time.sleep(0.02)
        Bn.proxy.reset()
        t = time.perf_counter()
        typ, data = c.select(box, readonly=True)
        if typ != "OK":
            raise Broken("SELECT %s: %r" % (box, data))
        if not timed_select:
            time.sleep(0.02)
            Bn.proxy.reset()
            t = time.perf_counter()
        typ, data = c.uid("FETCH", "1:*", items)
        run.tool_secs = time.perf_counter() - t
        time.sleep(0.05)
        run.up, run.down = Bn.proxy.counts()
        if typ != "OK":
            raise Broken("UID FETCH 1:* %s: %r" % (items, data))
        n = sum(1 for x in data if isinstance(x, tuple))
        if n != want:
            raise Broken("%s: UID FETCH gave %d messages, wanted %d" % (op, n, want))
    finally:
        try:
            c.logout()
        except Exception:  # noqa: BLE001
            pass
    Bn.runs.append(run)
    return run


def fs_cat(Bn, op, opts):
    """A fresh mount; ls of GrepBox untimed (the listing); then a timed cat of every message."""
    run = Run(op)
    m, run.mount_secs = Bn.mount(opts)
    try:
        folder = os.path.join(Bn.mp, BOX_GREP)
        names = sorted(os.listdir(folder))
        if len(names) != N_GREP:
            raise Broken("%s: %d files in %s, wanted %d" % (op, len(names), BOX_GREP, N_GREP))
        time.sleep(0.05)
        Bn.proxy.reset()
        run.t0 = time.time()
        t = time.perf_counter()
        Bn.tool(["cat", "--"] + names, cwd=folder)
        run.tool_secs = time.perf_counter() - t
        run.t1 = time.time()
        time.sleep(0.05)
        run.up, run.down = Bn.proxy.counts()
    finally:
        Bn.unmount(m, run)
    run.mount_secs = None  # the figure is the cat alone
    Bn.runs.append(run)
    return run


def part_cold(Bn, reps, per_folder, workdir):
    box = BOX_FMT % 0
    for rep in range(reps + 1):
        timed = rep > 0
        log("cold reads, default configuration vs cache=no vs imaplib (%s)" % (
            "round %d/%d" % (rep, reps) if timed else "warm-up"))
        order = [0, 1, 2] if rep % 2 else [2, 1, 0]
        for who in order:
            try:
                cdir = os.path.join(workdir, "cold-cache")
                shutil.rmtree(cdir, ignore_errors=True)
                if who == 0:
                    r1 = raw_fetch(Bn, "cat-raw", BOX_GREP, "(UID BODY.PEEK[])", N_GREP)
                    r2 = raw_fetch(Bn, "ls1-raw", box, LIST_ITEMS, per_folder, timed_select=True)
                elif who == 1:
                    r1 = fs_cat(Bn, "cat-nocache", {"cache": "no"})
                    r2 = Bn.timed_mount_and("ls1-nocache", {"cache": "no"}, ["ls", "-l", box], include_mount=False)
                else:
                    r1 = fs_cat(Bn, "cat-cache", {"cache_dir": cdir})
                    shutil.rmtree(cdir, ignore_errors=True)
                    r2 = Bn.timed_mount_and("ls1-cache", {"cache_dir": cdir}, ["ls", "-l", box], include_mount=False)
                if not timed:
                    Bn.runs.remove(r1)
                    Bn.runs.remove(r2)
            except Broken as e:
                Bn.failures.append(str(e))
                log("FAILED: %s" % e)
    shutil.rmtree(os.path.join(workdir, "cold-cache"), ignore_errors=True)


def store_stats(cache_dir, table):
    """(entries, bytes of pages) of one table of the store (mdb_stat), or None."""
    d = os.path.join(cache_dir, "names")
    if not os.path.exists(os.path.join(d, "data.mdb")):
        return None
    r = subprocess.run(["mdb_stat", "-s", table, d], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    out = r.stdout.decode(errors="replace")

    def num(name):
        m = re.search(r"%s: (\d+)" % name, out)
        return int(m.group(1)) if m else 0
    return num("Entries"), (num("Branch pages") + num("Leaf pages") + num("Overflow pages")) * 4096


def msg_record_bytes(cache_dir):
    """(records, bytes of keys + values, bytes of the file names in them) of the msg table."""
    d = os.path.join(cache_dir, "names")
    r = subprocess.run(["mdb_dump", "-s", "msg", d], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    lines = r.stdout.decode().split("\n")
    try:
        rows = lines[lines.index("HEADER=END") + 1:lines.index("DATA=END")]
    except ValueError:
        return 0, 0, 0
    n = total = names = 0
    for i in range(0, len(rows), 2):
        k, v = bytes.fromhex(rows[i].strip()), bytes.fromhex(rows[i + 1].strip())
        fl = int.from_bytes(v[16:18], "little")
        n += 1
        total += len(k) + len(v)
        names += len(v) - 18 - fl
    return n, total, names


# ------------------------------------------------------------------------------------
# 4. (--one-folder N) memory with N messages in one folder
# ------------------------------------------------------------------------------------
BOX_ONE = "OneFolder"


def part_one_folder(Bn, sizes, workdir):
    """Loads small messages into one folder up to each N of sizes in turn; after each, `ls -l`
    of it on a fresh mount: cache=no, cache on (empty: it fills the store) and cache on again
    (warm remount). Returns [(n, [(label, seconds of ls -l, (RssAnon, RssFile) before, after,
    VmHWM)], store stats)]."""
    pools = B.Pools(random.Random("imapfs-bench-cache-pools"))
    out = []
    have = 0
    for n in sizes:
        c = Bn.d.client(plain=True)
        try:
            if have == 0:
                typ, data = c.create(BOX_ONE)
                if typ != "OK":
                    raise Broken("CREATE %s: %r" % (BOX_ONE, data))
            t = time.monotonic()
            for start in range(have, n, 10000):
                G.multiappend(c, BOX_ONE, gen_small("%s%d" % (BOX_ONE, start), min(10000, n - start), pools),
                              chunk=1000)
            if status_messages(c, BOX_ONE) != n:
                raise Broken("%s does not hold %d messages" % (BOX_ONE, n))
        finally:
            c.logout()
        log("loaded %s messages into %s (%.0fs)" % (format(n, ","), BOX_ONE, time.monotonic() - t))
        have = n
        cdir = os.path.join(workdir, "cache-one-%d" % n)
        res = []
        for label, opts in (("cache=no", {"cache": "no"}), ("cache on, cold (fills the store)", {"cache_dir": cdir}),
                            ("cache on, warm remount", {"cache_dir": cdir})):
            r = Bn.timed_mount_and("one-%d-%s" % (n, label), opts, ["ls", "-l", BOX_ONE], include_mount=False,
                                  settle=0.5)
            res.append((label, r.tool_secs, r.rss0, r.rss, r.hwm))
            log("%s: %s %s -> %s" % (format(n, ","), label, r.rss0, r.rss))
        out.append((n, res, store_stats(cdir, "msg")))
        shutil.rmtree(cdir, ignore_errors=True)
    return out


def report_one_folder(one):
    for n, rows, st in one:
        print("one folder of %s messages, ls -l on a fresh mount (daemon memory before -> after ls):" % (
            format(n, ",")))
        for label, secs, r0, r1, hwm in rows:
            if r0 and r1:
                print("  %-34s ls -l %s; RssAnon %.1f -> %.1f MiB (%.0f bytes per message in all, +%.0f over "
                      "the mount), RssFile %.1f -> %.1f MiB (+%.0f bytes per message: LMDB map pages read); "
                      "VmHWM %.1f MiB" % (
                          label + ":", fmt_t(secs), r0[0] / 1024, r1[0] / 1024, r1[0] * 1024 / n,
                          (r1[0] - r0[0]) * 1024 / n, r0[1] / 1024, r1[1] / 1024,
                          (r1[1] - r0[1]) * 1024 / n, (hwm or 0) / 1024))
        if st and st[0]:
            print("  its listing in the store: %s records, %s of pages = %.1f bytes per message" % (
                format(st[0], ","), fmt_b(st[1]), st[1] / st[0]))


# ------------------------------------------------------------------------------------
# 2. grep -r: cached vs a local Maildir (mbsync)
# ------------------------------------------------------------------------------------
def ensure_mbsync():
    """Path of mbsync, installing Debian's isync when possible; (None, reason) otherwise."""
    p = shutil.which("mbsync")
    if p:
        return p, None
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return None, "mbsync (Debian package isync) is not installed; run as root with apt, or apt-get install isync"
    log("installing isync (mbsync) with apt-get")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    r = subprocess.run(["apt-get", "install", "-y", "-q", "isync"], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, env=env, timeout=300)
    if r.returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       env=env, timeout=300)
        r = subprocess.run(["apt-get", "install", "-y", "-q", "isync"], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, env=env, timeout=300)
    p = shutil.which("mbsync")
    if not p:
        return None, "apt-get install isync failed: %s" % r.stdout.decode(errors="replace")[-300:]
    return p, None


def make_maildir(d, mbsync, workdir):
    """mbsync's copy of BOX_GREP in workdir/maildir; returns (folder path, seconds)."""
    md = os.path.join(workdir, "maildir")
    state = os.path.join(workdir, "mbsync-state")
    os.makedirs(md)
    os.makedirs(state)
    conf = os.path.join(workdir, "mbsyncrc")
    # The certificate check rejects IP addresses: connect to localhost (the test cert has
    # DNS:localhost in its subjectAltName).
    with open(conf, "w") as f:
        f.write("""IMAPAccount bench
Host localhost
Port %d
User %s
PassCmd "cat %s"
SSLType IMAPS
CertificateFile %s
SystemCertificates no

IMAPStore far
Account bench

MaildirStore near
Path %s/
Inbox %s/INBOX
SubFolders Verbatim

Channel bench
Far :far:
Near :near:
Patterns %s
Create Near
Sync Pull
SyncState %s/
""" % (d.imaps_port, d.user, d.password_file, d.cafile, md, md, BOX_GREP, state))
    t = time.perf_counter()
    r = subprocess.run([mbsync, "-c", conf, "-q", "bench"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=TOOL_TIMEOUT)
    secs = time.perf_counter() - t
    if r.returncode != 0:
        raise Broken("mbsync exited %d: %s" % (r.returncode, r.stdout.decode(errors="replace")[-1000:]))
    folder = os.path.join(md, BOX_GREP)
    n = sum(len(os.listdir(os.path.join(folder, sub))) for sub in ("cur", "new") if os.path.isdir(os.path.join(folder, sub)))
    if n != N_GREP:
        raise Broken("mbsync's Maildir holds %d messages, the server %d" % (n, N_GREP))
    return folder, secs


def grep_result(path):
    """(matching lines, matching files) of a grep -r -Z output."""
    files = set()
    lines = 0
    with open(path, "rb") as f:
        for line in f:
            name, _, _ = line.partition(b"\0")
            files.add(os.path.basename(name))
            lines += 1
    return lines, len(files)


def part_grep(Bn, reps, cache_dir, maildir, can_drop):
    argv = ["grep", "-r", "-Z", "-e", GREP_PATTERN, BOX_GREP]
    out = os.path.join(Bn.workdir, "grep.txt")
    results = {}

    def note(op, path=out):
        res = grep_result(path)
        results.setdefault(op, set()).add(res)
        return res

    log("grep: first grep, empty cache_dir (fills the content cache)")
    shutil.rmtree(cache_dir, ignore_errors=True)
    Bn.timed_mount_and("grep-first", {"cache_dir": cache_dir}, argv, out=out, ok_codes=(0, 1),
                       include_mount=False)
    note("grep-first")
    for rep in range(reps):
        log("grep: second grep on a remount (%d/%d)" % (rep + 1, reps))
        # Each run with the page cache dropped is followed by one without dropping it: the
        # cache files (or the Maildir) are then in memory, just read by the run before; the
        # mount is fresh all the same.
        Bn.timed_mount_and("grep-cached", {"cache_dir": cache_dir}, argv, out=out, drop_before_tool=can_drop,
                           ok_codes=(0, 1), include_mount=False)
        note("grep-cached")
        if can_drop:
            Bn.timed_mount_and("grep-cached-pc", {"cache_dir": cache_dir}, argv, out=out, ok_codes=(0, 1),
                               include_mount=False)
            note("grep-cached-pc")
        if maildir:
            Bn.local("grep-maildir", argv, cwd=os.path.dirname(maildir), out=out, drop=can_drop, ok_codes=(0, 1))
            note("grep-maildir")
            if can_drop:
                Bn.local("grep-maildir-pc", argv, cwd=os.path.dirname(maildir), out=out, ok_codes=(0, 1))
                note("grep-maildir-pc")
    every = set()
    for v in results.values():
        every |= v
    if len(every) != 1:
        Bn.failures.append("grep results differ (matching lines, files): %s" % (
            "; ".join("%s %s" % (k, sorted(v)) for k, v in sorted(results.items()))))
        return None
    return every.pop()


# ------------------------------------------------------------------------------------
# 3. on disk
# ------------------------------------------------------------------------------------
# ------------------------------------------------------------------------------------
# report
# ------------------------------------------------------------------------------------
fmt_t = B.fmt_t
fmt_b = B.fmt_b
med = B.med


def report(Bn, args, per_folder, load_secs, load_bytes, grep_bytes, grep_res, mbsync_secs, mbsync_skip,
           can_drop, ls_cache, grep_cache):
    def rs(op):
        return [r for r in Bn.runs if r.op == op]

    def m_of(op, attr):
        return med(getattr(r, attr) for r in rs(op))

    total = N_FOLDERS * per_folder
    cold_best = None
    for op in ("ls-nocache", "ls-fill"):
        s = m_of(op, "secs")
        if s is not None and (cold_best is None or s < cold_best[0]):
            cold_best = (s, op)
    dropped = "page cache dropped" if can_drop else "page cache NOT dropped (not permitted)"
    n_s = format(total, ",")
    rows_def = [
        ("ls-first", "mount + ls -lR %s msgs, first ever (cache=no)" % n_s, None),
        ("ls-nocache", "mount + ls -lR, cold: -o cache=no", None),
        ("ls-fill", "mount + ls -lR, cold: empty cache_dir", None),
        ("ls-warm", "remount + ls -lR, warm cache_dir", "warm"),
        ("ls-local", "ls -lR of a local tree, same names", None),
        ("grep-first", "grep -r %s msgs, 1st (fills cache)" % format(N_GREP, ","), None),
        ("grep-cached", "grep -r again, remounted, %s" % ("cache dropped" if can_drop else "no drop"), "grep"),
        ("grep-maildir", "grep -r mbsync Maildir, %s" % ("cache dropped" if can_drop else "no drop"), None),
        ("grep-cached-pc", "grep -r again, remounted, page cache warm", "grep-pc"),
        ("grep-maildir-pc", "grep -r mbsync Maildir, page cache warm", None),
    ]
    rows = [("operation", "time", "of it mount", "wire c→s / s→c", "IMAP cmds", "ratio", "target")]
    details = []
    for op, label, kind in rows_def:
        runs = rs(op)
        if not runs:
            if op.startswith("grep-maildir") and mbsync_secs is None and (op == "grep-maildir" or can_drop):
                rows.append((label, "skipped", "", "", "", "", ""))
            continue
        t = m_of(op, "secs")
        mt = m_of(op, "mount_secs")
        up, down = m_of(op, "up"), m_of(op, "down")
        ncmd = med(len(r.cmds) for r in runs if r.cmds is not None)
        ratio = tgt = ""
        if kind == "warm" and cold_best and t:
            ratio = "%.1f× faster" % (cold_best[0] / t)
            loc = m_of("ls-local", "secs")
            if loc:
                q = t / loc
                ratio += ", %.2f× local" % q
                tgt = "%s ≤%.1f× local" % ("PASS" if q <= WARM_TARGET else "MISS", WARM_TARGET)
        elif kind in ("grep", "grep-pc"):
            base = m_of("grep-maildir" if kind == "grep" else "grep-maildir-pc", "secs")
            if base and t is not None:
                q = t / base
                ratio = "%.2f× Maildir" % q
                if kind == "grep":
                    tgt = "%s ≤%.1f×" % ("PASS" if q <= GREP_TARGET else "MISS", GREP_TARGET)
        is_local = op.startswith("grep-maildir") or op == "ls-local"
        rows.append((label, fmt_t(t), fmt_t(mt) if mt is not None else "",
                     "" if is_local else "%s / %s" % (fmt_b(up), fmt_b(down)),
                     "" if is_local else ("%d" % ncmd if ncmd is not None else "-"), ratio, tgt))
        for r in runs[-1:]:
            if r.cmds:
                counts = {}
                for c in r.cmds:
                    counts[B.shape(c)] = counts.get(B.shape(c), 0) + 1
                top = sorted(counts.items(), key=lambda kv: -kv[1])
                details.append("  %-40s %s" % (label + ":", "; ".join(
                    "%d× %s" % (n, s) for s, n in top[:5]) + ("; ..." if len(top) > 5 else "")))

    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    line = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    print()
    print("imapfs persistent-cache benchmark (%s): %d folders × %s messages (1–3 KB), %s messages in %s; "
          "medians" % ("quick" if args.quick else "full", N_FOLDERS, format(per_folder, ","),
                       format(N_GREP, ","), BOX_GREP))
    print(line)
    for i, r in enumerate(rows):
        print("| " + " | ".join(c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(r, widths)))
              + " |")
        if i == 0:
            print(line)
    print(line)

    # cold, default configuration
    cold_rows = [("operation (cold, fresh mount)", "default (cache on)", "cache=no", "raw imaplib",
                  "on / no", "on / raw", "target")]
    for what, ops, tgt in (("cat of %s messages" % format(N_GREP, ","), ("cat-cache", "cat-nocache", "cat-raw"),
                            (1.1, 1.3)),
                           ("ls -l of %s messages" % format(per_folder, ","), ("ls1-cache", "ls1-nocache", "ls1-raw"),
                            (None, 1.2))):
        t = [m_of(op, "secs") for op in ops]
        if all(x is None for x in t):
            continue
        q1 = t[0] / t[1] if t[0] and t[1] else None
        q2 = t[0] / t[2] if t[0] and t[2] else None
        verdict = []
        if tgt[0] and q1:
            verdict.append("%s ≤%.1f× no" % ("PASS" if q1 <= tgt[0] else "MISS", tgt[0]))
        if tgt[1] and q2:
            verdict.append("%s ≤%.1f× raw" % ("PASS" if q2 <= tgt[1] else "MISS", tgt[1]))
        cold_rows.append((what, fmt_t(t[0]), fmt_t(t[1]), fmt_t(t[2]), "%.2f×" % q1 if q1 else "-",
                          "%.2f×" % q2 if q2 else "-", ", ".join(verdict)))
    if len(cold_rows) > 1:
        widths = [max(len(r[i]) for r in cold_rows) for i in range(len(cold_rows[0]))]
        line = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
        print("cold reads, medians (imapfs: the tool alone, after the mount; imaplib, logged in: the UID FETCH "
              "alone for cat (imapfs selected the folder for its untimed listing), SELECT + UID FETCH for ls -l):")
        print(line)
        for i, r in enumerate(cold_rows):
            print("| " + " | ".join(c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(r, widths)))
                  + " |")
            if i == 0:
                print(line)
        print(line)
        for op in ("cat-cache", "cat-nocache", "cat-raw", "ls1-cache", "ls1-nocache", "ls1-raw"):
            print("  %-12s all runs: %s" % (op, " ".join(fmt_t(r.secs) for r in rs(op))))
    for op, label, n in (("ls1-cache", "after cold ls -l of %s messages (cache on)" % format(per_folder, ","), per_folder),
                         ("ls1-nocache", "after cold ls -l of %s messages (cache=no)" % format(per_folder, ","), per_folder),
                         ("ls-warm", "after warm remount + ls -lR of %s messages" % n_s, total)):
        v = [r for r in rs(op) if r.rss and r.rss[0] is not None]
        if v:
            r = v[-1]
            print("daemon memory %s: RssAnon %.1f MiB (%.0f bytes per message; +%.0f over the mount before ls), "
                  "RssFile %.1f MiB (LMDB map and binary; +%.1f MiB)" % (
                      label, r.rss[0] / 1024, r.rss[0] * 1024 / n,
                      (r.rss[0] - (r.rss0 or (0, 0))[0]) * 1024 / n, r.rss[1] / 1024,
                      (r.rss[1] - (r.rss0 or (0, 0))[1]) / 1024))

    # on disk
    st = store_stats(ls_cache, "msg")
    if st and st[0]:
        n_rec, rec_bytes, name_bytes = msg_record_bytes(ls_cache)
        print("listing metadata in the store: %s records in %s of pages = %.1f bytes per message; the records "
              "themselves %.1f bytes (key 8, size, date, flags), of which the file name (made from header text) "
              "%.1f: %.1f bytes per message without it" % (
                  format(st[0], ","), fmt_b(st[1]), st[1] / st[0], rec_bytes / max(1, n_rec),
                  name_bytes / max(1, n_rec), (rec_bytes - name_bytes) / max(1, n_rec)))
        print("store data file after the ls runs: %s" % fmt_b(os.path.getsize(os.path.join(ls_cache, "names", "data.mdb"))))
    st = store_stats(grep_cache, "blk")
    if st and st[0]:
        print("content in the store: %d blocks in %s of pages for %s messages of %s = %.0f bytes per "
              "message, %.3f× the mail" % (st[0], fmt_b(st[1]), format(N_GREP, ","), fmt_b(grep_bytes),
                                         st[1] / N_GREP, st[1] / grep_bytes))
    hw = []
    for op, label in (("ls-nocache", "ls -lR cold cache=no"), ("ls-fill", "ls -lR cold filling"),
                      ("ls-warm", "ls -lR warm"), ("grep-first", "grep 1st"), ("grep-cached", "grep cached")):
        v = [r.hwm for r in rs(op) if r.hwm]
        if v:
            hw.append("%s %.1f MiB" % (label, max(v) / 1024))
    print("peak RSS of the daemon (VmHWM, max over runs): %s" % (", ".join(hw) or "-"))
    loc = m_of("ls-local", "secs")
    warm = m_of("ls-warm", "secs")
    if cold_best and loc and warm:
        print("ls -lR floor: the warm remount + ls -lR takes %.1f× the local tree's ls -lR; even a remount "
              "costing nothing beyond ls itself would be %.1f× faster than cold" % (warm / loc, cold_best[0] / loc))
    if cold_best:
        print("warm ratio = the faster cold row (%s) / warm; both include the mount (imapfs -f until "
              "the mount shows in /proc/mounts)" % ("cache=no" if cold_best[1] == "ls-nocache" else "empty cache_dir"))
    if grep_res:
        print("grep: %d matching lines in %d files for %r, the same on every run%s" % (
            grep_res[0], grep_res[1], GREP_PATTERN, " and in the Maildir" if mbsync_secs is not None else ""))
    if mbsync_secs is not None:
        print("mbsync: initial sync of %s into a Maildir took %s" % (BOX_GREP, fmt_t(mbsync_secs)))
    elif mbsync_skip:
        print("Maildir rows skipped: %s" % mbsync_skip)
    print("loading: %d × %s messages (%.0f MB) in %.1f s (MULTIAPPEND + LITERAL+)" % (
        N_FOLDERS, format(per_folder, ","), load_bytes / 1e6, load_secs))
    print("IMAP commands imapfs sent (Dovecot's rawlog; ls rows: mount + ls; grep rows: grep only), last run:")
    for dl in details:
        print(dl)
    print("all runs (total, mount):")
    for op, label, _k in rows_def:
        runs = rs(op)
        if runs:
            print("  %-40s %s" % (label + ":", " ".join(
                fmt_t(r.secs) + (" (%s)" % fmt_t(r.mount_secs) if r.mount_secs is not None else "") for r in runs)))
    print("notes: every imapfs figure is on a fresh mount through the counting proxy; ls rows time the mount")
    print("  (imapfs -f started → mounted) plus ls -lR, and their wire bytes include the TLS handshake and login.")
    print("  grep rows time grep only, after the mount (its listing comes from the cache: one SELECT to confirm).")
    print("  %s before each grep (imapfs: after mounting), so both read from disk." % (
        "The page cache is dropped (echo 3 > /proc/sys/vm/drop_caches)" if can_drop else
        "The page cache could NOT be dropped (not permitted), so both read from memory"))
    print("  The page cache is not dropped for the ls -lR rows. The local-tree row (same directory and file names")
    print("  and sizes, sparse files on the local disk, page cache warm) is what ls -lR itself costs here: the")
    print("  floor under any remount + ls -lR, whatever the cache.")


# ------------------------------------------------------------------------------------
def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="10 × 1,000 messages instead of 10 × 10,000")
    ap.add_argument("--messages", type=int, help="messages per folder (default 10,000; --quick 1,000)")
    ap.add_argument("--reps", type=int, help="timed warm runs per figure (median; default 3, --quick 2)")
    ap.add_argument("--cold-reps", type=int, help="timed cold ls -lR runs of each kind (default 2, --quick 1)")
    ap.add_argument("--no-maildir", action="store_true", help="skip mbsync and the Maildir rows")
    ap.add_argument("--no-cold", action="store_true", help="skip the cold default vs cache=no vs imaplib rows")
    ap.add_argument("--parts", default="ls,cold,grep",
                    help="comma-separated parts to run: ls (1: ls -lR), cold (0), grep (2); default all. "
                         "Without ls only the first folder is loaded")
    ap.add_argument("--one-folder", metavar="N[,N...]",
                    help="also load N messages into one folder (then up to each further N) and report the "
                         "daemon's memory after ls -l of it")
    ap.add_argument("--opt", action="append", default=[], metavar="KEY=VALUE",
                    help="a -o option for every mount (e.g. mem_cache=4M to see what the in-memory "
                         "block tier is worth)")
    ap.add_argument("--memory-only", action="store_true",
                    help="only the --one-folder rows (default sizes 100,000 and 1,000,000)")
    ap.add_argument("--cold-rounds", type=int, default=7,
                    help="timed rounds of the cold default / cache=no / imaplib rows (median; default 7)")
    ap.add_argument("--connections", type=int, default=max(2, min(4, os.cpu_count() or 2)),
                    help="connections for loading (default 2-4, by CPUs)")
    ap.add_argument("--bin", help="imapfs binary (default $IMAPFS_BIN or build/fs/imapfs)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (daemon logs)")
    args = ap.parse_args()
    for kv in args.opt:
        k, _, v = kv.partition("=")
        EXTRA_OPTS[k] = v
    per_folder = args.messages or (1000 if args.quick else 10000)
    sizes = [int(x.replace("_", "")) for x in args.one_folder.split(",")] if args.one_folder else (
        [100000, 1000000] if args.memory_only else [])
    reps = args.reps or (2 if args.quick else 3)
    cold_reps = args.cold_reps or (1 if args.quick else 2)

    def on_term(signum, frame):
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)

    workdir = tempfile.mkdtemp(prefix="ifsc", dir="/tmp")
    os.chmod(workdir, 0o755)
    d = proxy = Bn = None
    rc = 0
    try:
        os.environ["IMAPFS_BIN"] = B.find_bin(args.bin, workdir)
        log("daemon: %s" % os.environ["IMAPFS_BIN"])
        can_drop = can_drop_caches()
        if not can_drop:
            log("can't write /proc/sys/vm/drop_caches: timing with the page cache as it is")
        mbsync, mbsync_skip = (None, "--no-maildir") if args.no_maildir else ensure_mbsync()
        if mbsync_skip:
            log("Maildir rows skipped: %s" % mbsync_skip)

        d = D.Dovecot(rawlog=not args.memory_only)
        d.start()
        log("dovecot in %s, imaps port %d" % (d.dir, d.imaps_port))
        if args.memory_only:
            proxy = P.Proxy(d.imaps_port).start()
            Bn = Bench(d, proxy, workdir)
            report_one_folder(part_one_folder(Bn, sizes, workdir))
            return 1 if Bn.failures else 0
        parts = set(args.parts.split(","))
        load_secs, load_bytes = load_folders(d, per_folder, args.connections,
                                             N_FOLDERS if "ls" in parts else 1)
        clear_rawlog(d)
        proxy = P.Proxy(d.imaps_port).start()
        Bn = Bench(d, proxy, workdir)
        ls_cache = os.path.join(workdir, "cache-ls")
        grep_cache = os.path.join(workdir, "cache-grep")

        if "ls" in parts:
            part_ls(Bn, per_folder, reps, cold_reps, ls_cache)

        grep_bytes = load_grep_folder(d)
        log("loaded %s messages (%.1f MB) into %s" % (format(N_GREP, ","), grep_bytes / 1e6, BOX_GREP))
        if not args.no_cold and "cold" in parts:
            part_cold(Bn, args.cold_rounds, per_folder, workdir)
        maildir = mbsync_secs = None
        if mbsync and "grep" in parts:
            try:
                maildir, mbsync_secs = make_maildir(d, mbsync, workdir)
                log("mbsync made the Maildir in %.1fs" % mbsync_secs)
            except Broken as e:
                Bn.failures.append(str(e))
                log("FAILED: %s" % e)
        grep_res = part_grep(Bn, reps, grep_cache, maildir, can_drop) if "grep" in parts else None
        one = part_one_folder(Bn, sizes, workdir) if sizes else None

        time.sleep(0.2)
        cmds = B.rawlog_commands(d)
        for r in Bn.runs:
            if r.t0 is not None:
                r.cmds = [c for ts, c in cmds if r.t0 <= ts <= r.t1 + 0.001]
        report(Bn, args, per_folder, load_secs, load_bytes, grep_bytes, grep_res, mbsync_secs, mbsync_skip,
               can_drop, ls_cache, grep_cache)
        if one:
            report_one_folder(one)
        if Bn.daemon_notes:
            print("daemon stderr (distinct lines, all mounts):")
            for dl in Bn.daemon_notes[:20]:
                print("  " + dl[:200])
    except BaseException as e:  # noqa: BLE001  (KeyboardInterrupt, SystemExit: clean up first)
        rc = B.exit_status("bench_cache", e)
    finally:
        if Bn is not None:
            for m in list(Bn.live):
                m.cleanup_mount()
        cleaned = B.clean_up("bench_cache", workdir, Bn.failures if Bn is not None else [], proxy, d,
                        args.keep)
        rc = rc or cleaned
    return rc


if __name__ == "__main__":
    sys.exit(main())
