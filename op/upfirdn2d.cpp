// Host-side entry point of the upfirdn2d extension (blendgan_upfirdn2d).
//
//   x : [N, C, H, W]  (CUDA, float64/float32/float16/bfloat16)
//   f : [kh, kw]      (same device, any floating dtype; converted to the accumulation type)
//   returns [N, C, oh, ow] with
//     oh = (H * upy + py0 + py1 - kh) / downy + 1,   ow = (W * upx + px0 + px1 - kw) / downx + 1
//
// Semantics (per channel): insert up-1 zeros after every sample, pad by (p0, p1) zeros
// (negative = crop), convolve with f (true convolution, i.e. correlate with the flipped
// filter), keep every down-th sample.
#include <torch/extension.h>

#include <cstdint>
#include <cstdlib>
#include <limits>

void upfirdn2d_cuda(const at::Tensor& x, const at::Tensor& f, at::Tensor& y, int64_t upx, int64_t upy,
                    int64_t downx, int64_t downy, int64_t px0, int64_t py0);

namespace {

int64_t floor_div(int64_t a, int64_t b) {  // b > 0
  return a >= 0 ? a / b : -((-a + b - 1) / b);
}

}  // namespace

at::Tensor upfirdn2d(const at::Tensor& x_in, const at::Tensor& f_in, int64_t upx, int64_t upy,
                     int64_t downx, int64_t downy, int64_t px0, int64_t px1, int64_t py0, int64_t py1) {
  TORCH_CHECK(x_in.is_cuda(), "upfirdn2d: x must be a CUDA tensor");
  TORCH_CHECK(x_in.dim() == 4, "upfirdn2d: x must have shape [N, C, H, W], got ", x_in.sizes());
  TORCH_CHECK(at::isFloatingType(x_in.scalar_type()), "upfirdn2d: x must be floating point");
  TORCH_CHECK(f_in.dim() == 2, "upfirdn2d: f must have shape [kh, kw], got ", f_in.sizes());
  TORCH_CHECK(f_in.device() == x_in.device(), "upfirdn2d: f must be on the device of x");
  TORCH_CHECK(at::isFloatingType(f_in.scalar_type()), "upfirdn2d: f must be floating point");
  TORCH_CHECK(upx >= 1 && upy >= 1 && downx >= 1 && downy >= 1, "upfirdn2d: up and down must be >= 1");
  const int64_t kh = f_in.size(0), kw = f_in.size(1);
  TORCH_CHECK(kh >= 1 && kw >= 1, "upfirdn2d: empty filter");
  const int64_t n = x_in.size(0), c = x_in.size(1), h = x_in.size(2), w = x_in.size(3);
  const int64_t oh = floor_div(h * upy + py0 + py1 - kh, downy) + 1;
  const int64_t ow = floor_div(w * upx + px0 + px1 - kw, downx) + 1;
  TORCH_CHECK(oh >= 1 && ow >= 1, "upfirdn2d: output would be empty (", oh, " x ", ow,
              "); input ", h, " x ", w, ", filter ", kh, " x ", kw);
  // The kernels use 32-bit spatial coordinates (plane offsets are 64-bit).
  const int64_t big = std::numeric_limits<int32_t>::max() / 4;
  TORCH_CHECK(h * upy + std::abs(py0) + std::abs(py1) + kh < big &&
              w * upx + std::abs(px0) + std::abs(px1) + kw < big && downx < big && downy < big,
              "upfirdn2d: spatial sizes too large for 32-bit coordinates");

  at::Tensor x = x_in.contiguous();
  const auto acc_dtype = x.scalar_type() == at::ScalarType::Double ? at::ScalarType::Double
                                                                    : at::ScalarType::Float;
  at::Tensor f = f_in.to(acc_dtype).contiguous();
  at::Tensor y = at::empty({n, c, oh, ow}, x.options());
  if (y.numel() == 0) return y;
  upfirdn2d_cuda(x, f, y, upx, upy, downx, downy, px0, py0);
  return y;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "blendgan upfirdn2d (CUDA)";
  m.def("upfirdn2d", &upfirdn2d, "upsample, pad, FIR filter, downsample",
        py::arg("x"), py::arg("f"), py::arg("upx"), py::arg("upy"), py::arg("downx"), py::arg("downy"),
        py::arg("px0"), py::arg("px1"), py::arg("py0"), py::arg("py1"));
}
