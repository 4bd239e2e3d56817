#!/usr/bin/python3
"""Which new files become messages (issue 12, findings 2, 3 and 7), with real tools:

  - scratch names (dot files, `*~`, `#*#`, `*.swp`, `*.swx`, `4913`, `.~lock.*#`, GNU
    sed's `sedXXXXXX`, rsync's `.NAME.XXXXXX`) are local files: readable, writable,
    truncatable, listed, never APPENDed;
  - any other new file is APPENDed at close if it starts like a message, else close fails
    with EINVAL and nothing reaches the server;
  - renaming a local file to another name APPENDs it (rsync), over an existing message it
    replaces that message (sed -i, vim);
  - rsync in twice: exit 0, the second run changes nothing; rsync out twice;
  - cp of two messages with the same Message-ID keeps both;
  - rm of a message open for writing removes the message (not only the replacement);
  - a message opened for writing and closed without a write stays as it is; `>>` appends;
  - INTERNALDATE: the mtime set before close (touch -d / utime on the open file, cp -p),
    else the Date: header, else now.

Every change is checked on the server with imaplib on a connection of its own."""

import calendar
import email.utils
import errno
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tap  # noqa: E402
import common as C  # noqa: E402
from common import D, I, G, sh, mount_files, read_file  # noqa: E402

SRV = None
M = None
TMP = None
FIX = {}

FOLDERS = {
    "Trash": [],
    "Scratch": [("scratch-0", ())],
    "Bad": [],
    "Mbox": [],
    "Dup": [],
    "Dates": [],
    "Rs": [],
    "Sed": [("sed-0", [r"\Flagged", "$Label1"])],
    "Vim": [("vim-0", [r"\Seen"])],
    "Vim2": [("vim2-0", [r"\Seen"])],
    "Ren": [],
    "Repl": [("repl-0", [r"\Answered"])],
    "CpOver": [("cpover-0", [r"\Flagged"])],
    "RmOpen": [("rmopen-0", ())],
    "NoWrite": [("nomsgid-0", [r"\Seen"])],
    "Append": [("append-0", [r"\Flagged"])],
}

SCRATCH_NAMES = [".notes", "draft.eml~", "#draft.eml#", "x.swp", ".x.eml.swx", "4913",
                 ".~lock.report.odt#", "sedAb3xYz", ".a.eml.Zq81Kd"]


def msg_bytes(key, subject, date_hdr, body_extra="", msgid=None, eol=b"\r\n"):
    raw = G.simple(key, subject, date_hdr, G._body_text(key, body_extra), eol=eol)
    if msgid is not None:
        raw = raw.replace(("<%s@mailgen.example>" % key).encode(), msgid.encode())
    return raw


def setUpModule():
    global SRV, M, TMP
    I.check_bin()
    for tool in ("rsync", "vim", "sed"):
        if not shutil.which(tool):
            raise RuntimeError("%s is not installed (examples/install-deps.sh)" % tool)
    try:
        TMP = tempfile.mkdtemp(prefix="imapfs-scratch-")
        SRV = D.Dovecot(rawlog=True, special_use={"Trash": "\\Trash"}).start()
        c = SRV.client()
        try:
            n = 0
            for mailbox, items in FOLDERS.items():
                msgs = []
                for key, flags in items:
                    n += 1
                    dt = G._idate(n)
                    subj = "Scratch test %s" % key
                    raw = G.simple(key, subj, email.utils.format_datetime(dt), G._body_text(key))
                    if key.startswith("nomsgid"):
                        raw = raw.replace(b"Message-ID: <%s@mailgen.example>\r\n" % key.encode(), b"")
                    msgs.append(G.Msg(key, mailbox, raw, subj, dt.strftime("%Y-%m-%d"), dt, flags))
                C.create_and_append(c, mailbox, msgs)
                for m in msgs:
                    FIX[m.key] = m
        finally:
            c.logout()
        M = C.mount_of(SRV)
        M.mount(foreground=True)
    except Exception:
        tearDownModule(cleanup_only=True)
        raise


def tearDownModule(cleanup_only=False):
    C.teardown([M], servers=[SRV], tmp=TMP, unmount=not cleanup_only)


def folder(name):
    return os.path.join(M.mp, name)


def server(mailbox):
    """{uid: (flags, body, internaldate epoch)} on the server."""
    meta, bodies = C.server_messages(SRV, mailbox)
    return {u: (frozenset(C.flags_set(m["flags"])), bodies[u], m["internaldate"])
            for u, m in meta.items()}


def log_tail():
    return "\n--- imapfs log (tail) ---\n" + M.read_log()[-3000:]


def out(r):
    return (r.stdout + r.stderr).decode(errors="replace") + log_tail()


class Base(unittest.TestCase):
    def assert_one_new(self, before, after, body):
        new = {u: v for u, v in after.items() if u not in before}
        self.assertEqual(len(new), 1, "not exactly one new message: %r" % list(new))
        (uid, v), = new.items()
        self.assertEqual(v[1], body)
        return uid, v


class TestScratchFiles(Base):
    def test_scratch_names_are_local_files(self):
        d = folder("Scratch")
        before = server("Scratch")
        mark = C.RawlogMark(SRV)
        for name in SCRATCH_NAMES:
            p = os.path.join(d, name)
            with open(p, "wb") as f:
                f.write(b"b0VIM 9.0 not a message " + name.encode())
            self.assertEqual(read_file(p), b"b0VIM 9.0 not a message " + name.encode(), name)
            with open(p, "r+b") as f:  # rewrite in place, as vim does with its swap file
                f.seek(6)
                f.write(b"XYZ")
            self.assertEqual(read_file(p)[:9], b"b0VIM XYZ", name)
            os.truncate(p, 4)
            self.assertEqual(os.stat(p).st_size, 4, name)
            self.assertEqual(read_file(p), b"b0VI", name)
            with open(p, "ab") as f:
                f.write(b"!")
            self.assertEqual(read_file(p), b"b0VI!", name)
        listed = set(os.listdir(d))
        for name in SCRATCH_NAMES:
            self.assertIn(name, listed, "a local file is not listed")
            st = os.stat(os.path.join(d, name))
            self.assertEqual(st.st_size, 5)
        self.assertEqual(server("Scratch"), before, "a local file reached the server")
        self.assertEqual(mark.commands(r"APPEND"), [], "APPEND of a local file")
        # local renames stay local; unlink removes
        os.rename(os.path.join(d, ".notes"), os.path.join(d, ".notes2"))
        self.assertEqual(read_file(os.path.join(d, ".notes2")), b"b0VI!")
        self.assertFalse(os.path.exists(os.path.join(d, ".notes")))
        for name in SCRATCH_NAMES[1:] + [".notes2"]:
            os.unlink(os.path.join(d, name))
        self.assertEqual([n for n in os.listdir(d) if C.uid_of(n) is None], [])
        self.assertEqual(server("Scratch"), before)

    def test_local_file_in_the_root(self):
        p = os.path.join(M.mp, ".directory")
        with open(p, "wb") as f:
            f.write(b"[Desktop Entry]\n")
        self.assertIn(".directory", os.listdir(M.mp))
        self.assertEqual(read_file(p), b"[Desktop Entry]\n")
        self.assertEqual(os.stat(p).st_mode & 0o777, 0o600)
        os.unlink(p)
        self.assertFalse(os.path.exists(p))

    def test_non_message_file_is_einval(self):
        d = folder("Bad")
        src = os.path.join(TMP, "notes.txt")
        with open(src, "wb") as f:
            f.write(b"just some notes\nnot a mail\n")
        mark = C.RawlogMark(SRV)
        r = sh(["cp", src, os.path.join(d, "notes.txt")])
        self.assertNotEqual(r.returncode, 0, "cp of a non-message succeeded")
        self.assertIn("Invalid argument", r.stderr.decode(errors="replace"))
        f = open(os.path.join(d, "bin.eml"), "wb")
        f.write(b"\x00\x01\x02 binary")
        with self.assertRaises(OSError) as cm:
            f.close()
        self.assertEqual(cm.exception.errno, errno.EINVAL)
        self.assertEqual(server("Bad"), {}, "a non-message reached the server")
        self.assertEqual(mark.commands(r"APPEND"), [])
        self.assertEqual(os.listdir(d), [])

    def test_mbox_from_line_and_header_start_are_messages(self):
        d = folder("Mbox")
        raw = b"From alice@example.org Fri Mar  1 10:00:00 2024\r\n" + msg_bytes("mbox-0", "mbox", "Fri, 01 Mar 2024 10:00:00 +0000")
        before = server("Mbox")
        with open(os.path.join(d, "m.eml"), "wb") as f:
            f.write(raw)
        after = server("Mbox")
        self.assert_one_new(before, after, raw)


class TestDup(Base):
    def test_cp_equal_message_ids_keeps_both(self):
        a = msg_bytes("dup-a", "first", "Fri, 01 Mar 2024 10:00:00 +0000", msgid="<same@x>")
        b = msg_bytes("dup-b", "second", "Fri, 01 Mar 2024 11:00:00 +0000", msgid="<same@x>")
        for n, raw in (("a.eml", a), ("b.eml", b)):
            with open(os.path.join(TMP, n), "wb") as f:
                f.write(raw)
        r = sh(["cp", os.path.join(TMP, "a.eml"), os.path.join(TMP, "b.eml"), folder("Dup")])
        self.assertEqual(r.returncode, 0, out(r))
        bodies = sorted(v[1] for v in server("Dup").values())
        self.assertEqual(bodies, sorted([a, b]))


class TestDates(Base):
    def test_date_header(self):
        raw = msg_bytes("date-hdr", "date header", "Tue, 05 Mar 2024 14:30:00 +0100")
        before = server("Dates")
        with open(os.path.join(folder("Dates"), "hdr.eml"), "wb") as f:
            f.write(raw)
        uid, v = self.assert_one_new(before, server("Dates"), raw)
        self.assertEqual(v[2], calendar.timegm((2024, 3, 5, 13, 30, 0)))

    def test_no_date_header_is_now(self):
        raw = msg_bytes("date-none", "no date", None)
        before = server("Dates")
        t0 = time.time()
        with open(os.path.join(folder("Dates"), "none.eml"), "wb") as f:
            f.write(raw)
        uid, v = self.assert_one_new(before, server("Dates"), raw)
        self.assertLessEqual(abs(v[2] - t0), 120)

    def test_utime_before_close_wins(self):
        raw = msg_bytes("date-utime", "utime", "Tue, 05 Mar 2024 14:30:00 +0100")
        before = server("Dates")
        want = calendar.timegm((2021, 7, 9, 6, 5, 4))
        with open(os.path.join(folder("Dates"), "ut.eml"), "wb") as f:
            f.write(raw)
            f.flush()
            os.utime(f.fileno(), (want, want))
        uid, v = self.assert_one_new(before, server("Dates"), raw)
        self.assertEqual(v[2], want)

    @unittest.skipUnless(shutil.which("gio"), "gio (libglib2.0-bin) not installed")
    def test_gio_copy_keeps_the_date(self):
        # GIO sets the mtime only after close, when the APPEND has happened: the Date:
        # header gives the date, and the late utime must not make the copy fail
        raw = msg_bytes("date-gio", "gio", "Sun, 07 Apr 2024 07:08:09 +0000")
        src = os.path.join(TMP, "gio.eml")
        with open(src, "wb") as f:
            f.write(raw)
        os.utime(src, (1e9, 1e9))
        before = server("Dates")
        r = sh(["gio", "copy", src, folder("Dates") + "/gio.eml"])
        self.assertEqual(r.returncode, 0, out(r))
        uid, v = self.assert_one_new(before, server("Dates"), raw)
        self.assertEqual(v[2], calendar.timegm((2024, 4, 7, 7, 8, 9)))

    def test_cp_p_keeps_mtime(self):
        raw = msg_bytes("date-cpp", "cp -p", "Tue, 05 Mar 2024 14:30:00 +0100")
        src = os.path.join(TMP, "cpp.eml")
        with open(src, "wb") as f:
            f.write(raw)
        want = calendar.timegm((2020, 2, 3, 4, 5, 6))
        os.utime(src, (want, want))
        before = server("Dates")
        r = sh(["cp", "-p", src, folder("Dates")])
        self.assertEqual(r.returncode, 0, out(r))
        uid, v = self.assert_one_new(before, server("Dates"), raw)
        self.assertEqual(v[2], want)


class TestRename(Base):
    def test_rename_local_to_name_appends(self):
        d = folder("Ren")
        raw = msg_bytes("ren-0", "renamed in", "Wed, 06 Mar 2024 09:00:00 +0000", eol=b"\n")
        tmp = os.path.join(d, ".ren.eml.Ab12Cd")
        with open(tmp, "wb") as f:
            f.write(raw)
        self.assertEqual(server("Ren"), {})
        os.rename(tmp, os.path.join(d, "ren.eml"))
        uid, v = self.assert_one_new({}, server("Ren"), C.crlf(raw))
        st = os.stat(os.path.join(d, "ren.eml"))  # the typed name still answers
        self.assertEqual(st.st_size, len(C.crlf(raw)))
        self.assertFalse(os.path.exists(tmp))

    def test_file_being_written_renamed_to_a_scratch_name_stays_local(self):
        d = folder("Bad")
        raw = msg_bytes("ren-scratch", "renamed away", "Wed, 06 Mar 2024 09:00:00 +0000")
        mark = C.RawlogMark(SRV)
        f = open(os.path.join(d, "draft.eml"), "wb")
        f.write(raw)
        f.flush()
        os.rename(os.path.join(d, "draft.eml"), os.path.join(d, "draft.eml~"))
        f.close()
        self.assertEqual(mark.commands(r"APPEND"), [], "a file renamed to a scratch name was APPENDed")
        self.assertEqual(server("Bad"), {})
        p = os.path.join(d, "draft.eml~")
        self.assertEqual(read_file(p), raw)
        os.unlink(p)
        self.assertEqual(os.listdir(d), [])

    def test_rename_non_message_is_einval(self):
        d = folder("Ren")
        before = server("Ren")
        tmp = os.path.join(d, ".junk")
        with open(tmp, "wb") as f:
            f.write(b"\x7fELF binary")
        with self.assertRaises(OSError) as cm:
            os.rename(tmp, os.path.join(d, "junk.eml"))
        self.assertEqual(cm.exception.errno, errno.EINVAL)
        self.assertEqual(read_file(tmp), b"\x7fELF binary", "the local file must stay")
        self.assertEqual(server("Ren"), before)
        os.unlink(tmp)

    def test_rename_over_message_replaces_it(self):
        m = FIX["repl-0"]
        d = folder("Repl")
        name = mount_files(d)[m.uid]
        new = m.raw.replace(b"needle", b"NEWNEEDLE")
        tmp = os.path.join(d, ".edit")
        with open(tmp, "wb") as f:
            f.write(new)
        trash_before = server("Trash")
        os.rename(tmp, os.path.join(d, name))
        after = server("Repl")
        self.assertEqual([v[1] for v in after.values()], [new])
        (v,) = after.values()
        self.assertEqual(set(v[0]), {r"\Answered"}, "flags not kept")
        self.assertEqual(v[2], calendar.timegm(m.internaldate.utctimetuple()), "date not kept")
        trash = server("Trash")
        self.assertEqual([t[1] for u, t in trash.items() if u not in trash_before], [m.raw],
                         "the old message did not go to Trash")
        self.assertEqual(read_file(os.path.join(d, name)), new, "the typed name reads the new bytes")


    def test_cp_over_message_replaces_it(self):
        m = FIX["cpover-0"]
        d = folder("CpOver")
        name = mount_files(d)[m.uid]
        new = m.raw.replace(b"needle", b"CPNEEDLE")
        src = os.path.join(TMP, "cpover.eml")
        with open(src, "wb") as f:
            f.write(new)
        r = sh(["cp", src, os.path.join(d, name)])
        self.assertEqual(r.returncode, 0, out(r))
        after = server("CpOver")
        self.assertEqual([v[1] for v in after.values()], [new])
        self.assertEqual(set(list(after.values())[0][0]), {r"\Flagged"})

    def test_rm_of_a_message_open_for_writing(self):
        """rm while a writer has the message open: rm's success means the message is
        gone from its folder (to the trash, as rm does); the writer's bytes go nowhere,
        as with a file unlinked while open."""
        m = FIX["rmopen-0"]
        d = folder("RmOpen")
        path = os.path.join(d, mount_files(d)[m.uid])
        trash_before = server("Trash")
        with open(path, "r+b", buffering=0) as f:
            f.write(b"X-Edited: yes\r\n")
            os.unlink(path)
            self.assertEqual(server("RmOpen"), {}, "rm said yes, the message stays" + log_tail())
            try:  # the replacement is dropped with the name, as an unlinked new file is
                f.write(b"more\r\n")
            except OSError as e:
                self.assertEqual(e.errno, errno.ENOENT)
        self.assertEqual(server("RmOpen"), {}, "the writer's close stored something")
        moved = [v[1] for u, v in server("Trash").items() if u not in trash_before]
        self.assertEqual(moved, [m.raw], "the message did not go to the trash as it was")

    def test_open_for_writing_without_a_write_changes_nothing(self):
        """A message opened for writing and closed unwritten (r+ to read, `>> msg.eml`
        with nothing to add) is not replaced: no APPEND, same UID, nothing to the trash.
        Without a Message-ID the check for the same bytes can't find it, so a replacement
        would be a new copy and the original in the trash."""
        m = FIX["nomsgid-0"]
        self.assertNotIn(b"Message-ID", m.raw)
        d = folder("NoWrite")
        before = server("NoWrite")
        trash_before = server("Trash")
        path = os.path.join(d, mount_files(d)[m.uid])
        mark = C.RawlogMark(SRV)
        with open(path, "r+b") as f:
            self.assertEqual(f.read(), m.raw)
        with open(path, "ab"):
            pass
        self.assertEqual(mark.commands(r"APPEND"), [], "APPEND without a write" + log_tail())
        self.assertEqual(server("NoWrite"), before)
        self.assertEqual(server("Trash"), trash_before)
        self.assertEqual(read_file(path), m.raw)

    def test_shell_append_to_a_message(self):
        """`printf ... >> msg.eml`: the shell opens the message, dup2()s the descriptor
        and closes the first one (a flush with nothing written yet) before the command
        writes: the message is replaced by its bytes and the line, flags kept."""
        m = FIX["append-0"]
        d = folder("Append")
        path = os.path.join(d, mount_files(d)[m.uid])
        r = sh(["sh", "-c", 'printf "appended line\\r\\n" >> "$1"', "sh", path])
        self.assertEqual(r.returncode, 0, out(r))
        after = server("Append")
        self.assertEqual([v[1] for v in after.values()], [m.raw + b"appended line\r\n"])
        self.assertEqual(set(list(after.values())[0][0]), {r"\Flagged"})


class TestTools(Base):
    def test_sed_i(self):
        m = FIX["sed-0"]
        d = folder("Sed")
        path = os.path.join(d, mount_files(d)[m.uid])
        r = sh(["sed", "-i", "s/needle-sed-0/SEDNEEDLE/", path])
        self.assertEqual(r.returncode, 0, out(r))
        after = server("Sed")
        self.assertEqual(len(after), 1, "not exactly one message in Sed: %r" % list(after))
        (v,) = after.values()
        self.assertEqual(v[1], m.raw.replace(b"needle-sed-0", b"SEDNEEDLE"))
        self.assertEqual(set(v[0]), {r"\Flagged", "$Label1"})
        self.assertEqual([n for n in os.listdir(d) if C.uid_of(n) is None], [], "leftovers")

    def vim_edit(self, key, mailbox, extra):
        m = FIX[key]
        d = folder(mailbox)
        path = os.path.join(d, mount_files(d)[m.uid])
        mark = C.RawlogMark(SRV)
        r = sh(["vim", "-es", "-i", "NONE"] + extra +
               ["-c", "%s/needle-" + key + "/VIMNEEDLE/", "-c", "wq", path], timeout=60)
        self.assertEqual(r.returncode, 0, out(r))
        after = server(mailbox)
        self.assertEqual(len(after), 1, "not exactly one message: %r" % list(after))
        (v,) = after.values()
        self.assertEqual(v[1], m.raw.replace(b"needle-" + key.encode(), b"VIMNEEDLE"))
        self.assertEqual(set(v[0]), {r"\Seen"})
        for line in mark.commands(r"APPEND"):
            self.assertNotIn("b0VIM", line)
        trash = server("Trash")
        self.assertFalse(any(t[1].startswith(b"b0VIM") for t in trash.values()), "a swap file reached Trash")
        self.assertEqual([n for n in os.listdir(d) if C.uid_of(n) is None], [], "leftovers")

    def test_vim_es_defaults(self):
        self.vim_edit("vim-0", "Vim", [])

    def test_vim_nocompatible_backupcopy_auto(self):
        # what vim with defaults.vim does (nocompatible: 'backupcopy' auto, 'writebackup')
        self.vim_edit("vim2-0", "Vim2", ["-N", "-u", "NONE", "-c", "set backupcopy=auto writebackup"])

    def test_rsync_in_twice_out_twice(self):
        src = os.path.join(TMP, "rsync-src")
        os.mkdir(src)
        want = {}
        for i in range(6):
            # LF line ends (as on disk), one without Date:
            date = None if i == 5 else "Thu, 0%d Feb 2024 10:00:00 +0000" % (i + 1)
            raw = msg_bytes("rs-%d" % i, "rsync %d" % i, date, eol=b"\n")
            p = os.path.join(src, "m%d.eml" % i)
            with open(p, "wb") as f:
                f.write(raw)
            mt = calendar.timegm((2019, 1, 1 + i, 12, 0, 0))
            os.utime(p, (mt, mt))
            want[C.crlf(raw)] = mt
        dst = folder("Rs") + "/"
        r = sh(["rsync", "-a", src + "/", dst], timeout=120)
        self.assertEqual(r.returncode, 0, out(r))
        first = server("Rs")
        self.assertEqual(sorted(v[1] for v in first.values()), sorted(want), "not exactly the 6 messages")
        for u, v in first.items():
            self.assertEqual(v[2], want[v[1]], "INTERNALDATE is not the file's mtime")
        self.assertEqual([n for n in os.listdir(dst) if n.startswith(".")], [], "rsync temp files left")
        mark = C.RawlogMark(SRV)
        r = sh(["rsync", "-a", src + "/", dst], timeout=120)
        self.assertEqual(r.returncode, 0, out(r))
        self.assertEqual(server("Rs"), first, "the second rsync changed the server")
        self.assertEqual(mark.commands(r"APPEND"), [], "the second rsync APPENDed")
        # once the typed names are gone (10 s), rsync finds none of its names in the
        # folder and sends every file again: each rename finds the identical message
        C.wait_for(lambda: not os.path.exists(os.path.join(dst, "m0.eml")), 20, 0.2,
                   "the typed names to expire")
        mark = C.RawlogMark(SRV)
        r = sh(["rsync", "-a", src + "/", dst], timeout=120)
        self.assertEqual(r.returncode, 0, out(r))
        self.assertEqual(server("Rs"), first, "the third rsync changed the server")
        self.assertEqual(mark.commands(r"APPEND"), [], "the third rsync APPENDed")
        self.assertEqual(len(mark.commands(r"UID SEARCH LARGER \d+ SMALLER \d+ HEADER Message-ID")), 6,
                         "one search for an identical message per file")
        # and out, twice: the second run transfers nothing
        back = os.path.join(TMP, "rsync-back")
        r = sh(["rsync", "-a", dst, back + "/"], timeout=120)
        self.assertEqual(r.returncode, 0, out(r))
        got = sorted(read_file(os.path.join(back, n)) for n in os.listdir(back) if n.endswith(".eml"))
        self.assertEqual(got, sorted(v[1] for v in first.values()))
        r = sh(["rsync", "-a", "--itemize-changes", dst, back + "/"], timeout=120)
        self.assertEqual(r.returncode, 0, out(r))
        self.assertEqual([ln for ln in r.stdout.decode().splitlines() if ln.startswith(">")], [],
                         "the second rsync out transferred files")


if __name__ == "__main__":
    tap.main()
