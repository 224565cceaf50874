#!/usr/bin/env bash
# The HTTP client bench of `make bench`: an nginx that answers every request with one fixed chat
# completion (no model behind it, so the client is what is timed), then our client
# (`cargo bench -p pw-llm --bench http`) and the `openai` package's AsyncOpenAI
# (crates/llm/benches/http_peer.py) against it, 5,000 requests at concurrency 64 each. nginx runs
# one worker, as a null server should, from a temporary prefix that is removed afterwards.
#
# usage: scripts/http-bench.sh PEER_PYTHON
# Without nginx (scripts/setup.sh --peers installs nginx-light) it prints why and does nothing;
# without openai in PEER_PYTHON it skips only the peer.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
py=${1:-python3}
nginx=$(command -v nginx || true)
[ -z "$nginx" ] && [ -x /usr/sbin/nginx ] && nginx=/usr/sbin/nginx
if [ -z "$nginx" ]; then
  echo "skipped the HTTP client bench: no nginx (scripts/setup.sh --peers installs nginx-light)"
  exit 0
fi
dir=$(mktemp -d)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
answer='{"id":"cmpl-null","object":"chat.completion","created":1,"model":"null","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":1,"total_tokens":10}}'
cat >"$dir/nginx.conf" <<CONF
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $dir/body;
  proxy_temp_path $dir/proxy;
  fastcgi_temp_path $dir/fastcgi;
  uwsgi_temp_path $dir/uwsgi;
  scgi_temp_path $dir/scgi;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$port;
    location / {
      default_type application/json;
      return 200 '$answer';
    }
  }
}
CONF
"$nginx" -e "$dir/error.log" -p "$dir" -c "$dir/nginx.conf"
stop() {
  [ -f "$dir/nginx.pid" ] && kill "$(cat "$dir/nginx.pid")" 2>/dev/null || true
  sleep 0.2
  rm -rf "$dir"
}
trap stop EXIT
for _ in $(seq 50); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1
done
url="http://127.0.0.1:$port/v1"
echo "null server: nginx $("$nginx" -v 2>&1 | sed 's/.*nginx\///'), one worker, at $url"
(cd "$here" && PW_NULL_SERVER="$url" ${CARGO:-cargo} bench -p pw-llm --bench http)
if "$py" -c 'import openai' 2>/dev/null; then
  "$py" "$here/crates/llm/benches/http_peer.py" "$url"
else
  echo "skipped the HTTP client's peer: $py has no openai (scripts/setup.sh --peers installs it)"
fi
