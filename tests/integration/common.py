"""Shared helpers of the integration tests (stdlib only)."""

import atexit
import os
import re
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
    """How the mount must show one decoded mailbox name component (see fs/names.h)."""
    if s == "":
        return "%"
    if s in (".", ".."):
        return "%2E" * len(s)
    return s.replace("%", "%25").replace("/", "%2F")


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
