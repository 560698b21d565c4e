// The paste-back's image operations on tensors, where the networks run (a
// GPU's way): OpenCV's warpAffine and Lanczos resize reproduced bit for bit
// with integer tensor arithmetic, and the networks' input and output
// conversions.  The CPU keeps OpenCV (face_restore.cpp); on a GPU these
// leave the CPU one copy of the frame in and one of the result out.
//
// Everything a position or a weight depends on is computed here in double
// exactly as OpenCV 4 computes it (imgwarp.cpp WarpAffineInvoker and
// initInterTab2D, resize.cpp interpolateLanczos4 and resizeGeneric_), then
// applied to the pixels on the device.
#include <ATen/ATen.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <vector>

#include "device.h"
#include "error.h"
#include "face_restore.h"

namespace anitalker::face {

namespace {

constexpr int kInterBits = 5, kInterTab = 1 << kInterBits;  // 1/32 of a pixel
constexpr int kAbBits = 10, kAbScale = 1 << kAbBits;         // warpAffine's positions
constexpr int kRemapBits = 15;                               // bilinear weights, uint8
constexpr int kResizeBits = 11, kResizeScale = 1 << kResizeBits;

// cvRound(double): to nearest, ties to even.
int round_int(double v) { return static_cast<int>(std::nearbyint(v)); }

// OpenCV's bilinear weight table, (32*32, 4): row (fy*32 + fx) holds the
// weights of the corners (y,x), (y,x+1), (y+1,x), (y+1,x+1).  In fixed
// point (uint8 images) each is round(v * 2^15) saturated to a short, where
// v = (1 - fy/32 or fy/32) * (1 - fx/32 or fx/32) is exact in float; only
// (0,0) saturates (32768 -> 32767), and initInterTab2D's correction, whose
// search for the largest weight reads past the 2x2 entry into the next
// (still zero) one, adds the missing unit to the last corner: {32767, 0, 0,
// 1}.  In floating point (other images) the weights are v itself.
at::Tensor bilinear_table(bool fixed_point) {
  at::Tensor t = at::empty({kInterTab * kInterTab, 4}, fixed_point ? at::kInt : at::kDouble);
  for (int i = 0; i < kInterTab; ++i)
    for (int j = 0; j < kInterTab; ++j) {
      const float y1 = i * (1.0f / kInterTab), x1 = j * (1.0f / kInterTab);
      const float vy[2] = {1.0f - y1, y1}, vx[2] = {1.0f - x1, x1};
      const int row = i * kInterTab + j;
      int isum = 0;
      int w[4];
      for (int k1 = 0; k1 < 2; ++k1)
        for (int k2 = 0; k2 < 2; ++k2) {
          const float v = vy[k1] * vx[k2];
          if (fixed_point) {
            w[k1 * 2 + k2] = std::min(round_int(v * (1 << kRemapBits)), 32767);
            isum += w[k1 * 2 + k2];
          } else {
            t[row][k1 * 2 + k2] = static_cast<double>(v);
          }
        }
      if (!fixed_point) continue;
      if (isum != (1 << kRemapBits)) w[3] -= isum - (1 << kRemapBits);
      for (int k = 0; k < 4; ++k) t[row][k] = w[k];
    }
  return t;
}


// interpolateLanczos4 (resize.cpp): the 8 weights of taps -3..4 at `x`.
void lanczos4_weights(float x, float* coeffs) {
  constexpr double s45 = 0.70710678118654752440084436210485;
  constexpr double cs[8][2] = {{1, 0}, {-s45, -s45}, {0, 1}, {s45, -s45}, {-1, 0}, {s45, s45}, {0, -1}, {-s45, s45}};
  constexpr double kPi = 3.1415926535897932384626433832795;
  float sum = 0;
  const double y0 = -(x + 3) * kPi * 0.25, s0 = std::sin(y0), c0 = std::cos(y0);
  for (int i = 0; i < 8; ++i) {
    const float y0_ = x + 3 - i;
    if (std::fabs(y0_) >= 1e-6f) {
      const double y = -y0_ * kPi * 0.25;
      coeffs[i] = static_cast<float>((cs[i][0] * s0 + cs[i][1] * c0) / (y * y));
    } else {
      coeffs[i] = 1e30f;
    }
    sum += coeffs[i];
  }
  sum = 1.f / sum;
  for (int i = 0; i < 8; ++i) coeffs[i] *= sum;
}

// One axis of the Lanczos resize, (dst, 16) int64: for each output index
// the 8 source indices (edges replicated), then their fixed-point weights.
at::Tensor lanczos_axis(int src, int dst) {
  const double scale = 1. / (static_cast<double>(dst) / src);  // hal::resize's 1/inv_scale
  at::Tensor t = at::empty({dst, 16}, at::kLong);
  int64_t* p = t.data_ptr<int64_t>();
  for (int d = 0; d < dst; ++d, p += 16) {
    float f = static_cast<float>((d + 0.5) * scale - 0.5);
    const int s = static_cast<int>(std::floor(f));
    f -= s;
    float c[8];
    lanczos4_weights(f, c);
    for (int k = 0; k < 8; ++k) {
      p[k] = std::clamp(s - 3 + k, 0, src - 1);
      p[8 + k] = std::clamp(round_int(c[k] * kResizeScale), -32768, 32767);  // saturate_cast<short>
    }
  }
  return t;
}

void check_image(const at::Tensor& image, const char* what) {
  if (image.dim() != 2 && image.dim() != 3)
    throw Error(Error::Kind::Usage, std::string(what) + ": expected an (H, W) or (H, W, C) image, got " +
                                        c10::str(image.sizes()));
  if (image.size(0) < 1 || image.size(1) < 1) throw Error(Error::Kind::Usage, std::string(what) + ": empty image");
}

at::Tensor check_bgr(const at::Tensor& bgr, const char* what) {
  if (bgr.dim() != 3 || bgr.size(2) != 3 || bgr.scalar_type() != at::kByte)
    throw Error(Error::Kind::Usage, std::string(what) + ": expected an (H, W, 3) BGR uint8 tensor, got " +
                                        c10::str(bgr.sizes()) + " " + c10::toString(bgr.scalar_type()));
  return bgr;
}

// (H, W, 3) BGR uint8 -> (1, 3, H, W) RGB bytes as `dtype`.
at::Tensor planes(const at::Tensor& bgr, at::ScalarType dtype) {
  return bgr.flip(2).permute({2, 0, 1}).unsqueeze(0).to(dtype).contiguous();
}

}  // namespace

at::Tensor image_tensor(const cv::Mat& image) {
  if (image.depth() != CV_8U && image.depth() != CV_64F)
    throw Error(Error::Kind::Usage, "image_tensor: expected a uint8 or float64 image");
  const int64_t c = image.channels();
  const at::Tensor v =
      at::from_blob(image.data, {image.rows, image.cols, c}, {static_cast<int64_t>(image.step1()), c, 1},
                    image.depth() == CV_8U ? at::kByte : at::kDouble);
  return c == 1 ? v.squeeze(2) : v;
}

at::Tensor warp_affine(const at::Tensor& image, const cv::Mat& affine, cv::Size out, const cv::Scalar& border) {
  check_image(image, "warp_affine");
  const bool bytes = image.scalar_type() == at::kByte;
  if (!bytes && image.scalar_type() != at::kDouble)
    throw Error(Error::Kind::Usage, "warp_affine: expected a uint8 or float64 image, got " +
                                        std::string(c10::toString(image.scalar_type())));
  if (affine.rows != 2 || affine.cols != 3 || affine.channels() != 1)
    throw Error(Error::Kind::Usage, "warp_affine: expected a 2x3 matrix");
  if (out.width < 1 || out.height < 1) throw Error(Error::Kind::Usage, "warp_affine: empty output size");
  const int64_t H = image.size(0), W = image.size(1), C = image.dim() == 3 ? image.size(2) : 1;
  if (C > 4) throw Error(Error::Kind::Usage, "warp_affine: at most 4 channels");
  const c10::Device device = image.device();

  // warpAffine maps each output pixel back through the inverse, which it
  // inverts itself (no WARP_INVERSE_MAP) in double.
  cv::Mat m64;
  affine.convertTo(m64, CV_64F);
  double M[6];
  for (int i = 0; i < 6; ++i) M[i] = m64.at<double>(i / 3, i % 3);
  {
    double D = M[0] * M[4] - M[1] * M[3];
    D = D != 0 ? 1. / D : 0;
    const double A11 = M[4] * D, A22 = M[0] * D;
    M[0] = A11;
    M[1] *= -D;
    M[3] *= -D;
    M[4] = A22;
    const double b1 = -M[0] * M[2] - M[1] * M[5];
    const double b2 = -M[3] * M[2] - M[4] * M[5];
    M[2] = b1;
    M[5] = b2;
  }
  // Positions in 1/1024 of a pixel: a per-column step M0*x*1024 and a
  // per-row start (M1*y + M2)*1024 (each rounded to nearest, ties to even,
  // half a 1/32 step added to the start), summed, then cut to 1/32.  Made
  // where the image lies in float64, one rounded operation at a time as
  // OpenCV's scalar code: the same values on any device, and no copy.
  const int round_delta = kAbScale / kInterTab / 2;
  const auto f64 = at::TensorOptions().dtype(at::kDouble).device(device);
  const at::Tensor xs = at::arange(out.width, f64), ys = at::arange(out.height, f64);
  auto fixed = [](const at::Tensor& v) { return v.mul(kAbScale).round().to(at::kInt); };
  const at::Tensor adelta = fixed(xs.mul(M[0])), bdelta = fixed(xs.mul(M[3]));
  const at::Tensor x0 = fixed(ys.mul(M[1]).add(M[2])).add(round_delta);
  const at::Tensor y0 = fixed(ys.mul(M[4]).add(M[5])).add(round_delta);
  const at::Tensor X = (x0.view({-1, 1}) + adelta.view({1, -1})).__rshift__(kAbBits - kInterBits);
  const at::Tensor Y = (y0.view({-1, 1}) + bdelta.view({1, -1})).__rshift__(kAbBits - kInterBits);
  // Whole pixels (saturated to a short, as remap's map) and the 1/32 phase.
  const at::Tensor sx = X.__rshift__(kInterBits).clamp(-32768, 32767).to(at::kLong).flatten();
  const at::Tensor sy = Y.__rshift__(kInterBits).clamp(-32768, 32767).to(at::kLong).flatten();
  const at::Tensor phase = ((Y.bitwise_and(kInterTab - 1) * kInterTab) + X.bitwise_and(kInterTab - 1)).to(at::kLong).flatten();

  // The image inside a one-pixel frame of the border value: every corner
  // outside the image reads the border, as remap's BORDER_CONSTANT.
  at::Tensor padded = at::empty({H + 2, W + 2, C}, image.options());
  for (int64_t c = 0; c < C; ++c) {
    const double v = bytes ? std::clamp(round_int(border[static_cast<int>(c)]), 0, 255) : border[static_cast<int>(c)];
    padded.select(2, c).fill_(v);
  }
  padded.slice(0, 1, H + 1).slice(1, 1, W + 1).copy_(image.reshape({H, W, C}));
  const at::Tensor flat = padded.view({-1, C});
  const at::Tensor ix0 = (sx + 1).clamp(0, W + 1), ix1 = (sx + 2).clamp(0, W + 1);
  const at::Tensor iy0 = (sy + 1).clamp(0, H + 1), iy1 = (sy + 2).clamp(0, H + 1);
  auto corner = [&](const at::Tensor& iy, const at::Tensor& ix) {
    return flat.index_select(0, iy * (W + 2) + ix).to(bytes ? at::kInt : at::kDouble);
  };
  const at::Tensor& table = device_constant(bytes ? "face::warp_affine bilinear fixed" : "face::warp_affine bilinear",
                                            device, [bytes] { return bilinear_table(bytes); });
  const at::Tensor w = table.index_select(0, phase);
  auto weight = [&](int k) { return w.select(1, k).unsqueeze(1); };
  at::Tensor v = corner(iy0, ix0) * weight(0) + corner(iy0, ix1) * weight(1) + corner(iy1, ix0) * weight(2) +
                 corner(iy1, ix1) * weight(3);
  if (bytes) v = (v + (1 << (kRemapBits - 1))).__rshift__(kRemapBits).clamp(0, 255).to(at::kByte);
  // Wholly outside: the border value itself.
  const at::Tensor outside = ((sx >= W) | (sx + 1 < 0) | (sy >= H) | (sy + 1 < 0)).unsqueeze(1);
  v = at::where(outside, flat.select(0, 0).unsqueeze(0), v);
  return image.dim() == 3 ? v.view({out.height, out.width, C}) : v.view({out.height, out.width});
}

at::Tensor resize_lanczos4(const at::Tensor& image, cv::Size out) {
  check_image(image, "resize_lanczos4");
  if (image.scalar_type() != at::kByte) throw Error(Error::Kind::Usage, "resize_lanczos4: expected a uint8 image");
  if (out.width < 1 || out.height < 1) throw Error(Error::Kind::Usage, "resize_lanczos4: empty output size");
  const int64_t H = image.size(0), W = image.size(1);
  if (out.width == W && out.height == H) return image.clone();  // cv::resize copies
  const c10::Device device = image.device();
  auto axis = [&](int64_t src, int dst) -> const at::Tensor& {
    return device_constant("face::resize_lanczos4 " + std::to_string(src) + "->" + std::to_string(dst), device,
                           [&] { return lanczos_axis(static_cast<int>(src), dst); });
  };
  const at::Tensor& xt = axis(W, out.width);
  const at::Tensor& yt = axis(H, out.height);
  const at::Tensor xidx = xt.slice(1, 0, 8), xwt = xt.slice(1, 8, 16).to(at::kInt);
  const at::Tensor yidx = yt.slice(1, 0, 8), ywt = yt.slice(1, 8, 16);
  const bool planar = image.dim() == 2;
  const at::Tensor src = (planar ? image.unsqueeze(2) : image).to(at::kInt);
  // Rows first, in int (HResizeLanczos4), then columns of those rows in
  // wider sums (VResizeLanczos4; OpenCV's int never overflows for bytes).
  at::Tensor rows = at::zeros({H, out.width, src.size(2)}, src.options());
  for (int k = 0; k < 8; ++k)
    rows += src.index_select(1, xidx.select(1, k)) * xwt.select(1, k).view({1, -1, 1});
  const at::Tensor rows64 = rows.to(at::kLong);
  at::Tensor acc = at::zeros({out.height, out.width, src.size(2)}, rows64.options());
  for (int k = 0; k < 8; ++k)
    acc += rows64.index_select(0, yidx.select(1, k)) * ywt.select(1, k).view({-1, 1, 1});
  constexpr int kShift = 2 * kResizeBits;
  at::Tensor r = (acc + (int64_t{1} << (kShift - 1))).__rshift__(kShift).clamp(0, 255).to(at::kByte);
  return planar ? r.squeeze(2) : r;
}

at::Tensor gfpgan_input(const at::Tensor& bgr) {
  // crop / 255. in double, rounded to float32, then (v - 0.5) / 0.5.
  const at::Tensor v = planes(check_bgr(bgr, "gfpgan_input"), at::kDouble).div(255.0).to(at::kFloat);
  return v.sub(0.5).div(0.5);
}

at::Tensor parsenet_input(const at::Tensor& bgr) {
  const at::Tensor v = planes(check_bgr(bgr, "parsenet_input"), at::kFloat).div(255.0f);
  return v.sub(0.5).div(0.5);
}

at::Tensor restored_bytes(const at::Tensor& raw) {
  if (raw.dim() != 4 || raw.size(0) != 1 || raw.size(1) != 3)
    throw Error(Error::Kind::Usage, "restored_bytes: expected a [1, 3, H, W] tensor, got " + c10::str(raw.sizes()));
  const at::Tensor v = raw.detach().to(at::kFloat).clamp(-1, 1).add(1).div(2).mul(255).round();
  return v[0].to(at::kByte).permute({1, 2, 0}).flip(2).contiguous();
}

}  // namespace anitalker::face
