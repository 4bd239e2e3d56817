#!/usr/bin/python3
"""Chaos (issue 7): one mount with -o timeout=3 goes through a fault-injecting proxy
(faultproxy.py) while two readers, a mover, a remover, an appender and a flagger work on
it. A seeded random schedule of faults runs meanwhile: connections cut after N bytes
either way (FIN or RST), stalls longer than the timeout, dripping one byte every few ms,
resets, refused connections, answers lost after the server did the command, and Dovecot
restarts.

Every system call is timed and every operation written to a ledger (what it was, on
which message, what it returned). Afterwards, with the faults off, an inventory by
Message-ID straight from Dovecot (imaplib, not through the proxy) is held against the
ledger:

- no hangs: no system call took longer than 3 × timeout + 5 s;
- no wrong bytes: every successful read (whole or pread) gave exactly the message's
  bytes, st_size was right, and the server holds every message byte for byte;
- nothing lost: every message is still on the server, but one whose permanent rm
  succeeded (or failed after the server may have done it), or whose cp failed;
- nothing duplicated: no message is on the server twice;
- outcomes match the ledger: a successful mv left the message in its target, a
  failed one in its source or target; a successful rm left it in Trash (or gone, in
  Trash itself); a successful cp made exactly one copy; the flags are those of the last
  successful setxattr or of a failed one after it;
- no \\Deleted left on any message (a leftover \\Deleted is a loss waiting to happen);
- afterwards the daemon is alive, the same mount lists and reads a message delivered
  straight to Dovecot and copies one in; every folder lists what the server has; and it
  unmounts cleanly (no sanitizer report).

The fault schedule and each worker's choices are a function of the seed (printed first;
IMAPFS_CHAOS_SEED=N replays it; the interleaving with real time can't be replayed).
Odd seeds run against a server without MOVE (mv and rm are then UID COPY, STORE
\\Deleted, UID EXPUNGE; IMAPFS_CHAOS_NOMOVE=0/1 overrides). IMAPFS_CHAOS_FAULTS=N sets
the number of faults: 30 by default (about 75 s, for CI), 120 with IMAPFS_LONG=1
(tests/run.sh --long). Every failure names the message, the calls
on it and the faults around them."""

import errno
import os
import random
import re
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tap  # noqa: E402
import common as C  # noqa: E402
from common import D, I  # noqa: E402
from faultproxy import FaultProxy  # noqa: E402

TIMEOUT = 3                       # -o timeout=
HANG = 3 * TIMEOUT + 5            # a system call taking longer than this is a hang
LONG = os.environ.get("IMAPFS_LONG") == "1"
SEED = int(os.environ.get("IMAPFS_CHAOS_SEED") or random.SystemRandom().randrange(1, 10 ** 6))
# Odd seeds: a server without MOVE, so mv and rm take the UID COPY + STORE + UID EXPUNGE path.
NOMOVE = os.environ.get("IMAPFS_CHAOS_NOMOVE", str(SEED % 2)) == "1"
CAPS_NOMOVE = (
    "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT SORT=DISPLAY THREAD=REFERENCES "
    "THREAD=REFS THREAD=ORDEREDSUBJECT MULTIAPPEND URL-PARTIAL CATENATE UNSELECT CHILDREN NAMESPACE "
    "UIDPLUS LIST-EXTENDED I18NLEVEL=1 CONDSTORE QRESYNC ESEARCH ESORT SEARCHRES WITHIN "
    "CONTEXT=SEARCH LIST-STATUS BINARY SNIPPET=FUZZY PREVIEW=FUZZY PREVIEW STATUS=SIZE "
    "SAVEDATE LITERAL+ NOTIFY")  # Dovecot 2.3.19's, without MOVE
NFAULTS = int(os.environ.get("IMAPFS_CHAOS_FAULTS") or (120 if LONG else 30))
RECOVER = 30.0                    # after the faults, the mount must work again within this
DOMAIN = "chaos.imapfs.test"

FOLDERS = ["INBOX", "A", "B", "Flags", "Read", "New", "Trash"]
FLAG_WORDS = ["\\Seen", "\\Flagged", "\\Answered", "$Label1", "$Label2"]
KEY_RE = re.compile(r"chaos ([a-z]\d{3,})\b")
MSGID_RE = re.compile(rb"^Message-ID: <([a-z]\d{3,})\.(\d+)@" + DOMAIN.encode() + rb">", re.M | re.I)

SRV = None
PROXY = None
M = None
RUN = None   # the Run of this module


# -- messages ---------------------------------------------------------------------------
def make_message(key, size, rng):
    """A CRLF message of about size bytes whose bytes depend only on key and the seed."""
    head = ("From: Chaos <chaos@%s>\r\nTo: alice@%s\r\nSubject: chaos %s\r\n"
            "Date: Mon, 04 Mar 2024 10:%02d:00 +0000\r\nMessage-ID: <%s.%d@%s>\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
            % (DOMAIN, DOMAIN, key, rng.randrange(60), key, SEED, DOMAIN)).encode()
    lines = [head]
    n = len(head)
    i = 0
    while n < size:
        line = ("%s line %06d %s\r\n" % (key, i, "%016x" % rng.getrandbits(64) * 4)).encode()
        lines.append(line)
        n += len(line)
        i += 1
    return b"".join(lines)


# -- the ledger ---------------------------------------------------------------------------
class Op:
    """One operation of a worker: a few system calls on one message."""

    def __init__(self, run, worker, kind, key, path, detail=""):
        self.run = run
        self.worker = worker
        self.kind = kind
        self.key = key
        self.path = path
        self.detail = detail
        self.t0 = time.monotonic() - run.t0
        self.t1 = None
        self.ok = None
        self.err = None       # (step, errno name, message)
        self.slowest = ("", 0.0)
        self.problem = None   # wrong bytes etc., found at once

    def call(self, step, fn, *args):
        """Runs one system call, timed (the watchdog sees it while it runs)."""
        tok = self.run.enter(self, step)
        t = time.monotonic()
        try:
            return fn(*args)
        except OSError as e:
            if self.err is None:
                self.err = (step, errno.errorcode.get(e.errno, str(e.errno)), e.strerror)
            raise
        finally:
            d = time.monotonic() - t
            self.run.leave(tok)
            if d > self.slowest[1]:
                self.slowest = (step, d)

    def done(self, ok):
        self.t1 = time.monotonic() - self.run.t0
        self.ok = ok
        self.run.record(self)
        return ok

    def rel(self, path):
        return os.path.relpath(path, M.mp) if path else "-"

    def __str__(self):
        res = "OK" if self.ok else ("%s in %s (%s)" % (self.err[1], self.err[0], self.err[2])
                                     if self.err else "failed")
        return "t=%.1f-%.1fs %s %s %s%s → %s%s" % (
            self.t0, self.t1 if self.t1 is not None else -1, self.worker, self.kind,
            self.rel(self.path), (" " + self.detail) if self.detail else "", res,
            "; slowest call %s %.1fs" % self.slowest if self.slowest[1] > 1 else "")


class Run:
    """The chaos run: workers, the fault schedule, the ledger, the watchdog."""

    def __init__(self, seed, nfaults):
        self.seed = seed
        self.nfaults = nfaults
        self.t0 = time.monotonic()
        self.lock = threading.Lock()
        self.ops = []
        self.inflight = {}
        self.next_tok = 0
        self.stop = threading.Event()
        self.faults = []           # (t, text) of the scheduler
        self.expected = {}         # key → bytes
        self.home = {}             # key → folder it started in (appended: "New")
        self.crashes = []          # exceptions in worker threads
        self.hung_at_end = []
        self.handed = []           # keys the appender copied, for the remover
        self.z_ok = False          # the cp after the faults (check_mount_after) returned 0

    # watchdog bookkeeping
    def enter(self, op, step):
        with self.lock:
            self.next_tok += 1
            self.inflight[self.next_tok] = (op, step, time.monotonic())
            return self.next_tok

    def leave(self, tok):
        with self.lock:
            self.inflight.pop(tok, None)

    def record(self, op):
        with self.lock:
            self.ops.append(op)

    def now(self):
        return time.monotonic() - self.t0

    def fault_log(self, text):
        with self.lock:
            self.faults.append((self.now(), text))

    def faults_near(self, t0, t1, slack=TIMEOUT + 1):
        """What the scheduler and the proxy did from slack seconds before an operation to
        1 s after it; repeats of one event are folded into one line."""
        end = (t1 if t1 is not None else self.now()) + 1
        ev = [(t, "fault " + x) for t, x in self.faults]
        ev += [(t - self.t0, "proxy: " + x) for t, x in list(PROXY.events)]
        ev = sorted(e for e in ev if t0 - slack <= e[0] <= end)
        out = []
        for t, x in ev:
            if out and out[-1][1] == x:
                out[-1][2] += 1
            else:
                out.append([t, x, 1])
        lines = ["    t=%.1fs %s%s" % (t, x, " (%d times)" % n if n > 1 else "") for t, x, n in out]
        if len(lines) > 14:
            lines = lines[:4] + ["    ..."] + lines[-9:]
        return lines

    def history(self, key, last=8):
        """The last operations on key, and the failed ones before them (where a fault
        struck first is where a wrong state usually began)."""
        ops = [o for o in self.ops if o.key == key and o.kind != "read" and o.kind != "pread"]
        early = [o for o in ops[:-last] if not o.ok][-4:]
        out = ["    " + str(o) for o in early]
        if early:
            out.append("    ... (%d more operations)" % (len(ops) - last - len(early)))
        return out + ["    " + str(o) for o in ops[-last:]]


# -- workers ------------------------------------------------------------------------------
class Worker(threading.Thread):
    def __init__(self, run, name):
        super().__init__(daemon=True, name=name)
        self.run_ = run
        self.rng = random.Random("%d-%s" % (run.seed, name))
        self.where = {}    # key → full path last seen

    def folder(self, name):
        return os.path.join(M.mp, name)

    def listing(self, folder):
        """{key: path} of a folder through the mount (a failed listing is an op, {})."""
        op = Op(self.run_, self.name, "ls", None, self.folder(folder))
        fd = None
        try:
            fd = op.call("opendir", os.open, self.folder(folder), os.O_RDONLY | os.O_DIRECTORY)
            names = op.call("readdir", os.listdir, fd)
        except OSError:
            op.done(False)
            return None
        finally:
            if fd is not None:
                os.close(fd)
        op.done(True)
        res = {}
        for n in names:
            m = KEY_RE.search(n)
            if m and n.endswith(".eml"):
                res[m.group(1)] = os.path.join(self.folder(folder), n)
        return res

    def find(self, key, folders):
        for f in folders:
            lst = self.listing(f)
            if lst and key in lst:
                return f, lst[key]
        return None, None

    def pause(self, failed):
        # failures come at once while the server is away: don't spin
        time.sleep(self.rng.uniform(0.1, 0.3) if failed else self.rng.uniform(0.01, 0.08))

    def run(self):
        try:
            while not self.run_.stop.is_set():
                self.pause(not self.step())
        except Exception as e:  # a bug in the test: make it visible, don't hide it
            import traceback
            self.run_.crashes.append("%s: %s\n%s" % (self.name, e, traceback.format_exc()))


class Reader(Worker):
    def step(self):
        folder = self.rng.choice(FOLDERS)
        lst = self.listing(folder)
        if not lst:
            return lst is not None
        key = self.rng.choice(sorted(lst))
        path = lst[key]
        want = self.run_.expected.get(key)
        if want is None:
            return True
        if self.rng.random() < 0.7:
            return self.read_all(key, path, want)
        return self.read_part(key, path, want)

    def read_all(self, key, path, want):
        op = Op(self.run_, self.name, "read", key, path)
        fd = None
        try:
            fd = op.call("open", os.open, path, os.O_RDONLY)
            size = op.call("fstat", os.fstat, fd).st_size
            if size != len(want):
                op.problem = "st_size %d, the message has %d bytes" % (size, len(want))
            chunks = []
            while True:
                b = op.call("read", os.read, fd, 128 * 1024)
                if not b:
                    break
                chunks.append(b)
            got = b"".join(chunks)
            if got != want:
                op.problem = "read gave %d bytes, the message has %d; %s" % (len(got), len(want),
                                                                            first_difference(got, want))
            return op.done(True)
        except OSError:
            return op.done(False)
        finally:
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass

    def read_part(self, key, path, want):
        off = self.rng.randrange(len(want) + 10)
        n = self.rng.choice([1, 100, 4096, 70000, 300000])
        op = Op(self.run_, self.name, "pread", key, path, "%d bytes at %d" % (n, off))
        fd = None
        try:
            fd = op.call("open", os.open, path, os.O_RDONLY)
            got = op.call("pread", os.pread, fd, n, off)
            # a short read is allowed (the kernel may split); wrong bytes are not
            exp = want[off:off + n]
            if got != exp[:len(got)] or (not got and exp):
                op.problem = "pread of %d at %d gave %d bytes: %s" % (n, off, len(got),
                                                                     first_difference(got, exp))
            return op.done(True)
        except OSError:
            return op.done(False)
        finally:
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass


class Mover(Worker):
    """Moves its messages between A and B."""

    def __init__(self, run, keys):
        super().__init__(run, "mover")
        self.keys = keys

    def step(self):
        key = self.rng.choice(self.keys)
        first = self.rng.choice(["A", "B"])
        src, path = self.find(key, [first, "B" if first == "A" else "A"])
        if src is None:
            return False
        dst = "B" if src == "A" else "A"
        op = Op(self.run_, self.name, "mv", key, path, "→ " + dst)
        op.src, op.dst = src, dst
        try:
            op.call("rename", os.rename, path, os.path.join(self.folder(dst), os.path.basename(path)))
            return op.done(True)
        except OSError:
            return op.done(False)


class Remover(Worker):
    """rm of its INBOX messages and of those the appender copied into New (to Trash),
    and now and then rm in Trash (for good)."""

    def __init__(self, run, keys):
        super().__init__(run, "remover")
        self.keys = list(keys)
        self.gone = set()

    def step(self):
        with self.run_.lock:
            self.keys += self.run_.handed
            self.run_.handed = []
        left = [k for k in self.keys if k not in self.gone]
        if not left:
            return False
        key = self.rng.choice(left)
        home = self.run_.home[key]
        folders = [home, "Trash"] if self.rng.random() < 0.6 else ["Trash", home]
        src, path = self.find(key, folders)
        if src is None:
            return False
        if src == "Trash" and self.rng.random() < 0.6:
            return True  # leave most in Trash for a while
        op = Op(self.run_, self.name, "rm", key, path, "(for good)" if src == "Trash" else "(to Trash)")
        op.src = src
        try:
            op.call("unlink", os.unlink, path)
            if src == "Trash":
                self.gone.add(key)
            return op.done(True)
        except OSError:
            return op.done(False)


class Appender(Worker):
    """cp of new messages into New (open, write, close: the APPEND happens at close)."""

    def __init__(self, run):
        super().__init__(run, "appender")
        self.n = 0

    def step(self):
        self.n += 1
        key = "a%03d" % self.n
        data = make_message(key, self.rng.choice([600, 3000, 20000, 90000]), self.rng)
        self.run_.expected[key] = data
        self.run_.home[key] = "New"
        path = os.path.join(self.folder("New"), key + ".eml")
        op = Op(self.run_, self.name, "cp", key, path)
        fd = None
        try:
            fd = op.call("create", os.open, path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            view = memoryview(data)
            while view:
                k = op.call("write", os.write, fd, view[:65536])
                view = view[k:]
            f, fd = fd, None
            op.call("close", os.close, f)
            op.done(True)
            if self.rng.random() < 0.5:
                with self.run_.lock:
                    self.run_.handed.append(key)  # the remover's from now on
            return True
        except OSError:
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
            return op.done(False)


class Flagger(Worker):
    """setxattr user.imap.flags (or removexattr) on its messages in Flags."""

    def __init__(self, run, keys):
        super().__init__(run, "flagger")
        self.keys = keys

    def step(self):
        key = self.rng.choice(self.keys)
        path = self.where.get(key)
        if path is None or self.rng.random() < 0.2:
            lst = self.listing("Flags")
            if not lst:
                return lst is not None
            self.where.update(lst)
            path = self.where.get(key)
            if path is None:
                return False
        flags = frozenset(f for f in FLAG_WORDS if self.rng.random() < 0.4)
        op = Op(self.run_, self.name, "flags", key, path, "{%s}" % " ".join(sorted(flags)))
        op.flags = flags
        try:
            if flags:
                op.call("setxattr", os.setxattr, path, "user.imap.flags", " ".join(sorted(flags)).encode())
            else:
                op.call("removexattr", os.removexattr, path, "user.imap.flags")
            return op.done(True)
        except OSError:
            return op.done(False)


def first_difference(got, want):
    n = min(len(got), len(want))
    for i in range(n):
        if got[i] != want[i]:
            return "first difference at byte %d: got %r, want %r" % (i, got[i:i + 24], want[i:i + 24])
    return "one is a prefix of the other (%d vs %d bytes)" % (len(got), len(want))


# -- the fault schedule ---------------------------------------------------------------------
KINDS = [("cut", 20), ("reset", 12), ("stall", 10), ("drip", 10), ("refuse", 12), ("restart", 12),
         ("reset_now", 8), ("lose_answer", 16)]


def make_schedule(seed, n):
    """[(gap before, kind, params)]: a function of the seed only."""
    rng = random.Random("schedule-%d" % seed)
    names = [k for k, _ in KINDS]
    weights = [w for _, w in KINDS]
    out = []
    for _ in range(n):
        kind = rng.choices(names, weights)[0]
        gap = rng.uniform(0.3, 1.5)
        p = {"pick": rng.random()}
        if kind in ("cut", "reset"):
            p["direction"] = rng.choice(["up", "down"])
            # log-uniform: most cuts early in a response, some deep inside a literal
            top = 4000 if p["direction"] == "up" else 400000
            p["bytes"] = int(round(2 ** rng.uniform(0, top.bit_length()))) - 1
        elif kind == "stall":
            p["secs"] = rng.uniform(TIMEOUT + 0.5, TIMEOUT + 3)
        elif kind == "drip":
            p["secs"] = rng.uniform(2, 5)
            p["interval"] = rng.choice([0.002, 0.005, 0.02])
        elif kind == "refuse":
            p["secs"] = rng.uniform(0.5, 3)
        elif kind == "restart":
            p["down"] = rng.choice([0, 0, 0.5, 2])
        elif kind == "lose_answer":
            if rng.random() < 0.5:
                p["pick"] = None  # every connection
            p["delay"] = rng.choice([0.005, 0.03, 0.2])
            p["rst"] = rng.random() < 0.5
        out.append((gap, kind, p))
    return out


def run_schedule(run, schedule):
    for i, (gap, kind, p) in enumerate(schedule):
        time.sleep(gap)
        tag = "#%d %s" % (i + 1, kind)
        if kind in ("cut", "reset"):
            cid = PROXY.cut(p["direction"], p["bytes"], rst=kind == "reset", pick=p["pick"])
            run.fault_log("%s: conn %s after %d bytes %s" % (tag, cid, p["bytes"], p["direction"]))
        elif kind == "lose_answer":
            cids = PROXY.lose_answer(p["pick"], p["delay"], p["rst"])
            run.fault_log("%s: conns %s, %s after %.0f ms" % (tag, cids, "reset" if p["rst"] else "cut",
                                                              p["delay"] * 1000))
        elif kind == "reset_now":
            cid = PROXY.reset_now(p["pick"])
            run.fault_log("%s: conn %s" % (tag, cid))
        elif kind == "stall":
            run.fault_log("%s for %.1fs" % (tag, p["secs"]))
            PROXY.stall(True)
            time.sleep(p["secs"])
            PROXY.stall(False)
        elif kind == "drip":
            run.fault_log("%s for %.1fs, %.0f ms/byte" % (tag, p["secs"], p["interval"] * 1000))
            PROXY.drip(p["interval"])
            time.sleep(p["secs"])
            PROXY.drip(None)
        elif kind == "refuse":
            run.fault_log("%s for %.1fs" % (tag, p["secs"]))
            PROXY.refuse(True)
            time.sleep(p["secs"])
            PROXY.refuse(False)
        elif kind == "restart":
            run.fault_log("%s (down %.1fs)" % (tag, p["down"]))
            SRV.stop()
            time.sleep(p["down"])
            SRV.start()
            run.fault_log("%s: Dovecot back" % tag)


# -- setup, the run, the inventory ----------------------------------------------------------------
def populate(run, c):
    rng = random.Random("messages-%d" % run.seed)
    plan = {"INBOX": ("r", 30, [800, 3000, 12000]),
            "A": ("m", 16, [1000, 5000, 60000, 400000]),
            "Flags": ("f", 10, [700, 2000]),
            "Read": ("x", 10, [500, 8000, 150000, 1500000])}
    keys = {}
    for folder in FOLDERS:
        if folder != "INBOX":
            c.create(folder)
    for folder, (prefix, n, sizes) in plan.items():
        keys[prefix] = []
        for i in range(n):
            key = "%s%03d" % (prefix, i)
            data = make_message(key, sizes[i % len(sizes)], rng)
            D.append(c, folder, data, [], C.G._idate(i))
            run.expected[key] = data
            run.home[key] = folder
            keys[prefix].append(key)
    return keys


def inventory():
    """{key: [(folder, uid, flags, body)]} of every message of this run, straight from
    Dovecot (not through the proxy), plus [(folder, uid, what)] of messages not ours."""
    c = SRV.client()
    try:
        found, strangers = {}, []
        for flags, delim, raw in D.list_mailboxes(c):
            if C.is_noselect(flags):
                continue
            name = D.mutf7_decode(raw)
            D.select(c, name, readonly=True)
            meta = D.fetch_meta(c)
            bodies = D.fetch_bodies(c) if meta else {}
            for uid, m in meta.items():
                body = bodies.get(uid, b"")
                mm = MSGID_RE.search(body.split(b"\r\n\r\n", 1)[0])
                if not mm or int(mm.group(2)) != SEED:
                    strangers.append((name, uid, body[:80]))
                    continue
                found.setdefault(mm.group(1).decode(), []).append(
                    (name, uid, frozenset(C.flags_set(m["flags"])), body))
        return found, strangers
    finally:
        c.logout()


def stable_inventory():
    """An inventory taken twice 1 s apart with the same result (commands of dropped
    connections may still be running in Dovecot)."""
    prev = None
    for _ in range(10):
        inv = inventory()
        key = {k: sorted((f, u, fl) for f, u, fl, _ in v) for k, v in inv[0].items()}
        if prev is not None and key == prev:
            return inv
        prev = key
        time.sleep(1)
    return inv


def setUpModule():
    global SRV, PROXY, M, RUN
    I.check_bin()
    print("# chaos seed %d (replay: IMAPFS_CHAOS_SEED=%d), %d faults, timeout=%d, hang limit %ds, "
          "server %s MOVE" % (SEED, SEED, NFAULTS, TIMEOUT, HANG, "without" if NOMOVE else "with"))
    sys.stdout.flush()
    try:
        extra = "protocol imap {\n  imap_capability = %s\n}\n" % CAPS_NOMOVE if NOMOVE else ""
        SRV = D.Dovecot(special_use={"Trash": "\\Trash"}, extra_conf=extra).start()
        RUN = Run(SEED, NFAULTS)
        c = SRV.client()
        keys = populate(RUN, c)
        c.logout()
        PROXY = FaultProxy(SRV.imaps_port).start()
        M = C.mount_of(SRV, PROXY.port, timeout=TIMEOUT)
        M.mount(foreground=True)
        chaos(RUN, keys)
    except Exception:
        tearDownModule(cleanup_only=True)
        raise


def chaos(run, keys):
    workers = [Reader(run, "reader1"), Reader(run, "reader2"), Mover(run, keys["m"]),
               Remover(run, keys["r"]), Appender(run), Flagger(run, keys["f"])]
    run.t0 = time.monotonic()
    PROXY.t0 = run.t0
    for w in workers:
        w.start()
    schedule = make_schedule(run.seed, run.nfaults)
    try:
        run_schedule(run, schedule)
        time.sleep(1)
    finally:
        PROXY.clear()
        if not SRV.started:
            SRV.start()
        run.fault_log("faults off")
        run.stop.set()
    deadline = time.monotonic() + HANG + 5
    for w in workers:
        w.join(max(0.1, deadline - time.monotonic()))
    with run.lock:
        now = time.monotonic()
        run.hung_at_end = [(op, step, now - t) for op, step, t in run.inflight.values()]
    run.t_end = run.now()
    # What the mount does now, with the faults off (checked in test_7).
    run.after = check_mount_after(run)
    run.inv, run.strangers = stable_inventory()
    run.view = compare_view(run)
    run.summary = summary(run, workers)
    for line in run.summary:
        print("# " + line)
    sys.stdout.flush()


def check_mount_after(run):
    """[problems] of the same mount once the faults are off: alive, lists, reads, copies."""
    problems = []
    if M.proc is None or M.proc.poll() is not None:
        return ["the daemon is gone (exit status %r)" % (M.proc.returncode if M.proc else None)]
    if not I.is_mounted(M.mp):
        return ["no longer mounted"]
    if run.hung_at_end:
        return ["calls still blocked after the faults: skipped"]
    # A message the mount has never seen (delivered straight to Dovecot): listing and
    # reading it proves the mount talks to the server again, not to its caches.
    key = "y000"
    run.expected[key] = make_message(key, 50000, random.Random(SEED))
    run.home[key] = "Read"
    c = SRV.client()
    D.append(c, "Read", run.expected[key])
    c.logout()
    deadline = time.monotonic() + RECOVER + 5  # + the 5 s a folder listing may be cached
    last = None
    while True:
        try:
            names = os.listdir(os.path.join(M.mp, "Read"))
            mine = [n for n in names if KEY_RE.search(n) and KEY_RE.search(n).group(1) == key]
            if mine:
                with open(os.path.join(M.mp, "Read", mine[0]), "rb") as f:
                    got = f.read()
                if got != run.expected[key]:
                    problems.append("cat of %s after the faults: %s" % (key, first_difference(got, run.expected[key])))
                break
            last = "ls Read does not show %s" % key
        except OSError as e:
            last = "%s" % e
        if time.monotonic() > deadline:
            problems.append("ls/cat of a new message still failing %.0fs after the faults: %s" % (
                RECOVER + 5, last))
            return problems
        time.sleep(0.2)
    run.z_ok = False
    data = make_message("z000", 2000, random.Random(SEED))
    run.expected["z000"] = data
    run.home["z000"] = "New"
    try:
        with open(os.path.join(M.mp, "New", "z000.eml"), "wb") as f:
            f.write(data)
        run.z_ok = True
    except OSError as e:
        run.z_ok = False
        problems.append("cp into New after the faults failed: %s" % e)
    return problems


def mount_view():
    """{folder: Counter of keys} as the mount lists them."""
    from collections import Counter
    res = {}
    for f in FOLDERS:
        names = os.listdir(os.path.join(M.mp, f))
        res[f] = Counter(KEY_RE.search(n).group(1) for n in names if KEY_RE.search(n) and n.endswith(".eml"))
    return res


def compare_view(run):
    """[problems]: what the mount lists vs the server, per folder, polled for up to the
    staleness README promises (poll=30 s, plus 5) once the faults are off."""
    from collections import Counter
    want = {f: Counter() for f in FOLDERS}
    for key, copies in run.inv.items():
        for f, _, _, _ in copies:
            want.setdefault(f, Counter())[key] += 1
    if run.hung_at_end or M.proc is None or M.proc.poll() is not None:
        return ["skipped: the mount is not usable"]
    deadline = time.monotonic() + 35
    while True:
        try:
            have = mount_view()
            diff = []
            for f in FOLDERS:
                only_srv = sorted((want[f] - have[f]).elements())
                only_mnt = sorted((have[f] - want[f]).elements())
                if only_srv or only_mnt:
                    diff.append("%s: on the server but not listed: %s; listed but not on the server: %s" % (
                        f, " ".join(only_srv) or "-", " ".join(only_mnt) or "-"))
        except OSError as e:
            diff = ["ls failed: %s" % e]
        if not diff:
            return []
        if time.monotonic() > deadline:
            return diff
        time.sleep(1)


def summary(run, workers):
    kinds = {}
    for t, text in run.faults:
        m = re.match(r"#\d+ (\w+)", text)
        if m and ": Dovecot back" not in text:
            kinds[m.group(1)] = kinds.get(m.group(1), 0) + 1
    lines = ["%d faults in %.0fs (%d proxy events); operations per worker (ok / failed):" % (
        sum(kinds.values()), run.t_end, len(PROXY.events))]
    by = {}
    for op in run.ops:
        k = (op.worker, op.kind)
        ok, bad = by.get(k, (0, 0))
        by[k] = (ok + 1, bad) if op.ok else (ok, bad + 1)
    for (w, kind), (ok, bad) in sorted(by.items()):
        lines.append("  %-9s %-6s %5d / %d" % (w, kind, ok, bad))
    fired = len([e for e in PROXY.events if " after " in e[1] and "armed" not in e[1] and "next" not in e[1]])
    lines.append("faults by kind: %s; cuts/resets that fired: %d" % (
        ", ".join("%s %d" % kv for kv in sorted(kinds.items())), fired))
    return lines


def tearDownModule(cleanup_only=False):
    def release():
        if PROXY is not None:
            PROXY.clear()
        if SRV is not None and not SRV.started:
            try:
                SRV.start()
            except Exception:
                pass
    C.teardown([M], servers=[SRV], proxy=PROXY, unmount=False, before=release)


# -- the checks ---------------------------------------------------------------------------
def describe(key):
    out = ["%s (Message-ID <%s.%d@%s>, started in %s); on the server: %s" % (
        key, key, SEED, DOMAIN, RUN.home.get(key),
        ", ".join("%s uid %d %s" % (f, u, "{%s}" % " ".join(sorted(fl))) for f, u, fl, _ in RUN.inv.get(key, []))
        or "nothing")]
    hist = RUN.history(key)
    if hist:
        out.append("  its last operations:")
        out += hist
        ops = [o for o in RUN.ops if o.key == key and o.kind not in ("read", "pread")]
        failed = [o for o in ops if not o.ok]
        # the last failed operation is where a fault struck; else the last one
        pick = failed[-1] if failed else ops[-1]
        near = RUN.faults_near(pick.t0, pick.t1)
        if near:
            out.append("  faults around the %s (t=%.1fs):" % ("last failed one" if failed else "last one", pick.t0))
            out += near
    return "\n".join(out)


def ops_of(key):
    return [o for o in RUN.ops if o.key == key and o.kind not in ("read", "pread", "ls")]


class Chaos(unittest.TestCase):
    maxDiff = None

    def report(self, problems, what, show=12):
        if problems:
            more = "" if len(problems) <= show else "\n\n... and %d more" % (len(problems) - show)
            self.fail("seed %d: %d %s:\n%s%s" % (SEED, len(problems), what, "\n\n".join(problems[:show]), more))

    def test_0_the_run_proves_something(self):
        """Each worker got work done and faults made calls fail: otherwise the run proves
        nothing. No worker thread crashed (a bug in the test)."""
        self.assertEqual(RUN.crashes, [], "worker threads crashed")
        problems = []
        for worker, kind in [("reader1", "read"), ("reader2", "read"), ("mover", "mv"),
                             ("remover", "rm"), ("appender", "cp"), ("flagger", "flags")]:
            ops = [o for o in RUN.ops if o.worker == worker and o.kind == kind]
            if not any(o.ok for o in ops):
                problems.append("%s: no %s succeeded (of %d)" % (worker, kind, len(ops)))
        if not any(not o.ok for o in RUN.ops):
            problems.append("no call failed: the faults had no effect")
        self.report(problems, "signs that the run did not exercise the mount")

    def test_1_no_hangs(self):
        problems = []
        for op in RUN.ops:
            if op.slowest[1] > HANG:
                problems.append("%s\n  %s took %.1fs (limit %ds)\n%s" % (
                    op, op.slowest[0], op.slowest[1], HANG, "\n".join(RUN.faults_near(op.t0, op.t1))))
        for op, step, secs in RUN.hung_at_end:
            problems.append("still blocked at the end: %s %s %s in %s for %.1fs\n%s" % (
                op.worker, op.kind, op.rel(op.path), step, secs, "\n".join(RUN.faults_near(op.t0, None))))
        self.report(problems, "hangs")

    def test_2_no_wrong_bytes(self):
        problems = []
        for op in RUN.ops:
            if op.problem:
                problems.append("%s\n  %s\n%s" % (op, op.problem, "\n".join(RUN.faults_near(op.t0, op.t1))))
        for key, copies in sorted(RUN.inv.items()):
            for f, uid, fl, body in copies:
                if body != RUN.expected.get(key):
                    problems.append("the server's %s uid %d is not the message that was written: %s\n%s" % (
                        f, uid, first_difference(body, RUN.expected.get(key, b"")), describe(key)))
        self.report(problems, "wrong bytes")

    def test_3_nothing_lost(self):
        problems = []
        for key in sorted(RUN.expected):
            if RUN.inv.get(key):
                continue
            ops = ops_of(key)
            if any(o.kind == "rm" and o.src == "Trash" for o in ops):
                continue  # removed for good (checked against the ledger in test_5)
            if RUN.home[key] == "New" and not any(o.kind == "cp" and o.ok for o in ops) and \
                    not (key == "z000" and RUN.z_ok):
                continue  # a failed cp may leave nothing
            problems.append("lost: " + describe(key))
        self.report(problems, "messages lost")

    def test_4_nothing_duplicated(self):
        problems = ["%d copies: %s" % (len(v), describe(k)) for k, v in sorted(RUN.inv.items()) if len(v) > 1]
        self.report(problems, "messages on the server more than once")

    def test_5_outcomes_match_the_ledger(self):
        problems = []
        for key in sorted(RUN.expected):
            copies = RUN.inv.get(key, [])
            where = sorted(f for f, _, _, _ in copies)
            ops = ops_of(key)
            why = None
            if len(copies) > 1:
                continue  # reported by test_4
            last = ops[-1] if ops else None
            if last is None:
                if key == "z000":
                    if RUN.z_ok and where != ["New"]:
                        why = "the cp after the faults returned 0 but the message is in %s" % (where or "no folder")
                elif RUN.home[key] != "New" and where != [RUN.home[key]]:
                    why = "nothing was done to it, yet it is in %s, not %s" % (where or "no folder", RUN.home[key])
            elif last.kind == "mv":
                allowed = [last.dst] if last.ok else [last.src, last.dst]
                if len(where) != 1 or where[0] not in allowed:
                    why = "after the last mv (%s) it must be in %s" % (
                        "OK" if last.ok else "failed", " or ".join(allowed))
            elif last.kind == "rm":
                if last.src == "Trash":
                    removed = C.uid_of(last.path)
                    if last.ok and any(u == removed and f == "Trash" for f, u, _, _ in copies):
                        why = "rm in Trash returned 0, but Trash uid %d is still there" % removed
                    elif last.ok and where:
                        why = ("rm of Trash uid %d returned 0, but another copy survives: an earlier "
                               "operation left two" % removed)
                    elif not last.ok and where not in ([], ["Trash"]):
                        why = "a failed rm in Trash must leave it in Trash (or gone)"
                elif last.ok and where != ["Trash"]:
                    why = "rm returned 0: it must be in Trash, exactly once"
                elif not last.ok and where not in ([last.src], ["Trash"]):
                    why = "a failed rm must leave it in %s or Trash" % last.src
            elif last.kind == "cp":
                if last.ok and where != ["New"]:
                    why = "cp returned 0: it must be in New, exactly once"
                elif not last.ok and last.err and last.err[0] == "create" and where:
                    why = "the cp failed to create the file, yet the message is in %s" % where
                elif not last.ok and where not in ([], ["New"]):
                    why = "a failed cp may leave nothing or one copy in New"
            elif last.kind == "flags":
                if where != ["Flags"]:
                    why = "only its flags were changed, yet it is in %s" % (where or "no folder")
                else:
                    okd = [i for i, o in enumerate(ops) if o.ok]
                    base = frozenset() if not okd else ops[okd[-1]].flags
                    allowed = {base} | {o.flags for o in ops[(okd[-1] + 1 if okd else 0):] if not o.ok}
                    have = copies[0][2] - {"\\Deleted"}
                    if have not in allowed:
                        why = "its flags {%s} are none of those the ledger allows: %s" % (
                            " ".join(sorted(have)), " or ".join("{%s}" % " ".join(sorted(a)) for a in allowed))
            if why:
                problems.append("%s\n  %s" % (why, describe(key)))
        if RUN.strangers:
            problems.append("messages on the server that no one wrote: %r" % RUN.strangers[:5])
        self.report(problems, "outcomes that contradict the ledger")

    def test_6_no_stray_deleted_flag(self):
        problems = []
        for key, copies in sorted(RUN.inv.items()):
            for f, uid, fl, _ in copies:
                if "\\Deleted" in fl:
                    problems.append("%s uid %d has \\Deleted\n%s" % (f, uid, describe(key)))
        self.report(problems, "messages left with \\Deleted")

    def test_7_mount_usable_after_the_faults(self):
        if RUN.after:
            self.fail("seed %d: %s\n--- imapfs log (tail) ---\n%s" % (SEED, "; ".join(RUN.after), M.read_log()[-3000:]))

    def test_8_the_mount_lists_what_the_server_has(self):
        """Once the faults are off, each folder lists what Dovecot has (within the
        35 s of staleness README allows)."""
        problems = []
        for line in RUN.view:
            keys = re.findall(r"\b[a-z]\d{3,}\b", line)
            problems.append(line + "".join("\n" + describe(k) for k in keys[:5]))
        self.report(problems, "folders whose listing differs from the server")

    def test_9_unmounts_cleanly(self):
        PROXY.clear()
        try:
            M.unmount()
        except AssertionError as e:
            self.fail("seed %d: %s\n--- imapfs log (tail) ---\n%s" % (SEED, e, M.read_log()[-3000:]))


if __name__ == "__main__":
    tap.main()
