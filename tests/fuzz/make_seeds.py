#!/usr/bin/python3
"""Writes the seed corpus of the fuzz targets (tests/fuzz/seeds/TARGET/) from real
server transcripts: a throwaway Dovecot with rawlog serves mailgen's hard-case mail to
a real imapfs mount, which lists, reads, flags, moves, removes and copies; what the
server sent (its rawlog .out files) is cut into responses for the parser seeds. The
header, RFC 2047, date and mailbox-name seeds come from the same mail and the names
Dovecot listed. Rerun after a change in what imapfs sends (needs root, Dovecot, FUSE):

    IMAPFS_BIN=build/fs/imapfs /usr/bin/python3 tests/fuzz/make_seeds.py

Seeds are content-addressed (sha1 names), so a rerun only adds files."""

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import common as C  # noqa: E402
from common import D, I, G  # noqa: E402

SEEDS = os.path.join(HERE, "seeds")
MAX_PER_KIND = 6       # responses of one kind (FETCH, LIST, OK ...) kept for the parser
MAX_BYTES = 8192       # longest seed


def put(target, data):
    if not data or len(data) > MAX_BYTES:
        return
    d = os.path.join(SEEDS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, hashlib.sha1(data).hexdigest()), "wb") as f:
        f.write(data)


def frame(stream):
    """Splits a server stream into responses (line + literals), as imap_frame does."""
    out, pos = [], 0
    while pos < len(stream):
        start = pos
        while True:
            nl = stream.find(b"\n", pos)
            if nl < 0:
                return out
            m = re.search(rb"\{(\d+)\+?\}\r?$", stream[pos:nl])
            pos = nl + 1
            if not m:
                break
            pos += int(m.group(1))
        out.append(stream[start:pos])
    return out


def kind(resp):
    w = resp.split(b" ", 3)
    if resp.startswith(b"* ") and len(w) > 2 and w[1].isdigit():
        return w[2].strip().upper()
    return (w[1] if len(w) > 1 else w[0]).strip().upper()


def transcripts(srv):
    TS = re.compile(rb"^\d+\.\d+ ", re.M)
    rl = srv.rawlog_dir()
    for f in sorted(os.listdir(rl)):
        if f.endswith(".out"):
            with open(os.path.join(rl, f), "rb") as fh:
                yield TS.sub(b"", fh.read())


def exercise(srv, m):
    mp = m.mp
    C.sh(["ls", "-lR", mp], timeout=120)
    C.sh(["getfattr", "-R", "-d", "-m", "-", mp], timeout=120)
    inbox = os.path.join(mp, "INBOX")
    files = sorted(os.listdir(inbox))
    msgs = [f for f in files if f.endswith(".eml")]
    for f in msgs[:12]:
        C.sh(["cat", os.path.join(inbox, f)])
        C.sh(["head", "-c", "100", os.path.join(inbox, f)])
    one = os.path.join(inbox, msgs[0])
    C.sh(["setfattr", "-n", "user.imap.flags", "-v", "\\Seen $Label1", one])
    os.makedirs(os.path.join(mp, "Seeds Ärger"), exist_ok=True)
    C.sh(["mv", os.path.join(inbox, msgs[1]), os.path.join(mp, "Seeds Ärger")])
    C.sh(["rm", "-f", os.path.join(inbox, msgs[2])])
    tmp = tempfile.mkdtemp()
    p = os.path.join(tmp, "new.eml")
    with open(p, "wb") as f:
        f.write(G.simple("seed-new", "Seed =?UTF-8?Q?K=C3=A4se?=", "Tue, 5 Mar 2024 09:00:00 +0100",
                         b"hello\r\n"))
    C.sh(["cp", p, os.path.join(mp, "Seeds Ärger")])
    shutil.rmtree(tmp)
    C.sh(["ls", "-l", os.path.join(mp, "Seeds Ärger")])


# What the rawlog can't hold (it starts after login) and date layouts the mail above lacks.
EXTRA = {
    "parse": [b"\x01* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ "
              b"STARTTLS AUTH=PLAIN AUTH=LOGIN] Dovecot (Debian) ready.\r\n",
              b"\x01+ \r\n", b"\x01* BYE Server shutting down.\r\n",
              b"\x01A3 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n",
              b"\x00* 1 FETCH (UID 7 BODY[]<0> {5}\r\nabcde)\r\n",
              b"\x01* 3 FETCH (UID 9 BODY[HEADER.FIELDS (SUBJECT DATE)] {24}\r\nSubject: x\r\nDate: y\r\n\r\n)\r\n"],
    "date": [b"Fri Mar  1 14:30:00 2024", b"2024-03-01T14:30:00.250+01:00",
             b"1 Mar 2024 2:30 PM EST", b"Sun, 31 Feb 2024 10:00:00 +0000",
             b"01-Mar-2024 14:30:00 +0100", b" 1-Mar-2024 14:30:00 -0000"],
    "utf7": [b"Entw&APw-rfe", b"&ZeVnLIqe-", b"R&-D", b"&2D3eAA-", b"INBOX/&AOQ-&-"],
    "rfc2047": [b"=?utf-8?b?8J+OiQ?= =?ISO-8859-1*de?Q?Gr=FC=DFe?=", b"=?x-unknown?Q?a?= =?UTF-8?B?!!?="],
}


def header_seeds(raws):
    names = (b"Subject", b"Date", b"From", b"Message-ID")
    for i, raw in enumerate(raws):
        head = raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0] + b"\r\n\r\n"
        put("header", names[i % len(names)] + b"\0" + head[:2048])
        for name, target in ((b"Subject", "rfc2047"), (b"From", "rfc2047"), (b"Date", "date")):
            m = re.search(rb"^" + name + rb":[ \t]*((?:.*)(?:\r?\n[ \t].*)*)", head, re.M | re.I)
            if m:
                put(target, m.group(1).rstrip(b"\r\n"))


def main():
    I.check_bin()
    srv = D.Dovecot(rawlog=True, special_use={"Trash": "\\Trash"}).start()
    m = None
    try:
        c = srv.client()
        G.create_mailboxes(c)
        c.create("Trash")
        msgs = G.hard_messages()
        for msg in msgs:
            if len(msg.raw) < 200000:
                msg.uid = D.append(c, msg.mailbox, msg.raw, msg.flags, msg.internaldate)
        c.logout()
        m = I.Mount("imaps://%s@127.0.0.1:%d" % (srv.user, srv.imaps_port),
                    opts={"cafile": srv.cafile, "password_file": srv.password_file})
        m.mount()
        exercise(srv, m)
        m.unmount()
        kept = {}
        for stream in transcripts(srv):
            resps = frame(stream)
            for r in resps:
                k = kind(r)
                if kept.get(k, 0) < MAX_PER_KIND:
                    kept[k] = kept.get(k, 0) + 1
                    put("parse", b"\x01" + r)   # first byte: the target's option byte
            # a few runs of consecutive responses, as one read would bring them
            for i in range(0, min(len(resps), 40), 8):
                put("parse", b"\x03" + b"".join(resps[i:i + 8]))
        header_seeds([msg.raw for msg in msgs if len(msg.raw) < 200000])
        for target, items in EXTRA.items():
            for item in items:
                put(target, item)
        c = srv.client()
        for flags, delim, raw in D.list_mailboxes(c):
            put("utf7", raw.encode())
            put("quote", D.mutf7_decode(raw).encode())
        c.logout()
        print("seeds:", {t: len(os.listdir(os.path.join(SEEDS, t))) for t in sorted(os.listdir(SEEDS))})
    finally:
        if m:
            m.cleanup()
        srv.cleanup()


if __name__ == "__main__":
    main()
