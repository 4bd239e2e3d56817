"""Shared helpers of the integration tests (stdlib only)."""

import atexit
import os
import re
import shutil
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import dovecot as D  # noqa: E402
import imapfs as I  # noqa: E402
import mailgen as G  # noqa: E402

def emergency_cleanup():
    """Unmounts every live mount and stops every live Dovecot (never raises)."""
    for m in list(I.LIVE):
        try:
            m.cleanup()
        except Exception:
            pass
    for d in list(D.LIVE):
        try:
            d.cleanup()
        except Exception:
            pass


def _on_signal(signum, frame):
    sys.stdout.write("# killed by signal %d: cleaning up mounts and servers\n" % signum)
    sys.stdout.flush()
    emergency_cleanup()
    os._exit(1)


# meson kills a test that runs past its timeout with SIGTERM: don't leave mounts or
# Dovecots behind. atexit covers fixtures that failed half-way.
signal.signal(signal.SIGTERM, _on_signal)
signal.signal(signal.SIGHUP, _on_signal)
atexit.register(emergency_cleanup)

UID_RE = re.compile(r"\[(\d+)\]\.eml$")
XATTRS_MSG = ["user.imap.uid", "user.imap.flags", "user.imap.internaldate", "user.imap.size"]
XATTRS_DIR = ["user.imap.mailbox", "user.imap.uidvalidity", "user.imap.delimiter"]


def sh(argv, timeout=60, env=None, input=None, check=False, cwd=None):
    """Runs a real tool; returns CompletedProcess (bytes). A hang fails the test, not the suite."""
    e = dict(os.environ)
    e.setdefault("LC_ALL", "C.UTF-8")
    if env:
        e.update(env)
    r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout, env=e,
                       input=input, cwd=cwd)
    if check and r.returncode != 0:
        raise AssertionError("%s exited %d: %s" % (" ".join(map(str, argv)), r.returncode,
                                                   r.stderr.decode(errors="replace")))
    return r


def uid_of(name):
    m = UID_RE.search(name)
    return int(m.group(1)) if m else None


def server_tree(c):
    """{'a/b' (UTF-8, '/'-separated): (flags, delim, raw name)} from LIST "" "*"."""
    res = {}
    for flags, delim, raw in D.list_mailboxes(c):
        parts = raw.split(delim) if delim else [raw]
        # the mount shows the server's delimiter as '/'; a '/' inside a component is escaped
        comps = [escape_component(D.mutf7_decode(p)) for p in parts]
        res["/".join(comps)] = (flags, delim, raw)
    return res


def escape_component(s):
    """How the mount must show one decoded mailbox name component (see fs/names.h): only a
    '%' before two hex digits is escaped; "", ".", "..", ".parts", ".search" are reserved."""
    reserved = {"": "%00", ".": "%2E", "..": "%2E%2E", ".parts": "%2Eparts", ".search": "%2Esearch"}
    if s in reserved:
        return reserved[s]
    return re.sub(r"%(?=[0-9A-Fa-f]{2})", "%25", s).replace("/", "%2F")


def is_noselect(flags):
    f = [x.lower() for x in flags]
    return "\\noselect" in f or "\\nonexistent" in f


def server_view(c, mailbox, bodies=True):
    """(meta, bodies) of one mailbox through imaplib (EXAMINE: read-only, changes nothing)."""
    D.select(c, mailbox, readonly=True)
    meta = D.fetch_meta(c)
    b = D.fetch_bodies(c) if bodies and meta else {}
    return meta, b


def mount_files(path):
    """{uid: name} of the message files in one mount directory; raises on a name without UID."""
    res = {}
    for name in os.listdir(path):
        full = os.path.join(path, name)
        if os.path.isdir(full):
            continue
        uid = uid_of(name)
        if uid is None:
            raise AssertionError("file name without [UID].eml: %r in %s" % (name, path))
        if uid in res:
            raise AssertionError("two files for UID %d in %s: %r %r" % (uid, path, res[uid], name))
        res[uid] = name
    return res


def read_file(path):
    with open(path, "rb") as f:
        return f.read()


def flags_set(flags):
    return set(f for f in flags if f.lower() != "\\recent")


def wait_for(cond, timeout, interval=0.02, what="condition"):
    return D.wait_for(cond, timeout, interval, what)


def measure(fn):
    t = time.monotonic()
    r = fn()
    return r, time.monotonic() - t


# -- helpers of the write-path tests (test_write, test_trash, test_append_faults) -----------
import errno as _errno  # noqa: E402


def errno_of(fn):
    """Runs fn(); None if it succeeded, else the errno of the OSError it raised."""
    try:
        fn()
    except OSError as e:
        return e.errno
    return None


def ename(e):
    """errno → 'EEXIST' ('success' for None)."""
    return "success" if e is None else _errno.errorcode.get(e, str(e))


def crlf(data):
    """Bare LF → CRLF (CRLF and bare CR unchanged): what an APPEND of a file must send."""
    return re.sub(rb"(?<!\r)\n", b"\r\n", data)


def mailbox_names(c):
    """{decoded full name ('/' as the server spells its delimiter): (flags, delim, raw)}."""
    return {D.mutf7_decode(raw): (flags, delim, raw) for flags, delim, raw in D.list_mailboxes(c)}


def server_messages(srv, mailbox, bodies=True, user=None):
    """(meta, bodies) of one mailbox (UTF-8 name) on a connection of its own; EXAMINE."""
    c = srv.client(user)
    try:
        return server_view(c, mailbox, bodies)
    finally:
        c.logout()


def account_state(srv, user=None, bodies=True, skip=()):
    """{decoded mailbox name: {uid: (frozenset of flags without \\Recent, body or size)}} of
    every selectable mailbox (but those in skip), on a connection of its own."""
    c = srv.client(user)
    try:
        res = {}
        for name, (flags, delim, raw) in mailbox_names(c).items():
            if is_noselect(flags) or name in skip:
                continue
            typ, data = c.select(D.imap_quote(raw), readonly=True)
            assert typ == "OK", (name, data)
            meta = D.fetch_meta(c)
            b = D.fetch_bodies(c) if bodies and meta else {}
            res[name] = {u: (frozenset(flags_set(m["flags"])), b.get(u, m["size"])) for u, m in meta.items()}
        return res
    finally:
        c.logout()


class RawlogMark:
    """What the client sent to Dovecot (rawlog=True) after this mark, timestamps stripped.

        mark = RawlogMark(srv); ...; mark.lines() / mark.commands()"""

    TS = re.compile(rb"^\d+\.\d+ ", re.M)

    def __init__(self, srv, user=None):
        self.dir = srv.rawlog_dir(user)
        self.sizes = self._sizes()

    def _sizes(self):
        res = {}
        for f in os.listdir(self.dir):
            if f.endswith(".in"):
                res[f] = os.path.getsize(os.path.join(self.dir, f))
        return res

    def data(self):
        out = b""
        for f in sorted(self._sizes()):
            with open(os.path.join(self.dir, f), "rb") as fh:
                fh.seek(self.sizes.get(f, 0))
                out += self.TS.sub(b"", fh.read())
        return out

    def lines(self):
        return self.data().decode("utf-8", "replace").split("\r\n")

    def commands(self, pattern):
        """Lines that look like a tagged command matching pattern (regex, case-insensitive,
        matched right after the tag), e.g. commands(r"UID EXPUNGE")."""
        rx = re.compile(r"^\S+ (?:%s)" % pattern, re.I)
        return [l for l in self.lines() if rx.match(l)]

    def wait_commands(self, pattern, timeout=5):
        """commands(pattern), polled until there is one (the imap process writes its
        rawlog as it reads); [] after timeout seconds."""
        try:
            return wait_for(lambda: self.commands(pattern), timeout, 0.02, "rawlog " + pattern)
        except TimeoutError:
            return []


# -- fixtures ---------------------------------------------------------------------------------
def teardown(mounts=(), servers=(), proxy=None, tmp=None, unmount=True, before=None):
    """The end of a test module's (or class's) fixture. mounts: a sequence or a {name: mount}
    (None entries are skipped). Runs before() if given, then unmounts every mount when
    `unmount` (a fixture that failed half-way passes False); whatever happened, then cleans up
    every mount, stops the proxy, cleans up every server and removes tmp. An unmount that
    fails (imapfs did not exit cleanly) fails the teardown, after the others had their turn."""
    named = list(mounts.items()) if isinstance(mounts, dict) else [(None, m) for m in mounts]
    named = [(n, m) for n, m in named if m is not None]
    problems = []
    try:
        if before is not None:
            before()
        if unmount:
            for name, m in named:
                try:
                    m.unmount()
                except AssertionError as e:
                    problems.append("%s: %s" % (name, e) if name else str(e))
    finally:
        try:
            for _, m in named:
                m.cleanup()
        finally:
            if proxy is not None:
                proxy.stop()
            for s in servers:
                if s is not None:
                    s.cleanup()
            if tmp:
                shutil.rmtree(tmp, ignore_errors=True)
    if problems:
        raise AssertionError("; ".join(problems))


def create_and_append(c, mailbox, msgs):
    """CREATEs mailbox (UTF-8; not INBOX) on imaplib client c and APPENDs msgs (mailgen Msg)."""
    if mailbox != "INBOX":
        typ, data = c.create(D.imap_quote(D.mutf7_encode(mailbox)))
        assert typ == "OK", (mailbox, data)
    if msgs:
        G.multiappend(c, mailbox, msgs)


def mount_of(srv, port=None, **opts):
    """An imapfs Mount (not mounted yet) of srv's user on srv's imaps port (or port, e.g. a
    proxy's), with srv's CA and password file; opts are more mount options."""
    o = {"cafile": srv.cafile, "password_file": srv.password_file}
    o.update(opts)
    return I.Mount("imaps://%s@127.0.0.1:%d" % (srv.user, port or srv.imaps_port), opts=o)


def mount_once(mounts, specs, name):
    """mounts[name], mounted on first use from specs[name] = (server, mount options), so that
    a mount that fails (e.g. an option the daemon doesn't take) fails only its tests."""
    if name not in mounts:
        srv, opts = specs[name]
        m = mount_of(srv, **opts)
        mounts[name] = m
        m.mount(foreground=True)
    return mounts[name]
