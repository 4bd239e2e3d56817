#!/usr/bin/python3
"""Debian server packages unpacked (not installed) for the integration tests.

cyrus-imapd and mailutils-imap4d conflict with dovecot-imapd as packages, so the tests
`apt-get download` them and `dpkg -x` them into the build directory, once: later runs
reuse the unpacked tree. Their shared libraries that are not in the packages themselves
come from ordinary installed packages (examples/install-deps.sh); `missing_libs` says which
are absent, so a test can skip saying exactly what to install.

The cache is $IMAPFS_SERVERS_CACHE, else BUILD/servers where BUILD is the directory of
$IMAPFS_BIN's parent (build/fs/imapfs → build/servers), else $IMAPFS_SRC/build/servers.
Cyrus drops to the `cyrus` user, which must reach its binaries: where that directory sits
below one that others can't enter (a clone in a 0700 `mktemp -d`), the cache is
/tmp/imapfs-servers-UID instead (owned by us, not a link, else a fresh temporary directory).
"""

import glob
import os
import shutil
import signal
import ssl
import stat
import subprocess
import tempfile

import dovecot as D


class Unavailable(Exception):
    """The server can't run here; the message says why (a test skips with it)."""


def cache_dir():
    d = os.environ.get("IMAPFS_SERVERS_CACHE")
    if not d:
        b = os.environ.get("IMAPFS_BIN")
        if b:
            d = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(b))), "servers")
        else:
            here = os.path.dirname(os.path.abspath(__file__))
            src = os.environ.get("IMAPFS_SRC") or os.path.dirname(os.path.dirname(here))
            d = os.path.join(src, "build", "servers")
    os.makedirs(d, exist_ok=True)
    if not _others_reach(d):
        d = _shared_tmp()
    return d


def _others_reach(d):
    """Whether a user other than us can walk down to d (every directory on the way o+x)."""
    d = os.path.realpath(d)
    while True:
        if not os.stat(d).st_mode & 0o001:
            return False
        up = os.path.dirname(d)
        if up == d:
            return True
        d = up


def _shared_tmp():
    d = os.path.join(tempfile.gettempdir(), "imapfs-servers-%d" % os.getuid())
    try:
        os.mkdir(d, 0o755)
    except FileExistsError:
        pass
    st = os.lstat(d)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o022 \
            or not _others_reach(d):
        d = tempfile.mkdtemp(prefix="imapfs-servers-")
    os.chmod(d, 0o755)
    return d


def unpacked(name, packages):
    """Root of the unpacked packages (downloaded and unpacked on first use)."""
    root = os.path.join(cache_dir(), name)
    done = os.path.join(root, ".unpacked")
    if os.path.exists(done):
        return root
    dl = os.path.join(cache_dir(), "debs")
    os.makedirs(dl, exist_ok=True)
    os.chmod(dl, 0o777)  # apt's _apt user writes the download when it can
    need = [p for p in packages if not glob.glob(os.path.join(dl, p + "_*.deb"))]
    if need:
        def download():
            return subprocess.run(["apt-get", "download"] + need, cwd=dl, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, timeout=300)
        r = download()
        if r.returncode != 0 and os.geteuid() == 0:
            # a machine whose package lists were never fetched (everything else installed)
            subprocess.run(["apt-get", "update", "-qq"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=300)
            r = download()
        if r.returncode != 0:
            raise Unavailable("apt-get download %s failed: %s" % (
                " ".join(need), r.stderr.decode(errors="replace").strip()[-300:]))
    os.makedirs(root, exist_ok=True)
    for p in packages:
        debs = sorted(glob.glob(os.path.join(dl, p + "_*.deb")))
        if not debs:
            raise Unavailable("no %s package downloaded in %s" % (p, dl))
        subprocess.run(["dpkg", "-x", debs[-1], root], check=True, timeout=120)
    open(done, "w").close()
    return root


def lib_path(root):
    return os.path.join(root, "usr", "lib", "x86_64-linux-gnu")


def env(root):
    e = dict(os.environ)
    e["LD_LIBRARY_PATH"] = lib_path(root) + (
        ":" + e["LD_LIBRARY_PATH"] if e.get("LD_LIBRARY_PATH") else "")
    return e


def missing_libs(root, binaries):
    """Shared libraries the binaries need that neither the system nor the packages have."""
    miss = set()
    for b in binaries:
        r = subprocess.run(["ldd", b], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           env=env(root), timeout=30)
        for line in r.stdout.decode(errors="replace").splitlines():
            if "not found" in line:
                miss.add(line.split()[0])
    return sorted(miss)


class Server:
    """What cyrus.Cyrus and mailutils.Mailutils share: a server from unpacked packages in
    a directory of its own under /tmp, listening on two free 127.0.0.1 ports (imaps:
    implicit TLS, imap: STARTTLS), with the attributes of dovecot.Dovecot that the
    server-independent tests use. A subclass sets `name` and `logname` and gives
    start() (which calls _spawn) and add_user()."""

    name = logname = None

    def __init__(self, prefix, conf, logfile, user, password):
        self.dir = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
        os.chmod(self.dir, 0o755)
        self.user = user
        self.password = password
        self.users = {}
        self.mail_user, self.mail_uid, self.mail_gid = D.mail_ids()
        self.cafile = os.path.join(self.dir, "cert.pem")
        self.keyfile = os.path.join(self.dir, "key.pem")
        self.conf = os.path.join(self.dir, conf)
        self.logfile = os.path.join(self.dir, "log", logfile)
        self.imaps_port = self.imap_port = None
        self.proc = None

    def sep(self):
        return "/"

    def prefix(self):
        """Personal namespace prefix of the user (what NAMESPACE says)."""
        return ""

    def server_name(self, name):
        """The server's name of a folder the mount shows as name (UTF-8)."""
        return name if name == "INBOX" else self.prefix() + name

    def password_file_for(self, user):
        return os.path.join(self.dir, "pw-" + user)

    def _write_password_file(self, user, password):
        """Remembers user's password and writes the file imapfs's password_file reads."""
        self.users[user] = password
        pf = self.password_file_for(user)
        with open(pf, "w") as f:
            f.write(password + "\n")
        os.chmod(pf, 0o600)
        return pf

    def _pick_ports(self):
        self.imaps_port = D.free_port()
        self.imap_port = D.free_port()
        while self.imap_port == self.imaps_port:
            self.imap_port = D.free_port()

    def _spawn(self, argv, root, timeout):
        """Starts argv in the foreground (libraries from root) and waits for both ports;
        cleans up and raises if it exits first or the ports don't open in time."""
        out = open(self.logfile, "ab")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                     env=env(root), start_new_session=True)
        out.close()
        D.LIVE.add(self)
        try:
            D.wait_for(lambda: self.proc.poll() is not None or
                       (D.port_open(self.imaps_port) and D.port_open(self.imap_port)),
                       timeout, interval=0.05, what="%s ports" % self.logname)
            if self.proc.poll() is not None:
                raise RuntimeError("%s exited %d: %s" % (
                    self.logname, self.proc.returncode, D.Dovecot._tail(self.logfile)))
        except Exception:
            self.cleanup()
            raise

    def ssl_context(self):
        return ssl.create_default_context(cafile=self.cafile)

    def client(self, user=None, password=None, starttls=False):
        return D.login(self, user, password, starttls)

    def create_mailbox(self, name):
        """name: UTF-8, '/'-separated below the personal namespace."""
        c = self.client()
        try:
            typ, data = c.create(D.imap_quote(D.mutf7_encode(self.prefix() + name)))
            if typ != "OK":
                raise RuntimeError("CREATE %s: %r" % (name, data))
        finally:
            c.logout()

    def stop(self, timeout=20):
        if self.proc is None:
            return
        pid = self.proc.pid
        if self.proc.poll() is None:
            # the master's children (one per connection, idled): it does not always take
            # them down itself
            kids = _descendants(pid)
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(pid, signal.SIGKILL)
                self.proc.wait(5)
            for p in kids:
                if D._alive(p):
                    try:
                        os.kill(p, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
        self.proc = None

    def cleanup(self):
        D.LIVE.discard(self)
        try:
            self.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


def _descendants(pid):
    res = set()
    todo = [pid]
    while todo:
        for c in D._children(todo.pop()):
            if c not in res:
                res.add(c)
                todo.append(c)
    return res
