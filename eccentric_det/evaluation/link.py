"""An emulated network link on loopback: a TCP proxy, in its own process, that carries every byte between a client
and a server through a token bucket at a set rate and delays it by half the round-trip time, each way.

Used where the kernel's link emulator is missing (``tc qdisc ... netem`` needs the ``sch_netem`` module; kernels
built without modules, like the sandboxes these benchmarks run on, answer "Specified qdisc kind is unknown").
The bytes are real and travel through real sockets; the proxy only decides *when* each chunk may leave:

* the bytes read from one side are cut into segments of at most ``mtu - header_bytes`` bytes, each charged
  ``header_bytes`` more (52: IPv4 and TCP with timestamps), so the receiver sees the bytes arrive progressively and the
  link carries what a wire would (the acknowledgements going the other way are not charged);
* a segment of ``n`` bytes so charged waits for ``n`` tokens of that direction's bucket (``rate_bps / 8`` tokens a
  second, at most ``burst_bytes`` saved up while the link is idle; ``burst_bytes=0``, the default, is a plain
  serialising link: every byte takes 8 / rate seconds on the wire, even on an idle link), then for the one-way delay
  (``rtt_s / 2``), and is written to the other side;
* the schedule is absolute (a late wake-up does not delay the chunks behind it), and a direction's bucket is shared by
  every connection through the proxy, as a link is;
* the proxy buffers without limit (no loss, no congestion control: TCP's own slow start over the emulated RTT is
  not modelled, which favours large payloads).

Each request/response exchange on a connection (bytes from the client, then bytes from the server) is timed at the
proxy: when its first byte arrived and its last byte was delivered, each way. :meth:`ThrottledLink.take` returns the
exchanges completed since the last call, so a caller can split a round trip into uplink, server and downlink time.

    with ThrottledLink(("127.0.0.1", 8000), rate_bps=5e6, rtt_s=0.02) as link:
        httpx.post(link.url + "/v1/detect", content=body)   # through the emulated link
        link.take()  # [{"up_bytes", "down_bytes", "up_ms", "server_ms", "down_ms"}]
        link.configure(rate_bps=1e6)   # the same proxy, a slower link for the bytes that arrive from now on

The proxy is this file run as a script (standard library only, so it starts in a fraction of a second); it is
controlled over a loopback socket with one JSON object a line.
"""
import heapq
import json
import os
import socket
import subprocess
import sys
import threading
import time

CHUNK = 65536  # bytes read from a socket at once (split into segments before the bucket)
HEADER_BYTES = 52  # IPv4 (20) + TCP (20) + the timestamp option (12)
STALE_S = 300.0  # an exchange still unanswered after this long is forgotten


class TokenBucket:
    """The departure schedule of one direction: :meth:`depart` gives the time (``time.monotonic`` seconds) at which a
    chunk of ``n`` bytes offered at ``now`` has passed the bucket. ``rate_bps`` 0 or None: unlimited."""

    def __init__(self, rate_bps=0.0, burst_bytes=0):
        self.lock = threading.Lock()
        self.configure(rate_bps, burst_bytes)

    def configure(self, rate_bps, burst_bytes=0):
        with self.lock:
            if (rate_bps or 0) < 0 or burst_bytes < 0:
                raise ValueError(f"rate_bps and burst_bytes must be >= 0, got {rate_bps}, {burst_bytes}")
            self.rate = (rate_bps or 0.0) / 8.0  # bytes per second
            self.burst = float(burst_bytes)
            # the state at time t (which may lie in the future, while chunks queue): tokens saved up; a link being
            # reconfigured keeps its queue's end
            self.t, self.tokens = getattr(self, "t", float("-inf")), self.burst

    def depart(self, n, now=None):
        now = time.monotonic() if now is None else now
        with self.lock:
            if not self.rate:
                return now
            t = max(now, self.t)
            tokens = min(self.burst, self.tokens + (t - self.t) * self.rate)  # saved up while idle
            use = min(tokens, n)
            end = t + (n - use) / self.rate
            self.t, self.tokens = end, tokens - use
            return end


class _Exchange:
    __slots__ = ("up_bytes", "down_bytes", "up_first", "up_last", "down_first", "down_last")

    def __init__(self, now):
        self.up_bytes = self.down_bytes = 0
        self.up_first, self.up_last, self.down_first, self.down_last = now, None, None, None

    def as_dict(self):
        return {"up_bytes": self.up_bytes, "down_bytes": self.down_bytes,
                "up_ms": (self.up_last - self.up_first) * 1e3,
                "server_ms": (self.down_first - self.up_last) * 1e3,
                "down_ms": (self.down_last - self.down_first) * 1e3}


class _Proxy:
    """The proxy process's state: the link's settings, the two buckets, the exchanges seen."""

    def __init__(self, upstream, rate_bps, rtt_s, burst_bytes, mtu, down_rate_bps=None, header_bytes=HEADER_BYTES):
        self.upstream, self.mtu, self.header_bytes = upstream, int(mtu), int(header_bytes)
        self.lock = threading.Lock()
        self.up, self.down = TokenBucket(), TokenBucket()
        self.exchanges = []  # in order of their first byte
        self.configure(rate_bps=rate_bps, rtt_s=rtt_s, burst_bytes=burst_bytes, down_rate_bps=down_rate_bps,
                       header_bytes=header_bytes)

    def configure(self, rate_bps, rtt_s, burst_bytes=0, down_rate_bps=None, mtu=None, header_bytes=None):
        mtu, header_bytes = int(mtu or self.mtu), int(self.header_bytes if header_bytes is None else header_bytes)
        if rtt_s < 0 or not 0 <= header_bytes < mtu:
            raise ValueError(f"need rtt_s >= 0 and 0 <= header_bytes < mtu, got {rtt_s}, {header_bytes}, {mtu}")
        self.up.configure(rate_bps, burst_bytes)
        self.down.configure(rate_bps if down_rate_bps is None else down_rate_bps, burst_bytes)
        self.delay = rtt_s / 2.0
        self.mtu, self.header_bytes = mtu, header_bytes
        self.settings = {"rate_bps": rate_bps, "down_rate_bps": rate_bps if down_rate_bps is None else down_rate_bps,
                         "rtt_s": rtt_s, "burst_bytes": burst_bytes, "mtu": mtu, "header_bytes": header_bytes}
        return self.settings

    def take(self):
        """The completed exchanges (answer bytes delivered), oldest first; they are forgotten, and so are those that
        got no answer within ``STALE_S`` (a connection the server closed)."""
        now = time.monotonic()
        with self.lock:
            done = [e for e in self.exchanges if e.down_last is not None and e.up_last is not None]
            self.exchanges = [e for e in self.exchanges if (e.down_last is None or e.up_last is None)
                              and now - e.up_first < STALE_S]
        return [e.as_dict() for e in done]

    def serve_connection(self, client):
        try:
            server = socket.create_connection(self.upstream)
        except OSError:
            client.close()
            return
        for s in (client, server):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        state = {"current": None, "phase": None, "open": 2, "sockets": (client, server)}
        _Pipe(self, client, server, self.up, "up", state).start()
        _Pipe(self, server, client, self.down, "down", state).start()

    # an exchange: client bytes (a request), then server bytes (its answer); a later client byte opens the next one
    def arrived(self, direction, n, now, state):
        with self.lock:
            if direction == "up":
                if state["phase"] != "up":
                    state["current"] = _Exchange(now)
                    self.exchanges.append(state["current"])
                    state["phase"] = "up"
                exchange = state["current"]
                exchange.up_bytes += n
            else:
                exchange = state["current"]
                if exchange is not None and state["phase"] == "up":
                    exchange.down_first = now
                state["phase"] = "down"
                if exchange is not None:
                    exchange.down_bytes += n
            return exchange

    def delivered(self, direction, exchange, now):
        if exchange is None:
            return
        with self.lock:
            if direction == "up":
                exchange.up_last = now
            else:
                exchange.down_last = now


class _Pipe:
    """One direction of one connection: a reader that stamps each chunk with its delivery time, and a writer that
    delivers the chunks at those times."""

    def __init__(self, proxy, src, dst, bucket, direction, state):
        self.proxy, self.src, self.dst, self.bucket, self.direction, self.state = (proxy, src, dst, bucket, direction,
                                                                                   state)
        self.queue, self.cond, self.closed, self.seq = [], threading.Condition(), False, 0

    def start(self):
        threading.Thread(target=self.read, daemon=True).start()
        threading.Thread(target=self.write, daemon=True).start()

    def read(self):
        try:
            while True:
                data = self.src.recv(CHUNK)
                now = time.monotonic()
                if not data:
                    break
                exchange = self.proxy.arrived(self.direction, len(data), now, self.state)
                header = self.proxy.header_bytes
                segment = self.proxy.mtu - header
                for i in range(0, len(data), segment):
                    piece = data[i:i + segment]
                    due = self.bucket.depart(len(piece) + header, now) + self.proxy.delay
                    with self.cond:
                        self.seq += 1
                        heapq.heappush(self.queue, (due, self.seq, piece, exchange))
                        self.cond.notify()
        except OSError:
            pass
        with self.cond:
            self.closed = True
            self.cond.notify()

    def write(self):
        try:
            while True:
                with self.cond:
                    while not self.queue and not self.closed:
                        self.cond.wait()
                    if not self.queue:
                        break
                    due, _, piece, exchange = self.queue[0]
                    wait = due - time.monotonic()
                    if wait > 0:
                        self.cond.wait(wait)  # woken early by a new chunk: look again
                        continue
                    heapq.heappop(self.queue)
                self.proxy.delivered(self.direction, exchange, time.monotonic())  # stamped before the peer can see it
                self.dst.sendall(piece)
            self.dst.shutdown(socket.SHUT_WR)  # pass the end of the stream on, after the last byte
        except OSError:  # a peer went away: so does the connection
            for s in self.state["sockets"]:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        with self.proxy.lock:
            self.state["open"] -= 1
            last = self.state["open"] == 0
        if last:  # both directions are done
            for s in self.state["sockets"]:
                s.close()


def _control(proxy, conn):
    """Answer one control connection: JSON lines {"cmd": "configure", ...settings} / {"cmd": "take"} /
    {"cmd": "settings"}."""
    with conn, conn.makefile("rw") as f:
        for line in f:
            try:
                msg = json.loads(line)
                cmd = msg.pop("cmd")
                if cmd == "configure":
                    answer = proxy.configure(**msg)
                elif cmd == "take":
                    answer = proxy.take()
                elif cmd == "settings":
                    answer = proxy.settings
                else:
                    raise ValueError(f"unknown command {cmd!r}")
                f.write(json.dumps({"ok": answer}) + "\n")
            except Exception as e:  # noqa: BLE001  (an answer to the controller, not a dead proxy)
                f.write(json.dumps({"error": f"{type(e).__name__}: {e}"}) + "\n")
            f.flush()


def _listen(host="127.0.0.1"):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, 0))
    s.listen(64)
    return s


def _accept_forever(listener, handle):
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=handle, args=(conn,), daemon=True).start()


def main(argv=None):
    """The proxy process: ``link.py UPSTREAM_HOST UPSTREAM_PORT SETTINGS_JSON``; prints ``PROXY_PORT CONTROL_PORT``
    and serves until its standard input closes (its parent went away)."""
    argv = sys.argv[1:] if argv is None else argv
    host, port, settings = argv[0], int(argv[1]), json.loads(argv[2])
    proxy = _Proxy((host, port), **settings)
    data, control = _listen(), _listen()
    threading.Thread(target=_accept_forever, args=(data, proxy.serve_connection), daemon=True).start()
    threading.Thread(target=_accept_forever, args=(control, lambda c: _control(proxy, c)), daemon=True).start()
    print(data.getsockname()[1], control.getsockname()[1], flush=True)
    sys.stdin.read()  # until the parent closes the pipe (or dies)
    return 0


class ThrottledLink:
    """A link of ``rate_bps`` bit/s each way (``down_rate_bps`` for server -> client, default the same; 0: unlimited)
    and ``rtt_s`` round trip to the TCP server at ``upstream`` (host, port): a proxy process (see the module's
    docstring; ``burst_bytes``, ``mtu``, ``header_bytes``) at :attr:`address` / :attr:`url`. A context manager;
    :meth:`close` stops the proxy."""

    def __init__(self, upstream, rate_bps, rtt_s=0.0, burst_bytes=0, mtu=1500, down_rate_bps=None,
                 header_bytes=HEADER_BYTES):
        settings = {"rate_bps": rate_bps, "rtt_s": rtt_s, "burst_bytes": burst_bytes, "mtu": mtu,
                    "down_rate_bps": down_rate_bps, "header_bytes": header_bytes}
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), upstream[0], str(upstream[1]),
                                      json.dumps(settings)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        line = self.proc.stdout.readline().split()
        if len(line) != 2:
            self.proc.kill()
            raise RuntimeError(f"the link proxy did not start (exit code {self.proc.wait()})")
        port, control_port = int(line[0]), int(line[1])
        self.address = ("127.0.0.1", port)
        self.url = f"http://127.0.0.1:{port}"
        self._control = socket.create_connection(("127.0.0.1", control_port))
        self._file = self._control.makefile("rw")
        self.settings = self._ask({"cmd": "settings"})

    def _ask(self, msg):
        self._file.write(json.dumps(msg) + "\n")
        self._file.flush()
        answer = json.loads(self._file.readline())
        if "error" in answer:
            raise ValueError(answer["error"])
        return answer["ok"]

    def configure(self, rate_bps=None, rtt_s=None, burst_bytes=None, down_rate_bps=None, mtu=None, header_bytes=None):
        """Change the link's settings (those not given keep their values; ``down_rate_bps`` None: the uplink's)."""
        s = self.settings
        self.settings = self._ask({"cmd": "configure", "rate_bps": s["rate_bps"] if rate_bps is None else rate_bps,
                                   "rtt_s": s["rtt_s"] if rtt_s is None else rtt_s,
                                   "burst_bytes": s["burst_bytes"] if burst_bytes is None else burst_bytes,
                                   "down_rate_bps": down_rate_bps, "mtu": mtu or s["mtu"],
                                   "header_bytes": s["header_bytes"] if header_bytes is None else header_bytes})
        return self.settings

    def take(self):
        """The exchanges completed since the last call (see the module's docstring), oldest first: ``up_bytes``,
        ``down_bytes``, ``up_ms`` (first request byte in -> last one delivered to the server), ``server_ms`` (-> first
        answer byte in), ``down_ms`` (-> last answer byte delivered to the client)."""
        return self._ask({"cmd": "take"})

    def close(self):
        if self.proc.poll() is None:
            try:
                self._file.close()
                self._control.close()
                self.proc.stdin.close()
                self.proc.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


if __name__ == "__main__":
    sys.exit(main())
