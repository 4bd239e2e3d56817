#!/usr/bin/python3
"""imapfs benchmark: imapfs against python3 imaplib doing the same raw work.

    /usr/bin/python3 tests/bench/bench.py [--quick] [--direct] [--reps N] [--bin PATH]

One invocation starts a throwaway Dovecot (tests/integration/dovecot.py), loads it with
deterministic mail (MULTIAPPEND + LITERAL+ on one connection), puts the counting proxy
(tests/integration/proxy.py) between the clients and Dovecot, and measures, each on a
fresh mount:

  ls -l      of a 10,000-message folder   vs  SELECT + one UID FETCH 1:* of the same items
  cat        of every message of a 1,000-message folder
                                          vs  one pipelined UID FETCH 1:* BODY.PEEK[]
  head -c 4096 of a 25 MB message         vs  UID FETCH uid BODY.PEEK[]<0.4096>
  and a second ls -l / cat pass on the same mount (warm: kernel and imapfs caches).

Every timed figure is the median of --reps runs (default 3), after one untimed warm-up
round that also checks the bytes imapfs serves against imaplib's. Dovecot's rawlog
attributes IMAP commands to each timed window. Exits non-zero only if something broke
(a mount, a tool, wrong bytes), never because a figure is slow. Stdlib only.
"""

import argparse
import base64
import datetime
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(SRC, "tests", "integration"))

import dovecot as D  # noqa: E402
import imapfs as I  # noqa: E402
import mailgen as G  # noqa: E402
import proxy as P  # noqa: E402

import random  # noqa: E402

UTC = datetime.timezone.utc
BOX_LIST = "BenchList"   # the 10,000-message folder
BOX_READ = "BenchRead"   # the 1,000-message folder
BOX_BIG = "BenchBig"     # one ~25 MB message
LIST_ITEMS = "(UID RFC822.SIZE INTERNALDATE FLAGS BODY.PEEK[HEADER.FIELDS (DATE SUBJECT)])"
TARGET = 1.5
TOOL_TIMEOUT = 180
ENV = dict(os.environ, LC_ALL="C.UTF-8")


def log(*a):
    print("[bench %6.1fs]" % (time.monotonic() - T0), *a, file=sys.stderr, flush=True)


T0 = time.monotonic()


class Broken(Exception):
    """Something that must make the run fail (not a slow figure)."""


# ------------------------------------------------------------------------------------
# deterministic mail
# ------------------------------------------------------------------------------------
WORDS = ("the of and to in is that for it as was with be by on not he this are or his from at "
         "which but have an they you were her she there been one all we their has would when if "
         "so no will more can out up about into them than then some could time these two may "
         "first do any my now such like other how over also its our after most made only new "
         "budget quarterly report meeting invoice project review schedule numbers draft office "
         "attached please regards thanks customer server release update ticket contract").split()
SUBJECTS = ["Quarterly numbers", "Re: Budget draft", "Meeting notes", "Invoice %d", "Fwd: Ticket #%d",
            "Weekly report", "Re: Re: Project schedule", "Release %d.%d", "Lunch?", "Contract review"]
UMLAUT_SUBJECTS = ["Grüße aus München", "Rückmeldung zum Entwurf", "Année %d résumé", "日本語の件名 %d"]


class Pools:
    def __init__(self, rng):
        lines = []
        n = 0
        while n < 300_000:
            k = rng.randint(6, 14)
            line = " ".join(rng.choice(WORDS) for _ in range(k))[:76] + "\r\n"
            lines.append(line)
            n += len(line)
        self.text = "".join(lines).encode()
        self.b64 = base64.encodebytes(rng.randbytes(220_000)).replace(b"\n", b"\r\n")

    def text_slice(self, rng, n):
        off = rng.randrange(0, len(self.text) - n - 1) if n < len(self.text) - 2 else 0
        s = self.text[off:off + n]
        cut = s.rfind(b"\r\n")
        return s[:cut + 2] if cut > 0 else s + b"\r\n"

    def b64_slice(self, rng, n):
        n = min(n, len(self.b64) - 80)
        off = rng.randrange(0, (len(self.b64) - n) // 78) * 78
        s = self.b64[off:off + n]
        return s[:s.rfind(b"\r\n") + 2]


def _subject(rng, k):
    if rng.random() < 0.1:
        s = rng.choice(UMLAUT_SUBJECTS)
        s = s % k if "%d" in s else s
        return "=?UTF-8?B?%s?=" % base64.b64encode(s.encode()).decode()
    s = rng.choice(SUBJECTS)
    if s.count("%d") == 2:
        return s % (k % 7, k % 13)
    return s % k if "%d" in s else s


def gen_messages(n, mailbox, seed):
    """n deterministic messages: sizes 2-20 KB (log-uniform), ~1% of 150-250 KB with a base64
    attachment; Date and INTERNALDATE 3 h apart per message; some flags."""
    rng = random.Random("imapfs-bench-%s-%d" % (seed, n))
    pools = Pools(rng)
    base = datetime.datetime(2022, 1, 3, 9, 0, 0, tzinfo=UTC)
    out = []
    for k in range(n):
        dt = base + datetime.timedelta(hours=3 * k, seconds=rng.randrange(3600))
        big = rng.random() < 0.01
        size = rng.randint(150_000, 250_000) if big else int(2000 * 10 ** rng.random())
        h = (b"From: Person %d <p%d@example.org>\r\nTo: alice@example.org\r\n"
             b"Subject: %s\r\nDate: %s\r\nMessage-ID: <bench-%s-%d@example.org>\r\nMIME-Version: 1.0\r\n"
             % (k % 97, k % 97, _subject(rng, k).encode(), dt.strftime("%a, %d %b %Y %H:%M:%S +0000").encode(),
                seed.encode(), k))
        if big:
            body = (b"--b%d\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" % k
                    + pools.text_slice(rng, 1500)
                    + b"--b%d\r\nContent-Type: application/pdf; name=\"doc%d.pdf\"\r\n"
                      b"Content-Transfer-Encoding: base64\r\n\r\n" % (k, k)
                    + pools.b64_slice(rng, size - len(h) - 1800)
                    + b"--b%d--\r\n" % k)
            raw = h + b"Content-Type: multipart/mixed; boundary=\"b%d\"\r\n\r\n" % k + body
        else:
            raw = (h + b"Content-Type: text/plain; charset=utf-8\r\n\r\n"
                   + pools.text_slice(rng, max(200, size - len(h) - 45)))
        flags = []
        r = rng.random()
        if r < 0.7:
            flags.append("\\Seen")
        if r < 0.05:
            flags.append("\\Flagged")
        out.append(G.Msg("%s-%d" % (seed, k), mailbox, raw, None, None, dt + datetime.timedelta(minutes=1),
                         flags))
    return out


def load(d, n_list, n_read):
    t = time.monotonic()
    lst = gen_messages(n_list, BOX_LIST, "list")
    rd = gen_messages(n_read, BOX_READ, "read")
    big = G.Msg("big", BOX_BIG, G.big_message(), None, None,
                datetime.datetime(2024, 3, 8, 12, 0, tzinfo=UTC), [])
    log("generated %d + %d + 1 messages (%.0f MB) in %.1fs" % (
        len(lst), len(rd), sum(len(m.raw) for m in lst + rd + [big]) / 1e6, time.monotonic() - t))
    t = time.monotonic()
    c = d.client(plain=True)  # loading needs no TLS
    try:
        for box in (BOX_LIST, BOX_READ, BOX_BIG):
            typ, data = c.create(box)
            if typ != "OK":
                raise Broken("CREATE %s: %r" % (box, data))
        G.multiappend(c, BOX_LIST, lst)
        G.multiappend(c, BOX_READ, rd)
        G.multiappend(c, BOX_BIG, [big], chunk=1)
        counts = {}
        for box in (BOX_LIST, BOX_READ, BOX_BIG):
            typ, data = c.status(box, "(MESSAGES)")
            counts[box] = int(re.search(rb"MESSAGES (\d+)", data[0]).group(1))
    finally:
        c.logout()
    want = {BOX_LIST: n_list, BOX_READ: n_read, BOX_BIG: 1}
    if counts != want:
        raise Broken("loaded %r, wanted %r" % (counts, want))
    log("loaded in %.1fs" % (time.monotonic() - t))
    return len(big.raw)


# ------------------------------------------------------------------------------------
# measuring helpers
# ------------------------------------------------------------------------------------
class Window:
    """One measured operation: wall-clock window (for the rawlog), duration, wire bytes."""

    def __init__(self, op, who, rep):
        self.op, self.who, self.rep = op, who, rep
        self.t0 = self.t1 = None
        self.secs = None
        self.up = self.down = None
        self.cmds = None  # filled from the rawlog at the end


class Runner:
    def __init__(self, d, proxy, direct, workdir):
        self.d = d
        self.proxy = proxy
        self.direct = direct
        self.workdir = workdir
        self.windows = []
        self.rss = {}       # op-group -> [VmHWM kB]
        self.conns = {}     # op-group -> [connections imapfs opened]
        self.failures = []
        self.nmount = 0
        self.spawn = None   # seconds to start a tool (head -c 4096 /dev/zero)

    # -- timing -------------------------------------------------------------------------
    def measure(self, op, who, rep, fn, proxied):
        w = Window(op, who, rep)
        time.sleep(0.02)  # keeps the rawlog windows apart
        if proxied:
            self.proxy.reset()
        w.t0 = time.time()
        p0 = time.perf_counter()
        res = fn()
        w.secs = time.perf_counter() - p0
        w.t1 = time.time()
        if proxied:
            time.sleep(0.05)  # let the pumps count what they just forwarded
            w.up, w.down = self.proxy.counts()
        self.windows.append(w)
        return res

    def tool(self, argv, cwd=None):
        r = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=cwd, env=ENV,
                           timeout=TOOL_TIMEOUT)
        if r.returncode != 0:
            raise Broken("%s exited %d: %s" % (argv[0], r.returncode, r.stderr.decode(errors="replace")[:500]))

    # -- imapfs mounts ------------------------------------------------------------------
    def mount(self, proxied):
        self.nmount += 1
        port = self.proxy.port if proxied else self.d.imaps_port
        wd = os.path.join(self.workdir, "m%d" % self.nmount)
        os.makedirs(wd)
        m = I.Mount("imaps://%s@127.0.0.1:%d" % (self.d.user, port),
                    mountpoint=os.path.join(self.workdir, "mnt"), workdir=wd,
                    opts={"cafile": self.d.cafile, "password_file": self.d.password_file,
                          "cache": "no"})  # fresh mount = nothing cached
        self.accepted0 = self.proxy.accepted if proxied else None
        m.mount(foreground=True)  # -f in a background Popen: m.proc.pid is the daemon
        return m

    def unmount(self, m, group):
        try:
            pid = m.daemon_pid
            hwm = vm_hwm(pid) if pid else None
            if hwm:
                self.rss.setdefault(group, []).append(hwm)
            if self.accepted0 is not None:
                self.conns.setdefault(group, []).append(self.proxy.accepted - self.accepted0)
            m.unmount()
        except Exception as e:  # noqa: BLE001
            self.failures.append("unmount after %s: %s" % (group, e))
            m.cleanup_mount()
        tail = m.read_log()
        if "AddressSanitizer" in tail or "runtime error" in tail:
            self.failures.append("sanitizer output in daemon log: %s" % m.logfile)

    # -- baseline connection ------------------------------------------------------------
    def client(self, proxied):
        port = self.proxy.port if proxied else self.d.imaps_port
        import imaplib
        c = imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=self.d.ssl_context(), timeout=60)
        c.login(self.d.user, self.d.password)
        return c


def vm_hwm(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def uid_of(name):
    m = re.search(r"\[(\d+)\]\.eml$", name) or re.match(r"^(\d+)\.eml$", name)
    return int(m.group(1)) if m else None


def fetch_ok(typ, data, what):
    if typ != "OK":
        raise Broken("%s: %r" % (what, data))


# ------------------------------------------------------------------------------------
# the operations
# ------------------------------------------------------------------------------------
def base_list(R, rep, proxied):
    c = R.client(proxied)
    try:
        def run():
            typ, data = c.select(BOX_LIST, readonly=True)
            fetch_ok(typ, data, "SELECT")
            typ, data = c.uid("FETCH", "1:*", LIST_ITEMS)
            fetch_ok(typ, data, "UID FETCH")
            return data
        data = R.measure("list", "base", rep, run, proxied)
        sizes = [int(x) for x in re.findall(rb"RFC822\.SIZE (\d+)",
                                            b" ".join(i[0] if isinstance(i, tuple) else i
                                                      for i in data if i is not None))]
        return len(sizes), sum(sizes)
    finally:
        c.logout()


def fs_list(R, rep, proxied, expect):
    m = R.mount(proxied)
    try:
        folder = os.path.join(m.mp, BOX_LIST)
        R.measure("list", "fs", rep, lambda: R.tool(["ls", "-l", folder]), proxied)
        R.measure("list-warm", "fs", rep, lambda: R.tool(["ls", "-l", folder]), proxied)
        if rep == 0 and expect:
            names = os.listdir(folder)
            total = sum(os.lstat(os.path.join(folder, n)).st_size for n in names)
            if (len(names), total) != expect:
                raise Broken("listing shows %d files / %d bytes, server %d / %d" % (
                    len(names), total, expect[0], expect[1]))
    finally:
        R.unmount(m, "list")


def fs_list_stat(R, rep, proxied, _expect):
    """The same listing without ls: readdir + lstat of every entry (no getxattr calls)."""
    m = R.mount(proxied)
    try:
        folder = os.path.join(m.mp, BOX_LIST)

        def run():
            n = 0
            for e in os.scandir(folder):
                e.stat(follow_symlinks=False)
                n += 1
            return n
        R.measure("list-stat", "fs", rep, run, proxied)
    finally:
        R.unmount(m, "list")


def base_read(R, rep, proxied):
    c = R.client(proxied)
    try:
        typ, data = c.select(BOX_READ, readonly=True)
        fetch_ok(typ, data, "SELECT")

        def run():
            typ, data = c.uid("FETCH", "1:*", "(UID BODY.PEEK[])")
            fetch_ok(typ, data, "UID FETCH BODY[]")
            return data
        data = R.measure("read", "base", rep, run, proxied)
        bodies = {}
        for item in data:
            if isinstance(item, tuple):
                bodies[int(re.search(rb"UID (\d+)", item[0]).group(1))] = item[1]
        return bodies
    finally:
        c.logout()


def fs_read(R, rep, proxied, bodies):
    m = R.mount(proxied)
    try:
        folder = os.path.join(m.mp, BOX_READ)
        names = sorted(os.listdir(folder))  # untimed: the listing is measured by "list"
        argv = ["cat", "--"] + names
        R.measure("read", "fs", rep, lambda: R.tool(argv, cwd=folder), proxied)
        R.measure("read-warm", "fs", rep, lambda: R.tool(argv, cwd=folder), proxied)
        if rep == 0 and bodies:
            bad = []
            for n in names:
                with open(os.path.join(folder, n), "rb") as f:
                    got = f.read()
                if bodies.get(uid_of(n)) != got:
                    bad.append(n)
            if bad or len(names) != len(bodies):
                raise Broken("%d of %d files differ from BODY[] (e.g. %r); %d files, %d messages" % (
                    len(bad), len(names), bad[:3], len(names), len(bodies)))
    finally:
        R.unmount(m, "read")


def base_head(R, rep, proxied):
    c = R.client(proxied)
    try:
        typ, data = c.select(BOX_BIG, readonly=True)
        fetch_ok(typ, data, "SELECT")
        typ, data = c.uid("SEARCH", "ALL")
        uid = data[0].split()[-1].decode()

        def run():
            typ, data = c.uid("FETCH", uid, "(BODY.PEEK[]<0.4096>)")
            fetch_ok(typ, data, "UID FETCH partial")
            return data
        data = R.measure("head", "base", rep, run, proxied)
        return next(i[1] for i in data if isinstance(i, tuple))
    finally:
        c.logout()


def fs_head(R, rep, proxied, first):
    m = R.mount(proxied)
    try:
        folder = os.path.join(m.mp, BOX_BIG)
        names = os.listdir(folder)
        if len(names) != 1:
            raise Broken("%s shows %r" % (BOX_BIG, names))
        path = os.path.join(folder, names[0])
        R.measure("head", "fs", rep, lambda: R.tool(["head", "-c", "4096", path]), proxied)
        if rep == 0 and first is not None:
            r = subprocess.run(["head", "-c", "4096", path], stdout=subprocess.PIPE, timeout=TOOL_TIMEOUT)
            if r.stdout != first:
                raise Broken("head -c 4096 of the big message differs from BODY[]<0.4096>")
    finally:
        R.unmount(m, "head")


# ------------------------------------------------------------------------------------
# rawlog: IMAP commands per window
# ------------------------------------------------------------------------------------
CMD_RE = re.compile(rb"^(\d+\.\d+) (\S+) ((?:UID )?[A-Za-z]+)(.*)$")
COMMANDS = set(b"""CAPABILITY NOOP LOGOUT STARTTLS AUTHENTICATE LOGIN SELECT EXAMINE CREATE DELETE
RENAME SUBSCRIBE UNSUBSCRIBE LIST LSUB STATUS APPEND CHECK CLOSE EXPUNGE SEARCH FETCH STORE COPY
MOVE IDLE ENABLE NAMESPACE ID UNSELECT GETQUOTAROOT GETQUOTA COMPRESS NOTIFY SORT THREAD""".split())


def rawlog_commands(d):
    """[(epoch, command text)] of every tagged client command in the rawlog."""
    out = []
    rd = d.rawlog_dir()
    for name in sorted(os.listdir(rd)):
        if not name.endswith(".in"):
            continue
        with open(os.path.join(rd, name), "rb") as f:
            for line in f:
                m = CMD_RE.match(line.rstrip(b"\r\n"))
                if not m:
                    continue
                verb = m.group(3).upper()
                if verb.split()[-1] not in COMMANDS:
                    continue
                out.append((float(m.group(1)), (verb + m.group(4)).decode("utf-8", "replace")))
    return out


def shape(cmd):
    """A command with its numbers generalised, for a per-operation summary."""
    s = re.sub(r"\b\d+\b", "N", cmd)
    return s[:110]


# ------------------------------------------------------------------------------------
# report
# ------------------------------------------------------------------------------------
def fmt_t(s):
    if s is None:
        return "-"
    return "%.0f ms" % (s * 1000) if s >= 0.0995 else "%.1f ms" % (s * 1000)


def fmt_b(n):
    if n is None:
        return "-"
    for unit, div in (("MB", 1e6), ("kB", 1e3)):
        if n >= div:
            return "%.1f %s" % (n / div, unit)
    return "%d B" % n


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def report(R, args, n_list, n_read, big_size, timed_reps):
    ops = [
        ("list", "ls -l %s folder (cold, fresh mount)" % format(n_list, ","), "list", True),
        ("list-warm", "ls -l again, same mount (warm)", "list", False),
        ("list-stat", "readdir+lstat all, no ls (cold)", "list", False),
        ("read", "cat all %s msgs (cold, fresh mount)" % format(n_read, ","), "read", True),
        ("read-warm", "cat all again, same mount (warm)", "read", False),
        ("head", "head -c 4096 of %.0f MB msg" % (big_size / 1e6), "head", False),
    ]

    def ws(op, who, timed=True):
        return [w for w in R.windows if w.op == op and w.who == who and ((w.rep > 0) == timed)]

    details_times = []
    rows = [("operation", "imapfs", "imaplib", "ratio", "target", "imapfs wire c→s / s→c",
             "imaplib s→c", "IMAP cmds")]
    details = []
    for op, label, base_op, has_target in ops:
        fs_w, base_w = ws(op, "fs"), ws(base_op, "base")
        t_fs, t_base = med(w.secs for w in fs_w), med(w.secs for w in base_w)
        # wire bytes: from the timed runs when they went through the proxy, else the warm-up run
        wfs = fs_w if not args.direct else ws(op, "fs", timed=False)
        wb = base_w if not args.direct else ws(base_op, "base", timed=False)
        up, down = med(w.up for w in wfs), med(w.down for w in wfs)
        bdown = med(w.down for w in wb)
        ratio = t_fs / t_base if t_fs is not None and t_base else None
        tgt = ""
        if has_target and ratio is not None:
            tgt = "%s ≤%.1f×" % ("PASS" if ratio <= TARGET else "MISS", TARGET)
        ncmd = med(len(w.cmds) for w in fs_w if w.cmds is not None)
        rows.append((label, fmt_t(t_fs), fmt_t(t_base), "%.2f×" % ratio if ratio is not None else "-", tgt,
                     "%s / %s" % (fmt_b(up), fmt_b(down)), fmt_b(bdown),
                     "%d" % ncmd if ncmd is not None else "-"))
        # command shapes of the median-ish run (the first timed one with commands)
        for w in fs_w[:1]:
            if w.cmds:
                counts = {}
                for c in w.cmds:
                    counts[shape(c)] = counts.get(shape(c), 0) + 1
                top = sorted(counts.items(), key=lambda kv: -kv[1])
                details.append("  %-34s %s" % (label.split(" (")[0] + ":", "; ".join(
                    "%d× %s" % (n, s) for s, n in top[:4]) + ("; ..." if len(top) > 4 else "")))
        all_fs = [w.secs for w in fs_w]
        all_b = [w.secs for w in base_w]
        details_times.append("  %-34s imapfs %s | imaplib %s" % (
            label.split(" (")[0] + ":", " ".join(fmt_t(x) for x in all_fs), " ".join(fmt_t(x) for x in all_b)))

    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    line = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    print()
    print("imapfs benchmark (%s): %s messages in %s, %s in %s, one %.0f MB message; median of %d runs" % (
        "quick" if args.quick else "full", format(n_list, ","), BOX_LIST, format(n_read, ","), BOX_READ,
        big_size / 1e6, timed_reps))
    print(line)
    for i, r in enumerate(rows):
        print("| " + " | ".join(c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(r, widths)))
              + " |")
        if i == 0:
            print(line)
    print(line)
    rss = ", ".join("%s mount %.1f MiB" % (g, max(v) / 1024) for g, v in R.rss.items() if v)
    print("peak RSS of the daemon (VmHWM, max over runs): %s" % (rss or "-"))
    conns = ", ".join("%s %s" % (g, "/".join(str(x) for x in sorted(set(v)))) for g, v in R.conns.items())
    print("IMAP connections imapfs opened per mount: %s" % conns)
    print("IMAP commands imapfs sent during the timed operation (from Dovecot's rawlog):")
    for dline in details:
        print(dline)
    print("all timed runs:")
    for t in details_times:
        print(t)
    print("notes: imapfs logs in at mount, so only the tool is timed; imaplib is timed from an "
          "already logged-in")
    print("  connection (list: SELECT + FETCH; cat/head: FETCH after an untimed SELECT). cat/head "
          "runs list the folder")
    print("  untimed first. %s" % (
          "Timed runs connect directly to Dovecot; wire bytes come from the untimed warm-up run "
          "through the proxy." if args.direct else
          "Both imapfs and imaplib go through the counting proxy (same path, same overhead)."))
    print("  Warm rows compare with the cold imaplib figure (imaplib has no cache). GNU ls -l also calls")
    print("  lgetxattr(security.selinux) + getxattr(system.posix_acl_access) per file, and FUSE passes both to")
    print("  the daemon (2 round trips per file); the readdir+lstat row is the same listing without them.")
    if R.spawn is not None:
        print("  Starting a tool process costs %s here (head -c 4096 /dev/zero), included in the ls/cat/head "
              "figures." % fmt_t(R.spawn))



# ------------------------------------------------------------------------------------
def find_bin(arg, workdir):
    cand = arg or os.environ.get("IMAPFS_BIN") or os.path.join(SRC, "build", "fs", "imapfs")
    if os.access(cand, os.X_OK) and not arg and not os.environ.get("IMAPFS_BIN"):
        # keep an existing meson build current, if there is one
        subprocess.run(["ninja", "-C", os.path.join(SRC, "build")], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    if os.access(cand, os.X_OK):
        return os.path.abspath(cand)
    if arg or os.environ.get("IMAPFS_BIN"):
        raise Broken("imapfs binary %s not executable" % cand)
    log("no build/fs/imapfs: compiling the daemon directly")
    out = os.path.join(workdir, "imapfs")
    cmd = ("gcc -std=c11 -D_GNU_SOURCE -DIMAPFS_VERSION='\"bench\"' -O2 -I. $(pkg-config --cflags fuse3) "
           "imap/*.c cache/*.c fs/*.c -o %s $(pkg-config --libs fuse3 openssl) -lpthread" % out)
    r = subprocess.run(cmd, shell=True, cwd=SRC, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        raise Broken("could not build imapfs:\n" + r.stdout.decode(errors="replace")[-3000:])
    return out


def exit_status(prog, e):
    """The exit status of a benchmark that ended with exception e, after saying why (a
    SystemExit with a non-integer code goes on up)."""
    if isinstance(e, Broken):
        print("%s: %s" % (prog, e), file=sys.stderr)
        return 1
    if isinstance(e, SystemExit) and not isinstance(e.code, int):
        raise e
    if isinstance(e, (KeyboardInterrupt, SystemExit)):
        print("%s: interrupted (%s), cleaning up" % (prog, type(e).__name__), file=sys.stderr)
    else:
        import traceback
        traceback.print_exc()
    return e.code if isinstance(e, SystemExit) else (130 if isinstance(e, KeyboardInterrupt) else 1)


def clean_up(prog, workdir, failures, proxy, d, keep):
    """Prints the failures, unmounts and kills what is left of the mount, stops the proxy and
    Dovecot, removes workdir (never through a mount). Returns 1 if anything failed, else 0."""
    rc = 0
    if failures:
        print("\nFAILURES:", file=sys.stderr)
        for f in failures:
            print("  " + f, file=sys.stderr)
        rc = 1
    mp = os.path.join(workdir, "mnt")
    if I.is_mounted(mp):
        subprocess.run(["fusermount3", "-uz", mp], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for pid in I.pids_for_mountpoint(mp):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    if proxy is not None:
        proxy.stop()
    if d is not None:
        try:
            d.stop() if keep else d.cleanup()
        except Exception as e:  # noqa: BLE001
            print("%s: stopping dovecot: %s" % (prog, e), file=sys.stderr)
            rc = 1
    if keep:
        print("work directory kept: %s (dovecot: %s)" % (workdir, d and d.dir), file=sys.stderr)
    elif not I.is_mounted(mp):
        subprocess.run(["rm", "-rf", "--one-file-system", workdir])
    return rc


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="2,000 / 300 messages")
    ap.add_argument("--reps", type=int, default=3, help="timed runs per operation (median)")
    ap.add_argument("--direct", action="store_true",
                    help="time without the proxy (bytes then come from the warm-up run)")
    ap.add_argument("--bin", help="imapfs binary (default $IMAPFS_BIN or build/fs/imapfs)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (daemon logs)")
    args = ap.parse_args()
    n_list, n_read = (2000, 300) if args.quick else (10000, 1000)

    def on_term(signum, frame):
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)

    workdir = tempfile.mkdtemp(prefix="ifsb", dir="/tmp")
    os.chmod(workdir, 0o755)
    d = proxy = None
    R = None
    rc = 0
    try:
        os.environ["IMAPFS_BIN"] = find_bin(args.bin, workdir)
        log("daemon: %s" % os.environ["IMAPFS_BIN"])
        d = D.Dovecot(rawlog=True)
        d.start()
        log("dovecot in %s, imaps port %d" % (d.dir, d.imaps_port))
        big_size = load(d, n_list, n_read)
        proxy = P.Proxy(d.imaps_port).start()
        R = Runner(d, proxy, args.direct, workdir)

        spawn = []
        for _ in range(5):
            t = time.perf_counter()
            R.tool(["head", "-c", "4096", "/dev/zero"])
            spawn.append(time.perf_counter() - t)
        R.spawn = statistics.median(spawn)
        steps = [("list", base_list, fs_list), ("list-stat", None, fs_list_stat), ("read", base_read, fs_read), ("head", base_head, fs_head)]
        ref = {}
        for rep in range(args.reps + 1):
            timed = rep > 0
            proxied = (not args.direct) or not timed
            log("round %d%s" % (rep, " (warm-up, checks bytes)" if rep == 0 else ""))
            for name, base_fn, fs_fn in steps:
                try:
                    # alternate who goes first; round 0: imaplib first (warms Dovecot's caches)
                    order = ["base", "fs"] if rep % 2 == 0 else ["fs", "base"]
                    for who in order:
                        if who == "base" and base_fn is None:
                            continue
                        if who == "base":
                            r = base_fn(R, rep, proxied)
                            if rep == 0:
                                ref[name] = r
                        else:
                            fs_fn(R, rep, proxied, ref.get(name) if rep == 0 else None)
                except Exception as e:  # noqa: BLE001  (recorded; the other steps still run)
                    R.failures.append("%s, round %d: %s" % (name, rep, e))
                    log("FAILED: %s" % R.failures[-1])

        time.sleep(0.2)
        cmds = rawlog_commands(d)
        for w in R.windows:
            if w.who == "fs":
                w.cmds = [c for ts, c in cmds if w.t0 <= ts <= w.t1 + 0.001]
        report(R, args, n_list, n_read, big_size, args.reps)
    except BaseException as e:  # noqa: BLE001  (KeyboardInterrupt, SystemExit: clean up first)
        rc = exit_status("bench", e)
    finally:
        cleaned = clean_up("bench", workdir, R.failures if R is not None else [], proxy, d,
                        args.keep)
        rc = rc or cleaned
    return rc


if __name__ == "__main__":
    sys.exit(main())
