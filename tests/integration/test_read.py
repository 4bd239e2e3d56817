#!/usr/bin/python3
"""The read path, checked with real tools against an independent client (imaplib):
folder tree, names, sizes, times, inodes, bytes, partial reads, grep, cp, find,
extended attributes, \\Seen untouched, EROFS, bytes on the wire for a 25 MB message,
and O(1) round trips for listing a 2,000-message folder."""

import datetime
import errno
import os
import re
import stat
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tap  # noqa: E402
import common as C  # noqa: E402
from common import D, I, G, sh, mount_files, read_file  # noqa: E402
from proxy import Proxy  # noqa: E402

SRV = None
PROXY = None
M = None
TMP = None
MSGS = []
BULK_N = 2000
BIG_UID = None
BIG_SIZE = None
TREE = {}   # mount path → (flags, delim, raw name)
VIEW = {}   # mount path of a selectable mailbox → (meta, bodies); Big: bodies empty
DOT_MAILBOXES = ["a/b", "100%", "x.y", "Sub.Child"]


def setUpModule():
    global SRV, PROXY, M, TMP, MSGS, BIG_UID, BIG_SIZE, TREE
    I.check_bin()
    TMP = tempfile.mkdtemp(prefix="itr", dir="/tmp")
    os.chmod(TMP, 0o755)
    try:
        SRV = D.Dovecot(rawlog=True)
        SRV.add_user("dot", "dot-pw", extra="userdb_namespace/inbox/separator=.")
        SRV.add_user("bulk", "bulk-pw")
        SRV.start()
        MSGS = G.load(SRV, G.hard_messages())
        c = SRV.client()
        G.multiappend(c, "Bulk", G.bulk_messages(BULK_N))
        big = G.big_message()
        BIG_SIZE = len(big)
        BIG_UID = D.append(c, "Big", big, [], G._idate(0))
        del big
        TREE = C.server_tree(c)
        for path, (flags, delim, raw) in TREE.items():
            if not C.is_noselect(flags):
                VIEW[path] = server_view_raw(c, raw, bodies=(path != "Big"))
        c.logout()
        c = SRV.client("dot")
        for name in DOT_MAILBOXES:
            c.create(D.imap_quote(D.mutf7_encode(name)))
        D.append(c, "a/b", G.hard_messages()[0].raw, [], G._idate(1))
        c.logout()
        c = SRV.client("bulk")
        c.create("Bulk")
        c.create("Few")
        G.multiappend(c, "Bulk", G.bulk_messages(BULK_N))
        G.multiappend(c, "Few", G.bulk_messages(10))
        c.logout()
        PROXY = Proxy(SRV.imaps_port).start()
        M = C.mount_of(SRV, PROXY.port)
        M.mount(foreground=True)
    except Exception:
        tearDownModule(cleanup_only=True)
        raise


def tearDownModule(cleanup_only=False):
    C.teardown([M], servers=[SRV], proxy=PROXY, tmp=TMP, unmount=not cleanup_only)


def server_view_raw(c, raw, bodies=True):
    typ, data = c.select(D.imap_quote(raw), readonly=True)
    assert typ == "OK", data
    meta = D.fetch_meta(c)
    b = D.fetch_bodies(c) if bodies and meta else {}
    return meta, b


def P(*parts):
    return os.path.join(M.mp, *parts)


def msg(key):
    for m in MSGS:
        if m.key == key:
            return m
    raise KeyError(key)


def path_of(m):
    files = mount_files(P(m.mailbox))
    return P(m.mailbox, files[m.uid])


def walk_dirs(root):
    res = set()
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            res.add(os.path.relpath(os.path.join(dirpath, d), root))
    return res


def log_tail():
    return "\n--- imapfs log (tail) ---\n" + M.read_log()[-3000:]


class TestTree(unittest.TestCase):
    def test_root_listing(self):
        expected = {p for p in TREE if "/" not in p}
        self.assertEqual(set(os.listdir(M.mp)), expected)
        r = sh(["ls", M.mp], check=True)
        for name in ("INBOX", "Entwürfe", "日本語", "My Folder", "R&D"):
            self.assertIn(name, r.stdout.decode().splitlines())

    def test_tree_matches_list(self):
        self.assertEqual(walk_dirs(M.mp), set(TREE))

    def test_tree_matches_expected(self):
        # an independent statement of what the tree must be (catches a wrong LIST parse in both)
        self.assertEqual(walk_dirs(M.mp), set(G.EXPECTED_DIRS))
        for path, selectable in G.EXPECTED_DIRS.items():
            self.assertEqual(not C.is_noselect(TREE[path][0]), selectable, path)

    def test_noselect_dirs_have_no_files(self):
        for path, (flags, _, _) in TREE.items():
            if C.is_noselect(flags):
                st = os.stat(P(path))
                self.assertTrue(stat.S_ISDIR(st.st_mode), path)
                for name in os.listdir(P(path)):
                    self.assertTrue(os.path.isdir(P(path, name)), "file %r in \\Noselect %s" % (name, path))

    def test_dirs_are_dirs(self):
        for path in TREE:
            st = os.lstat(P(path))
            self.assertTrue(stat.S_ISDIR(st.st_mode), path)
            self.assertTrue(st.st_mode & 0o555, path)

    def test_lookup_of_missing_names(self):
        for p in ("NoSuchFolder", "INBOX/nosuch.eml", "INBOX/2024-01-01 x [999999].eml", "Archive/nosuch"):
            with self.assertRaises(FileNotFoundError, msg=p):
                os.stat(P(p))

    def test_ls_tool(self):
        r = sh(["ls", "-la", P("Entwürfe")], check=True)
        out = r.stdout.decode()
        for name in mount_files(P("Entwürfe")).values():
            self.assertIn(name, out)
        r = sh(["ls", "-lR", P("a")], check=True)
        self.assertIn("Deep down", r.stdout.decode())


class TestFiles(unittest.TestCase):
    def test_uids_match_server(self):
        for path, (meta, _) in VIEW.items():
            with self.subTest(mailbox=path):
                self.assertEqual(set(mount_files(P(path))), set(meta))

    def test_names(self):
        problems = []
        for m in MSGS:
            files = mount_files(P(m.mailbox))
            if m.uid not in files:
                problems.append("%s: no file for UID %s" % (m.key, m.uid))
                continue
            meta = VIEW[m.mailbox][0][m.uid]
            for p in G.check_name(files[m.uid], m.uid, m.subject, m.date, meta["internaldate"]):
                problems.append("%s: %r: %s" % (m.key, files[m.uid], p))
        self.assertEqual(problems, [])

    def test_all_names_valid(self):
        problems = []
        for path in VIEW:
            for uid, name in mount_files(P(path)).items():
                problems += ["%s/%r: %s" % (path, name, p) for p in G.basic_name_problems(name, uid)]
        self.assertEqual(problems[:30], [])

    def test_bulk_names(self):
        problems = []
        files = mount_files(P("Bulk"))
        self.assertEqual(len(files), BULK_N)
        for k, m in enumerate(G.bulk_messages(BULK_N)):
            uid = k + 1
            for p in G.check_name(files.get(uid, "missing [%d].eml" % uid), uid, m.subject, m.date, 0):
                problems.append("%d: %s" % (uid, p))
        self.assertEqual(problems[:20], [])

    def test_stat(self):
        problems = []
        for path, (meta, _) in VIEW.items():
            for uid, name in mount_files(P(path)).items():
                st = os.stat(P(path, name))
                exp = meta[uid]
                if not stat.S_ISREG(st.st_mode):
                    problems.append("%s/%s: not a regular file" % (path, name))
                if st.st_size != exp["size"]:
                    problems.append("%s/%s: size %d != RFC822.SIZE %d" % (path, name, st.st_size, exp["size"]))
                if int(st.st_mtime) != exp["internaldate"]:
                    problems.append("%s/%s: mtime %d != INTERNALDATE %d (%s)" % (
                        path, name, st.st_mtime, exp["internaldate"], exp["internaldate_raw"]))
                if int(st.st_ctime) != exp["internaldate"]:
                    problems.append("%s/%s: ctime %d != INTERNALDATE %d" % (path, name, st.st_ctime,
                                                                             exp["internaldate"]))
                if not st.st_mode & 0o444:
                    problems.append("%s/%s: not readable (mode %o)" % (path, name, st.st_mode))
        self.assertEqual(problems[:30], [], "%d problems" % len(problems))

    def test_inodes_stable_and_unique(self):
        first = {}
        for path in VIEW:
            for uid, name in mount_files(P(path)).items():
                first[(path, uid)] = os.stat(P(path, name)).st_ino
        inos = list(first.values())
        self.assertEqual(len(set(inos)), len(inos), "two messages share an inode number")
        dir_inos = [os.stat(P(p)).st_ino for p in TREE]
        self.assertFalse(set(dir_inos) & set(inos), "a directory shares an inode number with a file")
        self.assertEqual(len(set(dir_inos)), len(dir_inos))
        for path in VIEW:
            for uid, name in mount_files(P(path)).items():
                self.assertEqual(os.stat(P(path, name)).st_ino, first[(path, uid)], name)
        # readdir's d_ino agrees with stat where the kernel passes it on
        for e in os.scandir(P("INBOX")):
            if e.is_file():
                self.assertEqual(e.inode(), os.stat(e.path).st_ino, e.name)

    def test_cat_every_message(self):
        problems = []
        for path, (meta, bodies) in VIEW.items():
            if path in ("Big", "Bulk"):
                continue
            for uid, name in mount_files(P(path)).items():
                r = sh(["cat", P(path, name)])
                if r.returncode != 0 or r.stdout != bodies[uid]:
                    problems.append("%s/%s: cat exit %d, %d bytes, expected %d" % (
                        path, name, r.returncode, len(r.stdout), len(bodies[uid])))
        self.assertEqual(problems, [], log_tail() if problems else "")

    def test_read_every_bulk_message(self):
        meta, bodies = VIEW["Bulk"]
        bad = []
        for uid, name in mount_files(P("Bulk")).items():
            if read_file(P("Bulk", name)) != bodies[uid]:
                bad.append(uid)
        self.assertEqual(bad, [])

    def test_cp_out_and_cmp(self):
        out = tempfile.mkdtemp(dir=TMP)
        sh(["cp", "-r", P("INBOX"), out], check=True, timeout=120)
        meta, bodies = VIEW["INBOX"]
        copied = mount_files(os.path.join(out, "INBOX"))
        self.assertEqual(set(copied), set(meta))
        for uid, name in copied.items():
            self.assertEqual(read_file(os.path.join(out, "INBOX", name)), bodies[uid], name)
        m = msg("binary")
        ref = os.path.join(out, "ref.eml")
        with open(ref, "wb") as f:
            f.write(VIEW["INBOX"][1][m.uid])
        sh(["cp", path_of(m), os.path.join(out, "copy.eml")], check=True)
        r = sh(["cmp", ref, os.path.join(out, "copy.eml")])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_head_c(self):
        for key in ("binary", "nested", "long-lines", "empty-body"):
            m = msg(key)
            body = VIEW[m.mailbox][1][m.uid]
            for n in (1, 100, 4096, 70000):
                r = sh(["head", "-c", str(n), path_of(m)], check=True)
                self.assertEqual(r.stdout, body[:n], "%s head -c %d" % (key, n))

    def test_dd_partial_reads(self):
        m = msg("binary")
        body = VIEW["INBOX"][1][m.uid]
        size = len(body)
        cases = [(0, 1), (1, 1), (4095, 2), (4097, 5000), (65535, 3), (65536, 131073), (131071, 300000),
                 (262143, 1), (size - 1, 1), (size - 7, 100), (size, 10), (size + 5000, 10), (123457, 4321)]
        for skip, count in cases:
            r = sh(["dd", "if=" + path_of(m), "of=/dev/stdout", "bs=4096", "iflag=skip_bytes,count_bytes",
                    "skip=%d" % skip, "count=%d" % count, "status=none"], check=True)
            self.assertEqual(r.stdout, body[skip:skip + count], "dd skip=%d count=%d" % (skip, count))

    def test_pread_odd_offsets(self):
        m = msg("binary")
        body = VIEW["INBOX"][1][m.uid]
        fd = os.open(path_of(m), os.O_RDONLY)
        try:
            import random
            rng = random.Random(7)
            for _ in range(200):
                off = rng.randrange(0, len(body) + 100)
                n = rng.choice([1, 3, 17, 4096, 4097, 65537, 200000])
                self.assertEqual(os.pread(fd, n, off), body[off:off + n], "pread(%d, %d)" % (n, off))
        finally:
            os.close(fd)

    def test_grep_r(self):
        word = G.GREP_WORD
        r = sh(["grep", "-rlF", "--exclude-dir=Big", "--exclude-dir=Bulk", word, M.mp], timeout=120)
        self.assertIn(r.returncode, (0, 1), r.stderr)
        found = {os.path.relpath(l, M.mp) for l in r.stdout.decode("utf-8", "surrogateescape").splitlines()}
        expected = set()
        for path, (meta, bodies) in VIEW.items():
            if path in ("Big", "Bulk"):
                continue
            files = mount_files(P(path))
            for uid, body in bodies.items():
                if word.encode() in body:
                    expected.add(os.path.join(path, files[uid]))
        self.assertGreaterEqual(len(expected), 4)
        self.assertEqual(found, expected)

    def test_find_newermt(self):
        threshold = "2024-03-20 00:00:00"
        t = int(datetime.datetime(2024, 3, 20, tzinfo=datetime.timezone.utc).timestamp())
        r = sh(["find", P("INBOX"), "-maxdepth", "1", "-type", "f", "-newermt", threshold],
               env={"TZ": "UTC"}, check=True)
        found = {os.path.basename(l) for l in r.stdout.decode("utf-8", "surrogateescape").splitlines()}
        meta = VIEW["INBOX"][0]
        files = mount_files(P("INBOX"))
        expected = {files[u] for u, x in meta.items() if x["internaldate"] > t}
        self.assertTrue(expected and len(expected) < len(files))
        self.assertEqual(found, expected)


def getfattr_d(path):
    r = sh(["getfattr", "-d", "--absolute-names", path], check=True)
    res = {}
    for line in r.stdout.decode("utf-8", "surrogateescape").splitlines():
        m = re.match(r'^([^=#][^=]*)="(.*)"$', line)
        if m:
            v = re.sub(r"\\(\\|[0-7]{3})", lambda x: "\\" if x.group(1) == "\\" else chr(int(x.group(1), 8)),
                       m.group(2))
            res[m.group(1)] = v
    return res


class TestXattr(unittest.TestCase):
    def test_message_xattrs(self):
        problems = []
        for path, (meta, _) in VIEW.items():
            files = mount_files(P(path))
            if path == "Bulk":
                files = dict(list(files.items())[:50])
            for uid, name in files.items():
                f = P(path, name)
                exp = meta[uid]
                names = set(os.listxattr(f))
                missing = set(C.XATTRS_MSG) - names
                if missing:
                    problems.append("%s: listxattr lacks %s" % (name, sorted(missing)))
                    continue
                got_uid = os.getxattr(f, "user.imap.uid").decode()
                if got_uid != str(uid):
                    problems.append("%s: uid %r" % (name, got_uid))
                flags = os.getxattr(f, "user.imap.flags").decode()
                if C.flags_set(flags.split()) != C.flags_set(exp["flags"]):
                    problems.append("%s: flags %r != server %r" % (name, flags, exp["flags"]))
                idate = os.getxattr(f, "user.imap.internaldate").decode()
                if D.parse_internaldate(idate) != exp["internaldate"]:
                    problems.append("%s: internaldate %r != %r" % (name, idate, exp["internaldate_raw"]))
                size = os.getxattr(f, "user.imap.size").decode()
                if size != str(exp["size"]):
                    problems.append("%s: size %r != %d" % (name, size, exp["size"]))
        self.assertEqual(problems[:30], [])

    def test_flags_spelling(self):
        m = msg("utf8-q")
        flags = os.getxattr(path_of(m), "user.imap.flags").decode()
        self.assertEqual(C.flags_set(flags.split()), {"\\Flagged", "$Label1"})
        m = msg("quotes")
        flags = os.getxattr(path_of(m), "user.imap.flags").decode()
        self.assertEqual(C.flags_set(flags.split()), {"Junk", "\\Draft"})

    def test_dir_xattrs(self):
        c = SRV.client()
        try:
            for path, (flags, delim, raw) in TREE.items():
                if C.is_noselect(flags):
                    continue
                with self.subTest(mailbox=path):
                    f = P(path)
                    self.assertTrue(set(C.XATTRS_DIR) <= set(os.listxattr(f)), os.listxattr(f))
                    self.assertEqual(os.getxattr(f, "user.imap.mailbox").decode(), raw)
                    self.assertEqual(os.getxattr(f, "user.imap.delimiter").decode(), delim)
                    typ, data = c.status(D.imap_quote(raw), "(UIDVALIDITY)")
                    uv = re.search(rb"UIDVALIDITY (\d+)", data[0]).group(1).decode()
                    self.assertEqual(os.getxattr(f, "user.imap.uidvalidity").decode(), uv)
        finally:
            c.logout()

    def test_getfattr_tool(self):
        m = msg("utf8-q")
        meta = VIEW["INBOX"][0][m.uid]
        got = getfattr_d(path_of(m))
        self.assertEqual(got.get("user.imap.uid"), str(m.uid), got)
        self.assertEqual(C.flags_set(got.get("user.imap.flags", "").split()), {"\\Flagged", "$Label1"}, got)
        self.assertEqual(D.parse_internaldate(got.get("user.imap.internaldate", "")), meta["internaldate"], got)
        self.assertEqual(got.get("user.imap.size"), str(meta["size"]), got)
        got = getfattr_d(P("Entwürfe"))
        self.assertEqual(got.get("user.imap.mailbox"), "Entw&APw-rfe", got)
        self.assertEqual(got.get("user.imap.delimiter"), "/", got)
        self.assertRegex(got.get("user.imap.uidvalidity", ""), r"^\d+$", got)
        r = sh(["getfattr", "-n", "user.imap.uid", "--only-values", path_of(m)], check=True)
        self.assertEqual(r.stdout.decode().strip(), str(m.uid))

    def test_missing_xattr(self):
        with self.assertRaises(OSError) as cm:
            os.getxattr(path_of(msg("nested")), "user.imap.nosuch")
        self.assertIn(cm.exception.errno, (errno.ENODATA, errno.ENOTSUP))


class TestNoSideEffects(unittest.TestCase):
    def test_read_does_not_set_seen(self):
        for m in MSGS:
            sh(["cat", path_of(m)], check=True)
            sh(["head", "-c", "10", path_of(m)], check=True)
        c = SRV.client()
        try:
            problems = []
            for mailbox in sorted({m.mailbox for m in MSGS}):
                D.select(c, mailbox, readonly=True)
                meta = D.fetch_meta(c)
                for m in MSGS:
                    if m.mailbox == mailbox and C.flags_set(meta[m.uid]["flags"]) != set(m.flags):
                        problems.append("%s: flags now %r, appended with %r" % (m.key, meta[m.uid]["flags"], m.flags))
            self.assertEqual(problems, [])
        finally:
            c.logout()

    def test_writes_give_erofs(self):
        # -o ro: every change is EROFS (the default mount is writable).
        ro = C.mount_of(SRV, PROXY.port, ro=True)
        ro.mount(foreground=True)
        try:
            self._check_erofs(ro)
        finally:
            ro.unmount()
            ro.cleanup()

    def _check_erofs(self, ro):
        def P(*parts):
            return os.path.join(ro.mp, *parts)

        def path_of(m):
            return P(m.mailbox, mount_files(P(m.mailbox))[m.uid])

        f = path_of(msg("nested"))
        f2 = path_of(msg("slash"))
        ops = {
            "mkdir root": lambda: os.mkdir(P("NewFolder")),
            "mkdir nested": lambda: os.mkdir(P("INBOX", "NewSub")),
            "create": lambda: os.close(os.open(P("INBOX", "new.eml"), os.O_WRONLY | os.O_CREAT, 0o644)),
            "open for writing": lambda: os.close(os.open(f, os.O_WRONLY)),
            "truncate": lambda: os.truncate(f, 0),
            "unlink": lambda: os.unlink(f),
            "rmdir": lambda: os.rmdir(P("My Folder")),
            "rename file": lambda: os.rename(f, P("INBOX", "renamed.eml")),
            "rename to other folder": lambda: os.rename(f, P("Archive", "2024", os.path.basename(f))),
            "rename over file": lambda: os.rename(f, f2),
            "rename dir": lambda: os.rename(P("My Folder"), P("Your Folder")),
            "symlink": lambda: os.symlink("x", P("INBOX", "link")),
            "chmod": lambda: os.chmod(f, 0o600),
            "utime": lambda: os.utime(f, (0, 0)),
        }
        problems = []
        for name, op in ops.items():
            try:
                op()
                problems.append("%s: succeeded" % name)
            except OSError as e:
                if e.errno != errno.EROFS:
                    problems.append("%s: %s (want EROFS)" % (name, errno.errorcode.get(e.errno, e.errno)))
        try:
            os.setxattr(f, "user.imap.flags", b"\\Seen")
            problems.append("setxattr: succeeded")
        except OSError as e:
            if e.errno != errno.EROFS:
                problems.append("setxattr: %s" % errno.errorcode.get(e.errno, e.errno))
        for argv in (["touch", P("INBOX", "t.eml")], ["rm", "-f", f], ["mv", f, P("INBOX", "x.eml")],
                     ["mkdir", P("Tool")]):
            r = sh(argv)
            if r.returncode == 0:
                problems.append("%s exited 0" % argv[0])
            elif b"Read-only file system" not in r.stderr:
                problems.append("%s: %r" % (argv[0], r.stderr))
        self.assertEqual(problems, [])
        # nothing changed on the server
        c = SRV.client()
        try:
            self.assertEqual(set(C.server_tree(c)), set(TREE))
            D.select(c, "INBOX")
            self.assertEqual(set(D.fetch_meta(c)), set(VIEW["INBOX"][0]))
        finally:
            c.logout()


class TestWire(unittest.TestCase):
    """Bytes over the wire (counting proxy) and commands seen by the server (rawlog)."""

    def big_path(self):
        files = mount_files(P("Big"))
        self.assertEqual(list(files), [BIG_UID])
        return P("Big", files[BIG_UID])

    def test_big_stat_size(self):
        self.assertEqual(os.stat(self.big_path()).st_size, BIG_SIZE)
        self.assertEqual(VIEW["Big"][0][BIG_UID]["size"], BIG_SIZE)

    def server_partial(self, off, n):
        c = SRV.client()
        try:
            D.select(c, "Big")
            return D.fetch_partial(c, BIG_UID, off, n)
        finally:
            c.logout()

    def test_big_head_c_transfers_one_block(self):
        path = self.big_path()
        PROXY.reset()
        r = sh(["head", "-c", "4096", path], check=True)
        up, down = PROXY.counts()
        self.assertEqual(r.stdout, self.server_partial(0, 4096))
        sys.stdout.write("# head -c 4096 of %d bytes: %d bytes server→client, %d client→server\n" % (
            BIG_SIZE, down, up))
        self.assertLess(down, 2 * 1024 * 1024, "head -c 4096 of a 25 MB message moved %d bytes" % down)
        self.assertGreater(down, 4096, "no bytes went over the wire: was the proxy bypassed?")

    def test_big_tail_transfers_one_block(self):
        path = self.big_path()
        PROXY.reset()
        off = BIG_SIZE - 5000
        r = sh(["dd", "if=" + path, "of=/dev/stdout", "bs=8192", "iflag=skip_bytes", "skip=%d" % off,
                "status=none"], check=True)
        up, down = PROXY.counts()
        self.assertEqual(r.stdout, self.server_partial(off, 5000))
        self.assertTrue(r.stdout.endswith(b"END-OF-BIG-MESSAGE\r\n--big1--\r\n"))
        self.assertLess(down, 2 * 1024 * 1024, "reading the last 5000 bytes moved %d bytes" % down)

    def test_reread_served_from_cache(self):
        m = msg("binary")
        path = path_of(m)
        body = VIEW["INBOX"][1][m.uid]
        self.assertEqual(read_file(path), body)
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # drop the kernel's page cache
        finally:
            os.close(fd)
        PROXY.reset()
        self.assertEqual(read_file(path), body)
        up, down = PROXY.counts()
        self.assertLess(down, len(body) // 4, "re-reading a %d-byte message moved %d bytes" % (len(body), down))

    def test_listing_round_trips(self):
        """ls -l of 2,000 messages on a fresh mount: the number of FETCH commands the
        server sees doesn't grow with the number of messages (Dovecot rawlog)."""
        results = {}
        for folder, n in (("Few", 10), ("Bulk", BULK_N)):
            rl = SRV.rawlog_dir("bulk")
            for f in os.listdir(rl):
                os.unlink(os.path.join(rl, f))
            m = I.Mount("imaps://bulk@127.0.0.1:%d" % SRV.imaps_port,
                        opts={"cafile": SRV.cafile, "password_file": SRV.password_file_for("bulk")})
            try:
                m.mount(foreground=True)
                t = time.monotonic()
                r = sh(["ls", "-l", os.path.join(m.mp, folder)], check=True, timeout=120)
                elapsed = time.monotonic() - t
                lines = [l for l in r.stdout.decode("utf-8", "replace").splitlines() if l.endswith(".eml")]
                self.assertEqual(len(lines), n)
                m.unmount()
            finally:
                m.cleanup()
            log = SRV.rawlog_in("bulk").decode("utf-8", "replace")
            fetches = [l for l in log.splitlines() if re.match(r"^[\d.]+ \S+ (UID )?FETCH ", l, re.I)]
            results[folder] = (len(fetches), elapsed, fetches)
        few, bulk = results["Few"], results["Bulk"]
        sys.stdout.write("# FETCH commands: ls -l of 10 messages: %d, of %d: %d (%.2fs)\n" % (
            few[0], BULK_N, bulk[0], bulk[1]))
        self.assertGreaterEqual(few[0], 1, "no FETCH in the rawlog: is the rawlog working?")
        self.assertLessEqual(bulk[0], 4, "ls -l of %d messages sent %d FETCH commands: %s" % (
            BULK_N, bulk[0], [l[:150] for l in bulk[2][:10]]))
        self.assertLessEqual(bulk[0], few[0] + 2, "FETCH count grows with the folder: %d vs %d" % (bulk[0], few[0]))
        self.assertLess(bulk[1], 20, "ls -l of %d messages took %.1fs" % (BULK_N, bulk[1]))


    def test_reads_are_partial_peek_fetches(self):
        """On a fresh mount, cat of the 700 KiB-attachment message and head -c of the 25 MB
        one: every body FETCH the server sees is a BODY.PEEK[]<start.count> (never a whole
        message, never a fetch that sets \\Seen), blocks are at least 64 KiB apart from the
        last one, and the bytes are right."""
        rl = SRV.rawlog_dir()
        before = {f: os.path.getsize(os.path.join(rl, f)) for f in os.listdir(rl) if f.endswith(".in")}
        m = C.mount_of(SRV)
        binary = msg("binary")
        try:
            m.mount(foreground=True)
            files = mount_files(os.path.join(m.mp, "INBOX"))
            data = read_file(os.path.join(m.mp, "INBOX", files[binary.uid]))
            big = mount_files(os.path.join(m.mp, "Big"))
            head = sh(["head", "-c", "4096", os.path.join(m.mp, "Big", big[BIG_UID])], check=True).stdout
            m.unmount()
        finally:
            m.cleanup()
        self.assertEqual(data, VIEW["INBOX"][1][binary.uid])
        self.assertEqual(len(head), 4096)
        lines = []  # (selected mailbox, FETCH line)
        for f in sorted(os.listdir(rl)):
            if not f.endswith(".in"):
                continue
            with open(os.path.join(rl, f), "rb") as fh:
                fh.seek(before.get(f, 0))
                text = fh.read().decode("utf-8", "replace")
            current = None
            for l in text.splitlines():
                sel = re.match(r'^[\d.]+ \S+ (?:SELECT|EXAMINE) "?([^"]*)"?', l, re.I)
                if sel:
                    current = sel.group(1)
                elif re.match(r"^[\d.]+ \S+ (UID )?FETCH ", l, re.I):
                    lines.append((current, l))
        body = [(mb, l) for mb, l in lines if re.search(r"BODY(\.PEEK)?\[\]|RFC822(?!\.SIZE)|BINARY", l, re.I)]
        self.assertTrue(body, "no body FETCH in the rawlog: %r" % lines[:5])
        bad = [l for mb, l in body if not re.search(r"BODY\.PEEK\[\]<\d+\.\d+>", l, re.I)]
        self.assertEqual(bad, [], "body fetches that are not BODY.PEEK[]<partial>")
        seen_setting = [l for mb, l in lines if re.search(r"(?<!PEEK)\bBODY\[|\bRFC822(\.TEXT)?\b(?!\.)", l, re.I)
                        and "RFC822.SIZE" not in l.upper()]
        self.assertEqual(seen_setting, [], "fetches that would set \\Seen")
        binary_fetches = [l for mb, l in body if mb == "INBOX"]
        size = len(VIEW["INBOX"][1][binary.uid])
        self.assertLessEqual(len(binary_fetches), size // (64 * 1024) + 2,
                             "%d FETCHes to read %d bytes sequentially (blocks < 64 KiB?)" % (len(binary_fetches), size))
        big_fetches = [l for mb, l in body if mb == "Big"]
        self.assertTrue(big_fetches, "no FETCH in Big: %r" % body)
        for l in big_fetches:
            count = int(re.search(r"BODY\.PEEK\[\]<\d+\.(\d+)>", l, re.I).group(1))
            self.assertLessEqual(count, 4 * 1024 * 1024, "head -c 4096 fetched a %d-byte block" % count)
        sys.stdout.write("# body FETCHes: %d for %d bytes read sequentially; head -c 4096 of Big: %s\n" % (
            len(binary_fetches), size, [re.search(r"<[\d.]+>", l).group(0) for l in big_fetches]))


class TestRemount(unittest.TestCase):
    def test_names_stable_across_remount(self):
        before = {p: mount_files(P(p)) for p in VIEW if p != "Bulk"}
        m = C.mount_of(SRV)
        try:
            m.mount(foreground=True)
            for p, files in before.items():
                self.assertEqual(mount_files(os.path.join(m.mp, p)), files, p)
            m.unmount()
        finally:
            m.cleanup()
        for p, files in before.items():
            self.assertEqual(mount_files(P(p)), files, p)


class TestEscapedNames(unittest.TestCase):
    """User 'dot' has separator '.', so '/' inside names must be escaped; a bare '%' isn't."""

    def test_escaped_tree(self):
        m = I.Mount("imaps://dot@127.0.0.1:%d" % SRV.imaps_port,
                    opts={"cafile": SRV.cafile, "password_file": SRV.password_file_for("dot")})
        try:
            m.mount(foreground=True)
            c = SRV.client("dot")
            tree = C.server_tree(c)
            c.logout()
            expected = {"INBOX", "a%2Fb", "100%", "x", "x/y", "Sub", "Sub/Child"}
            self.assertEqual(set(tree), expected)
            self.assertEqual(walk_dirs(m.mp), expected)
            self.assertEqual(os.getxattr(os.path.join(m.mp, "a%2Fb"), "user.imap.mailbox").decode(), "a/b")
            self.assertEqual(os.getxattr(os.path.join(m.mp, "x", "y"), "user.imap.mailbox").decode(), "x.y")
            self.assertEqual(os.getxattr(os.path.join(m.mp, "a%2Fb"), "user.imap.delimiter").decode(), ".")
            files = mount_files(os.path.join(m.mp, "a%2Fb"))
            self.assertEqual(len(files), 1)
            self.assertEqual(read_file(os.path.join(m.mp, "a%2Fb", list(files.values())[0])),
                             G.hard_messages()[0].raw)
            m.unmount()
        finally:
            m.cleanup()


if __name__ == "__main__":
    tap.main()
