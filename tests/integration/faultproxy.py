"""A fault-injecting TCP proxy on 127.0.0.1 for the chaos test (test_chaos.py).

Bytes pass through untouched (TLS included) until a fault is switched on:

    p = FaultProxy(target_port).start()
    p.port                          # connect here instead of target_port
    p.cut(direction, n, rst=False, pick=0.3)
                                    # one live connection (pick in [0, 1) chooses which,
                                    # by connection id; the next new one if none is live)
                                    # is closed after n more bytes "up" (client→server) or
                                    # "down": a FIN (shutdown + close) or, with rst, a
                                    # reset (SO_LINGER 0) to both ends
    p.reset_now(pick)               # a reset of one live connection at once
    p.lose_answer(pick, delay, rst) # the next bytes the client sends on one live
                                    # connection (pick=None: on every one, and the next
                                    # new one) go through; what the server answers is
                                    # thrown away, and delay seconds later the
                                    # connection is closed (FIN, or RST): the server
                                    # did the command, the client never hears so
    p.stall(True/False)             # hold every byte, both ways, on every connection
    p.drip(seconds_per_byte/None)   # forward one byte at a time, both ways
    p.refuse(True/False)            # close the listening socket (connect gets
                                    # ECONNREFUSED), then listen again on the same port
    p.events                        # [(monotonic time, text)] of what happened
    p.stop()

Held bytes are dropped, not delivered late, when the client has closed its side by the
time a stall ends: the network lost them. (Delivering them would run a command the
client has already reported as failed, after it may have done something else, which no
client can guard against.) While dripping, the up direction checks the same before each
byte.
"""

import select
import socket
import struct
import threading
import time

CHUNK = 16 * 1024


class _Conn:
    def __init__(self, cid, client, server):
        self.id = cid
        self.client = client
        self.server = server
        self.closed = threading.Event()
        self.lock = threading.Lock()
        self.budget = {"up": None, "down": None}  # bytes left before a cut
        self.budget_rst = False
        self.bytes = {"up": 0, "down": 0}
        self.lose = None        # (delay, rst): lose the answer to the next client bytes
        self.mute_down = False  # answers are being thrown away

    def close(self, rst=False):
        with self.lock:
            if self.closed.is_set():
                return
            self.closed.set()
        for s in (self.client, self.server):
            try:
                if rst:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                else:
                    s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                s.close()
            except OSError:
                pass


def _peer_closed(sock):
    """True if sock (which only this thread reads) has seen the peer's FIN or a reset."""
    try:
        r, _, _ = select.select([sock], [], [], 0)
        if not r:
            return False
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


class FaultProxy:
    def __init__(self, target_port, target_host="127.0.0.1"):
        self.target = (target_host, target_port)
        self.lock = threading.Lock()
        self.flowing = threading.Event()
        self.flowing.set()
        self.drip_interval = None
        self.conns = {}
        self.next_id = 0
        self.pending_cut = None  # (direction, n, rst) for the next new connection
        self.pending_lose = None  # (delay, rst) for the next new connection
        self.listener = None
        self.port = None
        self.refusing = False
        self._stopping = False
        self.t0 = time.monotonic()
        self.events = []
        self.accepted = 0

    # -- bookkeeping --------------------------------------------------------------------
    def _event(self, text):
        with self.lock:
            self.events.append((time.monotonic(), text))

    def live(self):
        with self.lock:
            return [self.conns[k] for k in sorted(self.conns)]

    def _pick(self, pick):
        live = [c for c in self.live() if not c.closed.is_set()]
        if not live:
            return None
        return live[min(int(pick * len(live)), len(live) - 1)]

    # -- listening ----------------------------------------------------------------------
    def _listen(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port or 0))
        s.listen(64)
        self.port = s.getsockname()[1]
        self.listener = s
        threading.Thread(target=self._accept_loop, args=(s,), daemon=True).start()

    def start(self):
        self._listen()
        return self

    def _accept_loop(self, listener):
        while not self._stopping:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target, timeout=10)
                server.settimeout(None)
            except OSError as e:
                self._event("connect to server failed: %s" % e)
                client.close()
                continue
            for s in (client, server):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self.lock:
                self.accepted += 1
                cid = self.next_id
                self.next_id += 1
                conn = _Conn(cid, client, server)
                self.conns[cid] = conn
                if self.pending_cut:
                    direction, n, rst = self.pending_cut
                    self.pending_cut = None
                    conn.budget[direction] = n
                    conn.budget_rst = rst
                if self.pending_lose:
                    conn.lose, self.pending_lose = self.pending_lose, None
            threading.Thread(target=self._pump, args=(conn, client, server, "up"), daemon=True).start()
            threading.Thread(target=self._pump, args=(conn, server, client, "down"), daemon=True).start()

    def _close_listener(self):
        s, self.listener = self.listener, None
        if s is None:
            return
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        s.close()

    # -- forwarding -----------------------------------------------------------------------
    def _hold(self, conn, src, direction):
        """Waits while stalled. False if the connection is gone (or, for bytes from the
        client, the client closed meanwhile: they are dropped, see the module doc)."""
        if self.flowing.is_set():
            return not conn.closed.is_set()
        while not self.flowing.wait(0.05):
            if conn.closed.is_set():
                return False
            if direction == "up" and _peer_closed(src):
                break
        if direction == "up" and _peer_closed(src):
            self._event("conn %d: client closed during a stall; held bytes dropped" % conn.id)
            conn.close()
            return False
        return not conn.closed.is_set()

    def _send(self, conn, src, dst, data, direction):
        """Sends data (dripping if asked); False if the connection ended."""
        i = 0
        while i < len(data):
            if not self._hold(conn, src, direction):
                return False
            interval = self.drip_interval
            if interval is None:
                dst.sendall(data[i:])
                return True
            dst.sendall(data[i:i + 1])
            i += 1
            time.sleep(interval)
            if direction == "up" and _peer_closed(src):
                self._event("conn %d: client closed while dripping; rest dropped" % conn.id)
                conn.close()
                return False
        return True

    def _pump(self, conn, src, dst, direction):
        try:
            while not conn.closed.is_set():
                try:
                    data = src.recv(CHUNK)
                except OSError:
                    break
                if not data:
                    break
                if not self._hold(conn, src, direction):
                    return
                if direction == "down" and conn.mute_down:
                    continue  # the answer is lost
                cut_now = False
                with conn.lock:
                    b = conn.budget[direction]
                    if b is not None:
                        if len(data) >= b:
                            data = data[:b]
                            cut_now = True
                        else:
                            conn.budget[direction] = b - len(data)
                try:
                    ok = self._send(conn, src, dst, data, direction) if data else True
                except OSError:
                    break
                if not ok:
                    return
                with conn.lock:
                    conn.bytes[direction] += len(data)
                    lose = conn.lose if direction == "up" else None
                    if lose:
                        conn.lose = None
                        conn.mute_down = True
                if lose:
                    self._event("conn %d: answer to %d client bytes lost; %s in %.0f ms" % (
                        conn.id, len(data), "reset" if lose[1] else "cut", lose[0] * 1000))
                    t = threading.Timer(lose[0], conn.close, kwargs={"rst": lose[1]})
                    t.daemon = True
                    t.start()
                if cut_now:
                    self._event("conn %d: %s after %d bytes %s" % (
                        conn.id, "reset" if conn.budget_rst else "cut", conn.bytes[direction], direction))
                    conn.close(rst=conn.budget_rst)
                    return
        finally:
            conn.close()
            with self.lock:
                self.conns.pop(conn.id, None)

    # -- faults -----------------------------------------------------------------------------
    def cut(self, direction, n, rst=False, pick=0.0):
        """Arms a cut: one live connection (or the next one) closes after n more bytes."""
        assert direction in ("up", "down")
        conn = self._pick(pick)
        if conn is None:
            with self.lock:
                self.pending_cut = (direction, n, rst)
            self._event("next connection: %s after %d bytes %s" % ("reset" if rst else "cut", n, direction))
            return None
        with conn.lock:
            conn.budget[direction] = n
            conn.budget_rst = rst
        self._event("conn %d: armed %s after %d more bytes %s" % (conn.id, "reset" if rst else "cut", n, direction))
        return conn.id

    def reset_now(self, pick=0.0):
        conn = self._pick(pick)
        if conn is None:
            with self.lock:
                self.pending_cut = ("down", 0, True)
            self._event("next connection: reset at once")
            return None
        self._event("conn %d: reset" % conn.id)
        conn.close(rst=True)
        return conn.id

    def lose_answer(self, pick, delay, rst=False):
        conns = [c for c in self.live() if not c.closed.is_set()]
        if pick is not None and conns:
            conns = [conns[min(int(pick * len(conns)), len(conns) - 1)]]
        if pick is None or not conns:
            with self.lock:
                self.pending_lose = (delay, rst)
        for c in conns:
            with c.lock:
                c.lose = (delay, rst)
        self._event("armed: lose the next answer on %s" % (
            ", ".join("conn %d" % c.id for c in conns) or "the next connection"))
        return [c.id for c in conns]

    def stall(self, on):
        if on:
            self.flowing.clear()
        else:
            self.flowing.set()
        self._event("stall %s" % ("on" if on else "off"))

    def drip(self, interval):
        self.drip_interval = interval
        self._event("drip %s" % ("off" if interval is None else "%.0f ms/byte" % (interval * 1000)))

    def refuse(self, on):
        if on and not self.refusing:
            self.refusing = True
            self._close_listener()
        elif not on and self.refusing:
            deadline = time.monotonic() + 10
            while True:
                try:
                    self._listen()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            self.refusing = False
        self._event("refuse %s" % ("on" if on else "off"))

    def clear(self):
        """Every fault off: flowing, no drip, listening, no armed cuts."""
        self.flowing.set()
        self.drip_interval = None
        if self.refusing:
            self.refuse(False)
        with self.lock:
            self.pending_cut = None
            self.pending_lose = None
            conns = list(self.conns.values())
        for c in conns:
            with c.lock:
                c.budget = {"up": None, "down": None}
                c.lose = None

    def drop_all(self):
        for c in self.live():
            c.close()

    def stop(self):
        self._stopping = True
        self.flowing.set()
        self.drip_interval = None
        self._close_listener()
        self.drop_all()
