# Sourced by the WebRTC tests (tests/gst/test_webrtc.sh,
# tests/tools/test_webrtc_server.sh).  wait_for_port LOG: sets $port from
# the "open http://127.0.0.1:PORT/" line of a server started with --port 0
# (a port of our own choosing may be taken), once that port answers or
# after 10 s; exits 1 showing LOG when no port was named.
wait_for_port() {
  port=
  for i in $(seq 100); do
    port=$(sed -n 's|.*open http://127\.0\.0\.1:\([0-9]*\)/.*|\1|p' "$1" | head -n 1)
    [ -n "$port" ] && (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
  done
  [ -n "$port" ] || { echo "the server named no port:"; cat "$1"; exit 1; }
}
