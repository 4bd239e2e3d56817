#!/usr/bin/python3
"""The 726 real-world messages of ../shared/corpus (when present) through the mount:
every file's bytes are BODY[] as the server sends it (servers turn bare LF into CRLF, so
we compare with the server's copy, never with the file), sizes, mtimes and names are
valid, and grep -rl over the mount finds what a search of the server's copies finds.

The corpus is one folder per source: corpus/<source> (nested directories)."""

import datetime
import email.utils
import glob
import os
import re
import shutil
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tap  # noqa: E402
import common as C  # noqa: E402
from common import D, I, G, sh, mount_files, read_file  # noqa: E402

CORPUS = os.path.normpath(os.path.join(I.SRC, "..", "shared", "corpus"))
HAVE_CORPUS = os.path.isdir(CORPUS) and bool(glob.glob(os.path.join(CORPUS, "*", "**", "*.eml"), recursive=True))
SKIP_REASON = ("corpus not found at %s (it is there in CI; a fresh clone may not have it)" % CORPUS)
GREP_WORDS = ["PGP", "boundary=", "linux", "=?iso-8859-1?", "Content-Transfer-Encoding: 8bit"]


def corpus_files():
    return sorted(glob.glob(os.path.join(CORPUS, "**", "*.eml"), recursive=True))


HEADER_LINE_RE = re.compile(rb"^([!-9;-~]+):|^[ \t]")
STRICT_DATE_RE = re.compile(r"^\s*(?:[A-Z][a-z]{2},\s*)?\d{1,2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}(?::\d{2})? [+-]\d{4}\s*$")


def header_fields(body):
    """[(name, value)] of a clean header block, or None if the block isn't clean."""
    end = body.find(b"\r\n\r\n")
    if end < 0:
        return None
    lines = body[:end].split(b"\r\n")
    fields = []
    for line in lines:
        if not HEADER_LINE_RE.match(line):
            return None
        if line[:1] in (b" ", b"\t"):
            if not fields:
                return None
            fields[-1][1] += b"\r\n" + line
        else:
            name, _, value = line.partition(b":")
            fields.append([name, value])
    return [(n.decode("latin-1").lower(), v) for n, v in fields]


def expected_name_parts(body):
    """(date 'YYYY-MM-DD' or None, plain subject or None) where they are unambiguous."""
    fields = header_fields(body)
    if fields is None:
        return None, None
    dates = [v for n, v in fields if n == "date"]
    subjects = [v for n, v in fields if n == "subject"]
    date = None
    if len(dates) == 1:
        d = dates[0].decode("latin-1").replace("\r\n", "")
        if STRICT_DATE_RE.match(d):
            try:
                dt = email.utils.parsedate_to_datetime(d.strip())
                if dt.tzinfo is not None and 1970 <= dt.year < 2100:
                    date = dt.astimezone(datetime.timezone.utc).strftime("%Y-%m-%d")
            except (TypeError, ValueError):
                pass
    subject = None
    if len(subjects) == 1:
        s = subjects[0]
        if all(32 <= b < 127 or b in (9, 10, 13) for b in s) and b"=?" not in s:
            text = re.sub(r"\s+", " ", s.decode("ascii").replace("\r\n", "")).strip()
            if text:
                subject = text.replace("/", "_")
    return date, subject


@unittest.skipUnless(HAVE_CORPUS, SKIP_REASON)
class TestCorpus(unittest.TestCase):
    srv = None
    m = None
    view = {}    # mailbox → (meta, bodies)
    source_of = {}  # (mailbox, uid) → corpus file

    @classmethod
    def setUpClass(cls):
        I.check_bin()
        cls.tmp = tempfile.mkdtemp(prefix="itc", dir="/tmp")
        try:
            cls.srv = D.Dovecot().start()
            c = cls.srv.client()
            by = {}
            for i, f in enumerate(corpus_files()):
                src = os.path.relpath(f, CORPUS).split(os.sep)[0]
                with open(f, "rb") as fh:
                    raw = fh.read()
                by.setdefault("corpus/" + src, []).append(
                    G.Msg(os.path.relpath(f, CORPUS), "corpus/" + src, raw, None, None, G._idate(i, (i % 25) - 12)))
            cls.loaded = 0
            for mailbox, msgs in sorted(by.items()):
                c.create(D.imap_quote(mailbox))
                try:
                    G.multiappend(c, mailbox, msgs, chunk=100)
                except RuntimeError:
                    for m in msgs:  # one by one, so that one refused message doesn't hide the rest
                        m.uid = D.append(c, mailbox, m.raw, [], m.internaldate)
                for m in msgs:
                    cls.source_of[(mailbox, m.uid)] = m.key
                cls.loaded += len(msgs)
            for mailbox in sorted(by):
                cls.view[mailbox] = C.server_view(c, mailbox)
            c.logout()
            cls.m = I.Mount("imaps://%s@127.0.0.1:%d" % (cls.srv.user, cls.srv.imaps_port),
                            opts={"cafile": cls.srv.cafile, "password_file": cls.srv.password_file})
            cls.m.mount(foreground=True)
        except Exception:
            cls.cleanup()
            raise

    @classmethod
    def cleanup(cls):
        if cls.m is not None:
            cls.m.cleanup()
        if cls.srv is not None:
            cls.srv.cleanup()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    @classmethod
    def tearDownClass(cls):
        try:
            if cls.m is not None:
                cls.m.unmount()
        finally:
            cls.cleanup()

    def P(self, *parts):
        return os.path.join(self.m.mp, *parts)

    def where(self, mailbox, uid):
        return "%s (UID %d in %s)" % (self.source_of.get((mailbox, uid), "?"), uid, mailbox)

    def test_all_messages_listed(self):
        self.assertEqual(self.loaded, len(corpus_files()))
        total = 0
        for mailbox, (meta, _) in self.view.items():
            files = mount_files(self.P(mailbox))
            self.assertEqual(set(files), set(meta), mailbox)
            total += len(files)
        self.assertEqual(total, len(corpus_files()))
        self.assertEqual(set(os.listdir(self.P("corpus"))),
                         {mb.split("/", 1)[1] for mb in self.view})

    def test_bytes_equal_body(self):
        problems = []
        for mailbox, (meta, bodies) in self.view.items():
            for uid, name in mount_files(self.P(mailbox)).items():
                try:
                    data = read_file(self.P(mailbox, name))
                except OSError as e:
                    problems.append("%s: %s" % (self.where(mailbox, uid), e))
                    continue
                if data != bodies[uid]:
                    problems.append("%s: %d bytes read, BODY[] has %d" % (self.where(mailbox, uid), len(data),
                                                                          len(bodies[uid])))
        self.assertEqual(problems[:30], [], "%d of %d messages differ" % (len(problems), self.loaded))

    def test_cat_equals_body(self):
        # the same through a real tool, for the messages the README singles out as hard
        hard = re.compile(r"malformed|mixed|issue358|obsolete|noheader|nocrlfcrlf|stack-overflow|xamarin3|"
                          r"mail_malformed|thirdparty/00[135]|feedback-report")
        n = 0
        for mailbox, (meta, bodies) in self.view.items():
            for uid, name in mount_files(self.P(mailbox)).items():
                if hard.search(self.source_of.get((mailbox, uid), "")):
                    r = sh(["cat", self.P(mailbox, name)])
                    self.assertEqual(r.returncode, 0, "%s: %r" % (self.where(mailbox, uid), r.stderr))
                    self.assertEqual(r.stdout, bodies[uid], self.where(mailbox, uid))
                    n += 1
        self.assertGreater(n, 20)

    def test_sizes_and_mtimes(self):
        problems = []
        for mailbox, (meta, _) in self.view.items():
            for uid, name in mount_files(self.P(mailbox)).items():
                st = os.stat(self.P(mailbox, name))
                if st.st_size != meta[uid]["size"]:
                    problems.append("%s: size %d != %d" % (self.where(mailbox, uid), st.st_size, meta[uid]["size"]))
                if int(st.st_mtime) != meta[uid]["internaldate"]:
                    problems.append("%s: mtime %d != %d" % (self.where(mailbox, uid), st.st_mtime,
                                                            meta[uid]["internaldate"]))
        self.assertEqual(problems[:30], [], "%d problems" % len(problems))

    def test_names_valid(self):
        problems = []
        for mailbox, (meta, _) in self.view.items():
            for uid, name in mount_files(self.P(mailbox)).items():
                for p in G.basic_name_problems(name, uid):
                    problems.append("%s: %r: %s" % (self.where(mailbox, uid), name, p))
        self.assertEqual(problems[:30], [], "%d problems" % len(problems))

    def test_names_show_date_and_subject(self):
        """Where the Date and Subject headers are unambiguous (one strict RFC 5322 Date,
        one plain ASCII Subject), the name shows exactly them."""
        problems = []
        checked = 0
        for mailbox, (meta, bodies) in self.view.items():
            for uid, name in mount_files(self.P(mailbox)).items():
                date, subject = expected_name_parts(bodies[uid])
                if date is None or subject is None:
                    continue
                checked += 1
                for p in G.check_name(name, uid, subject, date, meta[uid]["internaldate"]):
                    problems.append("%s: %r: %s" % (self.where(mailbox, uid), name, p))
        self.assertGreater(checked, 300)
        self.assertEqual(problems[:30], [], "%d of %d names wrong" % (len(problems), checked))

    def test_grep_rl(self):
        for word in GREP_WORDS:
            with self.subTest(word=word):
                r = sh(["grep", "-rlF", "--", word, self.P("corpus")], timeout=120)
                self.assertIn(r.returncode, (0, 1), r.stderr)
                found = {os.path.relpath(l, self.m.mp)
                         for l in r.stdout.decode("utf-8", "surrogateescape").splitlines()}
                expected = set()
                for mailbox, (meta, bodies) in self.view.items():
                    files = mount_files(self.P(mailbox))
                    for uid, body in bodies.items():
                        if word.encode() in body:
                            expected.add(os.path.join(mailbox, files[uid]))
                self.assertTrue(expected, word)
                self.assertEqual(found, expected)


if __name__ == "__main__":
    tap.main()
