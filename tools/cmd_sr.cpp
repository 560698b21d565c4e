// anitalker sr: GFPGAN face restoration of one image without GStreamer
// (spec/face-sr.md; the same lib/face_restore.h code as the gfpgansr element).
#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <sys/stat.h>

#include <cstdio>
#include <opencv2/imgcodecs.hpp>
#include <string>
#include <vector>

#include "cli.h"
#include "image_out.h"
#include "output_file.h"
#include "device.h"
#include "error.h"
#include "face_restore.h"
#include "kernels.h"
#include "gfpgan.h"
#include "image_header.h"
#include "npy.h"
#include "parsenet.h"
#include "retinaface.h"
#include "state_dict.h"

namespace face = anitalker::face;


namespace {

bool exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

cv::Mat read_image(const std::string& path) {
  if (!exists(path)) throw anitalker::Error(anitalker::Error::Kind::NotFound, path + ": no such file");
  // As a portrait's: more than ANITALKER_MAX_PIXELS (100 Mpx), a truncated
  // JPEG or PNG, or a GIF is refused from the header, before decoding.
  anitalker::check_image_header(path);
  cv::Mat m = cv::imread(path, cv::IMREAD_COLOR);
  if (m.empty()) throw anitalker::format_error(path + ": not an image OpenCV can decode");
  return m;
}

// (5,2) or (N,5,2) float -> the faces.
std::vector<face::Landmarks> read_landmarks(const std::string& path) {
  at::Tensor t = anitalker::read_npy_tensor(path);
  if (t.dim() == 2) t = t.unsqueeze(0);
  if (t.dim() != 3 || t.size(1) != 5 || t.size(2) != 2 || !at::isFloatingType(t.scalar_type()))
    throw anitalker::format_error(path + ": expected float landmarks of shape (N, 5, 2), got " +
                                  c10::str(t.scalar_type()) + " " + c10::str(t.sizes()));
  t = t.to(at::kFloat).contiguous();
  if (!at::isfinite(t).all().item<bool>()) throw anitalker::format_error(path + ": landmarks hold NaN or inf");
  std::vector<face::Landmarks> out(t.size(0));
  const float* p = t.data_ptr<float>();
  for (size_t i = 0; i < out.size(); ++i)
    for (int k = 0; k < 5; ++k) out[i][k] = cv::Point2f(p[i * 10 + 2 * k], p[i * 10 + 2 * k + 1]);
  return out;
}

}  // namespace

int cmd_sr(int argc, char** argv) {
  return cli::run("sr", [&] {
    std::string model_path, detector_path, parser_path, landmarks_path, in, out, raw_path, detections_path;
    std::string device = "cpu", noise = "stored", precision = "fp32";
    bool aligned = false, center = false;
    long long upscale = 2, threads = 0;
    cli::Options o("sr", "Restores the faces of an image with GFPGAN and pastes them into the image upscaled N "
                         "times, as AniTalker's --face_sr (GFPGANer.enhance) does.  Give --out, --raw or "
                         "--detections (or several).");
    o.text("model", &model_path, "F", "GFPGANv1.4.pth (or a checkpoint in its layout)").required();
    o.text("detector", &detector_path, "F",
           "detection_Resnet50_Final.pth (RetinaFace); needed unless --landmarks or --aligned");
    o.text("parser", &parser_path, "F",
           "parsing_parsenet.pth: ParseNet's paste mask; without it the square soft mask (the reference's "
           "use_parse=False)");
    o.text("landmarks", &landmarks_path, "L.npy",
           "float32 (N,5,2) (or (5,2)): the faces' five points (x, y in input pixels: eyes, nose, mouth corners); "
           "skips detection");
    o.flag("aligned", &aligned,
           "the image is one face aligned to the FFHQ template: resized to 512x512 and restored, no detection, no "
           "paste-back");
    o.choice("noise", &noise, {"stored", "random", "none"},
             "GFPGAN decoder noise: stored (repeatable), random (as the reference) or none");
    o.integer("upscale", &upscale, 1, 4, "N", "output size = input size x N");
    o.flag("only-center-face", &center, "restore only the detected face nearest the centre");
    o.text("in", &in, "IMAGE", "any image OpenCV decodes").required();
    o.text("out", &out, "IMAGE", "the result (format from the extension: .png, .jpg, ...)");
    o.text("raw", &raw_path, "OUT.npy", "GFPGAN's float32 output (1,3,512,512) RGB for the first face, before the clamp");
    o.text("detections", &detections_path, "D.npy",
           "every face the detector found, after threshold and NMS: float32 (N,15) x1 y1 x2 y2 score then five x "
           "y; with no --out and no --raw, the tool only detects");
    o.precision(&precision,
                "GFPGAN's arithmetic: fp32 (exact), bf16 (a CPU with AVX512_BF16: its convolutions in bfloat16, "
                "not exact), fp16 (a CUDA device: the same in float16); the detector and the parser stay fp32");
    o.device(&device).threads(&threads);
    if (!o.parse(argc, argv)) return 0;
    const anitalker::Precision prec = anitalker::parse_precision(precision);
    if (out.empty() && raw_path.empty() && detections_path.empty())
      throw cli::UsageError("nothing to write: give --out, --raw or --detections");
    for (const auto& [opt, path] : {std::pair<const char*, std::string>{"--out", out}, {"--raw", raw_path},
                                    {"--detections", detections_path}})
      if (!path.empty())
        anitalker::check_output_path(path, {model_path, detector_path, parser_path, landmarks_path, in}, opt);
    if (!raw_path.empty()) anitalker::check_npy_output(raw_path, "--raw");
    if (!detections_path.empty()) anitalker::check_npy_output(detections_path, "--detections");
    anitalker::check_distinct_outputs({{"--out", out}, {"--raw", raw_path}, {"--detections", detections_path}});
    if (aligned && (!landmarks_path.empty() || !detections_path.empty()))
      throw cli::UsageError("--aligned takes the whole image as one face: no --landmarks or --detections");
    if (!landmarks_path.empty() && !detections_path.empty())
      throw cli::UsageError("--landmarks skips detection: nothing to write to --detections");
    const bool detect = !aligned && landmarks_path.empty();
    if (detect && detector_path.empty())
      throw cli::UsageError("no faces to restore: give --detector, --landmarks or --aligned");
    face::Options options;
    options.upscale = static_cast<double>(upscale);
    options.noise = anitalker::gfpgan::parse_noise(noise);
    options.only_center_face = center;
    const std::string ext = out.empty() ? "" : cli::image_extension(out);
    cli::set_threads(static_cast<int>(threads));
    const c10::Device dev = anitalker::parse_device(device);
    // Refused before any work, naming the option, the device and what it supports.
    anitalker::check_precision(prec, dev, "--precision",
                               {anitalker::Precision::Fp32, anitalker::Precision::Bf16, anitalker::Precision::Fp16}, "GFPGAN");

    // The result (the image times --upscale on each side) is refused before
    // any work when its working memory is more than the memory free
    // (face::result_working_memory; the system would kill the process).
    if (!out.empty() && !aligned) {
      const anitalker::ImageHeader header = anitalker::check_image_header(in);
      if (header.width > 0 && header.height > 0) {
        // Header sides are below 2^32, times --upscale (at most 4): in 64
        // bits; their product may not be (ANITALKER_MAX_PIXELS raised far
        // enough), which result_working_memory saturates and the message
        // gives in double.
        const int64_t w = header.width * upscale, h = header.height * upscale;
        const size_t need = face::result_working_memory(w, h);
        const size_t free = anitalker::device_memory_free(c10::Device(c10::kCPU));
        if (free > 0 && need > free)
          throw anitalker::Error(anitalker::Error::Kind::Usage,
                                 "--upscale " + std::to_string(upscale) + ": the result of " + in + " would be " +
                                     std::to_string(w) + "x" + std::to_string(h) + " (" +
                                     std::to_string(static_cast<uint64_t>(static_cast<double>(w) * h / 1e6)) +
                                     " Mpx), about " +
                                     anitalker::format_bytes(need) + " of working memory, and " +
                                     anitalker::format_bytes(free) +
                                     " is free; give a smaller --upscale or scale the image down");
      }
    }

    c10::InferenceMode guard;
    const cv::Mat image = read_image(in);
    std::shared_ptr<const anitalker::retinaface::Model> detector;
    if (detect) detector = anitalker::retinaface::Model::load(detector_path, dev);
    std::vector<face::Landmarks> faces;
    at::Tensor rows;
    if (!landmarks_path.empty()) faces = read_landmarks(landmarks_path);
    if (detect) {
      rows = detector->detect(image, options.conf_threshold, options.nms_threshold);
      for (const face::Face& f : face::select_faces(rows, image.size(), options)) faces.push_back(f.landmarks);
      std::fprintf(stderr, "anitalker sr: %lld faces detected, %zu to restore\n", static_cast<long long>(rows.size(0)),
                   faces.size());
    }

    cv::Mat result;
    at::Tensor raw;
    const bool restore = !out.empty() || !raw_path.empty();
    if (restore) {
      // Winograd's weight transform, paid once per convolution, costs
      // GFPGAN and ParseNet more than it saves on one or two faces (one
      // aligned face on 2 cores: 4.4 s with it, 2.8 s without); from three
      // faces on it pays (kernels.h set_winograd).
      if (aligned || faces.size() < 3) anitalker::set_winograd(false);
      auto model = anitalker::gfpgan::Model::load(model_path, dev, prec);
      std::shared_ptr<const anitalker::parsenet::Model> parser;
      if (!aligned && !parser_path.empty()) parser = anitalker::parsenet::Model::load(parser_path, dev);
      if (!aligned && !parser)
        std::fprintf(stderr, "anitalker sr: no --parser: pasting with the square soft mask (use_parse=False)\n");
      const face::FaceRestorer restorer(model, nullptr, parser, options);
      result = aligned ? restorer.restore_aligned(image, raw_path.empty() ? nullptr : &raw)
                       : restorer.enhance(image, faces, raw_path.empty() ? nullptr : &raw);
      if (!raw_path.empty() && !raw.defined())
        throw anitalker::Error(anitalker::Error::Kind::Runtime,
                               faces.empty() && !aligned ? "--raw: no face to restore" : "--raw: GFPGAN failed");
    }

    // Everything is computed: only now are files written.
    if (!detections_path.empty()) anitalker::write_npy_tensor(detections_path, rows.to(at::kFloat).contiguous());
    if (!raw_path.empty()) anitalker::write_npy_tensor(raw_path, raw.to(at::kCPU, at::kFloat).contiguous());
    if (!out.empty()) {
      cli::write_image(out, ext, result);
      std::fprintf(stderr, "anitalker sr: %dx%d -> %dx%d, %zu faces, to %s\n", image.cols, image.rows, result.cols,
                   result.rows, aligned ? size_t{1} : faces.size(), out.c_str());
    }
    return 0;
  });
}
