#!/usr/bin/python3
"""imapfs parts view benchmark (issue 8): extract every attachment of a 1,000-message folder.

    /usr/bin/python3 tests/bench/bench_parts.py [--quick] [--reps N] [--bin PATH] [--keep]

Starts a throwaway Dovecot (tests/integration/dovecot.py, rawlog on) with one folder of
deterministic mail (each message: a text/plain and text/html alternative plus one to three
base64 attachments of 2-60 KB, one message in 50 with one of ~400 KB) and a counting proxy
(tests/integration/proxy.py) in front of it, and times, on a fresh mount each run (default
configuration, cold: the persistent cache is new):

  cp BenchParts/.parts/*/[0-9]*-* OUT/    (every named part, i.e. every attachment: the
                                          unnamed 1.1.txt / 1.2.html would collide in OUT;
                                          the folder listing included)
      vs  python3 imaplib: SELECT + UID FETCH 1:* (UID BODYSTRUCTURE) + one
          UID FETCH uid (BINARY.PEEK[section]) per attachment, on one logged-in connection

and checks that both extracted the same number of files with the same bytes. Prints the
median time, bytes down/up (proxy), the ratio, the issue's targets (<= 1.3x the time,
<= 1.1x the bytes, O(1) structure commands) and the commands imapfs sent (rawlog).
--quick: 200 messages, one run. The exit status is non-zero only if something broke.
"""

import argparse
import email.policy
import glob
import hashlib
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from email.message import EmailMessage

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(SRC, "tests", "integration"))
sys.path.insert(0, HERE)

import dovecot as D  # noqa: E402
import imapfs as I  # noqa: E402
import mailgen as G  # noqa: E402
import proxy as P  # noqa: E402
import bench as B  # noqa: E402

BOX = "BenchParts"
T0 = time.monotonic()


def log(*a):
    print("[bench_parts %6.1fs]" % (time.monotonic() - T0), *a, file=sys.stderr, flush=True)


def gen(n, seed=8):
    rng = random.Random(seed)
    types = [("application", "pdf", "pdf"), ("image", "jpeg", "jpg"), ("image", "png", "png"),
             ("application", "zip", "zip"), ("application", "octet-stream", "bin")]
    out = []
    for i in range(n):
        m = EmailMessage()
        m["From"] = "sender%d@example.org" % (i % 37)
        m["To"] = "bob@example.org"
        m["Subject"] = "Report %d" % i
        m["Date"] = "Fri, 01 Mar 2024 10:%02d:00 +0000" % (i % 60)
        m["Message-ID"] = "<parts-%d@bench.example>" % i
        body = "Hello,\n\nplease find report %d attached.\n\nRegards\n" % i
        m.set_content(body)
        m.add_alternative("<p>%s</p>" % body.replace("\n", "<br>"), subtype="html")
        for k in range(rng.randint(1, 3)):
            maintype, subtype, ext = rng.choice(types)
            size = 400 * 1024 if rng.random() < 0.02 else rng.randint(2 * 1024, 60 * 1024)
            data = rng.randbytes(size)
            m.add_attachment(data, maintype=maintype, subtype=subtype,
                             filename="file-%d-%d.%s" % (i, k, ext))
        raw = m.as_bytes(policy=email.policy.SMTP)
        out.append(G.Msg("p%d" % i, BOX, raw, None, None, G._idate(i)))
    return out


def digest_dir(d):
    """{sha256: count} of the files in d."""
    res = {}
    for f in os.listdir(d):
        with open(os.path.join(d, f), "rb") as fh:
            h = hashlib.sha256(fh.read()).hexdigest()
        res[h] = res.get(h, 0) + 1
    return res


def leaves(bs):
    """Sections of the attachments in a BODYSTRUCTURE of the shape gen() makes: a
    multipart/mixed of an alternative (text, html) and the attachments."""
    k = bs.count('"attachment"')
    return [str(j + 2) for j in range(k)]


def base_extract(srv_port, srv, out):
    import imaplib
    c = imaplib.IMAP4_SSL("127.0.0.1", srv_port, ssl_context=srv.ssl_context(), timeout=60)
    c.login(srv.user, srv.users[srv.user])
    t = time.monotonic()
    c.select(BOX, readonly=True)
    typ, data = c.uid("FETCH", "1:*", "(UID BODYSTRUCTURE)")
    B.fetch_ok(typ, data, "BODYSTRUCTURE")
    n = 0
    for item in data:
        line = item[0] if isinstance(item, tuple) else item
        if not line:
            continue
        line = line.decode("utf-8", "replace")
        uid = int(re.search(r"UID (\d+)", line).group(1))
        bs = line[line.index("BODYSTRUCTURE ") + len("BODYSTRUCTURE "):]
        for sec in leaves(bs):
            typ, d2 = c.uid("FETCH", str(uid), "(BINARY.PEEK[%s])" % sec)
            B.fetch_ok(typ, d2, "BINARY.PEEK")
            with open(os.path.join(out, "%d-%s" % (uid, sec)), "wb") as fh:
                fh.write(d2[0][1])
            n += 1
    dt = time.monotonic() - t
    c.logout()
    return dt, n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--reps", type=int, default=None)
    ap.add_argument("--bin")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    n_msgs = 200 if args.quick else 1000
    reps = args.reps or (1 if args.quick else 3)
    work = tempfile.mkdtemp(prefix="bparts", dir="/tmp")
    srv = proxy = None
    failures = []
    try:
        os.environ["IMAPFS_BIN"] = B.find_bin(args.bin, work)
        srv = D.Dovecot(rawlog=True).start()
        c = srv.client()
        c.create(BOX)
        msgs = gen(n_msgs)
        G.multiappend(c, BOX, msgs, chunk=100)
        c.logout()
        log("loaded %d messages, %.1f MB" % (n_msgs, sum(len(m.raw) for m in msgs) / 1e6))
        proxy = P.Proxy(srv.imaps_port).start()
        rows = {"imapfs": [], "imaplib": []}
        bytes_ = {"imapfs": [], "imaplib": []}
        structure_cmds = []
        cmd_counts = []
        ref = None
        for rep in range(reps + 1):  # the first round warms Dovecot's caches, untimed
            out = os.path.join(work, "base%d" % rep)
            os.mkdir(out)
            proxy.reset()
            dt, nb = base_extract(proxy.port, srv, out)
            up, down = proxy.counts()
            base_digest = digest_dir(out)
            shutil.rmtree(out)
            m = I.Mount("imaps://%s@127.0.0.1:%d" % (srv.user, proxy.port),
                        opts={"cafile": srv.cafile, "password_file": srv.password_file})
            m.mount(foreground=True)
            try:
                out = os.path.join(work, "fs%d" % rep)
                os.mkdir(out)
                since = time.time()
                proxy.reset()
                t = time.monotonic()
                r = subprocess.run("cp %s/.parts/*/[0-9]*-* %s/" % (os.path.join(m.mp, BOX), out),
                                   shell=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   timeout=600)
                fdt = time.monotonic() - t
                fup, fdown = proxy.counts()
                if r.returncode != 0:
                    raise B.Broken("cp failed: %s" % r.stderr[-2000:].decode(errors="replace"))
                fs_digest = digest_dir(out)
                shutil.rmtree(out)
                cmds = [cmd for when, cmd in B.rawlog_commands(srv) if when >= since]
            finally:
                m.unmount()
                m.cleanup()
            if fs_digest != base_digest:
                raise B.Broken("the parts cp extracted differ from imaplib's (%d vs %d files)"
                               % (sum(fs_digest.values()), sum(base_digest.values())))
            ref = sum(fs_digest.values())
            if rep == 0:
                log("warm-up: %d parts, identical bytes" % ref)
                continue
            rows["imaplib"].append(dt)
            rows["imapfs"].append(fdt)
            bytes_["imaplib"].append((down, up))
            bytes_["imapfs"].append((fdown, fup))
            structure_cmds.append(sum(1 for cmd in cmds if "BODYSTRUCTURE" in cmd))
            shapes = {}
            for cmd in cmds:
                s = re.sub(r"\d+", "N", cmd)
                shapes[s] = shapes.get(s, 0) + 1
            cmd_counts.append(shapes)
            log("run %d: imapfs %.2fs, imaplib %.2fs" % (rep, fdt, dt))
        ti, tb = statistics.median(rows["imapfs"]), statistics.median(rows["imaplib"])
        di = statistics.median(b[0] for b in bytes_["imapfs"])
        db = statistics.median(b[0] for b in bytes_["imaplib"])
        print("bench_parts: %d messages, %d parts, %d timed run(s), cold mounts" % (n_msgs, ref, reps))
        print("  %-50s %8.2fs  %10d B down" % ("cp .parts/*/[0-9]*-* (imapfs)", ti, di))
        print("  %-50s %8.2fs  %10d B down" % ("BODYSTRUCTURE + BINARY.PEEK per part (imaplib)", tb, db))
        print("  time %.2fx (target <= 1.3x: %s), bytes %.2fx (target <= 1.1x: %s), "
              "BODYSTRUCTURE commands %s (target O(1))"
              % (ti / tb, "PASS" if ti <= 1.3 * tb else "MISS", di / db,
                 "PASS" if di <= 1.1 * db else "MISS", structure_cmds))
        print("  imapfs commands in the last run:")
        for s, k in sorted(cmd_counts[-1].items(), key=lambda x: -x[1])[:8]:
            print("    %6d  %s" % (k, s[:110]))
    except Exception as e:  # noqa: BLE001
        failures.append(e)
        return B.exit_status("bench_parts", e)
    finally:
        if proxy is not None:
            proxy.stop()
        if srv is not None:
            srv.cleanup()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
