#!/usr/bin/env bash
# Container health check for the tunegw image, with nothing but bash (the runtime image has no
# curl or wget): GET the URL and succeed on a 2xx status.
#
#   tunegw-healthcheck [URL]
#
# URL defaults to $HEALTHCHECK_URL, then http://127.0.0.1:8080/healthz. Plain http only.
# Exit status: 0 healthy, 1 unhealthy or unreachable, 2 bad usage.
set -uo pipefail

url="${1:-${HEALTHCHECK_URL:-http://127.0.0.1:8080/healthz}}"
timeout_s="${HEALTHCHECK_TIMEOUT:-4}"

if [[ ! "$url" =~ ^http://([A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\])(:([0-9]+))?(/[^[:space:]]*)?$ ]]; then
    echo "tunegw-healthcheck: unsupported URL '$url' (expected http://HOST[:PORT]/PATH)" >&2
    exit 2
fi
host="${BASH_REMATCH[1]}"
port="${BASH_REMATCH[3]:-80}"
path="${BASH_REMATCH[4]:-/}"
connect_host="${host#[}"
connect_host="${connect_host%]}"

if ! { exec 3<>"/dev/tcp/${connect_host}/${port}"; } 2>/dev/null; then
    echo "tunegw-healthcheck: cannot connect to ${host}:${port}" >&2
    exit 1
fi
printf 'GET %s HTTP/1.1\r\nHost: %s:%s\r\nConnection: close\r\nUser-Agent: tunegw-healthcheck\r\n\r\n' \
    "$path" "$host" "$port" >&3

status_line=""
if ! IFS= read -r -t "$timeout_s" status_line <&3; then
    echo "tunegw-healthcheck: no answer from ${url} within ${timeout_s}s" >&2
    exit 1
fi
# Drain the rest (the server closes after it: Connection: close) so it sees an orderly close.
while IFS= read -r -t "$timeout_s" _ <&3; do :; done
exec 3<&- 3>&-
status_line="${status_line%$'\r'}"

if [[ "$status_line" =~ ^HTTP/[0-9.]+\ (2[0-9][0-9]) ]]; then
    exit 0
fi
echo "tunegw-healthcheck: ${url} answered '${status_line}'" >&2
exit 1
