#!/usr/bin/env python3
"""Kernel memory held for viewers that never read (issue 8, defect 6; issue 9).

    scripts/bench-non-readers.py [N] [-- extra dataplane flags]

Starts target/release/dataplane on 127.0.0.1, publishes a ~1 MB/s chunked stream, connects N
(default 500) viewers that send their GET and never read, waits 7 s (under --window-seconds,
which would disconnect them) and prints the growth of the host's TCP memory
(/proc/net/sockstat) per non-reader. Every process it starts is stopped."""
import socket, subprocess, sys, time, re, threading
args = sys.argv[1:]
N = int(args.pop(0)) if args and args[0].isdigit() else 500
extra = args[1:] if args and args[0] == "--" else args
p = subprocess.Popen(["target/release/dataplane","--listen","127.0.0.1:0","--admin-listen","127.0.0.1:0"]+extra, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
line = p.stdout.readline()
while not line.startswith("listening"):
    line = p.stdout.readline()
host, port = re.search(r"data=([^ ]+)", line).group(1).rsplit(":",1); port=int(port)
def mem():
    for l in open("/proc/net/sockstat"):
        if l.startswith("TCP:"): return int(l.split()[-1])
base = mem()
src = socket.create_connection((host, port))
src.sendall(b"PUT /live/nr HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
time.sleep(0.3)
stop = False
def feed():
    chunk = b"%x\r\n" % 16384 + b"x"*16384 + b"\r\n"
    while not stop:
        src.sendall(chunk); time.sleep(0.016)  # ~1 MB/s
threading.Thread(target=feed, daemon=True).start()
time.sleep(0.5)
conns = []
for i in range(N):
    s = socket.create_connection((host, port))
    s.sendall(b"GET /live/nr HTTP/1.1\r\nHost: x\r\n\r\n")
    conns.append(s)
time.sleep(7)
m = mem()
print(f"{extra or 'default'}: {N} non-readers, TCP mem {(m-base)*4096/1e6:.1f} MB = {(m-base)*4096/N/1024:.0f} KiB per non-reader")
stop = True
p.terminate()
p.wait()
