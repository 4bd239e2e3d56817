#!/usr/bin/python3
"""Providers as they are (issue 10), played by Dovecot: a Gmail-like server (X-GM-EXT-1
added to the capabilities, an "All Mail" folder marked \\All and a \\Trash folder). On Gmail a
folder is a label: rm in a label folder must take that label off (an expunge there; Gmail
keeps the message in All Mail), never move the message to the trash, which would delete it
from every label; rm in All Mail moves it to the trash."""

import os
import shutil
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tap  # noqa: E402
from common import D, I, mount_files  # noqa: E402

GM = None
TMP = None


def setUpModule():
    global GM, TMP
    I.check_bin()
    TMP = tempfile.mkdtemp(prefix="itp", dir="/tmp")
    os.chmod(TMP, 0o755)
    try:
        GM = D.Dovecot(special_use={"All Mail": "\\All", "Trash": "\\Trash"},
                       extra_conf="imap_capability = +X-GM-EXT-1\n")
        GM.start()
        for name in ("All Mail", "Trash", "Work"):
            GM.create_mailbox(name)
    except Exception:
        tearDownModule()
        raise


def tearDownModule():
    if GM is not None:
        GM.cleanup()
    if TMP:
        shutil.rmtree(TMP, ignore_errors=True)


def count(c, mailbox):
    return D.select(c, mailbox)


class TestGmailRm(unittest.TestCase):
    def setUp(self):
        c = GM.client()
        self.assertIn("X-GM-EXT-1", c.capabilities)
        for mb in ("INBOX", "All Mail", "Trash", "Work"):
            if D.select(c, mb, readonly=False):
                c.store("1:*", "+FLAGS.SILENT", "(\\Deleted)")
                c.expunge()
        D.append(c, "Work", b"Subject: labelled\r\n\r\nin Work\r\n")
        D.append(c, "INBOX", b"Subject: inbox\r\n\r\nin INBOX\r\n")
        D.append(c, "All Mail", b"Subject: all\r\n\r\nin All Mail\r\n")
        c.logout()
        self.m = I.Mount("imaps://alice@127.0.0.1:%d" % GM.imaps_port,
                         opts={"cafile": GM.cafile, "password_file": GM.password_file})
        self.addCleanup(self.m.cleanup)
        self.m.mount()

    def rm_one(self, folder):
        files = mount_files(os.path.join(self.m.mp, folder))
        self.assertEqual(len(files), 1)
        os.unlink(os.path.join(self.m.mp, folder, list(files.values())[0]))

    def test_rm_in_a_label_folder_takes_the_label_off(self):
        self.rm_one("Work")
        self.rm_one("INBOX")
        c = GM.client()
        self.assertEqual(count(c, "Work"), 0)
        self.assertEqual(count(c, "INBOX"), 0)
        self.assertEqual(count(c, "Trash"), 0, "moved to the trash: Gmail would delete it")
        c.logout()
        self.m.unmount()

    def test_rm_in_all_mail_moves_to_trash(self):
        self.rm_one("All Mail")
        c = GM.client()
        self.assertEqual(count(c, "All Mail"), 0)
        self.assertEqual(count(c, "Trash"), 1)
        c.logout()
        self.m.unmount()


if __name__ == "__main__":
    tap.main()
