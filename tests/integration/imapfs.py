"""Mount helper for the integration tests: runs the imapfs daemon for real.

    m = Mount(url, opts={"cafile": ..., "password_file": ...})
    m.mount()                  # daemon mode: the parent exits once mounted
    m.mount(foreground=True)   # -f in the background, its stderr in m.logfile
    m.unmount()                # fusermount3 -u, then -uz and kill as a last resort

The binary is $IMAPFS_BIN (meson sets it), else $IMAPFS_SRC/build/fs/imapfs. ASan/UBSan
reports of the daemon are written under the mount's work directory (log_path is
appended to ASAN_OPTIONS/UBSAN_OPTIONS) and unmount() raises if there is one.
"""

import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time

LIVE = set()  # Mounts that may have something mounted, for emergency cleanup (common.py)
HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("IMAPFS_SRC") or os.path.dirname(os.path.dirname(HERE))


def imapfs_bin():
    b = os.environ.get("IMAPFS_BIN") or os.path.join(SRC, "build", "fs", "imapfs")
    return os.path.abspath(b)


def check_bin():
    b = imapfs_bin()
    if not os.access(b, os.X_OK):
        raise RuntimeError("imapfs binary not found or not executable: %s (set IMAPFS_BIN)" % b)
    return b


def _unescape_mounts(s):
    out = []
    i = 0
    while i < len(s):
        if s[i] == "\\" and s[i + 1:i + 4].isdigit():
            out.append(chr(int(s[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


def mounts():
    """[(device, mountpoint, fstype, options)] from /proc/mounts."""
    res = []
    with open("/proc/mounts") as f:
        for line in f:
            p = line.split()
            if len(p) >= 4:
                res.append((_unescape_mounts(p[0]), _unescape_mounts(p[1]), p[2], p[3]))
    return res


def mount_entry(mp):
    mp = os.path.realpath(mp)
    for e in mounts():
        if e[1] == mp:
            return e
    return None


def is_mounted(mp):
    e = mount_entry(mp)
    return e is not None and e[2].startswith("fuse")


def wait_for(cond, timeout, interval=0.02, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise TimeoutError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


def pids_for_mountpoint(mp):
    """PIDs of imapfs processes whose command line names mountpoint mp."""
    mp = os.path.realpath(mp)
    exe = os.path.basename(imapfs_bin())
    res = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % d, "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if not argv or os.path.basename(argv[0].decode(errors="replace")) != exe:
            continue
        if any(os.path.realpath(a.decode(errors="replace")) == mp for a in argv[1:] if a):
            res.append(int(d))
    return res


def pid_alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except OSError:
        return False


def format_opts(opts):
    """dict/list → the string after -o. Commas and backslashes in values are escaped
    for fuse_opt."""
    if isinstance(opts, str):
        return opts
    items = []
    for k, v in (opts.items() if isinstance(opts, dict) else opts):
        if v is None or v is True:
            items.append(k)
        else:
            items.append("%s=%s" % (k, str(v).replace("\\", "\\\\").replace(",", "\\,")))
    return ",".join(items)


class Mount:
    def __init__(self, url, mountpoint=None, opts=None, env=None, extra_args=(), workdir=None):
        self.url = url
        self.own_workdir = workdir is None
        self.workdir = workdir or tempfile.mkdtemp(prefix="ifs", dir="/tmp")
        os.chmod(self.workdir, 0o755)
        self.mp = mountpoint or os.path.join(self.workdir, "mnt")
        os.makedirs(self.mp, exist_ok=True)
        self.opts = opts or {}
        self.extra_args = list(extra_args)
        self.env = dict(os.environ)
        self.env.pop("IMAPFS_PASSWORD", None)
        # The persistent cache of a test mount lives with the mount, never in ~/.cache.
        self.env["XDG_CACHE_HOME"] = os.path.join(self.workdir, "cache")
        if env:
            self.env.update(env)
        self.asan_dir = os.path.join(self.workdir, "san")
        os.makedirs(self.asan_dir, exist_ok=True)
        for var in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"):
            prefix = {"ASAN_OPTIONS": "asan", "UBSAN_OPTIONS": "ubsan", "LSAN_OPTIONS": "lsan"}[var]
            cur = self.env.get(var, "")
            if "log_path" not in cur:
                self.env[var] = (cur + ":" if cur else "") + "log_path=%s/%s" % (self.asan_dir, prefix)
        self.proc = None  # foreground Popen
        self.daemon_pid = None
        self.logfile = None
        self.stderr = ""
        self.returncode = None
        self.n = 0

    def argv(self, foreground=False, debug=False):
        a = [check_bin(), self.url, self.mp]
        o = format_opts(self.opts)
        if o:
            a += ["-o", o]
        if foreground:
            a.append("-f")
        if debug:
            a.append("-d")
        return a + self.extra_args

    def mount(self, foreground=False, debug=False, timeout=30, expect_ok=True):
        """Mounts; returns True if mounted. With expect_ok, raises with the daemon's output
        if it did not mount."""
        self.n += 1
        LIVE.add(self)
        self.logfile = os.path.join(self.workdir, "imapfs-%d.log" % self.n)
        outfile = os.path.join(self.workdir, "imapfs-%d.out" % self.n)
        argv = self.argv(foreground or debug, debug)
        with open(self.logfile, "wb") as err, open(outfile, "wb") as out:
            if foreground or debug:
                self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                             env=self.env)
                try:
                    wait_for(lambda: is_mounted(self.mp) or self.proc.poll() is not None, timeout,
                             what="imapfs -f to mount")
                except TimeoutError:
                    pass
                ok = is_mounted(self.mp)
                if ok:
                    self.daemon_pid = self.proc.pid
                else:
                    self._kill_proc()
                    self.returncode = self.proc.returncode
            else:
                p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=self.env)
                try:
                    self.returncode = p.wait(timeout)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
                    self.returncode = None
                ok = self.returncode == 0 and is_mounted(self.mp)
                if ok:
                    pids = pids_for_mountpoint(self.mp)
                    self.daemon_pid = pids[0] if pids else None
        self.stderr = self.read_log()
        if expect_ok and not ok:
            self.cleanup_mount()
            raise RuntimeError("imapfs did not mount (exit %r): %s\n%s" % (
                self.returncode, " ".join(argv), self.stderr[-3000:]))
        return ok

    def read_log(self):
        if not self.logfile:
            return ""
        try:
            with open(self.logfile, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def _kill_proc(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def unmount(self, timeout=20):
        """Unmounts cleanly (fusermount3 -u) and waits for the daemon to exit. Raises if
        that needed force, or if the daemon left a sanitizer report."""
        problems = []
        if is_mounted(self.mp):
            r = subprocess.run(["fusermount3", "-u", self.mp], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT)
            if r.returncode != 0:
                problems.append("fusermount3 -u failed: %s" % r.stdout.decode(errors="replace"))
        problems += self._reap(timeout)
        problems += self.sanitizer_reports()
        if problems:
            raise AssertionError("; ".join(problems))

    def _reap(self, timeout):
        problems = []
        if self.proc is not None:
            try:
                rc = self.proc.wait(timeout)
                if rc != 0:
                    problems.append("imapfs -f exited with status %d after unmount" % rc)
            except subprocess.TimeoutExpired:
                problems.append("imapfs -f did not exit within %ds of unmount" % timeout)
                self.proc.kill()
                self.proc.wait()
            self.proc = None
        elif self.daemon_pid:
            pid = self.daemon_pid
            try:
                wait_for(lambda: not pid_alive(pid), timeout, what="daemon exit")
            except TimeoutError:
                problems.append("imapfs daemon %d did not exit within %ds of unmount" % (pid, timeout))
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        self.daemon_pid = None
        if is_mounted(self.mp):
            problems.append("still mounted after unmount")
            subprocess.run(["fusermount3", "-uz", self.mp], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
        return problems

    def sanitizer_reports(self):
        """Reports (ASan/UBSan/LSan) the daemon wrote since the last call."""
        res = []
        for f in sorted(glob.glob(os.path.join(self.asan_dir, "*"))):
            if f.endswith(".seen"):
                continue
            try:
                with open(f, errors="replace") as fh:
                    text = fh.read()
                os.rename(f, f + ".seen")
            except OSError:
                continue
            res.append("sanitizer report %s:\n%s" % (f, text[:4000]))
        return res

    def cleanup_mount(self):
        """Best effort, never raises: unmount (lazily if needed) and kill the daemon."""
        if is_mounted(self.mp):
            r = subprocess.run(["fusermount3", "-u", self.mp], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
            if r.returncode != 0:
                subprocess.run(["fusermount3", "-uz", self.mp], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
        for pid in pids_for_mountpoint(self.mp) + ([self.proc.pid] if self.proc else []):
            try:
                wait_for(lambda: not pid_alive(pid), 5, what="daemon exit")
            except TimeoutError:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        if self.proc:
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            self.proc = None
        self.daemon_pid = None

    def cleanup(self):
        LIVE.discard(self)
        self.cleanup_mount()
        if self.own_workdir and not is_mounted(self.mp):
            subprocess.run(["rm", "-rf", "--one-file-system", self.workdir])


def run(argv, env=None, timeout=60):
    """Runs imapfs (or anything) with output in files (a daemonized child must not keep a
    pipe open); returns (returncode, stdout, stderr)."""
    e = dict(os.environ)
    e.pop("IMAPFS_PASSWORD", None)
    # A cache of this run only, removed with it (a daemon still running keeps its open files).
    cache_home = tempfile.mkdtemp(prefix="ifscache", dir="/tmp")
    e["XDG_CACHE_HOME"] = cache_home
    if env:
        e.update(env)
    try:
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=e)
            try:
                rc = p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                rc = None
            out.seek(0)
            err.seek(0)
            return rc, out.read().decode("utf-8", "replace"), err.read().decode("utf-8", "replace")
    finally:
        shutil.rmtree(cache_home, ignore_errors=True)
