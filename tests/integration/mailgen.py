"""Deterministic test mail: the hard cases the integration tests load into Dovecot.

Every message is a Msg with what a correct imapfs must show for it:
  - subject: the decoded subject as it should appear in the file name (whitespace runs
    collapsed to one space, trimmed, '/' → '_'); NOSUBJECT where only "some non-empty
    valid text" can be expected (no Subject, blank Subject); None where the decoded text
    can't be predicted (broken encoded words, raw non-UTF-8 bytes, control characters),
    in which case only validity is checked.
  - date: "YYYY-MM-DD" (UTC) of the Date header, or None when there is no usable Date
    header (the name then uses INTERNALDATE in UTC).
  - internaldate: an aware datetime used as APPEND's INTERNALDATE (→ st_mtime).
  - flags: APPEND flags (→ user.imap.flags).

Mailboxes (separator '/'): see MAILBOXES. Dovecot shows the missing parents of a
nested mailbox ("Archive" for "Archive/2024", "a" and "a/b" for "a/b/c") in LIST as
(\\Noselect \\HasChildren), and CREATE "Parent/" (trailing separator) makes a
\\Noselect mailbox with no children.
"""

import base64
import datetime
import email.header
import random
import re
import sys
import os

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dovecot as D  # noqa: E402

NOSUBJECT = object()
UTC = datetime.timezone.utc

# Every directory that must appear under the mount root ('/' separated, UTF-8), with
# whether it is selectable. CREATE only the selectable ones plus NOSELECT_CREATE.
MAILBOXES = ["INBOX", "INBOX/Sub", "Archive/2024", "Entwürfe", "日本語", "My Folder", "R&D",
             "a/b/c", "Big", "Bulk"]
NOSELECT_CREATE = ["Empty Parent/"]  # trailing separator: a \Noselect leaf
EXPECTED_DIRS = {
    "INBOX": True, "INBOX/Sub": True, "Archive": False, "Archive/2024": True,
    "Entwürfe": True, "日本語": True, "My Folder": True, "R&D": True, "a": False, "a/b": False,
    "a/b/c": True, "Big": True, "Bulk": True, "Empty Parent": False,
}

GREP_WORD = "xylophonequasar"  # in the bodies of some messages only (see Msg.words)


class Msg:
    def __init__(self, key, mailbox, raw, subject, date, internaldate, flags=(), words=()):
        self.key = key
        self.mailbox = mailbox
        self.raw = raw
        self.subject = subject
        self.date = date
        self.internaldate = internaldate
        self.flags = list(flags)
        self.words = list(words)
        self.uid = None  # set by load()

    def __repr__(self):
        return "Msg(%s in %s uid %s)" % (self.key, self.mailbox, self.uid)


def _hdr(name, value):
    return b"%s: %s\r\n" % (name.encode(), value if isinstance(value, bytes) else value.encode())


def _b(charset, text):
    return "=?%s?B?%s?=" % (charset, base64.b64encode(text.encode(charset)).decode())


def _q(charset, text):
    out = []
    for byte in text.encode(charset):
        c = chr(byte)
        if c == " ":
            out.append("_")
        elif c.isalnum() and byte < 128:
            out.append(c)
        else:
            out.append("=%02X" % byte)
    return "=?%s?Q?%s?=" % (charset, "".join(out))


def _body_text(key, extra=""):
    return ("Hello,\r\n\r\nthis is test message %s. needle-%s\r\n%s\r\nRegards\r\n" % (key, key, extra))


def simple(key, subject_hdr, date_hdr, body, extra_headers=b"", ctype="text/plain; charset=utf-8",
           cte="7bit", eol=b"\r\n"):
    h = b""
    h += _hdr("From", "Alice Example <alice@example.org>")
    h += _hdr("To", "bob@example.org")
    if subject_hdr is not None:
        h += b"Subject: " + (subject_hdr if isinstance(subject_hdr, bytes) else subject_hdr.encode()) + b"\r\n"
    if date_hdr is not None:
        h += _hdr("Date", date_hdr)
    h += _hdr("Message-ID", "<%s@mailgen.example>" % key)
    h += _hdr("MIME-Version", "1.0")
    h += _hdr("Content-Type", ctype)
    h += _hdr("Content-Transfer-Encoding", cte)
    h += extra_headers
    raw = h + b"\r\n" + (body if isinstance(body, bytes) else body.encode())
    if eol != b"\r\n":
        raw = raw.replace(b"\r\n", eol)
    return raw


def _idate(i, offset_hours=0):
    """Distinct, ordered INTERNALDATEs in several time zones."""
    tz = datetime.timezone(datetime.timedelta(hours=offset_hours))
    base = datetime.datetime(2024, 3, 1, 8, 0, 0, tzinfo=UTC) + datetime.timedelta(days=i, minutes=7 * i)
    return base.astimezone(tz)


def _rand(seed):
    return random.Random(seed)


def nested_multipart(key):
    rng = _rand(key)
    pdf = bytes(rng.getrandbits(8) for _ in range(3000))
    inner_msg = simple(key + "-inner", "Inner forwarded message", "Tue, 05 Mar 2024 09:00:00 +0000",
                       _body_text(key + "-inner"))
    parts = [
        b"--outer\r\nContent-Type: multipart/alternative; boundary=\"alt\"\r\n\r\n"
        b"--alt\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
        b"Gr=C3=BC=C3=9Fe, the plain part. " + GREP_WORD.encode() + b"\r\n"
        b"--alt\r\nContent-Type: multipart/related; boundary=\"rel\"\r\n\r\n"
        b"--rel\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>html <img src=\"cid:i1\"></p>\r\n"
        b"--rel\r\nContent-Type: image/png\r\nContent-ID: <i1>\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + base64.encodebytes(pdf[:600]).replace(b"\n", b"\r\n") +
        b"--rel--\r\n--alt--\r\n",
        b"--outer\r\nContent-Type: application/pdf; name=\"report.pdf\"\r\n"
        b"Content-Disposition: attachment; filename*=UTF-8''Bericht%20f%C3%BCr%20M%C3%A4rz.pdf\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.encodebytes(pdf).replace(b"\n", b"\r\n"),
        b"--outer\r\nContent-Type: message/rfc822\r\nContent-Disposition: attachment\r\n\r\n" + inner_msg + b"\r\n",
        b"--outer--\r\nepilogue\r\n",
    ]
    body = b"This is a multi-part message in MIME format.\r\n" + b"".join(parts)
    return simple(key, "Nested multipart with attachments", "Wed, 06 Mar 2024 10:00:00 +0000", body,
                  ctype='multipart/mixed; boundary="outer"')


def binary_base64(key, nbytes):
    rng = _rand(key)
    data = rng.randbytes(nbytes)
    body = (b"--b1\r\nContent-Type: text/plain\r\n\r\nsee attachment " + b"needle-" + key.encode() + b"\r\n"
            b"--b1\r\nContent-Type: application/octet-stream; name=\"blob.bin\"\r\n"
            b"Content-Disposition: attachment; filename=\"blob.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            + base64.encodebytes(data).replace(b"\n", b"\r\n") + b"--b1--\r\n")
    return simple(key, "Binary attachment %d bytes" % nbytes, "Thu, 07 Mar 2024 11:00:00 +0000", body,
                  ctype='multipart/mixed; boundary="b1"')


def big_message(size=25 * 1024 * 1024, seed="big"):
    """A deterministic message of about `size` bytes (CRLF, base64 body). Generated on the fly."""
    head = simple("big", "Huge message 25 MB", "Fri, 08 Mar 2024 12:00:00 +0000",
                  b"", ctype='multipart/mixed; boundary="big1"')
    pre = (b"--big1\r\nContent-Type: text/plain\r\n\r\nBEGIN-OF-BIG-MESSAGE\r\n"
           b"--big1\r\nContent-Type: application/octet-stream; name=\"big.bin\"\r\n"
           b"Content-Transfer-Encoding: base64\r\n\r\n")
    post = b"--big1\r\nContent-Type: text/plain\r\n\r\nEND-OF-BIG-MESSAGE\r\n--big1--\r\n"
    room = size - len(head) - len(pre) - len(post)
    nlines = room // 78  # 76 base64 chars + CRLF
    raw = random.Random(seed).randbytes(nlines * 57)
    b64 = base64.encodebytes(raw).replace(b"\n", b"\r\n")
    return head + pre + b64 + post


def long_subject_header(text):
    return email.header.Header(text, "utf-8", header_name="Subject").encode(maxlinelen=76, linesep="\r\n")


def hard_messages():
    """The small hard cases (no 25 MB, no bulk)."""
    m = []
    i = [0]

    def add(key, mailbox, raw, subject, date, flags=(), words=(), tz=0):
        i[0] += 1
        m.append(Msg(key, mailbox, raw, subject, date, _idate(i[0], tz), flags, words))

    def plain(key, subject_hdr, date_hdr, **kw):
        return simple(key, subject_hdr, date_hdr, _body_text(key, kw.pop("extra", "")), **kw)

    d = "Mon, 04 Mar 2024 10:00:00 +0000"
    # RFC 2047 in several charsets
    s = "Grüße aus München — 東京 🎉"
    add("utf8-b", "INBOX", plain("utf8-b", _b("UTF-8", s), d), s, "2024-03-04", [r"\Seen"])
    s = "Café crème brûlée"
    add("utf8-q", "INBOX", plain("utf8-q", _q("utf-8", s), d, extra=GREP_WORD), s, "2024-03-04", [r"\Flagged", "$Label1"],
        words=[GREP_WORD], tz=5)
    s = "Schöne Grüße"
    add("latin1-q", "INBOX", plain("latin1-q", _q("ISO-8859-1", s), d), s, "2024-03-04", [], tz=-7)
    s = "Привет, мир"
    add("koi8r-b", "INBOX", plain("koi8r-b", _b("KOI8-R", s), d), s, "2024-03-04", [r"\Answered", r"\Seen"])
    s = "日本語の件名"
    add("sjis-b", "日本語", plain("sjis-b", _b("Shift_JIS", s), d), s, "2024-03-04")
    s = "会議のお知らせ"
    add("iso2022jp-b", "日本語", plain("iso2022jp-b", _b("ISO-2022-JP", s), d), s, "2024-03-04", ["$Label1"])
    s = "你好世界"
    add("gb2312-b", "INBOX", plain("gb2312-b", _b("GB2312", s), d), s, "2024-03-04")
    # adjacent encoded words: the white space between them disappears
    add("mixed-words", "INBOX",
        plain("mixed-words", "Re: " + _q("UTF-8", "Grüße") + " " + _q("ISO-8859-1", " und Küsse") + " from Bob", d),
        "Re: Grüße und Küsse from Bob", "2024-03-04", [r"\Seen", r"\Flagged"])
    # structure
    add("nested", "INBOX", nested_multipart("nested"), "Nested multipart with attachments", "2024-03-06",
        [r"\Flagged"], words=[GREP_WORD])
    add("binary", "INBOX", binary_base64("binary", 700 * 1024), "Binary attachment %d bytes" % (700 * 1024),
        "2024-03-07", [])
    add("empty-body", "INBOX", simple("empty-body", "Empty body", d, b""), "Empty body", "2024-03-04")
    add("bare-lf", "INBOX", plain("bare-lf", "Bare LF line endings", d, eol=b"\n", extra=GREP_WORD),
        "Bare LF line endings", "2024-03-04", words=[GREP_WORD])
    add("8bit-body", "INBOX", simple("8bit-body", "Eight bit body", d,
                                     "Grüße, ½ € — raw UTF-8 body\r\n".encode() + b"latin1: Gr\xfc\xdfe\r\n",
                                     cte="8bit"),
        "Eight bit body", "2024-03-04")
    add("long-lines", "INBOX", simple("long-lines", "Long lines", d, ("x" * 3000 + "\r\n") * 3),
        "Long lines", "2024-03-04")
    # missing and odd headers
    add("no-subject", "INBOX", plain("no-subject", None, d), NOSUBJECT, "2024-03-04")
    add("blank-subject", "INBOX", plain("blank-subject", "   ", d), NOSUBJECT, "2024-03-04")
    add("no-date", "INBOX", plain("no-date", "No date header here", None), "No date header here", None,
        tz=3)
    add("garbage-date", "INBOX", plain("garbage-date", "Garbage date", "the day after tomorrow, maybe"),
        "Garbage date", None, tz=-9)
    add("no-subject-no-date", "INBOX", plain("no-subject-no-date", None, None), NOSUBJECT, None)
    add("date-utc-back", "INBOX", plain("date-utc-back", "Date crosses midnight backwards",
                                         "Mon, 01 Jan 2024 01:30:00 +0200"),
        "Date crosses midnight backwards", "2023-12-31")
    add("date-utc-fwd", "INBOX", plain("date-utc-fwd", "Date crosses midnight forwards",
                                        "Tue, 31 Dec 2024 23:30:00 -0100"),
        "Date crosses midnight forwards", "2025-01-01")
    add("date-comment", "INBOX", plain("date-comment", "Date without weekday and with comment",
                                        "5 Feb 2024 10:00:00 -0800 (PST)"),
        "Date without weekday and with comment", "2024-02-05")
    add("date-2digit", "INBOX", plain("date-2digit", "Two digit year", "Fri, 1 Jan 99 12:00:00 GMT"),
        "Two digit year", "1999-01-01")
    # names
    s = "Ünïcödé-Wörter und 東京の件名 " * 12
    add("long-subject", "INBOX", plain("long-subject", long_subject_header(s.strip()), d),
        re.sub(r"\s+", " ", s).strip(), "2024-03-04", [r"\Seen"])
    add("slash", "INBOX", plain("slash", "Q1/Q2 report: a/b/c", d), "Q1_Q2 report: a_b_c", "2024-03-04")
    add("folded-tabs", "INBOX", plain("folded-tabs", "This is\r\n\ta folded\r\n   subject\twith\t\ttabs", d),
        "This is a folded subject with tabs", "2024-03-04")
    add("raw-utf8-subject", "INBOX", plain("raw-utf8-subject", "Grüße roh 8bit ✓".encode(), d),
        "Grüße roh 8bit ✓", "2024-03-04")
    add("raw-latin1-subject", "INBOX", plain("raw-latin1-subject", b"Gr\xfc\xdfe latin1 raw", d), None,
        "2024-03-04")
    add("control-chars", "INBOX", plain("control-chars", "=?UTF-8?Q?Bell=07Esc=1BNul=00end?= tab", d), None,
        "2024-03-04")
    add("broken-words", "INBOX", plain("broken-words", "=?UTF-8?B?!!!notbase64?= =?x-unknown?Q?abc?= ok", d),
        None, "2024-03-04")
    add("dots", "INBOX", plain("dots", "..", d), "..", "2024-03-04")
    add("quotes", "INBOX", plain("quotes", 'He said "hi" \\ {5}\r\n %s *', d), 'He said "hi" \\ {5} %s *',
        "2024-03-04", ["Junk", r"\Draft"])
    # other mailboxes
    add("sub-1", "INBOX/Sub", plain("sub-1", "In INBOX/Sub", d), "In INBOX/Sub", "2024-03-04")
    add("archive-1", "Archive/2024", plain("archive-1", "Archived one", d), "Archived one", "2024-03-04",
        [r"\Seen"])
    add("archive-2", "Archive/2024", plain("archive-2", "Archived two", d, extra=GREP_WORD), "Archived two",
        "2024-03-04", words=[GREP_WORD])
    add("drafts-1", "Entwürfe", plain("drafts-1", _q("utf-8", "Entwurf für Jörg"), d), "Entwurf für Jörg",
        "2024-03-04", [r"\Draft"])
    add("space-1", "My Folder", plain("space-1", "Space folder", d), "Space folder", "2024-03-04")
    add("amp-1", "R&D", plain("amp-1", "R&D & more", d), "R&D & more", "2024-03-04")
    add("deep-1", "a/b/c", plain("deep-1", "Deep down", d), "Deep down", "2024-03-04")
    return m


def bulk_messages(n, mailbox="Bulk"):
    out = []
    base = datetime.datetime(2023, 1, 1, tzinfo=UTC)
    for k in range(n):
        dt = base + datetime.timedelta(hours=5 * k)
        key = "bulk-%05d" % k
        raw = simple(key, "Bulk message number %d" % k, dt.strftime("%a, %d %b %Y %H:%M:%S +0000"),
                     _body_text(key))
        out.append(Msg(key, mailbox, raw, "Bulk message number %d" % k, dt.strftime("%Y-%m-%d"), dt))
    return out


def create_mailboxes(c, names=None, noselect=None):
    for name in (MAILBOXES if names is None else names):
        if name.upper() == "INBOX":
            continue
        typ, data = c.create(D.imap_quote(D.mutf7_encode(name)))
        if typ != "OK" and b"exists" not in data[0].lower():
            raise RuntimeError("CREATE %s: %r" % (name, data))
    for name in (NOSELECT_CREATE if noselect is None else noselect):
        c.create(D.imap_quote(D.mutf7_encode(name)))


def multiappend(c, mailbox, msgs, chunk=500):
    """Appends many messages with MULTIAPPEND + LITERAL+ (one round trip per chunk).
    Sets msg.uid from APPENDUID."""
    for start in range(0, len(msgs), chunk):
        part = msgs[start:start + chunk]
        tag = c._new_tag()
        cmd = [tag + b" APPEND " + D.imap_quote(D.mutf7_encode(mailbox)).encode()]
        for msg in part:
            fl = "(" + " ".join(msg.flags) + ")"
            date = D.imaplib.Time2Internaldate(msg.internaldate)
            cmd.append((" %s %s {%d+}\r\n" % (fl, date, len(msg.raw))).encode() + msg.raw)
        c.send(b"".join(cmd) + b"\r\n")
        while True:
            line = c.readline()
            if not line:
                raise RuntimeError("connection closed during MULTIAPPEND")
            if line.startswith(tag + b" "):
                break
        if not line.startswith(tag + b" OK"):
            raise RuntimeError("MULTIAPPEND failed: %r" % line)
        m = re.search(rb"APPENDUID \d+ (\d+)(?::(\d+))?", line)
        if m:
            lo = int(m.group(1))
            for j, msg in enumerate(part):
                msg.uid = lo + j


def load(d, msgs, user=None, create=True):
    """Creates MAILBOXES and APPENDs msgs on one connection; sets each msg.uid."""
    c = d.client(user)
    try:
        if create:
            create_mailboxes(c)
        for msg in msgs:
            msg.uid = D.append(c, msg.mailbox, msg.raw, msg.flags, msg.internaldate)
    finally:
        c.logout()
    return msgs


def load_sample(d):
    """Sample mail for the demo: the hard cases and 50 bulk messages (no 25 MB message)."""
    c = d.client()
    try:
        create_mailboxes(c)
        for msg in hard_messages():
            msg.uid = D.append(c, msg.mailbox, msg.raw, msg.flags, msg.internaldate)
        multiappend(c, "Bulk", bulk_messages(50))
        D.append(c, "Big", big_message(2 * 1024 * 1024), [], _idate(0))
    finally:
        c.logout()


# -- what a file name must look like ------------------------------------------------------
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


def expected_subject_text(s):
    return re.sub(r"\s+", " ", s).strip().replace("/", "_")


def basic_name_problems(name, uid):
    """What any message file name must satisfy, whatever the message."""
    problems = []
    raw = name.encode("utf-8", "surrogateescape")
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        problems.append("not valid UTF-8")
    if len(raw) > 255:
        problems.append("%d bytes > 255" % len(raw))
    if "/" in name:
        problems.append("contains '/'")
    if CONTROL_RE.search(name):
        problems.append("contains a control character")
    if not name.endswith(" [%d].eml" % uid):
        problems.append("does not end with ' [%d].eml'" % uid)
    if not re.match(r"^\d{4}-\d{2}-\d{2} \S", name):
        problems.append("does not start with 'YYYY-MM-DD '")
    elif not name[len("YYYY-MM-DD "):-len(" [%d].eml" % uid)].strip():
        problems.append("empty subject part")
    return problems


def check_name(name, uid, subject, date, internaldate_epoch):
    """Returns a list of problems (empty if the name is right). subject/date as in Msg."""
    problems = []
    raw = name.encode("utf-8", "surrogateescape")
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        problems.append("not valid UTF-8")
    if len(raw) > 255:
        problems.append("%d bytes > 255" % len(raw))
    if "/" in name:
        problems.append("contains '/'")
    if CONTROL_RE.search(name):
        problems.append("contains a control character")
    suffix = " [%d].eml" % uid
    if not name.endswith(suffix):
        problems.append("does not end with %r" % suffix)
        return problems
    if date is None:
        date = datetime.datetime.fromtimestamp(internaldate_epoch, UTC).strftime("%Y-%m-%d")
    if not name.startswith(date + " "):
        problems.append("does not start with date %s" % date)
        return problems
    middle = name[len(date) + 1:-len(suffix)]
    if subject is NOSUBJECT or subject is None:
        if not middle.strip():
            problems.append("empty subject part")
    else:
        exp = expected_subject_text(subject)
        full = "%s %s%s" % (date, exp, suffix)
        if len(full.encode()) <= 255:
            if middle != exp:
                problems.append("subject part %r != %r" % (middle, exp))
        else:
            if not exp.startswith(middle.rstrip()) or len(raw) < 255 - 4 - 1:
                problems.append("truncated subject %r (%d bytes) is not the longest prefix of %r"
                                % (middle, len(raw), exp))
    return problems


if __name__ == "__main__":
    for msg in hard_messages():
        print(msg.key, msg.mailbox, len(msg.raw), repr(msg.subject)[:60], msg.date, msg.flags)
    print("big", len(big_message()))
