// Face restoration around GFPGAN, as AniTalker's --face_sr runs it:
// facexlib's FaceRestoreHelper driven by GFPGANer.enhance (spec/face-sr.md
// 1).  Images are OpenCV BGR uint8 throughout, as in the reference; the
// networks get RGB in [-1,1].  The steps are separate functions so that each
// can be checked against the reference, and FaceRestorer strings them
// together.
#pragma once

#include <ATen/core/Tensor.h>

#include <array>
#include <chrono>
#include <memory>
#include <opencv2/core.hpp>
#include <vector>

#include "batcher.h"
#include "gfpgan.h"
#include "retinaface.h"

namespace anitalker {
namespace parsenet {
class Model;
}
}  // namespace anitalker

namespace anitalker::face {

constexpr int kFaceSize = 512;

// Five points (x, y) in image pixels: left eye, right eye, nose, left mouth
// corner, right mouth corner (image left / right).
using Landmarks = std::array<cv::Point2f, 5>;

// --- Alignment (spec 1.3) ---------------------------------------------------

// The 2x3 similarity (CV_64F) taking `lm` to the FFHQ template, fitted with
// cv::estimateAffinePartial2D(LMEDS) as the reference does.  Throws a Runtime
// error if OpenCV finds no transform (degenerate points).
cv::Mat align_matrix(const Landmarks& lm, int face_size = kFaceSize);

// The aligned crop (face_size x face_size BGR uint8): bilinear, constant
// border (135,133,132) in B,G,R.
cv::Mat warp_face(const cv::Mat& bgr, const cv::Mat& affine, int face_size = kFaceSize);

// The matrix used for pasting (spec 1.8): invertAffineTransform(affine) *
// upscale, then +0.5*upscale on the translation when upscale > 1.
cv::Mat paste_matrix(const cv::Mat& affine, double upscale);

// --- Network inputs and outputs (spec 1.4, 1.6, 1.9) ------------------------

// BGR uint8 -> (1,3,H,W) float32 RGB in [-1,1].  GFPGAN's input divides by
// 255 in double and rounds to float32 (crop / 255.); ParseNet's divides in
// float32 (face.astype('float32') / 255.): the two differ in the last bit.
at::Tensor gfpgan_input(const cv::Mat& bgr);
at::Tensor parsenet_input(const cv::Mat& bgr);

// GFPGAN's raw (1,3,H,W) RGB output -> BGR uint8 (tensor2img): clamp to
// [-1,1], (v+1)/2, *255 in float32, round half to even.
cv::Mat restored_to_bgr(const at::Tensor& raw);

// --- Paste-back (spec 1.7, 1.9, 1.10) ---------------------------------------

// The background: the input resized by `upscale` with Lanczos (BGR uint8).
cv::Mat upscale_background(const cv::Mat& bgr, double upscale);

// ParseNet label map (HxW uint8, 0..18) -> the soft face mask in face
// coordinates (CV_64F, 0..1): label table, two Gaussian blurs (101, sigma
// 11), a 10-px zero frame, /255.
cv::Mat parse_mask(const cv::Mat& labels);
// The same on a label tensor (H, W) where it lies (ParseNet's argmax on a
// GPU), in float64 too: a GPU's way, which leaves the CPU the copy of one
// mask instead of two 101-tap blurs of it (within 1e-12 of parse_mask;
// test FaceRestore.ParseMaskOnTheDevice).  Float32 would be within 1e-6,
// but the paste truncates: values that should be whole come out just under
// and 2.6% of the frame's bytes move by one level.  Returns (H, W) float64
// on the labels' device.
at::Tensor parse_mask(const at::Tensor& labels);

// The mask warped into the output image (CV_64F, W_up x H_up).
cv::Mat warp_mask(const cv::Mat& face_mask, const cv::Mat& inverse, cv::Size out_size);

// Blends one restored face (BGR uint8, face coordinates) into `canvas`
// (CV_64FC3, W_up x H_up, starts as the background).  With a face mask
// (from parse_mask) the parse branch runs, in float64; with an empty one the
// square soft mask (erosion + Gaussian), in float32 as the reference.
void paste_face(cv::Mat& canvas, const cv::Mat& restored, const cv::Mat& inverse, const cv::Mat& face_mask,
                double upscale);

// The canvas -> BGR uint8 by truncation (astype(uint8)).
cv::Mat canvas_to_bgr(const cv::Mat& canvas);

// --- The same steps on tensors, where the networks run (a GPU's way) --------
// Images are (H, W, C) tensors on any device: BGR uint8 frames and faces, or
// (H, W) float64 masks.  Each reproduces its OpenCV call bit for bit (tests
// FaceDevice.*), so a frame pasted on the device is the CPU's frame, with
// one copy in and one copy out (FaceRestorer::enhance on a GPU).

// An OpenCV image (uint8 or float64) as an (H, W, C) tensor, (H, W) for one
// channel, on the CPU and sharing its memory (its row step kept).
at::Tensor image_tensor(const cv::Mat& image);

// cv::warpAffine(image, affine, out, INTER_LINEAR, BORDER_CONSTANT, border):
// OpenCV's sampling positions in fixed point (1/1024, then 1/32 of a
// pixel), its bilinear weights from its table; uint8 sums in 15-bit fixed
// point and rounds, float64 sums the four products in OpenCV's order.
at::Tensor warp_affine(const at::Tensor& image, const cv::Mat& affine, cv::Size out,
                       const cv::Scalar& border = cv::Scalar());

// cv::resize(image, out, INTER_LANCZOS4) of a uint8 image: the 8-tap
// weights rounded to 11 bits, edges replicated, integer sums, the result
// rounded from 22 bits and saturated.
at::Tensor resize_lanczos4(const at::Tensor& image, cv::Size out);

// gfpgan_input, parsenet_input and restored_to_bgr on (H, W, 3) BGR uint8
// tensors where they lie, with the same rounding.
at::Tensor gfpgan_input(const at::Tensor& bgr);
at::Tensor parsenet_input(const at::Tensor& bgr);
at::Tensor restored_bytes(const at::Tensor& raw);

// --- Networks on images -----------------------------------------------------

// GFPGAN on an aligned crop (BGR uint8, the model's size) -> the restored
// face, BGR uint8.  If the forward fails (c10::Error, e.g. out of memory),
// the crop itself, as the reference does.  With `raw`, GFPGAN's output
// before the clamp goes there too (undefined when the forward failed).
cv::Mat restore_face(const gfpgan::Model& model, const cv::Mat& crop, gfpgan::Noise noise, at::Tensor* raw = nullptr);

// ParseNet labels (uint8, 0..classes-1) of a restored face, resized to
// 512x512 bilinear first as the reference does.
cv::Mat parse_labels(const parsenet::Model& parser, const cv::Mat& restored);

// --- The whole frame (spec 1) -----------------------------------------------

struct Options {
  double upscale = 2;  // output size = input size * upscale
  gfpgan::Noise noise = gfpgan::Noise::Stored;
  float conf_threshold = 0.97f;   // RetinaFace score, strict >
  double nms_threshold = 0.4;     // IoU, strict >
  float eye_dist_threshold = 5;   // px between landmarks 0 and 1
  bool only_center_face = false;  // keep the face nearest the centre
  int max_faces = 0;              // 0: every face; else the largest ones (box area), at most this many
};

// One face found by the detector: the box, its score and the landmarks.
struct Face {
  cv::Rect2f box;
  float score = 0;
  Landmarks landmarks;
};

// The faces the reference restores from RetinaFace's rows (K, 15) (after
// threshold and NMS, by descending score): rows whose eyes (landmarks 0 and
// 1) are closer than eye_dist_threshold are dropped; with only_center_face,
// the one whose box centre is nearest the image centre is kept.
std::vector<Face> select_faces(const at::Tensor& detections, cv::Size image, const Options& options);

// One aligned face through GFPGAN (its (1,3,S,S) input, gfpgan_input) for a
// FaceBatcher; the result is Model::forward's raw output.
struct FaceJob {
  at::Tensor input;
  gfpgan::Noise noise = gfpgan::Noise::Stored;
};
// The faces of several streams (or frames) on one GFPGAN model (gfpgansr's
// max-batch): on a GPU (gfpgan::Model::generic) the faces of a call with
// stored or no noise run as one batch, each within float rounding of
// itself alone (Gfpgan.BatchOfTwoIsTwoSingleImages); on the CPU, and with
// random noise (whose draws a batch would deal out differently), one at a
// time, bit for bit; all in the leader's thread.
class FaceBatcher : public Batcher<FaceJob, at::Tensor> {
 public:
  using Batcher::Batcher;
};
std::shared_ptr<FaceBatcher> shared_faces(std::shared_ptr<const gfpgan::Model> model, size_t max_batch,
                                          std::chrono::microseconds max_delay);

// ParseNet's label maps of several streams' faces on one parser (gfpgansr's
// max-batch with a parser).  A request is a face's (1,3,S,S)
// parsenet_input; the result its (1,S,S) label map on the parser's device.
// On a GPU (parsenet::Model::generic) the faces of a call run as one batch
// (the labels of each within float rounding of itself alone: a label on a
// near tie may flip); on the CPU one at a time, bit for bit; all in the
// leader's thread.
class ParseBatcher : public Batcher<at::Tensor, at::Tensor> {
 public:
  using Batcher::Batcher;
};
std::shared_ptr<ParseBatcher> shared_parses(std::shared_ptr<const parsenet::Model> parser, size_t max_batch,
                                            std::chrono::microseconds max_delay);

// RetinaFace on the frames of several streams on one detector (gfpgansr's
// max-batch with a detector).  A request is a frame's (1,3,H,W)
// retinaface::to_input on the detector's device; the result its heads (on
// the CPU).  Where the detector runs as on a GPU (retinaface::Model::
// generic) the frames of a call of one size run as one batch (each within
// float rounding of itself alone); on the CPU one at a time, bit for bit.
class DetectBatcher : public Batcher<at::Tensor, retinaface::Heads> {
 public:
  using Batcher::Batcher;
};
std::shared_ptr<DetectBatcher> shared_detections(std::shared_ptr<const retinaface::Model> detector, size_t max_batch,
                                                 std::chrono::microseconds max_delay);

// Bytes of host memory that restoring and pasting into a picture of
// `width` x `height` (the upscaled result) works with: the result is worked
// on in float, about 27 bytes a pixel of it measured (a 3000x3000 photo:
// 1.1 GB peak at upscale 1, 3.0 GB at 3, 4.7 GB at 4), counted as 32, plus
// 1 GB for the networks and the rest.  For refusing a result that cannot
// fit before any work (a 100 Mpx photo at upscale 4: about 50 GB).
// SIZE_MAX when the count passes 64 bits.
size_t result_working_memory(int64_t width, int64_t height);

class FaceRestorer {
 public:
  // `detector` may be null (then only the landmark and aligned entry points
  // work); without `parser` the square soft mask is used for pasting.
  FaceRestorer(std::shared_ptr<const gfpgan::Model> model, std::shared_ptr<const retinaface::Model> detector,
               std::shared_ptr<const parsenet::Model> parser, Options options = {});

  const Options& options() const { return options_; }
  bool has_detector() const { return detector_ != nullptr; }
  bool has_parser() const { return parser_ != nullptr; }

  // The detector on the frame, then select_faces.  Throws a Usage error
  // without a detector.
  std::vector<Face> faces(const cv::Mat& bgr) const;

  // GFPGANer.enhance(has_aligned=False, paste_back=True): detect, align,
  // restore and paste every face into the upscaled background (BGR uint8).
  cv::Mat enhance(const cv::Mat& bgr) const;
  // The same with the faces given as landmarks (no detector needed).  With
  // `first_raw`, GFPGAN's unclamped output for the first face goes there
  // (`anitalker sr --raw`, as the fixtures store it).
  cv::Mat enhance(const cv::Mat& bgr, const std::vector<Landmarks>& faces, at::Tensor* first_raw = nullptr) const;
  // has_aligned=True: the frame is one aligned face, resized to the model's
  // size (bilinear) and restored; no paste.
  cv::Mat restore_aligned(const cv::Mat& bgr, at::Tensor* raw = nullptr) const;

  // One video frame as gfpgansr treats it, by `mode`: Degraded, the plain
  // upscale (a frame already late); Aligned, restore_aligned resized to
  // options().upscale times the frame (Lanczos up, area down); Detect, the
  // detector's faces restored and pasted (enhance).  *faces counts the faces
  // restored.  The result is BGR uint8 of upscale times the frame's size.
  //
  // With `track` and detect_every > 1 (Detect mode), the detector runs on
  // one frame in detect_every and the frames between reuse its faces (a
  // live avatar's head stays nearly in place; the paste follows the last
  // detection's landmarks).  `track` belongs to one stream: a new stream,
  // a flush or other frame sizes start it anew (Track{}).
  //
  // With `track` and parse_every > 1 (and a parser), ParseNet runs on one
  // frame in parse_every and the frames between paste under its masks.  A
  // mask lies in the aligned face's coordinates (the face, ears and brows
  // against hair, neck, clothes and background, blurred twice by 101
  // taps), so it follows the head through the current landmarks; what it
  // misses is a change of that outline, which a talking head's mouth and
  // eyes do not make (their labels all map to the face).  The masks are
  // made anew when the number of faces changes.
  enum class FrameMode { Degraded, Aligned, Detect };
  // The paste masks of the faces of a frame, in face coordinates (one per
  // face, in order): the CPU path's (CV_64F) or the device path's (float64
  // tensors where the parser runs).
  struct Masks {
    std::vector<cv::Mat> cpu;
    std::vector<at::Tensor> device;
    int age = -1;  // frames since they were made; -1: none yet
    size_t count() const { return cpu.empty() ? device.size() : cpu.size(); }
  };
  struct Track {
    std::vector<Landmarks> faces;  // the last detection's
    int age = -1;                  // frames since it; -1: none yet
    cv::Size size;                 // the frame size it was made on
    Masks masks;                   // parse_every's
  };
  cv::Mat frame(const cv::Mat& bgr, FrameMode mode, size_t* faces = nullptr, Track* track = nullptr,
                int detect_every = 1, int parse_every = 1) const;

  // GFPGAN's calls through `executor` (shared_faces on this restorer's
  // model; null: called directly).  Set before the restorer is used.
  void set_executor(std::shared_ptr<FaceBatcher> executor) { executor_ = std::move(executor); }
  // ParseNet's calls through `executor` (shared_parses on this restorer's
  // parser; null: called directly).  Set before the restorer is used.
  void set_parse_executor(std::shared_ptr<ParseBatcher> executor) { parse_executor_ = std::move(executor); }
  // RetinaFace's calls through `executor` (shared_detections on this
  // restorer's detector; null: called directly).
  void set_detect_executor(std::shared_ptr<DetectBatcher> executor) { detect_executor_ = std::move(executor); }

 private:
  std::shared_ptr<const gfpgan::Model> model_;
  std::shared_ptr<const retinaface::Model> detector_;
  std::shared_ptr<const parsenet::Model> parser_;
  Options options_;
  std::shared_ptr<FaceBatcher> executor_;
  std::shared_ptr<ParseBatcher> parse_executor_;
  std::shared_ptr<DetectBatcher> detect_executor_;
  // ParseNet's (1,S,S) label map of one face (its parsenet_input), through
  // parse_executor_ if set.
  at::Tensor label_map(const at::Tensor& input) const;
  // GFPGAN's raw output for one aligned face (its gfpgan_input), through
  // executor_ if set.
  at::Tensor restore_raw(const at::Tensor& input) const;
  // Where the parser runs the device-independent path (parsenet::Model::
  // generic: a GPU, or ANITALKER_GENERIC=1 when it was made) and the faces
  // are 512, the whole paste runs on the parser's device: the background's
  // Lanczos, the crops, the networks' inputs and outputs, the parse mask,
  // the warps back and the blend, the frame copied there once and the
  // result back once (paste_on_device); the bytes are the CPU path's.
  bool on_device_ = false;
  // enhance(bgr, faces, first_raw) that keeps the masks it makes in
  // `masks` (if set) or, with `reuse`, pastes under the masks there.
  cv::Mat paste(const cv::Mat& bgr, const std::vector<Landmarks>& faces, at::Tensor* first_raw, Masks* masks,
                bool reuse) const;
  cv::Mat paste_on_device(const cv::Mat& bgr, const std::vector<Landmarks>& faces, at::Tensor* first_raw,
                          Masks* masks, bool reuse) const;
};

}  // namespace anitalker::face
