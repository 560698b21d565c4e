// anitalker webrtc: the talking portrait to a browser over WebRTC, with no
// signalling server: this program serves one page on 127.0.0.1 (or any
// address), hands the browser webrtcbin's offer (all ICE candidates
// included) and takes its answer over plain HTTP.  The page shows the video,
// plays the audio and reports what it received, which this program prints
// (and, with --frames N, exits on once N frames were decoded: the test).
#include <gio/gio.h>
#include <gst/gst.h>
#include <gst/sdp/sdp.h>
#define GST_USE_UNSTABLE_API
#include <gst/webrtc/webrtc.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "cli.h"
#include "error.h"

static const char* kUsage =
    "usage: anitalker webrtc --portrait IMG (--audio FILE | --test-source) [--models-dir DIR] [--variant V]\n"
    "                        [--steps N] [--port 8080] [--address 127.0.0.1] [--frames N] [--timeout S]\n"
    "\n"
    "  Serves http://ADDRESS:PORT/; open it in a browser to see and hear the portrait talk.  The chain\n"
    "  runs in streaming mode; --audio is played in real time, --test-source is a live test tone.\n"
    "  --frames N   exit 0 once the page has decoded N video frames (exit 1 after --timeout, default 120 s)\n";

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
  await fetch('/answer', {method: 'POST', body: pc.localDescription.sdp});
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
  GstElement* pipe = nullptr;
  GstElement* webrtc = nullptr;
  std::string offer;  // under lock; set once ICE gathering is complete
  bool answered = false;
  long frames_wanted = 0;
  long frames = 0;
  int exit_code = 1;
  std::string error;
  GMainLoop* loop = nullptr;
};

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

void respond(GOutputStream* out, int code, const char* type, const std::string& body) {
  const char* reason = code == 200 ? "OK" : code == 404 ? "Not Found" : code == 503 ? "Not Ready" : "Bad Request";
  gchar* head = g_strdup_printf("HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nCache-Control: no-store\r\n"
                                "Connection: close\r\n\r\n",
                                code, reason, type, body.size());
  g_output_stream_write_all(out, head, strlen(head), nullptr, nullptr, nullptr);
  g_output_stream_write_all(out, body.data(), body.size(), nullptr, nullptr, nullptr);
  g_free(head);
}

// One request per connection: GET /, GET /offer, POST /answer, GET /stats?...
gboolean on_request(GThreadedSocketService*, GSocketConnection* conn, GObject*, gpointer data) {
  App* app = static_cast<App*>(data);
  GInputStream* in = g_io_stream_get_input_stream(G_IO_STREAM(conn));
  GOutputStream* out = g_io_stream_get_output_stream(G_IO_STREAM(conn));
  GDataInputStream* din = g_data_input_stream_new(in);
  g_filter_input_stream_set_close_base_stream(G_FILTER_INPUT_STREAM(din), FALSE);
  gchar* line = g_data_input_stream_read_line(din, nullptr, nullptr, nullptr);
  std::string method, target;
  if (line) {
    gchar** parts = g_strsplit(line, " ", 3);
    if (parts[0] && parts[1]) {
      method = parts[0];
      target = parts[1];
    }
    g_strfreev(parts);
    g_free(line);
  }
  gsize length = 0;
  while (gchar* h = g_data_input_stream_read_line(din, nullptr, nullptr, nullptr)) {
    g_strchomp(h);
    if (*h == 0) {
      g_free(h);
      break;
    }
    if (g_ascii_strncasecmp(h, "content-length:", 15) == 0) length = (gsize)g_ascii_strtoull(h + 15, nullptr, 10);
    g_free(h);
  }
  std::string body(length, '\0');
  if (length > 0 && length < (1u << 20)) g_input_stream_read_all(G_INPUT_STREAM(din), &body[0], length, nullptr, nullptr, nullptr);
  const size_t q = target.find('?');
  const std::string path = target.substr(0, q), query = q == std::string::npos ? "" : target.substr(q + 1);

  if (method == "GET" && (path == "/" || path == "/index.html")) {
    respond(out, 200, "text/html; charset=utf-8", kPage);
  } else if (method == "GET" && path == "/offer") {
    g_mutex_lock(&app->lock);
    const std::string offer = app->offer;
    g_mutex_unlock(&app->lock);
    respond(out, offer.empty() ? 503 : 200, "application/sdp", offer);
  } else if (method == "POST" && path == "/answer") {
    GstSDPMessage* sdp = nullptr;
    if (gst_sdp_message_new_from_text(body.c_str(), &sdp) != GST_SDP_OK || !sdp) {
      respond(out, 400, "text/plain", "not an SDP answer\n");
    } else {
      GstWebRTCSessionDescription* answer = gst_webrtc_session_description_new(GST_WEBRTC_SDP_TYPE_ANSWER, sdp);
      g_signal_emit_by_name(app->webrtc, "set-remote-description", answer, nullptr);
      gst_webrtc_session_description_free(answer);
      app->answered = true;
      std::fprintf(stderr, "anitalker webrtc: answer received\n");
      respond(out, 200, "text/plain", "ok\n");
    }
  } else if (method == "GET" && path == "/stats") {
    respond(out, 200, "text/plain", "ok\n");
    const std::string err = query_value(query, "error");
    const long frames = std::atol(query_value(query, "frames").c_str());
    std::fprintf(stderr, "anitalker webrtc: page: %s\n",
                 err.empty() ? ("video frames " + query_value(query, "frames") + " " + query_value(query, "width") + "x" +
                                query_value(query, "height") + ", audio packets " + query_value(query, "audio") + ", " +
                                query_value(query, "state"))
                                   .c_str()
                             : ("error " + err).c_str());
    g_mutex_lock(&app->lock);
    app->frames = std::max(app->frames, frames);
    const bool done = app->frames_wanted > 0 && app->frames >= app->frames_wanted;
    g_mutex_unlock(&app->lock);
    if (done) g_idle_add([](gpointer d) -> gboolean { quit(static_cast<App*>(d), 0); return G_SOURCE_REMOVE; }, app);
  } else {
    respond(out, 404, "text/plain", "not found\n");
  }
  g_object_unref(din);
  return TRUE;
}

gboolean on_bus(GstBus*, GstMessage* msg, gpointer data) {
  App* app = static_cast<App*>(data);
  if (GST_MESSAGE_TYPE(msg) == GST_MESSAGE_ERROR) {
    GError* e = nullptr;
    gst_message_parse_error(msg, &e, nullptr);
    quit(app, 1, e ? e->message : "pipeline error");
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
    cli::Args a(argc, argv);
    std::string portrait, audio, models = "models", variant = "hubert_audio_only", address = "127.0.0.1";
    int port = 8080, steps = 50, timeout = 120;
    long frames = 0;
    bool test_source = false;
    while (!a.done()) {
      const std::string s = a.next();
      if (s == "--help" || s == "-h") {
        std::fputs(kUsage, stdout);
        return 0;
      } else if (s == "--portrait") portrait = a.value(s);
      else if (s == "--audio") audio = a.value(s);
      else if (s == "--test-source") test_source = true;
      else if (s == "--models-dir") models = a.value(s);
      else if (s == "--variant") variant = a.value(s);
      else if (s == "--steps") steps = static_cast<int>(a.integer(s, 1, 1000));
      else if (s == "--port") port = static_cast<int>(a.integer(s, 1, 65535));
      else if (s == "--address") address = a.value(s);
      else if (s == "--frames") frames = static_cast<long>(a.integer(s, 1, 1 << 30));
      else if (s == "--timeout") timeout = static_cast<int>(a.integer(s, 1, 86400));
      else throw cli::UsageError("unknown option " + s);
    }
    if (portrait.empty()) throw cli::UsageError("missing --portrait");
    if (audio.empty() == !test_source) throw cli::UsageError("give --audio FILE or --test-source");
    gst_init(nullptr, nullptr);

    const std::string src = test_source ? "audiotestsrc is-live=true wave=pink-noise volume=0.3"
                                        : "filesrc location=" + quoted(audio) + " ! decodebin ! audioconvert ! "
                                          "audioresample ! clocksync";
    const std::string desc =
        src + " ! audio/x-raw,rate=16000,channels=1 ! tee name=t "
        "t. ! queue ! anitalker name=talk mode=streaming features::window=1000 features::context=1000 "
        "motion::window=10 motion::context=5 ! videoconvert ! video/x-raw,format=I420 ! "
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

    GSocketService* service = g_threaded_socket_service_new(4);
    GInetAddress* inet = g_inet_address_new_from_string(address.c_str());
    if (!inet) throw cli::UsageError("--address: not an IP address: " + address);
    GSocketAddress* sa = g_inet_socket_address_new(inet, (guint16)port);
    g_object_unref(inet);
    if (!g_socket_listener_add_address(G_SOCKET_LISTENER(service), sa, G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_TCP,
                                       nullptr, nullptr, &err)) {
      const std::string m = err ? err->message : "unknown error";
      if (err) g_error_free(err);
      g_object_unref(sa);
      throw anitalker::Error(anitalker::Error::Kind::Runtime, "cannot listen on " + address + ":" + std::to_string(port) + ": " + m);
    }
    g_object_unref(sa);
    g_signal_connect(service, "run", G_CALLBACK(on_request), &app);
    g_socket_service_start(service);
    std::fprintf(stderr, "anitalker webrtc: open http://%s:%d/ in a browser\n", address.c_str(), port);

    if (gst_element_set_state(app.pipe, GST_STATE_PLAYING) == GST_STATE_CHANGE_FAILURE) app.error = "the pipeline did not start";
    g_timeout_add_seconds(timeout, [](gpointer d) -> gboolean {
      quit(static_cast<App*>(d), 1, "timed out");
      return G_SOURCE_REMOVE;
    }, &app);
    if (app.error.empty()) g_main_loop_run(app.loop);

    g_socket_service_stop(service);
    g_object_unref(service);
    gst_element_set_state(app.pipe, GST_STATE_NULL);
    gst_object_unref(app.webrtc);
    gst_object_unref(app.pipe);
    g_main_loop_unref(app.loop);
    if (!app.error.empty()) throw anitalker::Error(anitalker::Error::Kind::Runtime, app.error);
    std::fprintf(stderr, "anitalker webrtc: the page decoded %ld video frames\n", app.frames);
    return app.exit_code;
  });
}
