// Face restoration around GFPGAN, as AniTalker's --face_sr runs it:
// facexlib's FaceRestoreHelper driven by GFPGANer.enhance (spec/face-sr.md
// 1).  Images are OpenCV BGR uint8 throughout, as in the reference; the
// networks get RGB in [-1,1].  The steps are separate functions so that each
// can be checked against the reference, and FaceRestorer strings them
// together.
#pragma once

#include <ATen/core/Tensor.h>

#include <array>
#include <memory>
#include <opencv2/core.hpp>
#include <vector>

#include "gfpgan.h"

namespace anitalker {
namespace parsenet {
class Model;
}
namespace retinaface {
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

}  // namespace anitalker::face
