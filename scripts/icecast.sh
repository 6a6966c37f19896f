#!/usr/bin/env bash
# Runs Debian's icecast2 as the peer relay for benchmarks, with a config written to a temp dir.
#
#   eval "$(scripts/icecast.sh start [--port 18000] [--password hackme])"
#       writes the config, starts icecast2, waits until it answers, and prints
#       ICECAST_PID=… ICECAST_URL=http://127.0.0.1:PORT ICECAST_DIR=… (shell assignments)
#   scripts/icecast.sh stop PID [DIR]
#       stops that icecast2 (TERM, then KILL after 5 s) and removes its temp dir
#
# Sources publish with user `source` and the password to http://127.0.0.1:PORT/live/STREAM
# (PUT or SOURCE, close-delimited: icecast does not take chunked bodies); viewers GET the same URL.
# Limits are raised for fan-out benchmarks: 20000 clients, 10 sources, a 4 MiB queue and no
# burst-on-connect (so latency figures measure the relay, not a replayed backlog).
# icecast2 refuses to run as root: when started as root it drops to nobody:nogroup (changeowner).
set -euo pipefail

usage() { sed -n '2,13p' "$0" >&2; exit 2; }

start() {
  local port=18000 password=hackme
  while [ $# -gt 0 ]; do
    case "$1" in
      --port) port="$2"; shift 2 ;;
      --password) password="$2"; shift 2 ;;
      *) usage ;;
    esac
  done
  command -v icecast2 >/dev/null || { echo "icecast.sh: icecast2 is not installed (apt-get install icecast2)" >&2; exit 1; }
  local dir
  dir="$(mktemp -d /tmp/vanbench-icecast.XXXXXX)"
  chmod 755 "$dir"
  mkdir -p "$dir/log"
  local security=""
  if [ "$(id -u)" = 0 ]; then
    chown nobody:nogroup "$dir/log"
    security="<security><chroot>0</chroot><changeowner><user>nobody</user><group>nogroup</group></changeowner></security>"
  fi
  cat >"$dir/icecast.xml" <<EOF
<icecast>
  <location>loopback</location>
  <admin>vanbench@localhost</admin>
  <limits>
    <clients>20000</clients>
    <sources>10</sources>
    <queue-size>4194304</queue-size>
    <client-timeout>30</client-timeout>
    <header-timeout>15</header-timeout>
    <source-timeout>10</source-timeout>
    <burst-on-connect>0</burst-on-connect>
    <burst-size>0</burst-size>
  </limits>
  <authentication>
    <source-password>${password}</source-password>
    <relay-password>${password}</relay-password>
    <admin-user>admin</admin-user>
    <admin-password>${password}</admin-password>
  </authentication>
  <hostname>127.0.0.1</hostname>
  <listen-socket>
    <port>${port}</port>
    <bind-address>127.0.0.1</bind-address>
  </listen-socket>
  <fileserve>1</fileserve>
  <paths>
    <basedir>${dir}</basedir>
    <logdir>${dir}/log</logdir>
    <webroot>/usr/share/icecast2/web</webroot>
    <adminroot>/usr/share/icecast2/admin</adminroot>
  </paths>
  <logging>
    <accesslog>access.log</accesslog>
    <errorlog>error.log</errorlog>
    <loglevel>2</loglevel>
  </logging>
  ${security}
</icecast>
EOF
  # Every viewer is a file descriptor: take the hard limit for this process alone.
  ulimit -n "$(ulimit -Hn)"
  nohup icecast2 -c "$dir/icecast.xml" >"$dir/stdout.log" 2>&1 &
  local pid=$!
  local url="http://127.0.0.1:${port}"
  for _ in $(seq 1 100); do
    if curl -fsS -o /dev/null "$url/status-json.xsl" 2>/dev/null; then
      echo "ICECAST_PID=$pid ICECAST_URL=$url ICECAST_DIR=$dir"
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "icecast.sh: icecast2 exited at start-up:" >&2
      cat "$dir/stdout.log" "$dir/log/error.log" >&2 2>/dev/null || true
      exit 1
    fi
    sleep 0.1
  done
  kill "$pid" 2>/dev/null || true
  echo "icecast.sh: icecast2 did not answer on $url within 10 s" >&2
  exit 1
}

stop() {
  [ $# -ge 1 ] || usage
  local pid="$1" dir="${2:-}"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  fi
  case "$dir" in
    /tmp/vanbench-icecast.*) rm -rf "$dir" ;;
  esac
}

case "${1:-}" in
  start) shift; start "$@" ;;
  stop) shift; stop "$@" ;;
  *) usage ;;
esac
