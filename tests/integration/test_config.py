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
from common import D, I, read_file, sh  # noqa: E402

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


class TestEntryPoints(Base):
    """What the fstab line does: mount(8) runs mount.fuse3 (mount.fuse), which runs
    `imapfs SOURCE MOUNTPOINT -o OPTIONS` through /bin/sh. mount(8) gives its helpers no PATH
    of the caller's, so `-t fuse.imapfs` needs imapfs installed in /usr/local/bin or /usr/bin,
    which a test must not do: mount.fuse3 is run directly with a PATH holding a symlink named
    imapfs, and mount(8) itself with `-t fuse` and the binary's absolute path (PROG#SOURCE)."""

    def setUp(self):
        super().setUp()
        self.bindir = os.path.join(self.dir, "bin")
        os.makedirs(self.bindir)
        os.symlink(I.check_bin(), os.path.join(self.bindir, "imapfs"))
        self.mp = os.path.join(self.dir, "mnt")
        os.makedirs(self.mp)
        self.addCleanup(self.unmount)

    def unmount(self):
        if I.is_mounted(self.mp):
            sh(["fusermount3", "-u", self.mp])
        I.wait_for(lambda: not I.pids_for_mountpoint(self.mp), 15, what="imapfs to exit")

    def run_mount(self, argv):
        env = {"PATH": self.bindir + ":" + os.environ.get("PATH", "/usr/bin:/bin"),
               "XDG_CONFIG_HOME": self.xdg}
        rc, out, err = I.run(argv, env=env, timeout=45)
        self.assertEqual(rc, 0, "mount failed: %s %s" % (out, err))
        self.assertTrue(I.is_mounted(self.mp))
        return I.mount_entry(self.mp)

    def opts(self):
        # What an fstab line carries besides imapfs's options; a command with a space.
        return ("noauto,user,_netdev,cafile=%s,password_command=cat %s"
                % (SRV.cafile, SRV.password_file))

    def test_mount_fuse3_as_fuse_imapfs(self):
        e = self.run_mount(["mount.fuse3", self.url(), self.mp, "-o", self.opts(),
                            "-t", "fuse.imapfs"])
        self.assertEqual(e[2], "fuse.imapfs")
        self.assertIn("INBOX", os.listdir(self.mp))

    def test_mount_fuse3_config_account(self):
        self.write_config(self.section())
        e = self.run_mount(["mount.fuse3", "work", self.mp, "-o", "noauto,user,_netdev",
                            "-t", "fuse.imapfs"])
        self.assertIn("alice@127.0.0.1", e[0])
        self.assertIn("INBOX", os.listdir(self.mp))

    def test_mount_8(self):
        e = self.run_mount(["mount", "-t", "fuse", I.check_bin() + "#" + self.url(), self.mp,
                            "-o", self.opts()])
        self.assertEqual(e[2], "fuse.imapfs")
        self.assertIn("INBOX", os.listdir(self.mp))


class TestExclude(Base):
    """-o exclude= (issue 10): Gmail's All Mail holds every message once more."""

    @classmethod
    def setUpClass(cls):
        for name in ("[Gmail]/All Mail", "[Gmail]/Important", "[Gmail]/Sent Mail",
                     "Work/Old/Deep", "Work/New", "Entwürfe"):
            SRV.create_mailbox(name)

    def test_exclude_option(self):
        m = I.Mount(self.url(), opts={"cafile": SRV.cafile, "password_file": SRV.password_file,
                                      "exclude": "[Gmail]/All Mail:[Gmail]/Important:Work/O*"})
        self.addCleanup(m.cleanup)
        m.mount()
        self.assertEqual(sorted(os.listdir(os.path.join(m.mp, "[Gmail]"))), ["Sent Mail"])
        self.assertEqual(sorted(os.listdir(os.path.join(m.mp, "Work"))), ["New"])
        self.assertIn("Entwürfe", os.listdir(m.mp))
        self.assertFalse(os.path.exists(os.path.join(m.mp, "[Gmail]", "All Mail")))
        self.assertFalse(os.path.exists(os.path.join(m.mp, "Work", "Old", "Deep")))
        m.unmount()

    def test_exclude_in_config(self):
        self.write_config(self.section(extra="exclude = Entw?rfe:[Gmail]/*\n"))
        m = self.mount()
        names = os.listdir(m.mp)
        self.assertNotIn("Entwürfe", names)
        self.assertEqual(os.listdir(os.path.join(m.mp, "[Gmail]")), [])
        self.assertIn("Work", names)
        m.unmount()

    def test_exclude_empty_refused(self):
        self.write_config(self.section(extra="exclude = :\n"))
        self.refused(r"-o exclude= takes PATTERN")


class TestDocs(unittest.TestCase):
    def test_help_man_page_and_readme_agree(self):
        rc, out, err = I.run([I.check_bin(), "--help"])
        self.assertEqual(rc, 0)
        ours = out.split("FUSE options:")[0]
        names = set(re.findall(r"^\s+-o (\w+)", ours, re.M))
        self.assertIn("oauth2_token_command", names)
        with open(os.path.join(I.SRC, "imapfs.1.scd")) as f:
            man = f.read()
        with open(os.path.join(I.SRC, "README.md")) as f:
            readme = f.read()
        for n in sorted(names):
            self.assertTrue("*-o " + n in man, "%s is in --help but not in imapfs.1.scd" % n)
            self.assertTrue("`-o " + n in readme, "%s is in --help but not in README.md" % n)
        for n in re.findall(r"^\*-o (\w+)", man, re.M):
            if n not in ("ro",):
                self.assertIn(n, names, "%s is in imapfs.1.scd but not in --help" % n)


if __name__ == "__main__":
    tap.main()
