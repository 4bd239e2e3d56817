#!/usr/bin/python3
"""The command-line contract of imapfs: --help/--version, password sources and their
order, TLS (certificate, host name, STARTTLS, plaintext refusal), names=uid, ro, and
that a failed start mounts nothing."""

import base64
import errno
import os
import re
import shutil
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tap  # noqa: E402
from common import D, I, G, sh, mount_files, read_file, wait_for  # noqa: E402

SRV = None        # ssl=yes, cert for IP:127.0.0.1 + DNS:localhost
SRV_PLAIN = None  # ssl=no: STARTTLS not offered
SRV_WRONG = None  # a certificate for another name only
TMP = None
CAROL_PW = 'c"ar\\ol pw!'  # quoting: '"', '\' and a space
MSGS = []


def setUpModule():
    global SRV, SRV_PLAIN, SRV_WRONG, TMP, MSGS
    I.check_bin()
    TMP = tempfile.mkdtemp(prefix="itm", dir="/tmp")
    os.chmod(TMP, 0o755)
    try:
        SRV = D.Dovecot()
        SRV.add_user("carol", CAROL_PW)
        SRV.start()
        MSGS = [m for m in G.hard_messages() if m.mailbox == "INBOX"][:6]
        G.load(SRV, MSGS, create=False)
        c = SRV.client("carol")
        D.append(c, "INBOX", MSGS[0].raw, [], MSGS[0].internaldate)
        c.logout()
        SRV_PLAIN = D.Dovecot(ssl=False).start()
        G.load(SRV_PLAIN, [G.hard_messages()[0]], create=False)
        wrong = os.path.join(TMP, "wrong")
        os.makedirs(wrong)
        D.make_cert(wrong + "/cert.pem", wrong + "/key.pem", cn="wrong.example", san="DNS:wrong.example")
        SRV_WRONG = D.Dovecot(certfile=wrong + "/cert.pem", keyfile=wrong + "/key.pem").start()
    except Exception:
        tearDownModule()
        raise


def tearDownModule():
    for s in (SRV, SRV_PLAIN, SRV_WRONG):
        if s is not None:
            s.cleanup()
    if TMP:
        shutil.rmtree(TMP, ignore_errors=True)


def url(srv=None, user="alice", host="127.0.0.1", scheme="imaps", port=None):
    srv = srv or SRV
    if port is None:
        port = srv.imaps_port if scheme == "imaps" else srv.imap_port
    return "%s://%s@%s:%d" % (scheme, user, host, port)


def write_file(name, text, mode=0o600):
    p = os.path.join(TMP, name)
    with open(p, "w") as f:
        f.write(text)
    os.chmod(p, mode)
    return p


def pw_script(name, password, extra_lines=("second line is ignored",)):
    """A password_command script whose first output line is password."""
    pf = write_file(name + ".txt", password + "\n" + "".join(l + "\n" for l in extra_lines))
    return "cat " + pf


class Base(unittest.TestCase):
    def new_mount(self, u=None, opts=None, env=None, extra_args=()):
        o = {"cafile": SRV.cafile}
        if opts is not None:
            o = opts
        m = I.Mount(u or url(), opts=o, env=env, extra_args=extra_args)
        self.addCleanup(m.cleanup)
        return m

    def log_offset(self, srv):
        try:
            return os.path.getsize(srv.logfile)
        except OSError:
            return 0

    def log_since(self, srv, off):
        with open(srv.logfile, "rb") as f:
            f.seek(off)
            return f.read().decode("utf-8", "replace")

    def assert_works(self, m, srv=None, user="alice"):
        """The mount shows INBOX with the server's messages, and a file reads as BODY[]."""
        srv = srv or SRV
        c = srv.client(user)
        try:
            D.select(c, "INBOX")
            meta = D.fetch_meta(c)
            uid = min(meta)
            body = D.fetch_bodies(c, [uid])[uid]
        finally:
            c.logout()
        self.assertIn("INBOX", os.listdir(m.mp))
        files = mount_files(os.path.join(m.mp, "INBOX"))
        self.assertEqual(set(files), set(meta))
        self.assertEqual(read_file(os.path.join(m.mp, "INBOX", files[uid])), body)

    def assert_refused(self, argv, env=None, reason_re=None, one_line=False):
        """imapfs exits non-zero (in time), says why on stderr, and mounts nothing."""
        mp = argv[2]
        rc, out, err = I.run(argv, env=env, timeout=45)
        try:
            self.assertIsNotNone(rc, "imapfs did not exit within 45 s")
            self.assertNotEqual(rc, 0, "imapfs exited 0 (stderr: %r)" % err)
            self.assertFalse(I.is_mounted(mp), "something is mounted on %s" % mp)
            lines = [l for l in err.splitlines() if l.strip()]
            self.assertTrue(lines, "no reason on stderr (stdout: %r)" % out)
            if one_line:
                self.assertEqual(len(lines), 1, "not a one-line error: %r" % err)
            if reason_re:
                self.assertRegex(err, reason_re)
            # no daemon left behind
            wait_for(lambda: not I.pids_for_mountpoint(mp), 5, what="no imapfs process for " + mp)
        finally:
            if I.is_mounted(mp):
                sh(["fusermount3", "-uz", mp])
        return err

    def mp(self):
        d = tempfile.mkdtemp(prefix="mp", dir=TMP)
        return d


class TestCLI(Base):
    def test_help(self):
        rc, out, err = I.run([I.check_bin(), "--help"])
        self.assertEqual(rc, 0, err)
        text = out + err
        self.assertRegex(text, r"(?i)usage")
        self.assertIn("imaps://", text)
        self.assertIn("password_command", text)

    def test_version(self):
        with open(os.path.join(I.SRC, "meson.build")) as f:
            version = re.search(r"version\s*:\s*'([^']+)'", f.read()).group(1)
        rc, out, err = I.run([I.check_bin(), "--version"])
        self.assertEqual(rc, 0, err)
        self.assertIn(version, out + err)

    def test_no_password_source(self):
        mp = self.mp()
        err = self.assert_refused([I.check_bin(), url(), mp, "-o", "cafile=" + SRV.cafile],
                                  reason_re=r"(?i)password", one_line=True)
        self.assertNotIn("Traceback", err)

    def test_wrong_password(self):
        mp = self.mp()
        pf = write_file("wrong.pw", "not-the-password\n")
        off = self.log_offset(SRV)
        self.assert_refused([I.check_bin(), url(), mp, "-o", "cafile=%s,password_file=%s" % (SRV.cafile, pf)],
                            reason_re=r"(?i)auth|login|password|credential")
        self.assertRegex(self.log_since(SRV, off), r"auth failed|Authentication failed|Aborted login",
                         "the server did not see a failed login")

    def test_unreachable_server(self):
        mp = self.mp()
        self.assert_refused([I.check_bin(), "imaps://alice@127.0.0.1:%d" % D.free_port(), mp,
                             "-o", "cafile=%s,password_file=%s" % (SRV.cafile, SRV.password_file)])

    def test_missing_mountpoint(self):
        mp = os.path.join(TMP, "does-not-exist")
        rc, out, err = I.run([I.check_bin(), url(), mp, "-o",
                              "cafile=%s,password_file=%s" % (SRV.cafile, SRV.password_file)], timeout=45)
        self.assertIsNotNone(rc)
        self.assertNotEqual(rc, 0)
        self.assertTrue(err.strip(), "no reason on stderr")
        self.assertFalse(os.path.exists(mp) and I.is_mounted(mp))


class TestTLS(Base):
    def test_untrusted_certificate(self):
        mp = self.mp()
        self.assert_refused([I.check_bin(), url(), mp, "-o", "password_file=" + SRV.password_file],
                            reason_re=r"(?i)certificat")

    def test_other_ca_not_trusted(self):
        mp = self.mp()
        self.assert_refused([I.check_bin(), url(), mp,
                             "-o", "cafile=%s,password_file=%s" % (SRV_WRONG.cafile, SRV.password_file)],
                            reason_re=r"(?i)certificat")

    def test_host_name_mismatch_ip(self):
        # the chain is trusted (cafile is the server's own certificate) but it is for wrong.example
        mp = self.mp()
        self.assert_refused([I.check_bin(), url(SRV_WRONG), mp,
                             "-o", "cafile=%s,password_file=%s" % (SRV_WRONG.cafile, SRV_WRONG.password_file)],
                            reason_re=r"(?i)certificat|host|name|match|verif")

    def test_host_name_mismatch_dns(self):
        mp = self.mp()
        self.assert_refused([I.check_bin(), url(SRV_WRONG, host="localhost"), mp,
                             "-o", "cafile=%s,password_file=%s" % (SRV_WRONG.cafile, SRV_WRONG.password_file)],
                            reason_re=r"(?i)certificat|host|name|match|verif")

    def test_host_name_dns_ok(self):
        m = self.new_mount(url(host="localhost"), {"cafile": SRV.cafile, "password_file": SRV.password_file})
        m.mount()
        self.assert_works(m)
        m.unmount()

    def test_starttls(self):
        off = self.log_offset(SRV)
        m = self.new_mount(url(scheme="imap"), {"cafile": SRV.cafile, "password_file": SRV.password_file})
        m.mount()
        self.assert_works(m)
        m.unmount()
        logins = [l for l in self.log_since(SRV, off).splitlines() if "Login: user=<alice>" in l]
        self.assertTrue(logins, "no login in the server log")
        # the test's own imaplib check used imaps; every login must have been over TLS
        for l in logins:
            self.assertIn("TLS", l, "login without TLS: " + l)

    def test_starttls_untrusted_certificate(self):
        mp = self.mp()
        self.assert_refused([I.check_bin(), url(scheme="imap"), mp, "-o", "password_file=" + SRV.password_file],
                            reason_re=r"(?i)certificat")

    def test_no_starttls_refused(self):
        mp = self.mp()
        off = self.log_offset(SRV_PLAIN)
        self.assert_refused([I.check_bin(), url(SRV_PLAIN, scheme="imap"), mp,
                             "-o", "password_file=" + SRV_PLAIN.password_file],
                            reason_re=r"(?i)starttls|tls|plain|encrypt")
        log = self.log_since(SRV_PLAIN, off)
        self.assertNotRegex(log, r"Login: user=|auth failed|method=",
                            "credentials were sent over a plain connection")

    def test_no_starttls_allow_plaintext(self):
        m = self.new_mount(url(SRV_PLAIN, scheme="imap"),
                           {"password_file": SRV_PLAIN.password_file, "allow_plaintext": None})
        m.mount(foreground=True)
        self.assert_works(m, SRV_PLAIN)
        log = m.read_log()
        m.unmount()
        self.assertRegex(log, r"(?i)unencrypted|insecure|clear ?text|not encrypted|without (tls|encryption)|no tls",
                         "no warning about the plaintext connection")


class TestPasswords(Base):
    def test_password_file(self):
        pf = write_file("alice-2lines.pw", SRV.password + "\nsecond line\n")
        m = self.new_mount(opts={"cafile": SRV.cafile, "password_file": pf})
        m.mount()
        self.assert_works(m)
        m.unmount()

    def test_password_command(self):
        m = self.new_mount(opts={"cafile": SRV.cafile, "password_command": pw_script("cmd-ok", SRV.password)})
        m.mount()
        self.assert_works(m)
        m.unmount()

    def test_password_env(self):
        m = self.new_mount(opts={"cafile": SRV.cafile}, env={"IMAPFS_PASSWORD": SRV.password})
        m.mount()
        self.assert_works(m)
        m.unmount()

    def test_password_with_quotes_and_backslash(self):
        pf = write_file("carol.pw", CAROL_PW + "\n")
        m = self.new_mount(url(user="carol"), {"cafile": SRV.cafile, "password_file": pf})
        m.mount()
        self.assert_works(m, user="carol")
        m.unmount()

    def test_precedence_command_over_file_and_env(self):
        bad = write_file("bad.pw", "wrong-password\n")
        m = self.new_mount(opts={"cafile": SRV.cafile, "password_command": pw_script("cmd-ok2", SRV.password),
                                 "password_file": bad}, env={"IMAPFS_PASSWORD": "wrong-env"})
        m.mount()
        self.assert_works(m)
        m.unmount()

    def test_precedence_command_wrong_wins(self):
        mp = self.mp()
        self.assert_refused([I.check_bin(), url(), mp, "-o",
                             "cafile=%s,password_command=%s,password_file=%s" % (
                                 SRV.cafile, pw_script("cmd-bad", "wrong-password"), SRV.password_file)],
                            env={"IMAPFS_PASSWORD": SRV.password})

    def test_precedence_file_over_env(self):
        m = self.new_mount(opts={"cafile": SRV.cafile, "password_file": SRV.password_file},
                           env={"IMAPFS_PASSWORD": "wrong-env"})
        m.mount()
        self.assert_works(m)
        m.unmount()

    def test_precedence_file_wrong_wins_over_env(self):
        mp = self.mp()
        bad = write_file("bad2.pw", "wrong-password\n")
        self.assert_refused([I.check_bin(), url(), mp, "-o", "cafile=%s,password_file=%s" % (SRV.cafile, bad)],
                            env={"IMAPFS_PASSWORD": SRV.password})

    def test_failing_password_command(self):
        mp = self.mp()
        self.assert_refused([I.check_bin(), url(), mp, "-o", "cafile=%s,password_command=false" % SRV.cafile],
                            env={"IMAPFS_PASSWORD": SRV.password})

    def test_password_not_in_cmdline(self):
        for how, opts, env in (("file", {"password_file": SRV.password_file}, None),
                               ("env", {}, {"IMAPFS_PASSWORD": SRV.password})):
            with self.subTest(how=how):
                o = {"cafile": SRV.cafile}
                o.update(opts)
                m = self.new_mount(opts=o, env=env)
                m.mount()
                pids = I.pids_for_mountpoint(m.mp)
                self.assertTrue(pids, "no imapfs process found for the mount")
                for pid in pids:
                    with open("/proc/%d/cmdline" % pid, "rb") as f:
                        cmdline = f.read()
                    self.assertNotIn(SRV.password.encode(), cmdline)
                m.unmount()

    def test_password_not_in_debug_log(self):
        pf = write_file("carol2.pw", CAROL_PW + "\n")
        m = self.new_mount(url(user="carol"), {"cafile": SRV.cafile, "password_file": pf})
        m.mount(debug=True)
        self.assert_works(m, user="carol")
        m.unmount()
        log = m.read_log().encode("utf-8", "replace")
        self.assertRegex(log, rb"(?i)LOGIN|AUTHENTICATE|FETCH", "-d logged no IMAP traffic: %r" % log[:2000])
        pw = CAROL_PW.encode()
        forms = {
            "raw": pw,
            "quoted": pw.replace(b"\\", b"\\\\").replace(b'"', b'\\"'),
            "sasl-plain": base64.b64encode(b"\0carol\0" + pw),
            "sasl-plain-authz": base64.b64encode(b"carol\0carol\0" + pw),
            "sasl-login": base64.b64encode(pw),
        }
        for name, form in forms.items():
            self.assertNotIn(form, log, "password (%s form) in the -d log" % name)


class TestMountOptions(Base):
    def test_daemon_parent_exits_when_mounted(self):
        m = self.new_mount(opts={"cafile": SRV.cafile, "password_file": SRV.password_file})
        ok = m.mount(expect_ok=False)
        # Mount.mount() checks /proc/mounts right after the parent exits, without polling
        self.assertEqual(m.returncode, 0, m.stderr)
        self.assertTrue(ok, "parent exited 0 before the file system was mounted")
        self.assertTrue(m.daemon_pid, "no daemon process after the parent exited")
        self.assertTrue(I.mount_entry(m.mp)[2].startswith("fuse"))
        m.unmount()

    def test_names_uid(self):
        m = self.new_mount(opts={"cafile": SRV.cafile, "password_file": SRV.password_file, "names": "uid"})
        m.mount()
        c = SRV.client()
        D.select(c, "INBOX")
        meta = D.fetch_meta(c)
        bodies = D.fetch_bodies(c)
        c.logout()
        names = set(os.listdir(os.path.join(m.mp, "INBOX")))
        self.assertEqual(names, {"%d.eml" % u for u in meta})
        for uid in meta:
            self.assertEqual(read_file(os.path.join(m.mp, "INBOX", "%d.eml" % uid)), bodies[uid])
        m.unmount()

    def test_ro(self):
        m = self.new_mount(opts={"cafile": SRV.cafile, "password_file": SRV.password_file, "ro": None})
        m.mount()
        e = I.mount_entry(m.mp)
        self.assertIn("ro", e[3].split(","), e)
        self.assert_works(m)
        with self.assertRaises(OSError) as cm:
            os.mkdir(os.path.join(m.mp, "newdir"))
        self.assertEqual(cm.exception.errno, errno.EROFS)
        m.unmount()

    def test_foreground(self):
        m = self.new_mount(opts={"cafile": SRV.cafile, "password_file": SRV.password_file})
        m.mount(foreground=True)
        self.assertIsNone(m.proc.poll(), "imapfs -f exited while mounted")
        self.assert_works(m)
        m.unmount()  # raises if -f does not exit 0 after fusermount3 -u


if __name__ == "__main__":
    tap.main()
