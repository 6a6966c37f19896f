#!/usr/bin/env python3
"""A naive live-stream relay: the issue's third benchmark peer, next to the VAN relay and Icecast.

"A naive relay (asyncio, one thread, one write() per viewer per read, unbounded buffers)":
each read from a source is written once to every viewer with transport.write(), on one thread,
with asyncio Protocols (no uvloop). It deliberately has NO flow control: a viewer that reads
slower than the stream grows its transport's buffer without limit. That is what "naive" means
here; do not fix it. The only setting that is not a default is the listen backlog (4096, as the
dataplane's), so that a connection storm measures the relay and not SYN retries.

    python3 scripts/naive_relay.py --listen 127.0.0.1:0    # prints `listening data=IP:PORT`

Source: PUT /live/{stream} (Expect: 100-continue honoured; body chunked, Content-Length or
close-delimited). Viewer: GET /live/{stream}, close-delimited bytes from the live edge.
Any Basic credentials are accepted. Python 3.11 standard library only.
"""
import argparse, asyncio, signal, sys

streams = {}  # stream name -> Source
conns = set()  # every open transport, to abort on exit


def error(transport, code, reason, msg):
    body = (msg + "\n").encode()
    transport.write(b"HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
                    b"Connection: close\r\n\r\n%s" % (code, reason.encode(), len(body), body))
    transport.close()


class Source:
    def __init__(self, content_type):
        self.content_type = content_type
        self.viewers = set()

    def send(self, data):
        for v in self.viewers:  # one write per viewer per read, buffered without limit
            v.write(data)

    def end(self):
        for v in self.viewers:
            v.close()  # after the already buffered bytes
        self.viewers.clear()


class Conn(asyncio.Protocol):
    def connection_made(self, transport):
        self.t, self.head, self.on_data, self.done = transport, b"", self.read_head, None
        conns.add(transport)

    def connection_lost(self, exc):
        conns.discard(self.t)
        if self.done:
            self.done()

    def data_received(self, data):
        self.on_data(data)

    def ignore(self, data):
        pass

    def read_head(self, data):
        self.head += data
        end = self.head.find(b"\r\n\r\n")
        if end < 0:
            if len(self.head) > 16384:
                error(self.t, 431, "Request Header Fields Too Large", "request head over 16 KiB")
            return
        self.on_data = self.ignore
        rest, lines = self.head[end + 4:], self.head[:end].decode("latin-1").split("\r\n")
        try:
            method, target, version = lines[0].split(" ")
        except ValueError:
            return error(self.t, 400, "Bad Request", "malformed request line")
        hdrs = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                return error(self.t, 400, "Bad Request", "malformed header line")
            hdrs[name.strip().lower()] = value.strip()
        path = target.split("?", 1)[0]
        name = path[len("/live/"):]
        if not path.startswith("/live/") or not name or "/" in name:
            return error(self.t, 404, "Not Found", "no such path; streams are /live/{stream}")
        if method == "GET":
            self.viewer(name, version)
        elif method == "PUT":
            self.source(name, hdrs, rest)
        else:
            self.t.write(b"HTTP/1.1 405 Method Not Allowed\r\nAllow: GET, PUT\r\n"
                         b"Content-Length: 0\r\nConnection: close\r\n\r\n")
            self.t.close()

    def viewer(self, name, version):
        src = streams.get(name)
        if src is None:
            return error(self.t, 404, "Not Found", "no source on stream " + name)
        ver = "HTTP/1.0" if version == "HTTP/1.0" else "HTTP/1.1"
        self.t.write(f"{ver} 200 OK\r\nContent-Type: {src.content_type}\r\nConnection: close\r\n"
                     "Cache-Control: no-cache\r\n\r\n".encode("latin-1"))
        src.viewers.add(self.t)
        self.done = lambda: src.viewers.discard(self.t)

    def source(self, name, hdrs, rest):
        if name in streams:
            return error(self.t, 409, "Conflict", "stream " + name + " already has a source")
        te, cl = hdrs.get("transfer-encoding", "").lower(), hdrs.get("content-length")
        if te not in ("", "chunked") or (te and cl is not None):
            return error(self.t, 400, "Bad Request", "body must be chunked, Content-Length or close-delimited")
        try:
            self.left = int(cl) if cl is not None else None
        except ValueError:
            return error(self.t, 400, "Bad Request", "bad Content-Length")
        if hdrs.get("expect", "").lower() == "100-continue":
            self.t.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        self.t.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
        self.src = streams[name] = Source(hdrs.get("content-type", "application/octet-stream"))

        def done():
            if streams.get(name) is self.src:
                del streams[name]
                self.src.end()
        self.done = done
        self.buf, self.chunk, self.trailer = b"", 0, False
        self.on_data = self.chunked if te else self.plain
        if rest or self.left == 0:
            self.on_data(rest)

    def plain(self, data):  # Content-Length or close-delimited body
        if self.left is not None:
            data, self.left = data[:self.left], self.left - min(len(data), self.left)
        if data:
            self.src.send(data)
        if self.left == 0:
            self.finish()

    def chunked(self, data):
        buf, out = self.buf + data if self.buf else data, []
        while buf:
            if self.chunk > 0:  # inside a chunk's data
                piece = buf[:self.chunk]
                out.append(piece)
                self.chunk -= len(piece)
                buf = buf[len(piece):]
                if self.chunk == 0:
                    self.chunk = -2  # its CRLF follows
                continue
            eol = buf.find(b"\r\n")
            if eol < 0:
                if len(buf) > 4096:
                    return error(self.t, 400, "Bad Request", "bad chunked framing")
                break
            line, buf = buf[:eol], buf[eol + 2:]
            if self.chunk == -2 or self.trailer:  # end of a chunk's data, or a trailer line
                self.chunk = 0
                if self.trailer and not line:
                    self.buf = b""
                    return self.flush(out, finish=True)
                if line and not self.trailer:
                    return error(self.t, 400, "Bad Request", "bad chunked framing")
                continue
            try:
                self.chunk = int(line.split(b";", 1)[0], 16)
            except ValueError:
                return error(self.t, 400, "Bad Request", "bad chunk size")
            self.trailer = self.chunk == 0
        self.buf = buf
        self.flush(out)

    def flush(self, out, finish=False):
        if out:
            self.src.send(out[0] if len(out) == 1 else b"".join(out))  # one write per read
        if finish:
            self.finish()

    def finish(self):
        self.on_data = self.ignore
        self.t.close()  # connection_lost ends the stream and closes its viewers


async def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--listen", default="127.0.0.1:0", help="IP:PORT (port 0: any free port)")
    host, _, port = p.parse_args().listen.rpartition(":")
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Conn, host.strip("[]"), int(port), backlog=4096)
    ip, port = server.sockets[0].getsockname()[:2]
    print(f"listening data={ip}:{port}" if ":" not in ip else f"listening data=[{ip}]:{port}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()
    for t in list(conns):
        t.abort()


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(0)
