// anitalker webrtc: the talking portrait to a browser over WebRTC, with no
// signalling server: this program serves one page on 127.0.0.1 (or any
// address), hands the browser webrtcbin's offer (all ICE candidates
// included) and takes its answer over plain HTTP.  The page shows the video,
// plays the audio and reports what it received, which this program prints
// (and, with --frames N, exits on once N frames were decoded: the test).
#include <gio/gio.h>
#include <glib-unix.h>
#include <gst/gst.h>
#include <gst/sdp/sdp.h>
#define GST_USE_UNSTABLE_API
#include <gst/webrtc/webrtc.h>

#include <sys/resource.h>

#include <cstdio>
#include <csignal>
#include <cstdlib>
#include <algorithm>
#include <cstring>
#include <string>

#include "cli.h"
#include "error.h"
#include "launch.h"


namespace {

// The page: takes the offer, answers, shows the stream and reports stats.
const char* kPage = R"HTML(<!doctype html>
<html><head><meta charset="utf-8"><title>anitalker</title></head>
<body style="background:#222;color:#ddd;font-family:sans-serif">
<video id="v" autoplay playsinline muted style="width:512px;height:512px;background:#000"></video>
<pre id="s"></pre>
<script>
const log = t => { document.getElementById('s').textContent = t; };
async function start() {
  let offer;
  for (;;) {
    const r = await fetch('/offer');
    if (r.status === 200) { offer = await r.text(); break; }
    await new Promise(ok => setTimeout(ok, 300));
  }
  const pc = new RTCPeerConnection({iceServers: []});
  pc.ontrack = e => { const v = document.getElementById('v'); if (!v.srcObject) v.srcObject = e.streams[0] || new MediaStream([e.track]); };
  await pc.setRemoteDescription({type: 'offer', sdp: offer});
  await pc.setLocalDescription(await pc.createAnswer());
  await new Promise(ok => {
    if (pc.iceGatheringState === 'complete') return ok();
    pc.onicegatheringstatechange = () => { if (pc.iceGatheringState === 'complete') ok(); };
    setTimeout(ok, 3000);
  });
  const answered = await fetch('/answer', {method: 'POST', body: pc.localDescription.sdp});
  if (!answered.ok) {  // e.g. 409: the server's one session is taken (a reload, a second viewer)
    const why = 'the server refused the answer (' + answered.status + '): ' + (await answered.text()).trim();
    pc.close();
    log('error: ' + why);
    fetch('/stats?error=' + encodeURIComponent(why));
    return;
  }
  setInterval(async () => {
    let frames = 0, width = 0, height = 0, audio = 0;
    (await pc.getStats()).forEach(r => {
      if (r.type === 'inbound-rtp' && r.kind === 'video') { frames = r.framesDecoded || 0; width = r.frameWidth || 0; height = r.frameHeight || 0; }
      if (r.type === 'inbound-rtp' && r.kind === 'audio') audio = r.packetsReceived || 0;
    });
    log('video frames ' + frames + ' ' + width + 'x' + height + ', audio packets ' + audio + ', ' + pc.connectionState);
    fetch('/stats?frames=' + frames + '&width=' + width + '&height=' + height + '&audio=' + audio + '&state=' + pc.connectionState);
  }, 500);
}
start().catch(e => { log('error: ' + e); fetch('/stats?error=' + encodeURIComponent(String(e))); });
</script></body></html>
)HTML";

struct App {
  GMutex lock;
  cli::DecodedStreams streams;  // what --audio's decodebin found: a file without audio is said so
  std::string audio;            // --audio
  GstElement* pipe = nullptr;
  GstElement* webrtc = nullptr;
  std::string offer;  // under lock; set once ICE gathering is complete
  bool answered = false;
  long frames_wanted = 0;
  int timeout_s = 0;  // --timeout, with --frames
  long frames = 0;
  int exit_code = 1;
  int stopped_by = 0;  // SIGINT or SIGTERM: a clean stop, then the signal's own end
  int connections = 0;  // open HTTP connections (main loop only)
  int draining = 0;     // connections answered 503 and read until closed (main loop only)
  int max_connections = 0, max_draining = 0;  // the caps, from the open-file limit (open_file_caps)
  gint64 report_second = 0;                    // the page's reports logged this second (main loop only)
  long reports_in_second = 0, reports_dropped = 0;
  std::string error;
  GMainLoop* loop = nullptr;
  gint64 started_us = 0;        // when the pipeline was set to PLAYING (monotonic)
  bool saw_page_frame = false;  // under lock
};

// The first frame out of the chain: how far behind its audio it came
// (running time at the bin's src pad - its PTS), and when.
GstPadProbeReturn first_frame_probe(GstPad*, GstPadProbeInfo* info, gpointer data) {
  App* app = static_cast<App*>(data);
  GstBuffer* b = GST_PAD_PROBE_INFO_BUFFER(info);
  GstClock* clock = gst_element_get_clock(app->pipe);
  if (clock && GST_BUFFER_PTS_IS_VALID(b)) {
    const GstClockTime now = gst_clock_get_time(clock) - gst_element_get_base_time(app->pipe);
    std::fprintf(stderr,
                 "anitalker webrtc: first video frame out of the chain %.3f s after the start, %.3f s behind its "
                 "audio\n",
                 (g_get_monotonic_time() - app->started_us) / 1e6,
                 ((double)now - (double)GST_BUFFER_PTS(b)) / GST_SECOND);
  }
  if (clock) gst_object_unref(clock);
  return GST_PAD_PROBE_REMOVE;
}

void quit(App* app, int code, const std::string& error = "") {
  app->exit_code = code;
  if (!error.empty()) app->error = error;
  g_main_loop_quit(app->loop);
}

// When gathering is complete the local description holds every candidate:
// that is the offer the page gets (no trickle ICE, no signalling server).
void on_gathering(GObject* webrtc, GParamSpec*, gpointer data) {
  App* app = static_cast<App*>(data);
  GstWebRTCICEGatheringState state;
  g_object_get(webrtc, "ice-gathering-state", &state, nullptr);
  if (state != GST_WEBRTC_ICE_GATHERING_STATE_COMPLETE) return;
  GstWebRTCSessionDescription* desc = nullptr;
  g_object_get(webrtc, "local-description", &desc, nullptr);
  if (!desc) return;
  gchar* text = gst_sdp_message_as_text(desc->sdp);
  {
    g_mutex_lock(&app->lock);
    app->offer = text;
    g_mutex_unlock(&app->lock);
  }
  g_free(text);
  gst_webrtc_session_description_free(desc);
  std::fprintf(stderr, "anitalker webrtc: offer ready\n");
}

void on_offer(GstPromise* promise, gpointer data) {
  App* app = static_cast<App*>(data);
  const GstStructure* reply = gst_promise_get_reply(promise);
  GstWebRTCSessionDescription* offer = nullptr;
  if (reply) gst_structure_get(reply, "offer", GST_TYPE_WEBRTC_SESSION_DESCRIPTION, &offer, nullptr);
  gst_promise_unref(promise);
  if (!offer) return;
  g_signal_emit_by_name(app->webrtc, "set-local-description", offer, nullptr);
  gst_webrtc_session_description_free(offer);
}

void on_negotiation_needed(GstElement* webrtc, gpointer data) {
  GstPromise* p = gst_promise_new_with_change_func(on_offer, data, nullptr);
  g_signal_emit_by_name(webrtc, "create-offer", nullptr, p);
}

std::string query_value(const std::string& query, const std::string& key) {
  const std::string k = key + "=";
  size_t at = 0;
  while (at < query.size()) {
    size_t end = query.find('&', at);
    if (end == std::string::npos) end = query.size();
    if (query.compare(at, k.size(), k) == 0) {
      gchar* v = g_uri_unescape_segment(query.c_str() + at + k.size(), query.c_str() + end, nullptr);
      std::string out = v ? v : "";
      g_free(v);
      return out;
    }
    at = end + 1;
  }
  return "";
}

// A value a client sent, for the log: control characters (a newline that
// would forge a line of its own, a terminal's escape sequences) written as
// \xNN, and at most 200 bytes kept.
std::string printable(const std::string& v) {
  constexpr size_t kMax = 200;
  std::string out;
  for (size_t i = 0; i < v.size() && out.size() < kMax; ++i) {
    const unsigned char ch = static_cast<unsigned char>(v[i]);
    if (ch < 0x20 || ch == 0x7f) {
      char esc[8];
      std::snprintf(esc, sizeof esc, "\\x%02x", ch);
      out += esc;
    } else {
      out += v[i];
    }
  }
  if (out.size() >= kMax) out += "... (" + std::to_string(v.size()) + " bytes)";
  return out;
}

// --- The HTTP side ---------------------------------------------------------
// One request per connection (GET /, GET /offer, POST /answer, GET /stats?...),
// handled in the main loop with asynchronous reads and writes: no thread per
// client, so a client that sends nothing holds no thread.  Bounds: the head
// (request line + headers) 16 KiB, the body 1 MiB (checked from
// Content-Length before anything is read or allocated), 10 s for a whole
// request, 64 connections at once (more are answered 503 and closed; fewer
// under a low open-file limit, open_file_caps).
constexpr size_t kMaxHead = 16 * 1024;
constexpr size_t kMaxBody = 1 << 20;
constexpr guint kRequestSeconds = 10;
constexpr int kMaxConnections = 64;
constexpr int kMaxDraining = 1024;  // connections answered 503, read until the client closes
constexpr guint kDrainSeconds = 2;
constexpr int kReservedFiles = 128;  // the pipeline's own (GStreamer, ICE sockets, files): 33 measured idle

// The connection caps within the process's open-file limit.  Each
// connection holds a file; when none is left, GLib's socket service fails
// to accept, logs a warning and tries again at once, a loop of tens of
// thousands of warnings a second at full CPU for as long as the clients
// hold their connections (seen under `ulimit -n 256` with 400 idle
// clients).  So the soft limit is raised to the hard one (systemd starts
// services at 1024 soft, 524288 hard), at most 65536, and the connections
// held at once stay kReservedFiles below it.
void open_file_caps(App* app) {
  struct rlimit rl;
  long limit = 1024;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
    const rlim_t want = rl.rlim_max == RLIM_INFINITY ? 65536 : std::min<rlim_t>(rl.rlim_max, 65536);
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want) {
      rlim_t old = rl.rlim_cur;
      rl.rlim_cur = want;
      if (setrlimit(RLIMIT_NOFILE, &rl) != 0) rl.rlim_cur = old;
    }
    limit = rl.rlim_cur == RLIM_INFINITY ? 65536 : (long)std::min<rlim_t>(rl.rlim_cur, 65536);
  }
  const long budget = std::max(16L, limit - kReservedFiles);
  app->max_connections = (int)std::min<long>(kMaxConnections, budget / 2);
  app->max_draining = (int)std::min<long>(kMaxDraining, budget - app->max_connections);
  if (app->max_connections < kMaxConnections)
    std::fprintf(stderr,
                 "anitalker webrtc: the open-file limit is %ld: at most %d HTTP connections at once (raise it with "
                 "ulimit -n, LimitNOFILE= under systemd)\n",
                 limit, app->max_connections);
}

const char* reason_of(int code) {
  switch (code) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 411: return "Length Required";
    case 413: return "Payload Too Large";
    case 431: return "Request Header Fields Too Large";
    case 503: return "Service Unavailable";
    default: return "Error";
  }
}

std::string response(int code, const char* type, const std::string& body) {
  gchar* head = g_strdup_printf("HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nCache-Control: no-store\r\n"
                                "Connection: close\r\n\r\n",
                                code, reason_of(code), type, body.size());
  std::string out = head;
  g_free(head);
  return out + body;
}

struct Conn {
  App* app = nullptr;
  GSocketConnection* conn = nullptr;
  GCancellable* cancel = nullptr;
  guint timer = 0;
  std::string head, body, reply;
  std::string method, target;
  size_t want = 0;
  bool in_body = false;
  char buf[4096];
};

void conn_finish(Conn* c) {
  if (c->timer) g_source_remove(c->timer);
  g_io_stream_close(G_IO_STREAM(c->conn), nullptr, nullptr);
  g_object_unref(c->conn);
  g_object_unref(c->cancel);
  c->app->connections--;
  delete c;
}

void on_written(GObject* stream, GAsyncResult* res, gpointer data) {
  g_output_stream_write_all_finish(G_OUTPUT_STREAM(stream), res, nullptr, nullptr);
  conn_finish(static_cast<Conn*>(data));
}

void conn_reply(Conn* c, int code, const char* type, const std::string& body) {
  c->reply = response(code, type, body);
  GOutputStream* out = g_io_stream_get_output_stream(G_IO_STREAM(c->conn));
  g_output_stream_write_all_async(out, c->reply.data(), c->reply.size(), G_PRIORITY_DEFAULT, c->cancel, on_written, c);
}

gboolean on_conn_timeout(gpointer data) {
  Conn* c = static_cast<Conn*>(data);
  c->timer = 0;
  g_cancellable_cancel(c->cancel);  // the pending read or write ends, and with it the connection
  return G_SOURCE_REMOVE;
}

// An SDP answer that webrtcbin can take: one media section per offered one,
// each with ICE credentials and a DTLS fingerprint (here or at session level).
std::string check_answer(const GstSDPMessage* sdp, const std::string& offer_text) {
  GstSDPMessage* offer = nullptr;
  guint offered = 0;
  if (gst_sdp_message_new_from_text(offer_text.c_str(), &offer) == GST_SDP_OK && offer) {
    offered = gst_sdp_message_medias_len(offer);
    gst_sdp_message_free(offer);
  }
  const char* version = gst_sdp_message_get_version(sdp);
  if (!version || std::strcmp(version, "0") != 0) return "not an SDP message (no v=0 line)";
  const guint n = gst_sdp_message_medias_len(sdp);
  if (n == 0) return "the SDP has no media section (m= line)";
  if (offered > 0 && n != offered)
    return "the SDP answers " + std::to_string(n) + " media sections, the offer has " + std::to_string(offered);
  const bool session_fp = gst_sdp_message_get_attribute_val(sdp, "fingerprint") != nullptr;
  const bool session_ufrag = gst_sdp_message_get_attribute_val(sdp, "ice-ufrag") != nullptr;
  const bool session_pwd = gst_sdp_message_get_attribute_val(sdp, "ice-pwd") != nullptr;
  for (guint i = 0; i < n; ++i) {
    const GstSDPMedia* m = gst_sdp_message_get_media(sdp, i);
    const char* proto = gst_sdp_media_get_proto(m);
    if (!gst_sdp_media_get_media(m) || !proto || !std::strstr(proto, "RTP"))
      return "media section " + std::to_string(i) + " is not RTP";
    if (!session_ufrag && !gst_sdp_media_get_attribute_val(m, "ice-ufrag"))
      return "media section " + std::to_string(i) + " has no a=ice-ufrag";
    if (!session_pwd && !gst_sdp_media_get_attribute_val(m, "ice-pwd"))
      return "media section " + std::to_string(i) + " has no a=ice-pwd";
    if (!session_fp && !gst_sdp_media_get_attribute_val(m, "fingerprint"))
      return "media section " + std::to_string(i) + " has no a=fingerprint";
  }
  return "";
}

void handle_request(Conn* c) {
  App* app = c->app;
  const size_t q = c->target.find('?');
  const std::string path = c->target.substr(0, q), query = q == std::string::npos ? "" : c->target.substr(q + 1);
  const std::string& method = c->method;
  if (path == "/" || path == "/index.html") {
    if (method != "GET") return conn_reply(c, 405, "text/plain", "use GET\n");
    return conn_reply(c, 200, "text/html; charset=utf-8", kPage);
  }
  if (path == "/offer") {
    if (method != "GET") return conn_reply(c, 405, "text/plain", "use GET\n");
    g_mutex_lock(&app->lock);
    const std::string offer = app->offer;
    g_mutex_unlock(&app->lock);
    return conn_reply(c, offer.empty() ? 503 : 200, offer.empty() ? "text/plain" : "application/sdp",
                      offer.empty() ? "no offer yet, ask again\n" : offer);
  }
  if (path == "/answer") {
    if (method != "POST") return conn_reply(c, 405, "text/plain", "use POST with the SDP answer as the body\n");
    g_mutex_lock(&app->lock);
    const std::string offer = app->offer;
    g_mutex_unlock(&app->lock);
    if (offer.empty()) return conn_reply(c, 409, "text/plain", "no offer was made yet: GET /offer first\n");
    if (app->answered)
      return conn_reply(c, 409, "text/plain",
                        "an answer was already taken: this server serves one browser session; start anitalker webrtc "
                        "again for another\n");
    GstSDPMessage* sdp = nullptr;
    if (gst_sdp_message_new_from_text(c->body.c_str(), &sdp) != GST_SDP_OK || !sdp)
      return conn_reply(c, 400, "text/plain", "not an SDP answer: it does not parse\n");
    const std::string why = check_answer(sdp, offer);
    if (!why.empty()) {
      gst_sdp_message_free(sdp);
      std::fprintf(stderr, "anitalker webrtc: answer refused: %s\n", why.c_str());
      return conn_reply(c, 400, "text/plain", "not an SDP answer: " + why + "\n");
    }
    GstWebRTCSessionDescription* answer = gst_webrtc_session_description_new(GST_WEBRTC_SDP_TYPE_ANSWER, sdp);
    g_signal_emit_by_name(app->webrtc, "set-remote-description", answer, nullptr);
    gst_webrtc_session_description_free(answer);
    app->answered = true;
    std::fprintf(stderr, "anitalker webrtc: answer received\n");
    return conn_reply(c, 200, "text/plain", "ok\n");
  }
  if (path == "/stats") {
    if (method != "GET") return conn_reply(c, 405, "text/plain", "use GET\n");
    const std::string err = query_value(query, "error");
    const long frames = std::atol(query_value(query, "frames").c_str());
    // What the page reports, as it sent it but made printable: any client
    // may send it.  At most 20 lines a second (the page reports every 0.5 s).
    const gint64 now_s = g_get_monotonic_time() / G_USEC_PER_SEC;
    if (now_s != app->report_second) {
      if (app->reports_dropped > 0)
        std::fprintf(stderr, "anitalker webrtc: %ld page reports not shown (more than 20 a second)\n",
                     app->reports_dropped);
      app->report_second = now_s;
      app->reports_in_second = 0;
      app->reports_dropped = 0;
    }
    if (++app->reports_in_second <= 20)
      std::fprintf(stderr, "anitalker webrtc: page: %s\n",
                   printable(err.empty() ? "video frames " + query_value(query, "frames") + " " +
                                               query_value(query, "width") + "x" + query_value(query, "height") +
                                               ", audio packets " + query_value(query, "audio") + ", " +
                                               query_value(query, "state")
                                         : "error " + err)
                       .c_str());
    else
      app->reports_dropped++;
    g_mutex_lock(&app->lock);
    if (frames > 0 && !app->saw_page_frame) {
      app->saw_page_frame = true;
      std::fprintf(stderr, "anitalker webrtc: the page had decoded video %.3f s after the start\n",
                   (g_get_monotonic_time() - app->started_us) / 1e6);
    }
    app->frames = std::max(app->frames, frames);
    const bool done = app->frames_wanted > 0 && app->frames >= app->frames_wanted;
    g_mutex_unlock(&app->lock);
    if (done) g_idle_add([](gpointer d) -> gboolean { quit(static_cast<App*>(d), 0); return G_SOURCE_REMOVE; }, app);
    return conn_reply(c, 200, "text/plain", "ok\n");
  }
  conn_reply(c, 404, "text/plain", "not found\n");
}

void conn_read(Conn* c);

// Parses the head once it is complete: false when a reply was sent instead.
bool parse_head(Conn* c, size_t end) {
  const std::string head = c->head.substr(0, end);
  std::string rest = c->head.substr(end);
  const size_t eol = head.find('\n');
  std::string line = head.substr(0, eol);
  if (!line.empty() && line.back() == '\r') line.pop_back();
  const size_t sp1 = line.find(' '), sp2 = line.find(' ', sp1 == std::string::npos ? 0 : sp1 + 1);
  if (sp1 == std::string::npos || sp2 == std::string::npos) {
    conn_reply(c, 400, "text/plain", "not an HTTP request line\n");
    return false;
  }
  c->method = line.substr(0, sp1);
  c->target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  bool have_length = false;
  unsigned long long length = 0;
  size_t at = eol == std::string::npos ? head.size() : eol + 1;
  while (at < head.size()) {
    size_t e = head.find('\n', at);
    if (e == std::string::npos) e = head.size();
    std::string h = head.substr(at, e - at);
    at = e + 1;
    if (!h.empty() && h.back() == '\r') h.pop_back();
    if (g_ascii_strncasecmp(h.c_str(), "content-length:", 15) != 0) continue;
    std::string v = h.substr(15);
    v.erase(0, v.find_first_not_of(" \t"));
    while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.pop_back();
    if (v.empty() || v.size() > 19 || v.find_first_not_of("0123456789") != std::string::npos) {
      conn_reply(c, 400, "text/plain", "Content-Length is not a number\n");
      return false;
    }
    length = std::strtoull(v.c_str(), nullptr, 10);
    have_length = true;
  }
  if (length > kMaxBody) {
    conn_reply(c, 413, "text/plain", "the body is larger than 1 MiB\n");
    return false;
  }
  if (c->method == "POST" && !have_length) {
    conn_reply(c, 411, "text/plain", "a POST needs a Content-Length\n");
    return false;
  }
  c->want = static_cast<size_t>(length);
  c->in_body = true;
  c->body = rest.substr(0, c->want);
  c->head.clear();
  return true;
}

void on_read(GObject* stream, GAsyncResult* res, gpointer data) {
  Conn* c = static_cast<Conn*>(data);
  const gssize n = g_input_stream_read_finish(G_INPUT_STREAM(stream), res, nullptr);
  if (n <= 0) return conn_finish(c);  // closed, failed, or timed out (cancelled)
  if (!c->in_body) {
    c->head.append(c->buf, static_cast<size_t>(n));
    size_t end = c->head.find("\r\n\r\n");
    size_t skip = 4;
    if (end == std::string::npos) {
      end = c->head.find("\n\n");
      skip = 2;
    }
    if (end == std::string::npos) {
      if (c->head.size() > kMaxHead) return conn_reply(c, 431, "text/plain", "the request head is larger than 16 KiB\n");
      return conn_read(c);
    }
    if (end + skip > kMaxHead) return conn_reply(c, 431, "text/plain", "the request head is larger than 16 KiB\n");
    c->head.erase(end, skip);
    if (!parse_head(c, end)) return;
  } else {
    c->body.append(c->buf, std::min(static_cast<size_t>(n), c->want - c->body.size()));
  }
  if (c->body.size() < c->want) return conn_read(c);
  handle_request(c);
}

void conn_read(Conn* c) {
  GInputStream* in = g_io_stream_get_input_stream(G_IO_STREAM(c->conn));
  g_input_stream_read_async(in, c->buf, sizeof c->buf, G_PRIORITY_DEFAULT, c->cancel, on_read, c);
}

// A connection past the cap: answered 503 at once, our side ended, and then
// read until the client ends its side (or 2 s pass) before it is closed.  A
// socket closed with unread input is reset, and a reset can discard the
// answer before the client reads it, so closing at once lost answers when
// the client's request arrived after the 503 was sent.
struct Drain {
  GSocketConnection* conn = nullptr;
  GCancellable* cancel = nullptr;
  guint timer = 0;
  int* count = nullptr;
  char buf[1024];
};

void drain_finish(Drain* d) {
  if (d->timer) g_source_remove(d->timer);
  g_io_stream_close(G_IO_STREAM(d->conn), nullptr, nullptr);
  g_object_unref(d->conn);
  g_object_unref(d->cancel);
  --*d->count;
  delete d;
}

void on_drain_read(GObject* stream, GAsyncResult* res, gpointer data) {
  Drain* d = static_cast<Drain*>(data);
  const gssize n = g_input_stream_read_finish(G_INPUT_STREAM(stream), res, nullptr);
  if (n <= 0) return drain_finish(d);  // the client's end, an error, or the timer's cancel
  g_input_stream_read_async(G_INPUT_STREAM(stream), d->buf, sizeof d->buf, G_PRIORITY_DEFAULT, d->cancel, on_drain_read, d);
}

gboolean on_drain_timeout(gpointer data) {
  Drain* d = static_cast<Drain*>(data);
  d->timer = 0;
  g_cancellable_cancel(d->cancel);
  return G_SOURCE_REMOVE;
}

gboolean on_incoming(GSocketService*, GSocketConnection* conn, GObject*, gpointer data) {
  App* app = static_cast<App*>(data);
  if (app->connections >= app->max_connections) {
    // Too many at once: a short answer the socket's buffer takes at once.
    const std::string r = response(503, "text/plain", "too many connections, try again\n");
    GSocket* sock = g_socket_connection_get_socket(conn);
    g_socket_set_blocking(sock, FALSE);
    g_socket_send(sock, r.data(), r.size(), nullptr, nullptr);
    g_socket_shutdown(sock, FALSE, TRUE, nullptr);
    if (app->draining >= app->max_draining) {  // a flood: read what is there and close
      char junk[4096];
      for (int i = 0; i < 16 && g_socket_receive(sock, junk, sizeof junk, nullptr, nullptr) > 0; ++i) {
      }
      g_io_stream_close(G_IO_STREAM(conn), nullptr, nullptr);
      return TRUE;
    }
    app->draining++;
    Drain* d = new Drain;
    d->conn = G_SOCKET_CONNECTION(g_object_ref(conn));
    d->cancel = g_cancellable_new();
    d->count = &app->draining;
    d->timer = g_timeout_add_seconds(kDrainSeconds, on_drain_timeout, d);
    g_input_stream_read_async(g_io_stream_get_input_stream(G_IO_STREAM(conn)), d->buf, sizeof d->buf, G_PRIORITY_DEFAULT,
                              d->cancel, on_drain_read, d);
    return TRUE;
  }
  app->connections++;
  Conn* c = new Conn;
  c->app = app;
  c->conn = G_SOCKET_CONNECTION(g_object_ref(conn));
  c->cancel = g_cancellable_new();
  c->timer = g_timeout_add_seconds(kRequestSeconds, on_conn_timeout, c);
  conn_read(c);
  return TRUE;
}

gboolean on_bus(GstBus*, GstMessage* msg, gpointer data) {
  App* app = static_cast<App*>(data);
  if (GST_MESSAGE_TYPE(msg) == GST_MESSAGE_ERROR) {
    GError* e = nullptr;
    gst_message_parse_error(msg, &e, nullptr);
    const std::string none = app->audio.empty() ? "" : app->streams.no_audio(app->audio);
    quit(app, 1, !none.empty() ? none.c_str() : e ? e->message : "pipeline error");
    if (e) g_error_free(e);
  } else if (GST_MESSAGE_TYPE(msg) == GST_MESSAGE_EOS) {
    std::fprintf(stderr, "anitalker webrtc: end of the audio\n");
    if (app->frames_wanted == 0) quit(app, 0);
  }
  return TRUE;
}

std::string quoted(const std::string& s) {
  gchar* e = g_strescape(s.c_str(), nullptr);
  std::string out = std::string("\"") + e + "\"";
  g_free(e);
  return out;
}

}  // namespace

int cmd_webrtc(int argc, char** argv) {
  return cli::run("webrtc", [&] {
    std::string portrait, audio, models = "models", variant = "hubert_audio_only", address = "127.0.0.1", latency = "low";
    int port = 8080, steps = 50, timeout = 120, frames = 0;
    bool test_source = false;
    cli::Options o("webrtc",
                   "Serves http://ADDRESS:PORT/; open it in a browser to see and hear the portrait talk.  The chain "
                   "runs in streaming mode; --audio is played in real time, --test-source is a live test tone.  "
                   "Give --audio or --test-source.");
    o.text("portrait", &portrait, "IMG", "the face to animate").required();
    o.text("audio", &audio, "FILE", "speech, any format GStreamer decodes, played in real time");
    o.flag("test-source", &test_source, "a live test tone instead of --audio");
    o.text("models-dir", &models, "DIR", "the released files under their published names");
    o.choice("variant", &variant,
             {"hubert_audio_only", "hubert_pose_only", "hubert_full_control", "mfcc_pose_only", "mfcc_full_control"},
             "the stage-2 variant");
    o.integer("steps", &steps, 2, 1000, "N", "DDIM steps; N must be ceil(1000 / k) for an integer k");
    o.choice("latency", &latency, {"low", "balanced", "quality"},
             "the bin's latency preset (low: hops of 120 ms); the first video frame's delay behind its "
             "audio is printed");
    o.integer("port", &port, 0, 65535, "N", "the HTTP and WebSocket port; 0 = a free port the system picks (the line "
              "\"open http://ADDRESS:PORT/\" names it)");
    o.text("address", &address, "A", "the address to listen on");
    o.integer("frames", &frames, 1, 1 << 30, "N", "exit 0 once the page has decoded N video frames").shows("");
    o.integer("timeout", &timeout, 1, 86400, "S", "with --frames: exit 1 after S seconds");
    if (!o.parse(argc, argv)) return 0;
    if (o.given("timeout") && frames == 0) throw cli::UsageError("--timeout goes with --frames (a server without --frames runs until it is stopped)");
    if (audio.empty() == !test_source) throw cli::UsageError("give --audio FILE or --test-source");
    gst_init(nullptr, nullptr);

    const std::string src = test_source ? "audiotestsrc is-live=true wave=pink-noise volume=0.3"
                                        : "filesrc location=" + quoted(audio) + " ! decodebin name=audiodec ! audioconvert ! "
                                          "audioresample ! clocksync";
    const std::string desc =
        src + " ! audio/x-raw,rate=16000,channels=1 ! tee name=t "
        "t. ! queue ! anitalker name=talk mode=streaming latency=" + latency + " ! videoconvert ! video/x-raw,format=I420 ! "
        "vp8enc deadline=1 keyframe-max-dist=25 ! rtpvp8pay ! application/x-rtp,media=video,encoding-name=VP8,payload=96 "
        "! webrtc. "
        "t. ! queue max-size-time=10000000000 max-size-buffers=0 max-size-bytes=0 ! audioconvert ! audioresample ! "
        "opusenc ! rtpopuspay ! application/x-rtp,media=audio,encoding-name=OPUS,payload=97 ! webrtc. "
        "webrtcbin name=webrtc bundle-policy=max-bundle latency=500";
    GError* err = nullptr;
    App app;
    g_mutex_init(&app.lock);
    app.frames_wanted = frames;
    app.pipe = gst_parse_launch(desc.c_str(), &err);
    if (!app.pipe || err) {
      const std::string m = err ? err->message : "unknown error";
      if (err) g_error_free(err);
      throw anitalker::Error(anitalker::Error::Kind::Runtime,
                             "cannot build the pipeline (webrtcbin needs gstreamer1.0-plugins-bad and "
                             "gstreamer1.0-nice): " + m);
    }
    app.audio = audio;
    app.streams.watch(app.pipe, "audiodec");
    GstElement* talk = gst_bin_get_by_name(GST_BIN(app.pipe), "talk");
    gst_util_set_object_arg(G_OBJECT(talk), "variant", variant.c_str());
    g_object_set(talk, "models-dir", models.c_str(), "portrait", portrait.c_str(), "steps", (guint)steps, nullptr);
    gst_object_unref(talk);
    app.webrtc = gst_bin_get_by_name(GST_BIN(app.pipe), "webrtc");
    g_signal_connect(app.webrtc, "on-negotiation-needed", G_CALLBACK(on_negotiation_needed), &app);
    g_signal_connect(app.webrtc, "notify::ice-gathering-state", G_CALLBACK(on_gathering), &app);

    app.loop = g_main_loop_new(nullptr, FALSE);
    GstBus* bus = gst_element_get_bus(app.pipe);
    gst_bus_add_watch(bus, on_bus, &app);
    gst_object_unref(bus);

    open_file_caps(&app);
    GSocketService* service = g_socket_service_new();
    // Connections past the cap are answered 503 at once; a deep accept queue
    // lets them be taken instead of waiting in the kernel.
    g_socket_listener_set_backlog(G_SOCKET_LISTENER(service), 256);
    GInetAddress* inet = g_inet_address_new_from_string(address.c_str());
    if (!inet) throw cli::UsageError("--address: not an IP address: " + address);
    GSocketAddress* sa = g_inet_socket_address_new(inet, (guint16)port);
    g_object_unref(inet);
    GSocketAddress* bound = nullptr;
    if (!g_socket_listener_add_address(G_SOCKET_LISTENER(service), sa, G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_TCP,
                                       nullptr, &bound, &err)) {
      const std::string m = err ? err->message : "unknown error";
      if (err) g_error_free(err);
      g_object_unref(sa);
      throw anitalker::Error(anitalker::Error::Kind::Runtime, "cannot listen on " + address + ":" + std::to_string(port) + ": " + m);
    }
    g_object_unref(sa);
    // The port taken (the system's choice for --port 0).
    if (bound && G_IS_INET_SOCKET_ADDRESS(bound)) port = g_inet_socket_address_get_port(G_INET_SOCKET_ADDRESS(bound));
    if (bound) g_object_unref(bound);
    g_signal_connect(service, "incoming", G_CALLBACK(on_incoming), &app);
    g_socket_service_start(service);
    std::fprintf(stderr, "anitalker webrtc: open http://%s:%d/ in a browser\n", address.c_str(), port);

    if (GstElement* talk = gst_bin_get_by_name(GST_BIN(app.pipe), "talk")) {
      GstPad* out = gst_element_get_static_pad(talk, "src");
      gst_pad_add_probe(out, GST_PAD_PROBE_TYPE_BUFFER, first_frame_probe, &app, nullptr);
      gst_object_unref(out);
      gst_object_unref(talk);
    }
    app.started_us = g_get_monotonic_time();
    if (gst_element_set_state(app.pipe, GST_STATE_PLAYING) == GST_STATE_CHANGE_FAILURE) app.error = "the pipeline did not start";
    // --frames: a check that ends; the server alone runs until it is
    // stopped (until 2026-12-07 the timer ran without --frames too: every
    // server quit after 120 s, "timed out", exit 1).
    app.timeout_s = timeout;
    if (frames > 0)
      g_timeout_add_seconds(timeout, [](gpointer d) -> gboolean {
        App* a = static_cast<App*>(d);
        quit(a, 1, "no page decoded " + std::to_string(a->frames_wanted) + " video frames within --timeout " +
                       std::to_string(a->timeout_s) + " s");
        return G_SOURCE_REMOVE;
      }, &app);
    // SIGINT and SIGTERM stop the server cleanly (the pipeline to NULL, the
    // socket closed), then the process ends by the signal itself, as a
    // server's supervisor expects of a requested stop (systemd counts it
    // clean; a shell sees 130 or 143).  Until 2026-12-06 they ended as an
    // error, exit 1.
    const guint sigint = g_unix_signal_add(SIGINT, [](gpointer d) -> gboolean {
      static_cast<App*>(d)->stopped_by = SIGINT;
      quit(static_cast<App*>(d), 130);
      return G_SOURCE_CONTINUE;  // removed below
    }, &app);
    const guint sigterm = g_unix_signal_add(SIGTERM, [](gpointer d) -> gboolean {
      static_cast<App*>(d)->stopped_by = SIGTERM;
      quit(static_cast<App*>(d), 143);
      return G_SOURCE_CONTINUE;  // removed below
    }, &app);
    if (app.error.empty()) g_main_loop_run(app.loop);
    g_source_remove(sigint);
    g_source_remove(sigterm);

    g_socket_service_stop(service);
    g_object_unref(service);
    gst_element_set_state(app.pipe, GST_STATE_NULL);
    gst_object_unref(app.webrtc);
    gst_object_unref(app.pipe);
    g_main_loop_unref(app.loop);
    if (app.stopped_by != 0 && app.error.empty()) {
      std::fprintf(stderr, "anitalker webrtc: stopped by %s; the page decoded %ld video frames\n",
                   app.stopped_by == SIGINT ? "SIGINT" : "SIGTERM", app.frames);
      std::fflush(stderr);
      std::signal(app.stopped_by, SIG_DFL);
      std::raise(app.stopped_by);
    }
    if (!app.error.empty()) throw anitalker::Error(anitalker::Error::Kind::Runtime, app.error);
    std::fprintf(stderr, "anitalker webrtc: the page decoded %ld video frames\n", app.frames);
    return app.exit_code;
  });
}
