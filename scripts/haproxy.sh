# Sourced by scripts/test and scripts/cluster: HAProxy for the reference cluster.
#
#   ensure_haproxy            makes sure `haproxy` runs from PATH: installs Debian's `haproxy`
#                             package with apt-get when it is missing (non-interactive).
#   haproxy_config PUBLIC NODE...
#                             prints the configuration of a balancer listening on PUBLIC
#                             (host:port) in front of the nodes (host:port each).
#
# Run directly, `scripts/haproxy.sh config PUBLIC NODE...` prints the configuration (the
# multi-process tests in tests/cluster use it, so they test the configuration shipped here).

ensure_haproxy() {
  if ! command -v haproxy >/dev/null 2>&1 && [ -x /usr/sbin/haproxy ]; then
    export PATH="$PATH:/usr/sbin"
  fi
  command -v haproxy >/dev/null 2>&1 && return 0
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "haproxy.sh: haproxy is not installed and apt-get is unavailable; install HAProxy" >&2
    return 1
  fi
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "haproxy.sh: installing HAProxy" >&2
  $sudo apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq haproxy >/dev/null
  if ! command -v haproxy >/dev/null 2>&1 && [ -x /usr/sbin/haproxy ]; then
    export PATH="$PATH:/usr/sbin"
  fi
  command -v haproxy >/dev/null 2>&1 || { echo "haproxy.sh: haproxy did not install" >&2; return 1; }
}

haproxy_config() {
  local public=$1
  shift
  cat <<CFG
global
    # No maxconn: HAProxy derives it from the descriptor limit (scripts/cluster raises it).

defaults
    mode http
    timeout connect 1s
    timeout client 60s
    timeout server 60s
    # A media stream is a websocket: after the 101 the tunnel timeout applies (a call's
    # stream may be quiet while the caller listens, never for an hour).
    timeout tunnel 1h
    timeout http-keep-alive 10s
    timeout http-request 10s
    timeout queue 5s
    # The nodes read the caller's address (rate limits, the media gate) from this header.
    option forwardfor
    # A request refused by a node that is down (connection refused, closed without an
    # answer) or draining (503 before any work: a webhook or a media upgrade) is sent to
    # another node: up to 3 retries, each on another server.
    retries 3
    option redispatch 1
    retry-on conn-failure empty-response 503

frontend public
    bind ${public}
    default_backend nodes

backend nodes
    # Media streams are long-lived connections: the node with the fewest takes the next.
    balance leastconn
    # A draining node answers 503 on readiness: out of rotation within ~0.5 s.
    option httpchk GET /health/ready
    http-check expect status 200
    default-server check inter 250ms fastinter 250ms downinter 1s fall 2 rise 2
CFG
  local i=1
  for node in "$@"; do
    echo "    server node$i $node"
    i=$((i + 1))
  done
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  case "${1:-}" in
    config)
      shift
      [ $# -ge 2 ] || { echo "usage: scripts/haproxy.sh config PUBLIC NODE..." >&2; exit 64; }
      haproxy_config "$@"
      ;;
    *)
      echo "usage: scripts/haproxy.sh config PUBLIC NODE...   (or source it: ensure_haproxy)" >&2
      exit 64
      ;;
  esac
fi
