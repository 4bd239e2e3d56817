#!/usr/bin/python3
"""The config file (issue 10): $XDG_CONFIG_HOME/imapfs/config (else ~/.config/imapfs/config),
a section per account with url and the -o keys; `imapfs ACCOUNT MOUNTPOINT` mounts it, the
command line overrides it, and bad keys, bad values and unknown accounts are one-line errors."""

import os
import re
import shutil
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tap  # noqa: E402
from common import D, I, read_file  # noqa: E402

SRV = None
TMP = None


def setUpModule():
    global SRV, TMP
    I.check_bin()
    TMP = tempfile.mkdtemp(prefix="itc", dir="/tmp")
    os.chmod(TMP, 0o755)
    try:
        SRV = D.Dovecot().start()
        c = SRV.client()
        D.append(c, "INBOX", b"Subject: one\r\n\r\nfirst\r\n")
        c.logout()
    except Exception:
        tearDownModule()
        raise


def tearDownModule():
    if SRV is not None:
        SRV.cleanup()
    if TMP:
        shutil.rmtree(TMP, ignore_errors=True)


class Base(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="c", dir=TMP)
        os.chmod(self.dir, 0o755)
        self.xdg = os.path.join(self.dir, "xdg")

    def url(self):
        return "imaps://alice@127.0.0.1:%d" % SRV.imaps_port

    def write_config(self, text, base=None, mode=0o600):
        d = os.path.join(base or self.xdg, "imapfs")
        os.makedirs(d, exist_ok=True)
        p = os.path.join(d, "config")
        with open(p, "w") as f:
            f.write(text)
        os.chmod(p, mode)
        return p

    def section(self, name="work", extra=""):
        return ("# my accounts\n[other]\nurl = imaps://bob@example.invalid\n\n"
                "[%s]\nurl = %s\ncafile = %s\npassword_file = %s\n%s"
                % (name, self.url(), SRV.cafile, SRV.password_file, extra))

    def mount(self, account="work", opts=None, env=None):
        e = {"XDG_CONFIG_HOME": self.xdg}
        e.update(env or {})
        m = I.Mount(account, opts=opts, env=e)
        self.addCleanup(m.cleanup)
        m.mount()
        return m

    def refused(self, reason_re, account="work", opts=None, env=None):
        mp = tempfile.mkdtemp(prefix="mp", dir=self.dir)
        argv = [I.check_bin(), account, mp]
        if opts:
            argv += ["-o", I.format_opts(opts)]
        e = {"XDG_CONFIG_HOME": self.xdg}
        e.update(env or {})
        rc, out, err = I.run(argv, env=e, timeout=45)
        self.assertIsNotNone(rc)
        self.assertNotEqual(rc, 0, err)
        self.assertFalse(I.is_mounted(mp))
        lines = [l for l in err.splitlines() if l.strip()]
        self.assertEqual(len(lines), 1, "not a one-line error: %r" % err)
        self.assertRegex(lines[0], reason_re)
        return lines[0]


class TestConfig(Base):
    def test_account_mounts(self):
        self.write_config(self.section(extra="names = uid\nallow_plaintext = no\n"))
        m = self.mount()
        names = os.listdir(os.path.join(m.mp, "INBOX"))
        self.assertEqual(len(names), 1)
        name = names[0]
        self.assertRegex(name, r"^\d+\.eml$")  # names = uid from the file
        self.assertIn(b"first", read_file(os.path.join(m.mp, "INBOX", name)))
        # The fsname is the account's URL, not the section name.
        self.assertIn("alice@127.0.0.1", I.mount_entry(m.mp)[0])
        m.unmount()

    def test_command_line_overrides(self):
        wrong = os.path.join(self.dir, "wrong.pw")
        with open(wrong, "w") as f:
            f.write("not-the-password\n")
        # password_file in the file is wrong; the one on the command line wins.
        self.write_config(self.section().replace(SRV.password_file, wrong))
        self.refused(r"(?i)login as alice.*failed")
        m = self.mount(opts={"password_file": SRV.password_file})
        self.assertIn("INBOX", os.listdir(m.mp))
        m.unmount()

    def test_default_location_and_escaping(self):
        # No XDG_CONFIG_HOME: ~/.config/imapfs/config. A value with a comma (fuse_opt's
        # separator) and spaces survives.
        home = os.path.join(self.dir, "home")
        pwdir = os.path.join(self.dir, "a,b")
        os.makedirs(pwdir)
        shutil.copy(SRV.password_file, os.path.join(pwdir, "pw"))
        text = ("[work]\nurl = %s\ncafile = %s\npassword_command = cat  '%s/pw'\n"
                % (self.url(), SRV.cafile, pwdir))
        self.write_config(text, base=os.path.join(home, ".config"))
        m = self.mount(env={"XDG_CONFIG_HOME": "", "HOME": home})
        self.assertIn("INBOX", os.listdir(m.mp))
        m.unmount()

    def test_unknown_account(self):
        self.write_config(self.section())
        self.refused(r"no account \[nope\] in .*/imapfs/config", account="nope")

    def test_no_config_file(self):
        self.refused(r"work is not an imaps:// URL, and .*/imapfs/config can't be read")

    def test_unknown_key(self):
        self.write_config(self.section(extra="colour = blue\n"))
        self.refused(r"config:9: unknown key 'colour'")

    def test_bad_values(self):
        for extra, reason in (("timeout = soon\n", r"config:9: timeout takes a number, not 'soon'"),
                              ("allow_plaintext = maybe\n", r"config:9: allow_plaintext takes yes or no"),
                              ("password = hunter2\n", r"config:9: no password in the config file"),
                              ("just words\n", r"config:9: not KEY = VALUE"),
                              ("timeout = 0\n", r"timeout= takes 1 to 3600")):
            self.write_config(self.section(extra=extra))
            line = self.refused(reason)
            self.assertNotIn("hunter2", line)

    def test_no_url(self):
        self.write_config("[work]\ncafile = %s\n" % SRV.cafile)
        self.refused(r"\[work\] has no url")

    def test_writable_by_others_refused(self):
        self.write_config(self.section(), mode=0o622)
        self.refused(r"writable by others")


if __name__ == "__main__":
    tap.main()
