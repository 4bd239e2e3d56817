#!/usr/bin/python3
"""imapfs write-path benchmark: mv, rm and cp through the mount against python3 imaplib
doing the same work in batched commands.

    /usr/bin/python3 tests/bench/bench_write.py [--quick] [--reps N] [--bin PATH] [--keep]

One invocation starts a throwaway Dovecot (tests/integration/dovecot.py, rawlog on, a
\\Trash special-use folder "Trash"), loads deterministic mail (tests/bench/bench.py's
generator, MULTIAPPEND + LITERAL+ on one connection) and measures, each imapfs run on a
fresh mount (`imapfs -f` in a background process):

  mv MoveSrc/*.eml MoveDst/   (1,000 messages; both folders listed untimed first)
        vs  SELECT + UID MOVE 1:* MoveDst
  rm RmSrc/*.eml              (1,000 messages) with the default trash (the server's \\Trash:
        each rm is a UID MOVE to Trash), and with -o trash=none (each rm is UID STORE
        +FLAGS.SILENT (\\Deleted) + UID EXPUNGE)
        vs  SELECT + UID STORE 1:* +FLAGS.SILENT (\\Deleted) + UID EXPUNGE 1:*
        and SELECT + UID MOVE 1:* Trash
  cp 200 local .eml files into CpDst (one APPEND per file, on close)
        vs  200 imaplib APPENDs (synchronizing literal), 200 APPENDs with LITERAL+,
            and one MULTIAPPEND of all 200 (if the server offers MULTIAPPEND)

Every run moves/removes/appends the full set: the data is put back between runs (moved
back, or reloaded). After each run an independent imaplib connection checks the server
(every message exactly once in the target, none left in the source, flags and sizes or
bytes unchanged) and, for imapfs, the mount's own listing. Dovecot's rawlog gives the
IMAP commands and round trips inside each timed window. --quick: 200 / 200 / 50 messages,
one repetition. There is no pass/fail target; the exit status is non-zero only if
something broke (a mount, a tool, a check). Stdlib only.
"""

import argparse
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
sys.path.insert(0, HERE)

import dovecot as D  # noqa: E402
import imapfs as I  # noqa: E402
import mailgen as G  # noqa: E402
import bench as B  # noqa: E402

UTC = datetime.timezone.utc
BOX_MSRC = "MoveSrc"
BOX_MDST = "MoveDst"
BOX_RM = "RmSrc"
BOX_CP = "CpDst"
BOX_TRASH = "Trash"
TOOL_TIMEOUT = 180
ENV = dict(os.environ, LC_ALL="C.UTF-8")
Broken = B.Broken
T0 = time.monotonic()


def log(*a):
    print("[bench_write %6.1fs]" % (time.monotonic() - T0), *a, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------
# server state: load, check, reset (all on an independent plain-text imaplib connection)
# ------------------------------------------------------------------------------------
MSGID_RE = re.compile(rb"Message-ID:\s*(<[^>]+>)", re.I)


def msgid_of(raw):
    return MSGID_RE.search(raw).group(1).decode()


def norm_flags(flags):
    return tuple(sorted(f for f in flags if f.lower() != "\\recent"))


class Server:
    def __init__(self, d):
        self.d = d

    def admin(self):
        return self.d.client(plain=True)  # no TLS needed for setup and checks

    def count(self, c, box):
        typ, data = c.status(box, "(MESSAGES)")
        if typ != "OK":
            raise Broken("STATUS %s: %r" % (box, data))
        return int(re.search(rb"MESSAGES (\d+)", data[0]).group(1))

    def contents(self, c, box, bodies=False):
        """[(message-id, flags tuple, size, body or None)] of every message in box."""
        n = D.select(c, box, readonly=True)
        if n == 0:
            return []
        items = "(UID FLAGS RFC822.SIZE %s)" % (
            "BODY.PEEK[]" if bodies else "BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]")
        typ, data = c.uid("FETCH", "1:*", items)
        if typ != "OK":
            raise Broken("UID FETCH in %s: %r" % (box, data))
        out = []
        for item in data:
            if not isinstance(item, tuple):
                continue
            head, lit = item
            flags = re.search(rb"FLAGS \(([^)]*)\)", head).group(1).decode().split()
            size = int(re.search(rb"RFC822\.SIZE (\d+)", head).group(1))
            m = MSGID_RE.search(lit)
            out.append((m.group(1).decode() if m else None, norm_flags(flags), size, lit if bodies else None))
        c.close()
        return out

    def leftovers(self, c, box):
        """"N messages left behind (e.g. <id> UID u FLAGS (...))" or None if box is empty."""
        n = self.count(c, box)
        if not n:
            return None
        D.select(c, box, readonly=True)
        typ, data = c.uid("FETCH", "1:*", "(UID FLAGS BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
        c.close()
        ex = []
        for item in data if typ == "OK" else []:
            if isinstance(item, tuple) and len(ex) < 3:
                m = MSGID_RE.search(item[1])
                ex.append("%s UID %s FLAGS (%s)" % (
                    m.group(1).decode() if m else "?", re.search(rb"UID (\d+)", item[0]).group(1).decode(),
                    re.search(rb"FLAGS \(([^)]*)\)", item[0]).group(1).decode()))
        return "%s: %d messages left behind (e.g. %s)" % (box, n, "; ".join(ex))

    def empty(self, c, box):
        if D.select(c, box, readonly=False) > 0:
            c.uid("STORE", "1:*", "+FLAGS.SILENT", r"(\Deleted)")
            c.uid("EXPUNGE", "1:*")
        c.close()

    def move_all(self, c, src, dst):
        if D.select(c, src, readonly=False) > 0:
            typ, data = c.uid("MOVE", "1:*", dst)
            if typ != "OK":
                raise Broken("UID MOVE %s → %s: %r" % (src, dst, data))
        c.close()

    def load(self, c, box, msgs):
        G.multiappend(c, box, msgs)
        n = self.count(c, box)
        if n != len(msgs):
            raise Broken("loaded %d messages into %s, wanted %d" % (n, box, len(msgs)))


def check_set(got, msgs, box, check_flags=True, bodies=False):
    """Problems (strings) if got (Server.contents) is not exactly msgs, once each."""
    want = {msgid_of(m.raw): m for m in msgs}
    seen = {}
    problems = []
    for mid, flags, size, body in got:
        if mid not in want:
            problems.append("%s: unexpected message %s" % (box, mid))
            continue
        seen[mid] = seen.get(mid, 0) + 1
        m = want[mid]
        if check_flags and flags != norm_flags(m.flags):
            problems.append("%s: %s flags %s, wanted %s" % (box, mid, " ".join(flags) or "()",
                                                             " ".join(norm_flags(m.flags)) or "()"))
        if size != len(m.raw):
            problems.append("%s: %s size %d, wanted %d" % (box, mid, size, len(m.raw)))
        if bodies and body != m.raw:
            problems.append("%s: %s bytes differ from the file" % (box, mid))
    dup = [k for k, v in seen.items() if v > 1]
    missing = [k for k in want if k not in seen]
    if dup:
        problems.append("%s: %d messages more than once (e.g. %s)" % (box, len(dup), dup[0]))
    if missing:
        problems.append("%s: %d of %d messages missing (e.g. %s)" % (box, len(missing), len(want), missing[0]))
    return problems


# ------------------------------------------------------------------------------------
# measuring
# ------------------------------------------------------------------------------------
class Run:
    """One timed operation: its wall-clock window (for the rawlog) and outcome."""

    def __init__(self, case, who, rep):
        self.case, self.who, self.rep = case, who, rep
        self.t0 = self.t1 = None
        self.secs = None
        self.problems = []
        self.cmds = None      # [(ts, session, tag, text)] filled from the rawlog at the end
        self.rts = None       # serial round trips (see rawlog_stats)
        self.sessions = None  # connections that carried commands


class Bench:
    def __init__(self, d, workdir):
        self.d = d
        self.srv = Server(d)
        self.workdir = workdir
        self.runs = []
        self.failures = []
        self.nmount = 0

    def timed(self, case, who, rep, fn):
        r = Run(case, who, rep)
        time.sleep(0.02)  # keeps the rawlog windows apart
        r.t0 = time.time()
        p0 = time.perf_counter()
        fn()
        r.secs = time.perf_counter() - p0
        r.t1 = time.time()
        self.runs.append(r)
        return r

    def tool(self, argv, cwd=None, input=None):
        p = subprocess.run(argv, input=input, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=cwd, env=ENV,
                           timeout=TOOL_TIMEOUT)
        if p.returncode != 0:
            raise Broken("%s exited %d: %s" % (argv[0], p.returncode, p.stderr.decode(errors="replace")[:500]))

    def mount(self, extra_opts=None):
        self.nmount += 1
        wd = os.path.join(self.workdir, "m%d" % self.nmount)
        os.makedirs(wd)
        opts = {"cafile": self.d.cafile, "password_file": self.d.password_file, "cache": "no"}
        opts.update(extra_opts or {})
        m = I.Mount("imaps://%s@127.0.0.1:%d" % (self.d.user, self.d.imaps_port),
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
        c = imaplib.IMAP4_SSL("127.0.0.1", self.d.imaps_port, ssl_context=self.d.ssl_context(), timeout=120)
        c.login(self.d.user, self.d.password)
        return c


def xargs(par, n, cmd):
    """par processes at once, each with an equal share of the n NUL-separated names."""
    return ["xargs", "-0", "-P", str(par), "-n", str(-(-n // par))] + cmd


def mount_view(folder, expect_n):
    """Problems with the mount's own listing after the operation."""
    names = os.listdir(folder)
    bad = [n for n in names if B.uid_of(n) is None]
    out = []
    if len(names) != expect_n:
        out.append("mount lists %d files in %s, wanted %d%s" % (
            len(names), os.path.basename(folder), expect_n, " (e.g. %r)" % sorted(names)[:2] if not expect_n else ""))
    if bad:
        out.append("mount lists %d names without [UID] in %s (e.g. %r)" % (len(bad), os.path.basename(folder),
                                                                           bad[0]))
    return out


# ------------------------------------------------------------------------------------
# the cases: each leaves the server as it found it
# ------------------------------------------------------------------------------------
class Cases:
    def __init__(self, bench, move_msgs, rm_msgs, cp_msgs, cp_dir):
        self.b = bench
        self.srv = bench.srv
        self.move_msgs, self.rm_msgs, self.cp_msgs = move_msgs, rm_msgs, cp_msgs
        self.cp_dir = cp_dir
        self.cp_files = sorted(os.listdir(cp_dir))

    # -- mv -----------------------------------------------------------------------------
    def _after_move(self, r):
        c = self.srv.admin()
        try:
            r.problems += check_set(self.srv.contents(c, BOX_MDST), self.move_msgs, BOX_MDST)
            left = self.srv.leftovers(c, BOX_MSRC)
            if left:
                r.problems.append(left)
            self.srv.move_all(c, BOX_MDST, BOX_MSRC)  # put the data back for the next run
            if self.srv.count(c, BOX_MSRC) != len(self.move_msgs) or self.srv.count(c, BOX_MDST):
                raise Broken("could not move the messages back to %s" % BOX_MSRC)
        finally:
            c.logout()

    def fs_move(self, rep, par=0):
        case = "mv-p%d" % par if par else "mv"
        m = self.b.mount()
        try:
            src, dst = os.path.join(m.mp, BOX_MSRC), os.path.join(m.mp, BOX_MDST)
            names = sorted(os.listdir(src))  # untimed: listing both folders
            os.listdir(dst)
            if len(names) != len(self.move_msgs):
                raise Broken("mount lists %d files in %s, server has %d" % (len(names), BOX_MSRC,
                                                                            len(self.move_msgs)))
            if par:
                argv, inp = xargs(par, len(names), ["mv", "-t", dst + "/", "--"]), b"\0".join(
                    n.encode() for n in names)
            else:
                argv, inp = ["mv", "--"] + names + [dst + "/"], None
            r = self.b.timed(case, "fs", rep, lambda: self.b.tool(argv, cwd=src, input=inp))
            r.problems += mount_view(src, 0) + mount_view(dst, len(self.move_msgs))
        finally:
            self.b.unmount(m, case)
        self._after_move(r)

    def base_move(self, rep):
        c = self.b.client()
        try:
            def run():
                D.select(c, BOX_MSRC, readonly=False)
                typ, data = c.uid("MOVE", "1:*", BOX_MDST)
                if typ != "OK":
                    raise Broken("UID MOVE: %r" % data)
            r = self.b.timed("mv", "base", rep, run)
        finally:
            c.logout()
        self._after_move(r)

    # -- rm -----------------------------------------------------------------------------
    def _before_rm(self):
        c = self.srv.admin()
        try:
            if self.srv.count(c, BOX_RM) != len(self.rm_msgs):
                self.srv.empty(c, BOX_RM)
                self.srv.load(c, BOX_RM, self.rm_msgs)
            if self.srv.count(c, BOX_TRASH):
                self.srv.empty(c, BOX_TRASH)
        finally:
            c.logout()

    def _after_rm(self, r, to_trash):
        c = self.srv.admin()
        try:
            left = self.srv.leftovers(c, BOX_RM)
            if left:
                r.problems.append(left)
            if to_trash:
                r.problems += check_set(self.srv.contents(c, BOX_TRASH), self.rm_msgs, BOX_TRASH)
                self.srv.move_all(c, BOX_TRASH, BOX_RM)  # reuse the data for the next run
            else:
                n = self.srv.count(c, BOX_TRASH)
                if n:
                    r.problems.append("%s: %d messages (expected none with expunge)" % (BOX_TRASH, n))
        finally:
            c.logout()

    def fs_rm(self, rep, trash_none, par=0):
        case = ("rm-none" if trash_none else "rm-trash") + ("-p%d" % par if par else "")
        self._before_rm()
        m = self.b.mount({"trash": "none"} if trash_none else None)
        try:
            src = os.path.join(m.mp, BOX_RM)
            names = sorted(os.listdir(src))  # untimed
            if len(names) != len(self.rm_msgs):
                raise Broken("mount lists %d files in %s, server has %d" % (len(names), BOX_RM, len(self.rm_msgs)))
            if par:
                argv, inp = xargs(par, len(names), ["rm", "--"]), b"\0".join(n.encode() for n in names)
            else:
                argv, inp = ["rm", "--"] + names, None
            r = self.b.timed(case, "fs", rep, lambda: self.b.tool(argv, cwd=src, input=inp))
            r.problems += mount_view(src, 0)
        finally:
            self.b.unmount(m, case)
        self._after_rm(r, not trash_none)

    def base_rm_expunge(self, rep):
        self._before_rm()
        c = self.b.client()
        try:
            def run():
                D.select(c, BOX_RM, readonly=False)
                typ, data = c.uid("STORE", "1:*", "+FLAGS.SILENT", r"(\Deleted)")
                if typ != "OK":
                    raise Broken("UID STORE: %r" % data)
                typ, data = c.uid("EXPUNGE", "1:*")
                if typ != "OK":
                    raise Broken("UID EXPUNGE: %r" % data)
            r = self.b.timed("rm-expunge", "base", rep, run)
        finally:
            c.logout()
        self._after_rm(r, False)

    def base_rm_move(self, rep):
        self._before_rm()
        c = self.b.client()
        try:
            def run():
                D.select(c, BOX_RM, readonly=False)
                typ, data = c.uid("MOVE", "1:*", BOX_TRASH)
                if typ != "OK":
                    raise Broken("UID MOVE: %r" % data)
            r = self.b.timed("rm-move", "base", rep, run)
        finally:
            c.logout()
        self._after_rm(r, True)

    # -- cp -----------------------------------------------------------------------------
    def _after_cp(self, r):
        c = self.srv.admin()
        try:
            r.problems += check_set(self.srv.contents(c, BOX_CP, bodies=True), self.cp_msgs, BOX_CP, bodies=True)
            self.srv.empty(c, BOX_CP)
        finally:
            c.logout()

    def fs_cp(self, rep):
        m = self.b.mount()
        try:
            dst = os.path.join(m.mp, BOX_CP)
            if os.listdir(dst):  # untimed: the target folder is listed first
                raise Broken("%s is not empty before cp" % BOX_CP)
            argv = ["cp", "--"] + self.cp_files + [dst + "/"]
            r = self.b.timed("cp", "fs", rep, lambda: self.b.tool(argv, cwd=self.cp_dir))
            r.problems += mount_view(dst, len(self.cp_msgs))
        finally:
            self.b.unmount(m, "cp")
        self._after_cp(r)

    def base_cp(self, rep, how):
        c = self.b.client()
        try:
            if how == "multi":
                typ, data = c.capability()
                if typ != "OK" or b"MULTIAPPEND" not in data[0].upper().split():
                    return
            box = D.imap_quote(BOX_CP)

            def run():
                if how == "sync":  # imaplib's own append: synchronizing literal, 2 round trips
                    for m in self.cp_msgs:
                        typ, data = c.append(box, None, None, m.raw)
                        if typ != "OK":
                            raise Broken("APPEND: %r" % data)
                else:  # LITERAL+: one APPEND per message, or all in one MULTIAPPEND
                    G.multiappend(c, BOX_CP, self.cp_msgs, chunk=1 if how == "plus" else len(self.cp_msgs))
            r = self.b.timed("cp-" + how, "base", rep, run)
        finally:
            c.logout()
        self._after_cp(r)


# ------------------------------------------------------------------------------------
# rawlog: commands and round trips per window (literals skipped, so message bodies
# never count as commands)
# ------------------------------------------------------------------------------------
TS_RE = re.compile(rb"^(\d+\.\d+) ")
LIT_RE = re.compile(rb"\{(\d+)\+?\}\r?\n$")
TAGGED_RE = re.compile(rb"^(\S+) (OK|NO|BAD)\b")


def _split(path):
    with open(path, "rb") as f:
        data = f.read()
    for line in data.splitlines(keepends=True):
        m = TS_RE.match(line)
        if m:
            yield float(m.group(1)), line[m.end():]
        else:
            yield None, line


def rawlog_sessions(d):
    """{session: (commands [(ts, tag, text)], completions {tag: ts}, continuations [ts])}."""
    out = {}
    rd = d.rawlog_dir()
    for name in sorted(os.listdir(rd)):
        if not name.endswith(".in"):
            continue
        sess = name[:-3]
        cmds = []
        lit = 0          # literal bytes still to skip
        mode = "new"     # "new": next line starts a command; "cont": rest of a command line
        for ts, line in _split(os.path.join(rd, name)):
            if lit:
                if len(line) <= lit:
                    lit -= len(line)
                    if lit == 0:
                        mode = "cont"
                    continue
                line = line[lit:]
                lit = 0
                mode = "cont"
            if mode == "new" and ts is not None:
                p = line.rstrip(b"\r\n").split(b" ", 2)
                if len(p) >= 2:
                    verb = p[1].upper()
                    if verb == b"UID" and len(p) > 2:
                        verb = b"UID " + p[2].split(b" ", 1)[0].upper()
                    if verb.split()[-1] in B.COMMANDS:
                        cmds.append((ts, p[0].decode("utf-8", "replace"),
                                     line.split(b" ", 1)[1].rstrip(b"\r\n").decode("utf-8", "replace")))
            m = LIT_RE.search(line)
            if m:
                lit = int(m.group(1))
                mode = "lit"
            else:
                mode = "new"
        done, conts = {}, []
        outp = os.path.join(rd, sess + ".out")
        if os.path.exists(outp):
            for ts, line in _split(outp):
                if ts is None:
                    continue
                if line.startswith(b"+"):
                    conts.append(ts)
                    continue
                m = TAGGED_RE.match(line)
                if m:
                    done[m.group(1).decode("utf-8", "replace")] = ts
        out[sess] = (cmds, done, conts)
    return out


def attribute(runs, sessions):
    """Sets run.cmds / run.rts / run.sessions. A round trip is a command sent while none
    of that connection's commands was outstanding, or a literal the client held back
    until the server's continuation ("+") arrived. Pipelined commands add none."""
    for r in runs:
        # Dovecot logs a command when it reads it: before the reply that ended the window.
        # (No slack after t1: imaplib's LOGOUT follows within a millisecond.)
        lo, hi = r.t0, r.t1
        r.cmds, r.rts, used = [], 0, set()
        for sess, (cmds, done, conts) in sessions.items():
            busy_until = None
            for ts, tag, text in cmds:
                if not lo <= ts <= hi:
                    continue
                r.cmds.append((ts, sess, tag, text))
                used.add(sess)
                if busy_until is None or ts >= busy_until:
                    r.rts += 1
                end = done.get(tag)
                if end is not None:
                    busy_until = end if busy_until is None or ts >= busy_until else max(busy_until, end)
            r.rts += sum(1 for t in conts if lo <= t <= hi)
        r.cmds.sort()
        r.sessions = len(used)


# ------------------------------------------------------------------------------------
# report
# ------------------------------------------------------------------------------------
fmt_t = B.fmt_t
med = B.med


def shapes(cmds, top=5):
    counts = {}
    for _, _, _, text in cmds:
        # numbers generalised to N, except a whole-folder 1:* (a full listing)
        s = B.shape(text.replace("1:*", "\0")).replace("\0", "1:*")
        s = re.sub(r'\{N\+?\}', "{N}", s)
        s = re.sub(r'"N-[A-Z][a-z]{2}-N N:N:N [+-]N"', '"DATE"', s)
        counts[s] = counts.get(s, 0) + 1
    items = sorted(counts.items(), key=lambda kv: -kv[1])
    return "; ".join("%d× %s" % (n, s) for s, n in items[:top]) + ("; ..." if len(items) > top else "")


def report(bench, args, n_mv, n_rm, n_cp, reps):
    groups = [
        ("mv", "mv %s msgs MoveSrc→MoveDst" % format(n_mv, ","), n_mv,
         [("mv", "SELECT + UID MOVE 1:* MoveDst")]),
        ("mv-p4", "  same, 4 mv at once (xargs -P4)", n_mv,
         [("mv", "SELECT + UID MOVE 1:* MoveDst")]),
        ("rm-trash", "rm %s msgs (default: \\Trash)" % format(n_rm, ","), n_rm,
         [("rm-expunge", "SELECT + UID STORE 1:* +FLAGS.SILENT (\\Deleted) + UID EXPUNGE 1:*"),
          ("rm-move", "SELECT + UID MOVE 1:* Trash")]),
        ("rm-trash-p4", "  same, 4 rm at once (xargs -P4)", n_rm,
         [("rm-move", "SELECT + UID MOVE 1:* Trash")]),
        ("rm-none", "rm %s msgs (-o trash=none)" % format(n_rm, ","), n_rm,
         [("rm-expunge", "SELECT + UID STORE 1:* +FLAGS.SILENT (\\Deleted) + UID EXPUNGE 1:*")]),
        ("cp", "cp %s msgs into CpDst" % format(n_cp, ","), n_cp,
         [("cp-sync", "%d× APPEND, imaplib (sync literal)" % n_cp),
          ("cp-plus", "%d× APPEND, LITERAL+" % n_cp),
          ("cp-multi", "1 MULTIAPPEND of %d, LITERAL+" % n_cp)]),
    ]

    def runs(case, who):
        return [r for r in bench.runs if r.case == case and r.who == who]

    def checks(rs):
        if not rs:
            return "-"
        bad = sum(1 for r in rs if r.problems)
        return "ok %d/%d" % (len(rs) - bad, len(rs)) if not bad else "FAIL %d/%d" % (bad, len(rs))

    head = ("imapfs operation", "imapfs", "per file", "cmds", "cmds/file", "RTs/file", "conns", "check",
            "imaplib baseline", "imaplib", "cmds", "RTs", "check", "imapfs/imaplib")
    rows = [head]
    details, alltimes = [], []
    for case, label, n, bases in groups:
        fs = runs(case, "fs")
        t_fs = med(r.secs for r in fs)
        ncmd = med(len(r.cmds) for r in fs)
        nrts = med(r.rts for r in fs)
        conns = sorted(set(r.sessions for r in fs))
        for i, (bcase, blabel) in enumerate(bases):
            bs = runs(bcase, "base")
            t_b = med(r.secs for r in bs)
            ratio = "%.1f×" % (t_fs / t_b) if t_fs is not None and t_b else "-"
            bc, brt = med(len(r.cmds) for r in bs), med(r.rts for r in bs)
            if i == 0:
                fcols = (label, fmt_t(t_fs), fmt_t(t_fs / n) if t_fs is not None else "-",
                         "%d" % ncmd if ncmd is not None else "-",
                         "%.2f" % (ncmd / n) if ncmd is not None else "-",
                         "%.2f" % (nrts / n) if nrts is not None else "-",
                         "/".join(str(x) for x in conns) or "-", checks(fs))
            else:
                fcols = ("",) + ("″",) * 7
            if not bs:
                blabel += " (not offered)"
            rows.append(fcols + (blabel, fmt_t(t_b), "%d" % bc if bc is not None else "-",
                                 "%d" % brt if brt is not None else "-", checks(bs), ratio))
        if fs and fs[0].cmds:
            details.append("  %-28s %s" % (label + ":", shapes(fs[0].cmds)))
        alltimes.append("  %-28s %s" % (label + ":", " ".join(fmt_t(r.secs) for r in fs)))
    for bcase, blabel in sorted({b for g in groups for b in g[3]}):
        bs = runs(bcase, "base")
        if bs:
            alltimes.append("  %-28s %s" % ("imaplib " + bcase + ":", " ".join(fmt_t(r.secs) for r in bs)))

    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    line = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    print()
    print("imapfs write benchmark (%s): mv %s, rm %s, cp %s messages; median of %d run%s; "
          "every run on a fresh mount / fresh data" % (
              "quick" if args.quick else "full", format(n_mv, ","), format(n_rm, ","), format(n_cp, ","),
              reps, "" if reps == 1 else "s"))
    print(line)
    for i, r in enumerate(rows):
        print("| " + " | ".join(c.ljust(w) if j in (0, 8) else c.rjust(w)
                                for j, (c, w) in enumerate(zip(r, widths))) + " |")
        if i == 0:
            print(line)
    print(line)
    print("IMAP commands imapfs sent during the timed operation (first run, from Dovecot's rawlog):")
    for dl in details:
        print(dl)
    print("all timed runs:")
    for t in alltimes:
        print(t)
    probs = [(r, p) for r in bench.runs for p in r.problems]
    if probs:
        print("check problems:")
        for r, p in probs[:20]:
            print("  %s %s run %d: %s" % (r.who, r.case, r.rep + 1, p))
        if len(probs) > 20:
            print("  ... %d more" % (len(probs) - 20))
    print("notes: RTs = round trips: commands sent while none of that connection's commands was")
    print("  outstanding, plus synchronizing literals (\"+\" awaited). conns = connections that carried the")
    print("  timed commands. imapfs logs in at mount and the folders are listed untimed first; imaplib is")
    print("  timed from a logged-in TLS connection, SELECT included. Both connect directly to Dovecot (imaps).")
    print("  One mv/rm/cp process issues one syscall per file, each answered after the server replied.")


# ------------------------------------------------------------------------------------
def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="200 / 200 / 50 messages, one run")
    ap.add_argument("--reps", type=int, help="timed runs per figure (default 3, --quick 1)")
    ap.add_argument("--bin", help="imapfs binary (default $IMAPFS_BIN or build/fs/imapfs)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (daemon logs, rawlog)")
    ap.add_argument("--colliding-names", action="store_true",
                    help="keep bench.py's subjects (several messages a day share one), so that "
                         "names of different messages can collide in the target folder of mv")
    args = ap.parse_args()
    n_mv, n_rm, n_cp = (200, 200, 50) if args.quick else (1000, 1000, 200)
    reps = args.reps or (1 if args.quick else 3)

    def on_term(signum, frame):
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)

    workdir = tempfile.mkdtemp(prefix="ifsw", dir="/tmp")
    os.chmod(workdir, 0o755)
    d = bench = None
    rc = 0
    try:
        os.environ["IMAPFS_BIN"] = B.find_bin(args.bin, workdir)
        log("daemon: %s" % os.environ["IMAPFS_BIN"])
        d = D.Dovecot(rawlog=True, special_use={BOX_TRASH: "\\Trash"})
        d.start()
        log("dovecot in %s, imaps port %d" % (d.dir, d.imaps_port))
        bench = Bench(d, workdir)

        t = time.monotonic()
        move_msgs = B.gen_messages(n_mv, BOX_MSRC, "move")
        rm_msgs = B.gen_messages(n_rm, BOX_RM, "rm")
        now = datetime.datetime.now(UTC).replace(microsecond=0)
        cp_msgs = [G.Msg(m.key, BOX_CP, m.raw, None, None, now, []) for m in B.gen_messages(n_cp, BOX_CP, "cp")]
        for k, m in enumerate(move_msgs + rm_msgs + cp_msgs):
            # bench.py's generator can start a body slice inside a CRLF; the server stores
            # a bare LF as CRLF, so make the data what the server will hold.
            m.raw = re.sub(rb"(?<!\r)\n", b"\r\n", m.raw)
            if not args.colliding_names:
                # Unique subjects: with several messages a day sharing a subject, a moved
                # message's new name "DATE SUBJECT [NEWUID].eml" can equal a later source
                # file's name, and mv of that file then fails with EEXIST (see README.md).
                m.raw = re.sub(rb"^(Subject: [^\r\n]*)", lambda x: x.group(1) + b" #%d" % k, m.raw,
                               count=1, flags=re.M)
        cp_dir = os.path.join(workdir, "cpsrc")
        os.makedirs(cp_dir)
        for k, m in enumerate(cp_msgs):
            with open(os.path.join(cp_dir, "msg-%04d.eml" % k), "wb") as f:
                f.write(m.raw)
        c = bench.srv.admin()
        try:
            for box in (BOX_MSRC, BOX_MDST, BOX_RM, BOX_CP, BOX_TRASH):
                typ, data = c.create(box)
                if typ != "OK":
                    raise Broken("CREATE %s: %r" % (box, data))
            bench.srv.load(c, BOX_MSRC, move_msgs)
            bench.srv.load(c, BOX_RM, rm_msgs)
            if not any(name == BOX_TRASH and "\\Trash" in flags for flags, _, name in D.list_mailboxes(c)):
                raise Broken("%s has no \\Trash attribute in LIST" % BOX_TRASH)
        finally:
            c.logout()
        log("loaded %d + %d messages, %d files to cp (%.1f MB) in %.1fs" % (
            n_mv, n_rm, n_cp, sum(len(m.raw) for m in move_msgs + rm_msgs + cp_msgs) / 1e6,
            time.monotonic() - t))

        cases = Cases(bench, move_msgs, rm_msgs, cp_msgs, cp_dir)
        steps = [
            ("mv", [("fs", cases.fs_move), ("fs", lambda rep: cases.fs_move(rep, 4)), ("base", cases.base_move)]),
            ("rm", [("fs", lambda rep: cases.fs_rm(rep, False)), ("fs", lambda rep: cases.fs_rm(rep, False, 4)),
                    ("fs", lambda rep: cases.fs_rm(rep, True)),
                    ("base", cases.base_rm_expunge), ("base", cases.base_rm_move)]),
            ("cp", [("fs", cases.fs_cp), ("base", lambda rep: cases.base_cp(rep, "sync")),
                    ("base", lambda rep: cases.base_cp(rep, "plus")),
                    ("base", lambda rep: cases.base_cp(rep, "multi"))]),
        ]
        for rep in range(reps):
            log("round %d of %d" % (rep + 1, reps))
            for name, fns in steps:
                # alternate who goes first
                order = fns if rep % 2 == 0 else [f for f in fns if f[0] == "base"] + [f for f in fns if f[0] == "fs"]
                for who, fn in order:
                    try:
                        fn(rep)
                    except Exception as e:  # noqa: BLE001  (recorded; the other steps still run)
                        bench.failures.append("%s (%s), round %d: %s" % (name, who, rep + 1, e))
                        log("FAILED: %s" % bench.failures[-1])
                        # the next run starts from known data
                        c = bench.srv.admin()
                        try:
                            for box in (BOX_MDST, BOX_TRASH):
                                bench.srv.move_all(c, box, BOX_MSRC if box == BOX_MDST else BOX_RM)
                            bench.srv.empty(c, BOX_CP)
                        finally:
                            c.logout()

        time.sleep(0.2)
        attribute(bench.runs, rawlog_sessions(d))
        report(bench, args, n_mv, n_rm, n_cp, reps)
        for r in bench.runs:
            if r.problems:
                bench.failures.append("%s %s run %d: %d check problem(s), e.g. %s" % (
                    r.who, r.case, r.rep + 1, len(r.problems), r.problems[0]))
    except BaseException as e:  # noqa: BLE001  (KeyboardInterrupt, SystemExit: clean up first)
        rc = B.exit_status("bench_write", e)
    finally:
        cleaned = B.clean_up("bench_write", workdir, bench.failures if bench is not None else [], None, d,
                        args.keep)
        rc = rc or cleaned
    return rc


if __name__ == "__main__":
    sys.exit(main())
