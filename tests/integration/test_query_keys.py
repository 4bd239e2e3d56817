#!/usr/bin/python3
"""The .search/ query language against a real Dovecot (issue 9), before the fs/ side exists:
what imap/query.c makes of a query (printed by the `query_dump` driver, literals included)
is sent as `UID SEARCH` on a raw connection, and must give the same UIDs as the equivalent
keys written by hand and sent by imaplib, and (so that no comparison passes empty) the UIDs
this file expects from the messages it stored. Hostile queries must stay one command: the
server answers our tag once, without BAD, the connection still works, and nothing changed.

No mount: this checks the codec against the server's grammar and semantics.

Run: IMAPFS_BIN=build/fs/imapfs IMAPFS_SRC=$PWD /usr/bin/python3 tests/integration/test_query_keys.py
(QUERY_DUMP overrides the driver's path, default build/tests/query_dump next to IMAPFS_BIN.)"""

import calendar
import os
import re
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tap  # noqa: E402
import common as C  # noqa: E402, F401  (SIGTERM cleanup)
from common import D  # noqa: E402

NOW = calendar.timegm((2024, 3, 31, 12, 0, 0))  # query_dump -n: "now" for older:/newer:
SRV = {}
UID = {}  # key → UID in INBOX


def dump_bin():
    if os.environ.get("QUERY_DUMP"):
        return os.environ["QUERY_DUMP"]
    b = os.environ.get("IMAPFS_BIN", "build/fs/imapfs")
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(b))), "tests",
                        "query_dump")


def dump(query, *opts):
    """The SEARCH keys imapfs sends for query (bytes, literals included)."""
    r = subprocess.run([dump_bin(), "-n", str(NOW), *opts, "--", query], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=10)
    if r.returncode != 0:
        raise AssertionError("query_dump %r: exit %d %s" % (query, r.returncode, r.stderr))
    assert r.stdout.endswith(b"\n")
    return r.stdout[:-1]


def msg(key, frm, to, subject, body, extra=b"", cc=b"", bcc=b""):
    h = b"From: " + frm + b"\r\nTo: " + to + b"\r\n"
    if cc:
        h += b"Cc: " + cc + b"\r\n"
    if bcc:
        h += b"Bcc: " + bcc + b"\r\n"
    h += (b"Subject: " + subject + b"\r\nDate: Fri, 01 Mar 2024 12:00:00 +0000\r\n"
          b"Message-ID: <" + key.encode() + b"@test>\r\nMIME-Version: 1.0\r\n"
          b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n")
    return h + extra + b"\r\n" + body + b"\r\n"


def noon(y, m, d):
    return calendar.timegm((y, m, d, 12, 0, 0))


# key: (message, flags, internaldate)
MESSAGES = {
    "invoice": (msg("invoice", b"Alice <alice@example.org>", b"bob@example.org",
                    b"Invoice 2024-001", b"Please pay the invoice."),
                ("\\Seen",), noon(2024, 1, 15)),
    "reply": (msg("reply", b"Bob <bob@example.org>", b"alice@example.org", b"Re: Invoice",
                  b"Paid yesterday.", cc=b"carol@example.org"),
              ("\\Seen", "\\Answered", "$Label1"), noon(2024, 2, 10)),
    "lunch": (msg("lunch", b"carol@example.org", b"alice@example.org", b"Lunch?", b"pizza",
                  bcc=b"dave@example.org"),
              ("\\Flagged",), noon(2024, 2, 29)),
    "numbers": (msg("numbers", b"Alice <alice@example.org>", b"team@example.org",
                    b"Quarterly numbers", b"numbers attached",
                    extra=b"List-Id: <dev.example.org>\r\n"),
                ("$Junk",), noon(2024, 3, 1)),
    "cafe": (msg("cafe", b"=?UTF-8?Q?Zo=C3=AB?= <zoe@example.org>", b"alice@example.org",
                 b"=?UTF-8?Q?Caf=C3=A9_menu?=", "crème brûlée".encode()),
             ("\\Draft",), noon(2024, 3, 10)),
    "big": (msg("big", b"dave@example.org", b"alice@example.org", b"Big report",
                b"report\r\n" + b"x" * 76 * 2000),
            ("\\Deleted",), noon(2024, 3, 20)),
    "hostile": (msg("hostile", b"eve@example.org", b"alice@example.org",
                    b'Say "hi" {5} 100%* done', b"back\\slash"),
                (), noon(2024, 3, 30)),
    "spam": (msg("spam", b"spammer@example.net", b"alice@example.org", b"WIN", b"money",
                 extra=b"X-Spam-Flag: YES\r\n"),
             ("\\Seen",), noon(2023, 12, 31)),
}


def setUpModule():
    if not os.access(dump_bin(), os.X_OK):
        raise unittest.SkipTest("no query_dump at %s (build first)" % dump_bin())
    try:
        srv = D.Dovecot()
        SRV["srv"] = srv
        srv.start()
        c = srv.client()
        for key, (raw, flags, date) in MESSAGES.items():
            UID[key] = D.append(c, "INBOX", raw, flags, date)
        c.logout()
    except Exception:
        tearDownModule()
        raise


def tearDownModule():
    for s in SRV.values():
        s.cleanup()


def literal_chunks(keys):
    """Splits keys where a synchronizing literal makes the client wait for "+": after each
    "{n}\\r\\n" that is not inside a literal's own bytes."""
    chunks, start, i = [], 0, 0
    spec = re.compile(rb"\{(\d+)\}\r\n")
    while i < len(keys):
        m = spec.match(keys, i) if keys[i:i + 1] == b"{" else None
        if m:
            end = m.end()
            chunks.append(keys[start:end])
            start = end
            i = end + int(m.group(1))
        else:
            i += 1
    chunks.append(keys[start:])
    return chunks


class Raw:
    """Sends one command byte for byte over an imaplib connection's socket, waiting for "+"
    at each synchronizing literal, and reads every line up to its tagged answer."""

    def __init__(self, c):
        self.c = c
        self.n = 0

    def line(self):
        ln = self.c.readline()
        if not ln:
            raise AssertionError("server closed the connection")
        return ln

    def command(self, body):
        self.n += 1
        tag = b"QK%d" % self.n
        chunks = literal_chunks(body)
        lines = []
        self.c.send(tag + b" " + chunks[0])
        for ch in chunks[1:]:
            while True:
                ln = self.line()
                if ln.startswith(b"+"):
                    break
                lines.append(ln)
                if ln.startswith(tag + b" "):
                    return lines  # refused before the literal
            self.c.send(ch)
        self.c.send(b"\r\n")
        while True:
            ln = self.line()
            lines.append(ln)
            if ln.startswith(tag + b" "):
                return lines


def search_uids(lines):
    uids = set()
    for ln in lines:
        if ln.startswith(b"* SEARCH"):
            uids.update(int(x) for x in ln.split()[2:])
    return uids


def tagged(lines):
    return lines[-1].split(b" ", 2)[1]


class QueryKeys(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.c = SRV["srv"].client()
        D.select(cls.c, "INBOX", readonly=True)
        cls.raw = Raw(cls.c)

    @classmethod
    def tearDownClass(cls):
        cls.c.logout()

    def ours(self, query, *opts):
        keys = dump(query, *opts)
        lines = self.raw.command(b"UID SEARCH " + keys)
        self.assertEqual(tagged(lines), b"OK", "%r → %r: %r" % (query, keys, lines))
        return search_uids(lines), keys

    def hand(self, keys, literal=None):
        if literal is not None:
            self.c.literal = literal
        typ, data = self.c.uid("SEARCH", keys)
        self.assertEqual(typ, "OK", "%s: %r" % (keys, data))
        return {int(x) for x in data[0].split()}

    def check(self, query, hand_keys, expect, literal=None, opts=()):
        got, keys = self.ours(query, *opts)
        want = self.hand(hand_keys, literal)
        self.assertEqual(got, want, "%r sent as %r vs %s" % (query, keys, hand_keys))
        self.assertEqual(got, {UID[k] for k in expect}, "%r sent as %r" % (query, keys))

    def test_words_and_addresses(self):
        self.check("from:alice invoice", "FROM alice TEXT invoice", ["invoice"])
        self.check("from:alice", "FROM alice", ["invoice", "numbers"])
        self.check("to:team", "TO team", ["numbers"])
        self.check("cc:carol", "CC carol", ["reply"])
        self.check("bcc:dave", "BCC dave", ["lunch"])
        self.check("subject:lunch", "SUBJECT lunch", ["lunch"])
        self.check("body:pizza", "BODY pizza", ["lunch"])
        self.check('"quarterly numbers"', 'TEXT "quarterly numbers"', ["numbers"])
        self.check("header:List-Id:dev.example.org", "HEADER List-Id dev.example.org",
                   ["numbers"])
        self.check("header:X-Spam-Flag:", 'HEADER X-Spam-Flag ""', ["spam"])

    def test_flags(self):
        self.check("is:unread", "UNSEEN", ["lunch", "numbers", "cafe", "big", "hostile"])
        self.check("-is:unread", "SEEN", ["invoice", "reply", "spam"])
        self.check("is:flagged", "FLAGGED", ["lunch"])
        self.check("is:answered", "ANSWERED", ["reply"])
        self.check("is:draft", "DRAFT", ["cafe"])
        self.check("is:deleted", "DELETED", ["big"])
        self.check("keyword:$Label1", "KEYWORD $Label1", ["reply"])
        self.check("-keyword:$Junk is:unread", "UNKEYWORD $Junk UNSEEN",
                   ["lunch", "cafe", "big", "hostile"])

    def test_dates(self):
        self.check("before:2024-02-29", "BEFORE 29-Feb-2024", ["invoice", "reply", "spam"])
        self.check("after:2024-02-29", "SINCE 29-Feb-2024",
                   ["lunch", "numbers", "cafe", "big", "hostile"])
        self.check("on:2024-02-29", "ON 29-Feb-2024", ["lunch"])
        # now = 2024-03-31: older than 30 days = before 1 March; newer than 2 weeks = since 17 March
        self.check("older:30d", "BEFORE 1-Mar-2024", ["invoice", "reply", "lunch", "spam"])
        self.check("newer:2w", "SINCE 17-Mar-2024", ["big", "hostile"])
        self.check("newer:1m", "SINCE 29-Feb-2024", ["lunch", "numbers", "cafe", "big",
                                                      "hostile"])

    def test_sizes_and_uids(self):
        self.check("larger:100k", "LARGER 102400", ["big"])
        self.check("smaller:100k", "SMALLER 102400",
                   [k for k in MESSAGES if k != "big"])
        self.check("smaller:5G", "ALL", list(MESSAGES))
        self.check("larger:5G", "LARGER 4294967295", [])
        lo, hi = UID["reply"], UID["numbers"]
        self.check("uid:%d-%d" % (lo, hi), "UID %d:%d" % (lo, hi), ["reply", "lunch", "numbers"])
        self.check("uid:%d,%d-*" % (lo, UID["hostile"]), "UID %d,%d:*" % (lo, UID["hostile"]),
                   ["reply", "hostile", "spam"])

    def test_operators(self):
        self.check("from:alice OR from:bob", "OR FROM alice FROM bob",
                   ["invoice", "numbers", "reply"])
        self.check("(from:alice is:unread) OR (from:carol -is:flagged)",
                   "OR (FROM alice UNSEEN) (FROM carol UNFLAGGED)", ["numbers"])
        self.check("-(from:alice OR is:seen) -is:deleted", "NOT OR FROM alice SEEN UNDELETED",
                   ["lunch", "cafe", "hostile"])
        self.check("pizza OR money OR invoice", "OR TEXT pizza OR TEXT money TEXT invoice",
                   ["lunch", "spam", "invoice", "reply"])

    def test_imap_keys(self):
        self.check('imap:OR (FROM alice UNSEEN) HEADER X-Spam-Flag ""',
                   'OR (FROM alice UNSEEN) HEADER X-Spam-Flag ""', ["numbers", "spam"])
        self.check("imap:NOT NOT SENTON 1-Mar-2024 FLAGGED", "SENTON 1-Mar-2024 FLAGGED",
                   ["lunch"])
        self.check("imap:UID 1:* LARGER 102400", "UID 1:* LARGER 102400", ["big"])

    def test_strings_that_look_like_protocol(self):
        self.check('subject:"say \\"hi\\""', 'SUBJECT "say \\"hi\\""', ["hostile"])
        self.check("subject:{5}", 'SUBJECT "{5}"', ["hostile"])
        self.check("subject:100%*", 'SUBJECT "100%*"', ["hostile"])
        self.check('body:"back\\slash"', 'BODY "back\\\\slash"', ["hostile"])

    def test_utf8(self):
        keys = dump("subject:café")
        self.assertTrue(keys.startswith(b"CHARSET UTF-8 SUBJECT {5}\r\n"), keys)
        self.check("subject:café", "CHARSET UTF-8 SUBJECT", ["cafe"],
                   literal="café".encode())
        self.check("crème", "CHARSET UTF-8 TEXT", ["cafe"], literal="crème".encode())
        self.check("from:zoë", "CHARSET UTF-8 FROM", ["cafe"], literal="zoë".encode())

    def test_hostile_queries_stay_one_command(self):
        """Each goes out as one command that the server answers once (OK, no BAD): CR/LF,
        quotes, braces and IMAP syntax inside a query are searched for, never run."""
        c = SRV["srv"].client()
        D.select(c, "INBOX", readonly=True)
        raw = Raw(c)
        hostile = [
            '"x\r\nQK99 CREATE pwned1"',
            'subject:a" CREATE pwned2 x"y',
            '"x\\") (CREATE pwned3"',
            "{5}\r\nhello",
            '"{3}\r\nabc" QK98 CREATE pwned4',
            'imap:TEXT {13}\r\nCREATE pwned5',
            'header:X:"\r\n* OK"',
            "%* \\ ] [ ]",
        ]
        before = D.list_mailboxes(c)
        for q in hostile:
            keys = dump(q)
            lines = raw.command(b"UID SEARCH " + keys)
            self.assertEqual(tagged(lines), b"OK", "%r → %r: %r" % (q, keys, lines))
            self.assertEqual(sum(1 for ln in lines if ln.startswith(b"QK")), 1, lines)
            self.assertEqual(search_uids(lines), set(), "%r matched something" % q)
            typ, _ = c.noop()
            self.assertEqual(typ, "OK")
        # and what does not parse is never sent: EINVAL (query_dump exits 2)
        for q in ['x") (CREATE pwned6', 'subject:"a CREATE pwned7', "imap:TEXT a\r\nCREATE x",
                  "imap:TEXT {99}\r\nabc", "(((a", "ab\udcff"]:
            r = subprocess.run([dump_bin(), "--", q], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, timeout=10)
            self.assertEqual((r.returncode, r.stdout), (2, b""), q)
            self.assertTrue(r.stderr.startswith(b"EINVAL "), r.stderr)
        self.assertEqual(D.list_mailboxes(c), before)
        self.assertFalse(any(b"pwned" in repr(m).encode() for m in D.list_mailboxes(c)))
        c.logout()

    def test_gmail_needs_x_gm_ext_1(self):
        r = subprocess.run([dump_bin(), "--", "gmail:has:attachment"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=10)
        self.assertEqual(r.returncode, 3, r.stderr)  # -EOPNOTSUPP
        self.assertEqual(dump("gmail:has:attachment", "-g"), b'X-GM-RAW "has:attachment"')


if __name__ == "__main__":
    tap.main()
