// anitalker webrtc: the talking portrait to browsers over WebRTC, with no
// signalling server: this program serves one page on 127.0.0.1 (or any
// address).  Each page that opens it is a viewer: the program adds a
// webrtcbin of its own to the running pipeline (fed by tees after the one
// encoder pair, so a viewer costs no encoding), hands the page that
// webrtcbin's offer (all ICE candidates included) and takes its answer over
// plain HTTP.  The page shows the video, plays the audio and reports what it
// received, which this program prints (and, with --frames N, exits on once a
// page decoded N frames: the test).  A viewer ends when its page closes,
// stops asking for 10 s, or its connection fails; its webrtcbin is then
// taken out of the pipeline while the others go on.
#include <gio/gio.h>
#include <glib-unix.h>
#include <gst/gst.h>
#include <gst/sdp/sdp.h>
#define GST_USE_UNSTABLE_API
#include <gst/webrtc/webrtc.h>

#include <sys/random.h>
#include <sys/resource.h>

#include <cerrno>
#include <cstdio>
#include <csignal>
#include <cstdlib>
#include <algorithm>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "cli.h"
#include "error.h"
#include "printable.h"
#include "launch.h"


namespace {

// The page: takes the offer, answers, shows the stream and reports stats.
const char* kPage = R"HTML(<!doctype html>
<html><head><meta charset="utf-8"><title>anitalker</title></head>
<body style="background:#222;color:#ddd;font-family:sans-serif">
<video id="v" autoplay playsinline muted controls style="width:512px;height:512px;background:#000"></video>
<p id="m">The sound starts muted (browsers play sound only after a click): click the page to hear it.</p>
<pre id="s"></pre>
<script>
// Browsers start a page's media only muted unless the user has interacted
// with it; the first click turns the sound on (the controls do too).
document.addEventListener('click', () => { document.getElementById('v').muted = false; document.getElementById('m').textContent = ''; }, {once: true});
const log = t => { document.getElementById('s').textContent = t; };
const sleep = ms => new Promise(ok => setTimeout(ok, ms));
let q = '';  // session=ID, once the server made one
const report = why => { log('error: ' + why); fetch('/stats?' + (q ? q + '&' : '') + 'error=' + encodeURIComponent(why)); };
async function start() {
  const made = await fetch('/session', {method: 'POST'});
  if (!made.ok) return report('the server refused a session (' + made.status + '): ' + (await made.text()).trim());
  q = 'session=' + encodeURIComponent((await made.text()).trim());
  addEventListener('pagehide', () => navigator.sendBeacon('/close?' + q));
  let offer;
  for (;;) {
    const r = await fetch('/offer?' + q);
    if (r.status === 200) { offer = await r.text(); break; }
    if (r.status !== 503) return report('the server refused the offer (' + r.status + '): ' + (await r.text()).trim());
    await sleep(300);
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
  const answered = await fetch('/answer?' + q, {method: 'POST', body: pc.localDescription.sdp});
  if (!answered.ok) {
    pc.close();
    return report('the server refused the answer (' + answered.status + '): ' + (await answered.text()).trim());
  }
  setInterval(async () => {
    let frames = 0, width = 0, height = 0, audio = 0;
    (await pc.getStats()).forEach(r => {
      if (r.type === 'inbound-rtp' && r.kind === 'video') { frames = r.framesDecoded || 0; width = r.frameWidth || 0; height = r.frameHeight || 0; }
      if (r.type === 'inbound-rtp' && r.kind === 'audio') audio = r.packetsReceived || 0;
    });
    log('video frames ' + frames + ' ' + width + 'x' + height + ', audio packets ' + audio + ', ' + pc.connectionState);
    fetch('/stats?' + q + '&frames=' + frames + '&width=' + width + '&height=' + height + '&audio=' + audio + '&state=' + pc.connectionState);
  }, 500);
}
start().catch(e => report(String(e)));
</script></body></html>
)HTML";

struct Session;

struct App {
  GMutex lock;
  cli::DecodedStreams streams;  // what --audio's decodebin found: a file without audio is said so
  std::string audio;            // --audio
  GstElement* pipe = nullptr;
  GstElement* video_tee = nullptr;  // the RTP after the one encoder pair, a branch per viewer
  GstElement* audio_tee = nullptr;
  std::map<std::string, Session*> sessions;  // by their secret id (main loop only)
  int max_viewers = 4;                        // --max-viewers
  int viewer_timeout_s = 90;                  // --viewer-timeout
  int viewers_made = 0;                       // the number the next viewer's log lines get, less 1
  long frames_wanted = 0;
  int timeout_s = 0;  // --timeout, with --frames
  long frames = 0;    // the most any page reported
  int exit_code = 1;
  int stopped_by = 0;  // SIGINT or SIGTERM: a clean stop, then the signal's own end
  int connections = 0;  // open HTTP connections (main loop only)
  int draining = 0;     // connections answered 503 and read until closed (main loop only)
  int max_connections = 0, max_draining = 0;  // the caps, from the open-file limit (open_file_caps)
  gint64 report_second = 0;                    // the page's reports logged this second (main loop only)
  long reports_in_second = 0, reports_dropped = 0;
  gint ends_seen = 0;  // EOS at the end of the video and of the audio branch (atomic)
  std::string error;
  GMainLoop* loop = nullptr;
  gint64 started_us = 0;        // when the pipeline was set to PLAYING (monotonic)
  bool saw_page_frame = false;  // under lock
};

// The RTP each viewer's webrtcbin takes: what the payloaders make, fixed
// enough (clock rates) for webrtcbin to write its offer before the first
// packet has reached the viewer's branch.
constexpr const char* kVideoRtpCaps = "application/x-rtp,media=video,encoding-name=VP8,payload=96,clock-rate=90000";
constexpr const char* kAudioRtpCaps = "application/x-rtp,media=audio,encoding-name=OPUS,payload=97,clock-rate=48000";
// A session without an answer yet whose page has not asked anything naming
// it for this long is taken to be gone (the page polls for its offer three
// times a second).  Once answered, --viewer-timeout applies: a page reports
// twice a second, but a browser slows the timers of a hidden tab, to once a
// minute after five minutes (Chrome's intensive throttling), so a viewer
// who looks at another tab must not be taken for gone after 10 s.
constexpr gint64 kUnansweredQuietSeconds = 10;

// One viewer: its webrtcbin and the two branches that feed it, from a
// request pad of each tee.  Reference-counted: the sessions map, each signal
// handler, a pending promise and each idle callback hold one, so that no
// callback of webrtcbin's threads outlives it.
struct Session {
  gint refs = 1;
  App* app = nullptr;
  int number = 0;    // "viewer N" in the log (the id stays secret)
  std::string id;    // 128 random bits, hex
  GstElement* webrtc = nullptr;
  GstElement* parts[4] = {};  // video queue, video caps, audio queue, audio caps
  GstPad* tee_pads[2] = {};   // request pads of the video and the audio tee (a reference each)
  std::string offer;          // under app->lock; set once ICE gathering is complete
  bool answered = false;      // main loop
  gint64 answered_us = 0;     // main loop: when (monotonic)
  bool ending = false;        // main loop
  gint unlinked = 0;          // tee pads still to unlink (atomic)
  gint64 last_seen_us = 0;    // main loop: the last request naming it
  ~Session() {
    for (GstPad* p : tee_pads)
      if (p) gst_object_unref(p);
  }
};

Session* session_ref(Session* s) {
  g_atomic_int_inc(&s->refs);
  return s;
}
void session_unref(gpointer data) {
  Session* s = static_cast<Session*>(data);
  if (g_atomic_int_dec_and_test(&s->refs)) delete s;
}
void session_unref_closure(gpointer data, GClosure*) { session_unref(data); }

std::string random_id() {
  unsigned char bytes[16];
  size_t got = 0;
  while (got < sizeof bytes) {
    const ssize_t n = getrandom(bytes + got, sizeof bytes - got, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw anitalker::Error(anitalker::Error::Kind::Runtime, std::string("getrandom: ") + std::strerror(errno));
    }
    got += static_cast<size_t>(n);
  }
  char hex[33];
  for (size_t i = 0; i < sizeof bytes; ++i) std::snprintf(hex + 2 * i, 3, "%02x", bytes[i]);
  return hex;
}

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

// The end of the stream reached both tees' own sinks: the audio is over.
void audio_ended(App* app) {
  std::fprintf(stderr, "anitalker webrtc: end of the audio\n");
  if (app->frames_wanted == 0) quit(app, 0);
}

GstPadProbeReturn end_probe(GstPad*, GstPadProbeInfo* info, gpointer data) {
  App* app = static_cast<App*>(data);
  if (GST_EVENT_TYPE(GST_PAD_PROBE_INFO_EVENT(info)) == GST_EVENT_EOS && g_atomic_int_add(&app->ends_seen, 1) == 1)
    g_idle_add([](gpointer d) -> gboolean { audio_ended(static_cast<App*>(d)); return G_SOURCE_REMOVE; }, app);
  return GST_PAD_PROBE_OK;
}

// When gathering is complete the local description holds every candidate:
// that is the offer the page gets (no trickle ICE, no signalling server).
void on_gathering(GObject* webrtc, GParamSpec*, gpointer data) {
  Session* s = static_cast<Session*>(data);
  GstWebRTCICEGatheringState state;
  g_object_get(webrtc, "ice-gathering-state", &state, nullptr);
  if (state != GST_WEBRTC_ICE_GATHERING_STATE_COMPLETE) return;
  GstWebRTCSessionDescription* desc = nullptr;
  g_object_get(webrtc, "local-description", &desc, nullptr);
  if (!desc) return;
  gchar* text = gst_sdp_message_as_text(desc->sdp);
  {
    g_mutex_lock(&s->app->lock);
    s->offer = text;
    g_mutex_unlock(&s->app->lock);
  }
  g_free(text);
  gst_webrtc_session_description_free(desc);
  std::fprintf(stderr, "anitalker webrtc: viewer %d: offer ready\n", s->number);
}

// What a pending offer needs: its viewer (for the log) and a reference to
// the webrtcbin that makes it, which may be taken out of the pipeline
// before the promise is answered.
struct OfferWait {
  Session* session;
  GstElement* webrtc;
};

void on_offer(GstPromise* promise, gpointer data) {
  OfferWait* w = static_cast<OfferWait*>(data);
  const GstStructure* reply = gst_promise_get_reply(promise);
  GstWebRTCSessionDescription* offer = nullptr;
  if (reply) gst_structure_get(reply, "offer", GST_TYPE_WEBRTC_SESSION_DESCRIPTION, &offer, nullptr);
  gst_promise_unref(promise);
  if (!offer) {
    std::fprintf(stderr, "anitalker webrtc: viewer %d: webrtcbin made no offer\n", w->session->number);
    return;
  }
  g_signal_emit_by_name(w->webrtc, "set-local-description", offer, nullptr);
  gst_webrtc_session_description_free(offer);
}

void offer_wait_free(gpointer data) {
  OfferWait* w = static_cast<OfferWait*>(data);
  gst_object_unref(w->webrtc);
  session_unref(w->session);
  delete w;
}

void on_negotiation_needed(GstElement* webrtc, gpointer data) {
  OfferWait* w = new OfferWait{session_ref(static_cast<Session*>(data)), GST_ELEMENT(gst_object_ref(webrtc))};
  GstPromise* p = gst_promise_new_with_change_func(on_offer, w, offer_wait_free);
  g_signal_emit_by_name(webrtc, "create-offer", nullptr, p);
}

void end_session(Session* s, const char* why);

// A failed or closed connection ends its viewer (in the main loop).
void on_connection_state(GObject* webrtc, GParamSpec*, gpointer data) {
  Session* s = static_cast<Session*>(data);
  GstWebRTCPeerConnectionState state;
  g_object_get(webrtc, "connection-state", &state, nullptr);
  if (state == GST_WEBRTC_PEER_CONNECTION_STATE_CONNECTED)
    std::fprintf(stderr, "anitalker webrtc: viewer %d: connected\n", s->number);
  if (state != GST_WEBRTC_PEER_CONNECTION_STATE_FAILED && state != GST_WEBRTC_PEER_CONNECTION_STATE_CLOSED) return;
  g_idle_add_full(G_PRIORITY_DEFAULT, [](gpointer d) -> gboolean {
    end_session(static_cast<Session*>(d), "its connection failed or closed");
    return G_SOURCE_REMOVE;
  }, session_ref(s), session_unref);
}

// A new viewer: its webrtcbin and branches added to the running pipeline.
// The branches are playing before they are linked to the tees, so that no
// buffer meets a pad that is not; each starts with a leaky queue of 1 s,
// so that a viewer whose network stalls drops its own packets and holds up
// neither the others nor the chain.  Returns nullptr with *why set when the
// pipeline refuses the elements.
Session* add_session(App* app, std::string* why) {
  Session* s = new Session;
  s->app = app;
  s->id = random_id();
  s->number = ++app->viewers_made;
  s->last_seen_us = g_get_monotonic_time();
  s->webrtc = gst_element_factory_make("webrtcbin", nullptr);
  for (int i = 0; i < 4; ++i) s->parts[i] = gst_element_factory_make(i % 2 == 0 ? "queue" : "capsfilter", nullptr);
  if (!s->webrtc || !s->parts[0] || !s->parts[1] || !s->parts[2] || !s->parts[3]) {
    *why = "cannot make webrtcbin, queue or capsfilter";
    for (GstElement* e : {s->webrtc, s->parts[0], s->parts[1], s->parts[2], s->parts[3]})
      if (e) gst_object_unref(gst_object_ref_sink(e));
    session_unref(s);
    return nullptr;
  }
  g_object_set(s->webrtc, "bundle-policy", GST_WEBRTC_BUNDLE_POLICY_MAX_BUNDLE, "latency", 500, nullptr);
  for (int i = 0; i < 2; ++i) {
    g_object_set(s->parts[2 * i], "max-size-time", (guint64)GST_SECOND, "max-size-buffers", 0u, "max-size-bytes", 0u,
                 nullptr);
    gst_util_set_object_arg(G_OBJECT(s->parts[2 * i]), "leaky", "downstream");
    GstCaps* caps = gst_caps_from_string(i == 0 ? kVideoRtpCaps : kAudioRtpCaps);
    g_object_set(s->parts[2 * i + 1], "caps", caps, nullptr);
    gst_caps_unref(caps);
  }
  g_signal_connect_data(s->webrtc, "on-negotiation-needed", G_CALLBACK(on_negotiation_needed), session_ref(s),
                        session_unref_closure, GConnectFlags(0));
  g_signal_connect_data(s->webrtc, "notify::ice-gathering-state", G_CALLBACK(on_gathering), session_ref(s),
                        session_unref_closure, GConnectFlags(0));
  g_signal_connect_data(s->webrtc, "notify::connection-state", G_CALLBACK(on_connection_state), session_ref(s),
                        session_unref_closure, GConnectFlags(0));
  gst_bin_add_many(GST_BIN(app->pipe), s->parts[0], s->parts[1], s->parts[2], s->parts[3], s->webrtc, nullptr);
  bool linked = gst_element_link_many(s->parts[0], s->parts[1], s->webrtc, nullptr) &&
                gst_element_link_many(s->parts[2], s->parts[3], s->webrtc, nullptr);
  for (GstElement* e : {s->webrtc, s->parts[1], s->parts[0], s->parts[3], s->parts[2]})
    linked = linked && gst_element_sync_state_with_parent(e);
  GstElement* tees[2] = {app->video_tee, app->audio_tee};
  for (int i = 0; i < 2 && linked; ++i) {
    s->tee_pads[i] = gst_element_request_pad_simple(tees[i], "src_%u");
    GstPad* sink = gst_element_get_static_pad(s->parts[2 * i], "sink");
    linked = s->tee_pads[i] && gst_pad_link(s->tee_pads[i], sink) == GST_PAD_LINK_OK;
    gst_object_unref(sink);
  }
  app->sessions[s->id] = s;
  if (!linked) {
    *why = "the pipeline refused a viewer's webrtcbin";
    end_session(s, "it could not be added");
    return nullptr;
  }
  std::fprintf(stderr, "anitalker webrtc: viewer %d: joined (%zu watching)\n", s->number, app->sessions.size());
  return s;
}

// Taking a viewer out, in the main loop: its tee pads are unlinked when they
// are idle (not in the middle of a push), then its elements are stopped and
// removed, the tees' pads released.
gboolean finish_session(gpointer data) {
  Session* s = static_cast<Session*>(data);
  App* app = s->app;
  GstElement* tees[2] = {app->video_tee, app->audio_tee};
  for (int i = 0; i < 2; ++i)
    if (s->tee_pads[i]) gst_element_release_request_pad(tees[i], s->tee_pads[i]);
  // webrtcbin first: until a viewer has answered, it holds back the packets
  // at its sink pads, and a queue stopped first would wait for its own
  // thread, blocked there, for ever.
  for (GstElement* e : {s->webrtc, s->parts[1], s->parts[3], s->parts[0], s->parts[2]}) {
    gst_element_set_state(e, GST_STATE_NULL);
    gst_bin_remove(GST_BIN(app->pipe), e);  // the last reference: webrtcbin's handlers drop theirs
  }
  s->webrtc = nullptr;
  for (GstElement*& e : s->parts) e = nullptr;
  session_unref(s);  // the sessions map's
  return G_SOURCE_REMOVE;
}

GstPadProbeReturn unlink_when_idle(GstPad* pad, GstPadProbeInfo*, gpointer data) {
  Session* s = static_cast<Session*>(data);
  if (GstPad* peer = gst_pad_get_peer(pad)) {
    gst_pad_unlink(pad, peer);
    gst_object_unref(peer);
  }
  if (g_atomic_int_dec_and_test(&s->unlinked))
    g_idle_add_full(G_PRIORITY_DEFAULT, finish_session, session_ref(s), session_unref);
  return GST_PAD_PROBE_REMOVE;
}

// Taking out a viewer that answered less than this ago waits for the rest:
// webrtcbin sets up the answer's transports in a thread of its own, and a
// webrtcbin stopped in the middle of that left them running, unowned, with
// their ICE agent and sockets (about 20 files a viewer whose page answered
// and closed at once, measured 2026-12-07; none once the answer was 1 s
// old).  In the meantime the viewer is out of the count, and its branch's
// leaky queues drop what it does not send.
constexpr gint64 kAnswerSettleUs = 2 * G_USEC_PER_SEC;

void take_out(Session* s);

void end_session(Session* s, const char* why) {
  App* app = s->app;
  if (s->ending) return;
  s->ending = true;
  app->sessions.erase(s->id);
  std::fprintf(stderr, "anitalker webrtc: viewer %d: ended: %s (%zu watching)\n", s->number, why,
               app->sessions.size());
  const gint64 wait_us = s->answered ? s->answered_us + kAnswerSettleUs - g_get_monotonic_time() : 0;
  if (wait_us > 0) {
    g_timeout_add_full(G_PRIORITY_DEFAULT, (guint)(wait_us / 1000) + 1, [](gpointer d) -> gboolean {
      take_out(static_cast<Session*>(d));
      return G_SOURCE_REMOVE;
    }, session_ref(s), session_unref);
    return;
  }
  take_out(s);
}

// The viewer's tee pads unlinked when idle, then finish_session.
void take_out(Session* s) {
  int pads = 0;
  for (GstPad* p : s->tee_pads) pads += p != nullptr;
  if (pads == 0) {
    finish_session(s);
    return;
  }
  g_atomic_int_set(&s->unlinked, pads);
  for (GstPad* p : s->tee_pads)
    if (p) gst_pad_add_probe(p, GST_PAD_PROBE_TYPE_IDLE, unlink_when_idle, session_ref(s), session_unref);
}

// Once a second: viewers whose page went quiet end.
gboolean expire_sessions(gpointer data) {
  App* app = static_cast<App*>(data);
  const gint64 now = g_get_monotonic_time();
  std::vector<Session*> quiet;
  for (auto& kv : app->sessions)
    if (now - kv.second->last_seen_us >=
        (kv.second->answered ? app->viewer_timeout_s : kUnansweredQuietSeconds) * G_USEC_PER_SEC)
      quiet.push_back(kv.second);
  for (Session* s : quiet) {
    const std::string why = "its page asked nothing for " +
                            std::to_string(s->answered ? app->viewer_timeout_s : kUnansweredQuietSeconds) + " s" +
                            (s->answered ? "" : " (no answer)");
    end_session(s, why.c_str());
  }
  return G_SOURCE_CONTINUE;
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
constexpr int kReservedFiles = 128;  // the pipeline's own (GStreamer, files): 12 measured with no viewer
constexpr int kFilesPerViewer = 24;  // a viewer's webrtcbin (ICE sockets, its threads' wake-ups): 21 measured

// The connection caps within the process's open-file limit.  Each
// connection holds a file; when none is left, GLib's socket service fails
// to accept, logs a warning and tries again at once, a loop of tens of
// thousands of warnings a second at full CPU for as long as the clients
// hold their connections (seen under `ulimit -n 256` with 400 idle
// clients).  So the soft limit is raised to the hard one (systemd starts
// services at 1024 soft, 524288 hard), at most 65536, and the connections
// held at once stay kReservedFiles below it, and kFilesPerViewer more for
// each viewer (fewer viewers under a limit too low for --max-viewers).
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
  const long viewers_fit = std::max(1L, (limit - kReservedFiles - 32) / kFilesPerViewer);
  if (viewers_fit < app->max_viewers) {
    std::fprintf(stderr,
                 "anitalker webrtc: the open-file limit is %ld: at most %ld viewers at once, not %d (raise it with "
                 "ulimit -n, LimitNOFILE= under systemd)\n",
                 limit, viewers_fit, app->max_viewers);
    app->max_viewers = (int)viewers_fit;
  }
  const long budget = std::max(16L, limit - kReservedFiles - (long)kFilesPerViewer * app->max_viewers);
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
// in the offer's order, each of the offered kind (video, audio) and with
// the offered a=mid, each with ICE credentials and a DTLS fingerprint (here
// or at session level).  webrtcbin pairs the answer's sections with its
// transceivers by mid and asserts that they line up: an answer with two
// sections of one mid, or a section of another kind in a mid's place,
// aborted the whole server (found 2026-12-07).
std::string check_answer(const GstSDPMessage* sdp, const std::string& offer_text) {
  GstSDPMessage* offer = nullptr;
  if (gst_sdp_message_new_from_text(offer_text.c_str(), &offer) != GST_SDP_OK || !offer)
    return "the offer does not parse";  // ours: not the client's fault, but nothing to pair with
  struct Section {
    std::string kind, mid;
  };
  std::vector<Section> offered;
  for (guint i = 0; i < gst_sdp_message_medias_len(offer); ++i) {
    const GstSDPMedia* m = gst_sdp_message_get_media(offer, i);
    const char* kind = gst_sdp_media_get_media(m);
    const char* mid = gst_sdp_media_get_attribute_val(m, "mid");
    offered.push_back({kind ? kind : "", mid ? mid : ""});
  }
  gst_sdp_message_free(offer);
  const char* version = gst_sdp_message_get_version(sdp);
  if (!version || std::strcmp(version, "0") != 0) return "not an SDP message (no v=0 line)";
  const guint n = gst_sdp_message_medias_len(sdp);
  if (n == 0) return "the SDP has no media section (m= line)";
  if (n != offered.size())
    return "the SDP answers " + std::to_string(n) + " media sections, the offer has " +
           std::to_string(offered.size());
  const bool session_fp = gst_sdp_message_get_attribute_val(sdp, "fingerprint") != nullptr;
  const bool session_ufrag = gst_sdp_message_get_attribute_val(sdp, "ice-ufrag") != nullptr;
  const bool session_pwd = gst_sdp_message_get_attribute_val(sdp, "ice-pwd") != nullptr;
  for (guint i = 0; i < n; ++i) {
    const GstSDPMedia* m = gst_sdp_message_get_media(sdp, i);
    const std::string section = "media section " + std::to_string(i);
    const char* kind = gst_sdp_media_get_media(m);
    const char* proto = gst_sdp_media_get_proto(m);
    if (!kind || !proto || !std::strstr(proto, "RTP")) return section + " is not RTP";
    if (offered[i].kind != kind)
      return section + " is " + anitalker::printable(kind) + ", the offer's is " + offered[i].kind;
    const char* mid = gst_sdp_media_get_attribute_val(m, "mid");
    if (!offered[i].mid.empty() && (!mid || offered[i].mid != mid))
      return section + " has " + (mid ? "a=mid:" + anitalker::printable(mid) : std::string("no a=mid")) +
             ", the offer's is a=mid:" + offered[i].mid;
    if (!session_ufrag && !gst_sdp_media_get_attribute_val(m, "ice-ufrag")) return section + " has no a=ice-ufrag";
    if (!session_pwd && !gst_sdp_media_get_attribute_val(m, "ice-pwd")) return section + " has no a=ice-pwd";
    if (!session_fp && !gst_sdp_media_get_attribute_val(m, "fingerprint")) return section + " has no a=fingerprint";
  }
  return "";
}

// The session a request names (?session=ID), which it keeps for 10 s more;
// nullptr (and a reply sent) when it names none or one that is not there.
Session* named_session(Conn* c, const std::string& query) {
  const std::string id = query_value(query, "session");
  if (id.empty()) {
    conn_reply(c, 400, "text/plain", "name the session: ?session=ID, the id POST /session gave\n");
    return nullptr;
  }
  auto it = c->app->sessions.find(id);
  if (it == c->app->sessions.end()) {
    conn_reply(c, 404, "text/plain", "no such session (it ended, or never was): POST /session for a new one\n");
    return nullptr;
  }
  it->second->last_seen_us = g_get_monotonic_time();
  return it->second;
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
  if (path == "/session") {
    if (method != "POST") return conn_reply(c, 405, "text/plain", "use POST\n");
    if ((int)app->sessions.size() >= app->max_viewers)
      return conn_reply(c, 503, "text/plain",
                        std::to_string(app->sessions.size()) + " viewers are watching, as many as --max-viewers " +
                            std::to_string(app->max_viewers) + " allows; try again when one has left\n");
    std::string why;
    Session* s = add_session(app, &why);
    if (!s) return conn_reply(c, 500, "text/plain", why + "\n");
    return conn_reply(c, 200, "text/plain", s->id + "\n");
  }
  if (path == "/offer") {
    if (method != "GET") return conn_reply(c, 405, "text/plain", "use GET\n");
    Session* s = named_session(c, query);
    if (!s) return;
    g_mutex_lock(&app->lock);
    const std::string offer = s->offer;
    g_mutex_unlock(&app->lock);
    return conn_reply(c, offer.empty() ? 503 : 200, offer.empty() ? "text/plain" : "application/sdp",
                      offer.empty() ? "no offer yet, ask again\n" : offer);
  }
  if (path == "/answer") {
    if (method != "POST") return conn_reply(c, 405, "text/plain", "use POST with the SDP answer as the body\n");
    Session* s = named_session(c, query);
    if (!s) return;
    g_mutex_lock(&app->lock);
    const std::string offer = s->offer;
    g_mutex_unlock(&app->lock);
    if (offer.empty()) return conn_reply(c, 409, "text/plain", "no offer was made yet: GET /offer first\n");
    if (s->answered)
      return conn_reply(c, 409, "text/plain",
                        "this session already has its answer: POST /session for another\n");
    GstSDPMessage* sdp = nullptr;
    if (gst_sdp_message_new_from_text(c->body.c_str(), &sdp) != GST_SDP_OK || !sdp)
      return conn_reply(c, 400, "text/plain", "not an SDP answer: it does not parse\n");
    const std::string why = check_answer(sdp, offer);
    if (!why.empty()) {
      gst_sdp_message_free(sdp);
      std::fprintf(stderr, "anitalker webrtc: viewer %d: answer refused: %s\n", s->number, why.c_str());
      return conn_reply(c, 400, "text/plain", "not an SDP answer: " + why + "\n");
    }
    GstWebRTCSessionDescription* answer = gst_webrtc_session_description_new(GST_WEBRTC_SDP_TYPE_ANSWER, sdp);
    g_signal_emit_by_name(s->webrtc, "set-remote-description", answer, nullptr);
    gst_webrtc_session_description_free(answer);
    s->answered = true;
    s->answered_us = g_get_monotonic_time();
    std::fprintf(stderr, "anitalker webrtc: viewer %d: answer received\n", s->number);
    return conn_reply(c, 200, "text/plain", "ok\n");
  }
  if (path == "/close") {  // the page's pagehide beacon
    if (method != "POST") return conn_reply(c, 405, "text/plain", "use POST\n");
    Session* s = named_session(c, query);
    if (!s) return;
    end_session(s, "its page closed");
    return conn_reply(c, 200, "text/plain", "ok\n");
  }
  if (path == "/stats") {
    if (method != "GET") return conn_reply(c, 405, "text/plain", "use GET\n");
    const std::string err = query_value(query, "error");
    const long frames = std::atol(query_value(query, "frames").c_str());
    // A report naming a live session keeps it; one that names none (a
    // page refused a session) is still shown.
    std::string who = "page";
    const std::string id = query_value(query, "session");
    if (!id.empty()) {
      auto it = app->sessions.find(id);
      if (it != app->sessions.end()) {
        it->second->last_seen_us = g_get_monotonic_time();
        who = "viewer " + std::to_string(it->second->number) + ": page";
      }
    }
    // What the page reports, as it sent it but made printable: any client
    // may send it.  At most 20 lines a second (a page reports every 0.5 s).
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
      std::fprintf(stderr, "anitalker webrtc: %s: %s\n", who.c_str(),
                   anitalker::printable(err.empty() ? "video frames " + query_value(query, "frames") + " " +
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
  }
  // The end of the audio is seen by end_probe at the tees' own sinks: the
  // pipeline's EOS message waits for every viewer's sinks as well.
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
    int port = 8080, steps = 50, timeout = 120, frames = 0, max_viewers = 4, viewer_timeout = 90;
    bool test_source = false;
    cli::Options o("webrtc",
                   "Serves http://ADDRESS:PORT/; open it in a browser to see and hear the portrait talk, in up to "
                   "--max-viewers browsers at once (all see the same stream; a viewer may join, reload or leave at "
                   "any time).  The chain runs in streaming mode; --audio is played in real time, --test-source is a "
                   "live test tone.  Give --audio or --test-source.");
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
    o.integer("port", &port, 0, 65535, "N", "the HTTP port; 0 = a free port the system picks (the line "
              "\"open http://ADDRESS:PORT/\" names it)");
    o.text("address", &address, "A", "the address to listen on");
    o.integer("max-viewers", &max_viewers, 1, 32, "N",
              "browser sessions at once, each a webrtcbin of its own fed by the one encoder pair; a page past "
              "them is refused (503) until one leaves");
    o.integer("viewer-timeout", &viewer_timeout, 2, 3600, "S",
              "a viewer whose page has not reported for S seconds is taken to be gone and its place freed (a page "
              "reports twice a second, a hidden tab's at least once a minute; a closed page ends at once)");
    o.integer("frames", &frames, 1, 1 << 30, "N", "exit 0 once a page has decoded N video frames").shows("");
    o.integer("timeout", &timeout, 1, 86400, "S", "with --frames: exit 1 after S seconds");
    if (!o.parse(argc, argv)) return 0;
    if (o.given("timeout") && frames == 0) throw cli::UsageError("--timeout goes with --frames (a server without --frames runs until it is stopped)");
    if (audio.empty() && !test_source) throw cli::UsageError("give --audio FILE or --test-source");
    if (!audio.empty() && test_source) throw cli::UsageError("--audio and --test-source: give one, not both");
    gst_init(nullptr, nullptr);

    const std::string src = test_source ? "audiotestsrc is-live=true wave=pink-noise volume=0.3"
                                        : "filesrc location=" + quoted(audio) + " ! decodebin name=audiodec ! audioconvert ! "
                                          "audioresample ! clocksync";
    const std::string desc =
        src + " ! audio/x-raw,rate=16000,channels=1 ! tee name=t "
        "t. ! queue ! anitalker name=talk mode=streaming latency=" + latency + " ! videoconvert ! video/x-raw,format=I420 ! "
        "vp8enc deadline=1 keyframe-max-dist=25 ! rtpvp8pay ! " + kVideoRtpCaps + " ! tee name=vt "
        "vt. ! fakesink name=vend sync=false async=false "
        "t. ! queue max-size-time=10000000000 max-size-buffers=0 max-size-bytes=0 ! audioconvert ! audioresample ! "
        "opusenc ! rtpopuspay ! " + kAudioRtpCaps + " ! tee name=at "
        "at. ! fakesink name=aend sync=false async=false";
    for (const char* needed : {"webrtcbin", "nicesrc"})
      if (GstElementFactory* f = gst_element_factory_find(needed))
        gst_object_unref(f);
      else
        throw anitalker::Error(anitalker::Error::Kind::Runtime,
                               std::string("the GStreamer element ") + needed +
                                   " is missing: install gstreamer1.0-plugins-bad (webrtcbin) and gstreamer1.0-nice");
    GError* err = nullptr;
    App app;
    app.max_viewers = max_viewers;
    app.viewer_timeout_s = viewer_timeout;
    g_mutex_init(&app.lock);
    app.frames_wanted = frames;
    app.pipe = gst_parse_launch(desc.c_str(), &err);
    if (!app.pipe || err) {
      const std::string m = err ? err->message : "unknown error";
      if (err) g_error_free(err);
      throw anitalker::Error(anitalker::Error::Kind::Runtime,
                             "cannot build the pipeline: " + m);
    }
    app.audio = audio;
    app.streams.watch(app.pipe, "audiodec");
    GstElement* talk = gst_bin_get_by_name(GST_BIN(app.pipe), "talk");
    gst_util_set_object_arg(G_OBJECT(talk), "variant", variant.c_str());
    g_object_set(talk, "models-dir", models.c_str(), "portrait", portrait.c_str(), "steps", (guint)steps, nullptr);
    gst_object_unref(talk);
    app.video_tee = gst_bin_get_by_name(GST_BIN(app.pipe), "vt");
    app.audio_tee = gst_bin_get_by_name(GST_BIN(app.pipe), "at");
    for (const char* name : {"vend", "aend"}) {
      GstElement* sink = gst_bin_get_by_name(GST_BIN(app.pipe), name);
      GstPad* pad = gst_element_get_static_pad(sink, "sink");
      gst_pad_add_probe(pad, GST_PAD_PROBE_TYPE_EVENT_DOWNSTREAM, end_probe, &app, nullptr);
      gst_object_unref(pad);
      gst_object_unref(sink);
    }

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
    // An IPv6 address goes in brackets in a URL (http://[::1]:8080/); it
    // was printed bare, a URL no browser takes.
    const std::string host = address.find(':') != std::string::npos ? "[" + address + "]" : address;
    if (address == "0.0.0.0" || address == "::")  // browsers refuse http://0.0.0.0/ (Chrome since 2024)
      std::fprintf(stderr,
                   "anitalker webrtc: listening on every address of this machine: open http://%s:%d/ in a browser "
                   "here, or this machine's address and port %d from elsewhere\n",
                   address == "::" ? "[::1]" : "127.0.0.1", port, port);
    else
      std::fprintf(stderr, "anitalker webrtc: open http://%s:%d/ in a browser\n", host.c_str(), port);

    if (GstElement* talk = gst_bin_get_by_name(GST_BIN(app.pipe), "talk")) {
      GstPad* out = gst_element_get_static_pad(talk, "src");
      gst_pad_add_probe(out, GST_PAD_PROBE_TYPE_BUFFER, first_frame_probe, &app, nullptr);
      gst_object_unref(out);
      gst_object_unref(talk);
    }
    g_timeout_add_seconds(1, expire_sessions, &app);
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
    gst_object_unref(app.video_tee);
    gst_object_unref(app.audio_tee);
    gst_object_unref(app.pipe);  // the viewers' webrtcbins with it, and their handlers' references
    for (auto& kv : app.sessions) session_unref(kv.second);
    app.sessions.clear();
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
