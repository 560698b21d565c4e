// anitalker crop: the square the networks will see, cut from any photo around
// its face by the authors' rule (lib/crop.h), and the box in the photo's
// pixels, so that the framing can be checked before a long run.
#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <opencv2/imgproc.hpp>
#include <string>
#include <vector>

#include "cli.h"
#include "crop.h"
#include "device.h"
#include "error.h"
#include "image.h"
#include "image_out.h"
#include "npy.h"
#include "output_file.h"



int cmd_crop(int argc, char** argv) {
  return cli::run("crop", [&] {
    std::string portrait, out, box_out, detector, box_text, pad = "colour", device = "cpu";
    double ratio = 0.6;
    long long face_index = -1;
    int threads = 0;
    cli::Options o("crop", "Cuts the square the networks see around the face, as the authors cut their training "
                           "data: the face box's centre, its larger side x (1 + ratio), at most the photo's shorter "
                           "side, padded where it leaves the photo.  Give --detector or --face-box.");
    o.text("portrait", &portrait, "IMG", "the photo").required();
    o.text("out", &out, "CROP.png", "the square (format from the extension)").required();
    o.text("detector", &detector, "F",
           "detection_Resnet50_Final.pth (RetinaFace; the authors used FaceBoxesV2): the largest face, or "
           "--face-index N of the faces found (listed when there are several)");
    o.text("face-box|box", &box_text, "X1,Y1,X2,Y2", "the face box in the photo's pixels instead of a detector");
    o.number("crop-ratio|ratio", &ratio, 0, 10, "R", "expanded_ratio: the square is the face's larger side x (1 + R)");
    o.integer("face-index", &face_index, 0, 1 << 20, "N", "with several faces: which").shows("the largest");
    o.choice("pad", &pad, {"colour", "replicate"}, "colour (black) or replicate (the edge pixels)");
    o.text("box-out", &box_out, "F.json",
           "{\"x\", \"y\", \"side\"} of the square in the photo's pixels, the face box and the photo's size");
    o.device(&device, "the detector").threads(&threads);
    if (!o.parse(argc, argv)) return 0;
    cli::set_threads(threads);
    if (detector.empty() && box_text.empty()) throw cli::UsageError("give --detector R.pth or --face-box X1,Y1,X2,Y2");
    if (!detector.empty() && !box_text.empty())
      throw cli::UsageError("--detector and --face-box: give one, not both (the box is used instead of a detector)");
    if (!box_text.empty() && face_index >= 0) throw cli::UsageError("--face-index chooses among detected faces: not with --face-box");
    anitalker::check_output_path(out, {portrait, detector});
    if (!box_out.empty()) anitalker::check_output_path(box_out, {portrait, detector}, "--box-out");
    anitalker::check_distinct_outputs({{"--out", out}, {"--box-out", box_out}});
    if (!box_out.empty()) anitalker::check_output_extension(box_out, ".json", "JSON (.json)", "--box-out");
    const std::string ext = cli::image_extension(out);

    anitalker::crop::Spec spec =
        anitalker::crop::make_spec("auto", box_text, ratio, static_cast<int>(face_index), "", "--face-box");
    spec.pad = pad == "replicate" ? anitalker::crop::Pad::Replicate : anitalker::crop::Pad::Colour;
    const anitalker::RgbImage photo = anitalker::read_rgb_image(portrait, anitalker::Orientation::Shown);
    std::vector<anitalker::crop::Box> faces;
    if (!spec.have_box) {
      c10::InferenceMode guard;
      faces = anitalker::detect_faces(detector, photo, anitalker::parse_device(device));
    }
    const anitalker::crop::Choice choice = anitalker::crop::choose(spec, photo.width, photo.height, faces, portrait);
    if (choice.faces.size() > 1) {
      std::fprintf(stderr, "anitalker crop: note: %zu faces found; using %d (%s; --face-index N chooses):\n",
                   choice.faces.size(), choice.picked, face_index >= 0 ? "--face-index" : "the largest");
      for (size_t i = 0; i < choice.faces.size(); ++i) {
        if (!anitalker::crop::listed(i, choice)) {
          if (i == anitalker::crop::kFacesListed) std::fprintf(stderr, "  ...\n");
          continue;
        }
        const anitalker::crop::Box& b = choice.faces[i];
        std::fprintf(stderr, "  %zu: (%.0f, %.0f)-(%.0f, %.0f)\n", i, b.x1, b.y1, b.x2, b.y2);
      }
    }
    const anitalker::crop::Box box = spec.have_box ? spec.box : choice.faces[choice.picked];
    const anitalker::crop::Square sq = choice.square;
    const anitalker::RgbImage cut = anitalker::crop::cut(photo, sq, spec.pad);
    cv::Mat rgb(cut.height, cut.width, CV_8UC3, const_cast<uint8_t*>(cut.data.data())), bgr;
    cv::cvtColor(rgb, bgr, cv::COLOR_RGB2BGR);
    // Both written before either takes its name: a --box-out that cannot
    // be written (a full disk) left the square behind, from a run that
    // failed (found 2026-12-07).
    std::vector<std::pair<std::string, std::string>> files{{out, cli::encode_image(out, ext, bgr)}};
    if (!box_out.empty()) {
      const nlohmann::json j = {{"x", sq.x},           {"y", sq.y},           {"side", sq.side},
                                {"box", {box.x1, box.y1, box.x2, box.y2}},    {"picture", {photo.width, photo.height}},
                                {"ratio", ratio}};
      files.emplace_back(box_out, j.dump(1) + "\n");
    }
    anitalker::write_files_atomic(files);
    std::fprintf(stderr, "anitalker crop: %dx%d square at (%d, %d) of the %dx%d photo to %s\n", sq.side, sq.side, sq.x,
                 sq.y, photo.width, photo.height, out.c_str());
    return 0;
  });
}
