#!/usr/bin/python3
"""OAuth2 logins (issue 10): -o oauth2_token_command against a Dovecot whose oauth2 passdb
checks every token with an introspection endpoint this file serves on 127.0.0.1. The token
command counts its runs; the endpoint decides which tokens are valid, so a test can expire
them mid-mount. Also: the command failing, hanging (deadline) or printing nothing, and the
token never in the log (-d), argv or the environment of child processes."""

import json
import os
import re
import shutil
import sys
import tempfile
import threading
import time
import unittest
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tap  # noqa: E402
from common import D, I, mount_files, read_file, wait_for  # noqa: E402

SRV = None
HTTP = None
TMP = None
SECRET = "S3cr3tTok"  # part of every token: must not show anywhere


class Policy:
    """Which tokens the endpoint accepts: "tok-SECRET-N" with N >= min_run and N not in refuse."""
    lock = threading.Lock()
    min_run = 1
    refuse = set()
    seen = []  # tokens asked about


class Introspect(BaseHTTPRequestHandler):
    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        token = urllib.parse.parse_qs(self.rfile.read(n).decode()).get("token", [""])[0]
        m = re.fullmatch(r"tok-" + SECRET + r"-(\d+)", token)
        with Policy.lock:
            Policy.seen.append(token)
            ok = bool(m) and int(m.group(1)) >= Policy.min_run and int(m.group(1)) not in Policy.refuse
        body = json.dumps({"active": True, "username": "alice"} if ok else {"active": False}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


def setUpModule():
    global SRV, HTTP, TMP
    I.check_bin()
    TMP = tempfile.mkdtemp(prefix="ita", dir="/tmp")
    os.chmod(TMP, 0o755)
    HTTP = ThreadingHTTPServer(("127.0.0.1", 0), Introspect)
    threading.Thread(target=HTTP.serve_forever, daemon=True).start()
    try:
        SRV = D.Dovecot(oauth2="http://127.0.0.1:%d/introspect" % HTTP.server_port)
        SRV.start()
        c = SRV.client()
        D.append(c, "INBOX", b"Subject: one\r\n\r\nfirst\r\n")
        c.logout()
    except Exception:
        tearDownModule()
        raise


def tearDownModule():
    if SRV is not None:
        SRV.cleanup()
    if HTTP is not None:
        HTTP.shutdown()
    if TMP:
        shutil.rmtree(TMP, ignore_errors=True)


class Base(unittest.TestCase):
    def setUp(self):
        with Policy.lock:
            Policy.min_run = 1
            Policy.refuse = set()
            Policy.seen = []
        self.dir = tempfile.mkdtemp(prefix="t", dir=TMP)
        os.chmod(self.dir, 0o755)
        self.count = os.path.join(self.dir, "count")
        self.envfile = os.path.join(self.dir, "env")
        self.script = os.path.join(self.dir, "token.sh")
        with open(self.script, "w") as f:
            f.write('n=$(( $(cat %s 2>/dev/null || echo 0) + 1 ))\n'
                    'echo $n > %s\n'
                    'env > %s\n'
                    'echo "tok-%s-$n"\n'
                    'echo "a second line is ignored"\n' % (self.count, self.count, self.envfile, SECRET))

    def runs(self):
        try:
            with open(self.count) as f:
                return int(f.read())
        except (OSError, ValueError):
            return 0

    def url(self):
        return "imaps://alice@127.0.0.1:%d" % SRV.imaps_port

    def opts(self, cmd=None, **kw):
        o = {"cafile": SRV.cafile, "oauth2_token_command": cmd or "sh " + self.script}
        o.update(kw)
        return o

    def new_mount(self, opts, env=None):
        m = I.Mount(self.url(), opts=opts, env=env)
        self.addCleanup(m.cleanup)
        return m

    def refused(self, opts, reason_re, timeout=45):
        mp = tempfile.mkdtemp(prefix="mp", dir=self.dir)
        argv = [I.check_bin(), self.url(), mp, "-o", I.format_opts(opts)]
        t0 = time.monotonic()
        rc, out, err = I.run(argv, timeout=timeout)
        self.assertIsNotNone(rc, "imapfs did not exit")
        self.assertNotEqual(rc, 0, err)
        self.assertFalse(I.is_mounted(mp))
        # The command's own stderr passes through; imapfs says one line.
        lines = [l for l in err.splitlines() if l.startswith("imapfs:")]
        self.assertEqual(len(lines), 1, "not a one-line error: %r" % err)
        self.assertRegex(lines[0], reason_re)
        self.assertNotIn(SECRET, err)
        return lines[0], time.monotonic() - t0

    def logins(self, method):
        return len(re.findall(r"Login: user=<alice>, method=%s" % method, SRV.log()))


class TestOAuth(Base):
    def test_mount_runs_the_command_per_connection(self):
        before = self.logins("OAUTHBEARER")
        m = self.new_mount(self.opts())
        m.mount()
        files = mount_files(os.path.join(m.mp, "INBOX"))
        self.assertEqual(len(files), 1)
        self.assertIn(b"first", read_file(os.path.join(m.mp, "INBOX", list(files.values())[0])))
        # OAUTHBEARER preferred (Dovecot offers both); one run per connection logged in.
        wait_for(lambda: self.logins("OAUTHBEARER") - before == self.runs(), 10,
                 what="one token command run per login")
        self.assertGreaterEqual(self.runs(), 1)
        self.assertEqual(self.logins("XOAUTH2"), 0)
        m.unmount()

    def test_token_expires_mid_mount(self):
        m = self.new_mount(self.opts())
        m.mount()
        self.assertIn("INBOX", os.listdir(m.mp))
        n0 = self.runs()
        with Policy.lock:
            Policy.min_run = n0 + 1  # every token handed out so far is now invalid
        SRV.doveadm("kick", "alice")  # the server drops the connections
        c = SRV.client()
        D.append(c, "INBOX", b"Subject: two\r\n\r\nsecond\r\n")
        c.logout()
        # The next connections run the command again and log in with the new token.
        wait_for(lambda: len(mount_files(os.path.join(m.mp, "INBOX"))) == 2, 30,
                 interval=0.3, what="the new message through a new connection")
        self.assertGreater(self.runs(), n0)
        m.unmount()

    def test_refused_token_is_replaced_once(self):
        with Policy.lock:
            Policy.refuse = {1}
        m = self.new_mount(self.opts())
        m.mount(debug=True)
        self.assertIn("INBOX", os.listdir(m.mp))
        self.assertGreaterEqual(self.runs(), 2)
        with Policy.lock:
            self.assertEqual(Policy.seen[:2], ["tok-%s-1" % SECRET, "tok-%s-2" % SECRET])
        m.unmount()
        with open(m.logfile) as f:
            log = f.read()
        self.assertIn("refused the token", log)  # -d: debug lines on stderr

    def test_always_refused(self):
        with Policy.lock:
            Policy.min_run = 1000
        line, _ = self.refused(self.opts(), r"login as alice with OAUTHBEARER failed: .*Authentication failed")
        self.assertEqual(self.runs(), 2)  # once, then once more after the refusal

    def test_command_fails(self):
        self.refused(self.opts("echo nope >&2; exit 3"), r"oauth2_token_command failed \(exit status 3\)")

    def test_command_prints_nothing(self):
        self.refused(self.opts("true"), r"oauth2_token_command printed nothing")

    def test_command_hangs(self):
        pidfile = os.path.join(self.dir, "pid")
        cmd = "echo $$ > %s; sleep 60; echo late" % pidfile
        _, took = self.refused(self.opts(cmd, timeout=2), r"oauth2_token_command timed out after 2 s")
        self.assertLess(took, 15)
        with open(pidfile) as f:
            pid = int(f.read())
        # The shell and its sleep (its process group) were killed.
        wait_for(lambda: not I.pid_alive(pid), 5, what="the hung command killed")
        out = os.popen("pgrep -f 'sleep 60' -g %d" % pid).read().strip()
        self.assertEqual(out, "", "the command's children survived")

    def test_token_not_in_log_argv_or_environment(self):
        m = self.new_mount(self.opts(), env={"IMAPFS_PASSWORD": "envpw-" + SECRET})
        m.mount(debug=True)
        self.assertIn("INBOX", os.listdir(m.mp))
        pid = m.daemon_pid
        for what in ("cmdline", "environ"):
            with open("/proc/%d/%s" % (pid, what), "rb") as f:
                self.assertNotIn(SECRET.encode(), f.read(), what)
        with open(self.envfile) as f:
            self.assertNotIn(SECRET, f.read(), "the token command's environment")
        m.unmount()
        with open(m.logfile) as f:
            log = f.read()
        self.assertRegex(log, r"C: <command with credentials redacted>")
        self.assertNotIn(SECRET, log)
        import base64
        for n in range(1, self.runs() + 1):
            tok = "tok-%s-%d" % (SECRET, n)
            for ir in ("n,a=alice,\x01host=127.0.0.1\x01port=%d\x01auth=Bearer %s\x01\x01" % (SRV.imaps_port, tok),):
                self.assertNotIn(base64.b64encode(ir.encode()).decode()[:40], log)


if __name__ == "__main__":
    tap.main()
