"""A tiny threaded TCP proxy on 127.0.0.1 for the integration tests.

Bytes pass through untouched (TLS included). It counts bytes each way, and can be told
to stall (stop forwarding, keep the connections open), to resume, to drop every
connection, to limit each connection's server→client rate, and to delay every chunk
(both ways) by a fixed time, like a slow link's latency.

    p = Proxy(target_port).start()
    p.port            # connect here instead of target_port
    p.down, p.up      # bytes server→client, client→server since the last reset()
    p.stall(); p.resume(); p.drop(); p.set_rate(bytes_per_second or None); p.stop()
    p.set_delay(seconds or None)   # each chunk forwarded that much later
"""

import socket
import threading
import time

CHUNK = 16 * 1024


class _Conn:
    def __init__(self, client, server):
        self.client = client
        self.server = server
        self.closed = threading.Event()

    def close(self):
        if self.closed.is_set():
            return
        self.closed.set()
        for s in (self.client, self.server):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                s.close()
            except OSError:
                pass


class Proxy:
    def __init__(self, target_port, target_host="127.0.0.1"):
        self.target = (target_host, target_port)
        self.lock = threading.Lock()
        self.flowing = threading.Event()
        self.flowing.set()
        self.conns = set()
        self.rate = None
        self.delay = None
        self.up = 0
        self.down = 0
        self.accepted = 0
        self.listener = None
        self.port = None
        self._stopping = False

    def start(self):
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", self.port or 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept_loop, daemon=True).start()
        return self

    def _accept_loop(self):
        while not self._stopping:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                self.accepted += 1
            try:
                server = socket.create_connection(self.target, timeout=10)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            for s in (client, server):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Conn(client, server)
            with self.lock:
                self.conns.add(conn)
            threading.Thread(target=self._pump, args=(conn, client, server, "up"), daemon=True).start()
            threading.Thread(target=self._pump, args=(conn, server, client, "down"), daemon=True).start()

    def _pump(self, conn, src, dst, direction):
        try:
            while not conn.closed.is_set():
                try:
                    data = src.recv(CHUNK)
                except OSError:
                    break
                if not data:
                    break
                # stalled: hold the data until resumed (or the connection is dropped)
                while not self.flowing.wait(0.05):
                    if conn.closed.is_set():
                        return
                if conn.closed.is_set():
                    return
                delay = self.delay
                if delay:
                    time.sleep(delay)
                rate = self.rate
                if rate and direction == "down":
                    time.sleep(len(data) / float(rate))
                try:
                    dst.sendall(data)
                except OSError:
                    break
                with self.lock:
                    if direction == "up":
                        self.up += len(data)
                    else:
                        self.down += len(data)
        finally:
            conn.close()
            with self.lock:
                self.conns.discard(conn)

    def reset(self):
        with self.lock:
            self.up = 0
            self.down = 0

    def counts(self):
        with self.lock:
            return self.up, self.down

    def stall(self):
        self.flowing.clear()

    def resume(self):
        self.flowing.set()

    def set_rate(self, bytes_per_second):
        self.rate = bytes_per_second

    def set_delay(self, seconds):
        self.delay = seconds

    def open_connections(self):
        with self.lock:
            return len(self.conns)

    def drop(self):
        with self.lock:
            conns = list(self.conns)
        for c in conns:
            c.close()

    def stop(self):
        self._stopping = True
        self.resume()
        if self.listener:
            try:
                self.listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                self.listener.close()
            except OSError:
                pass
        self.drop()
