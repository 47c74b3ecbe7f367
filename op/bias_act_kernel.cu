// CUDA kernels of the fused bias + activation extension (blendgan_bias_act).
//
// Every tensor is contiguous and viewed as [outer, C, inner]; element i has channel
// (i / inner) % C.  Two launch shapes share one element-wise functor:
//   * rows kernel  (inner >= kRowsMinInner): grid.y walks the outer*C rows, so the
//     channel is computed once per row, grid.x strides over the row;
//   * flat kernel  (small inner, e.g. [N, C] activations of linear layers): a grid-stride
//     loop over all elements with 32-bit indices when the tensor allows it.
// Arithmetic is done in at::acc_type (float for half/bfloat16/float, double for double)
// and rounded once on store.
#include <ATen/ATen.h>
#include <ATen/AccumulateType.h>
#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <optional>

namespace {

constexpr int kThreads = 256;
constexpr int64_t kRowsMinInner = 256;

enum Act : int { kLinear = 0, kRelu = 1, kLrelu = 2 };
enum Mode : int { kModeNone = 0, kModeOutput = 1, kModePreact = 2 };

template <int ACT, typename T>
__device__ __forceinline__ T activate(T z, T alpha) {
  if (ACT == kRelu) return z <= T(0) ? T(0) : z;      // written so that NaN propagates
  if (ACT == kLrelu) return z > T(0) ? z : z * alpha;
  return z;
}

// d/dz [act(z) * gain] * g, with `positive` = (z > 0).
template <int ACT, typename T>
__device__ __forceinline__ T scale_grad(T g, bool positive, T alpha, T gain) {
  if (ACT == kLinear || positive) return g * gain;
  if (ACT == kRelu) return T(0);
  return g * gain * alpha;
}

// ---- element functors: value of output element i (channel c) ---------------------------

template <typename scalar_t, int ACT, bool HAS_BIAS>
struct ForwardOp {
  using acc_t = at::acc_type<scalar_t, true>;
  static constexpr bool kNeedsChannel = HAS_BIAS;
  const scalar_t* __restrict__ x;
  const scalar_t* __restrict__ b;
  acc_t alpha, gain;
  __device__ __forceinline__ scalar_t operator()(int64_t i, int64_t c) const {
    acc_t z = static_cast<acc_t>(x[i]);
    if (HAS_BIAS) z += static_cast<acc_t>(b[c]);
    return static_cast<scalar_t>(activate<ACT>(z, alpha) * gain);
  }
};

template <typename scalar_t, int ACT, int MODE, bool HAS_BIAS>
struct BackwardOp {
  using acc_t = at::acc_type<scalar_t, true>;
  static constexpr bool kNeedsChannel = (MODE == kModePreact) && HAS_BIAS;
  const scalar_t* __restrict__ grad;
  const scalar_t* __restrict__ ref;       // y (MODE_OUTPUT) or x (MODE_PREACT)
  const scalar_t* __restrict__ ref_bias;  // b (MODE_PREACT with bias)
  acc_t alpha, gain;
  __device__ __forceinline__ scalar_t operator()(int64_t i, int64_t c) const {
    const acc_t g = static_cast<acc_t>(grad[i]);
    bool positive = true;
    if (MODE != kModeNone) {
      acc_t r = static_cast<acc_t>(ref[i]);
      if (MODE == kModePreact && HAS_BIAS) r += static_cast<acc_t>(ref_bias[c]);
      positive = r > acc_t(0);
    }
    return static_cast<scalar_t>(scale_grad<ACT>(g, positive, alpha, gain));
  }
};

// ---- launch shapes ------------------------------------------------------------------------

template <typename scalar_t, typename Op>
__global__ void __launch_bounds__(kThreads)
rows_kernel(Op op, scalar_t* __restrict__ out, int64_t rows, int64_t inner, int64_t channels) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t row = blockIdx.y; row < rows; row += gridDim.y) {
    const int64_t c = Op::kNeedsChannel ? row % channels : 0;
    const int64_t base = row * inner;
    for (int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; j < inner; j += stride)
      out[base + j] = op(base + j, c);
  }
}

template <typename scalar_t, typename index_t, typename Op>
__global__ void __launch_bounds__(kThreads)
flat_kernel(Op op, scalar_t* __restrict__ out, index_t n, index_t inner, index_t channels) {
  const index_t stride = static_cast<index_t>(gridDim.x) * blockDim.x;
  for (index_t i = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const index_t c = Op::kNeedsChannel ? (i / inner) % channels : 0;
    out[i] = op(i, c);
  }
}

int max_resident_blocks() {
  const int sms = at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
  return sms * (2048 / kThreads) * 4;   // a few waves; grid-stride loops cover the rest
}

template <typename scalar_t, typename Op>
void launch(const Op& op, at::Tensor& out, int64_t channels, int64_t inner) {
  const int64_t n = out.numel();
  const int64_t rows = n / inner;
  scalar_t* out_ptr = out.data_ptr<scalar_t>();
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  const int64_t cap = max_resident_blocks();
  if (inner >= kRowsMinInner) {
    const int64_t bx = std::min<int64_t>((inner + kThreads - 1) / kThreads, 1024);
    const int64_t by = std::min<int64_t>(rows, std::max<int64_t>(1, std::min<int64_t>(65535, cap / bx + 1)));
    dim3 grid(static_cast<unsigned>(bx), static_cast<unsigned>(by));
    rows_kernel<scalar_t, Op><<<grid, kThreads, 0, stream>>>(op, out_ptr, rows, inner, channels);
  } else {
    const int64_t blocks = std::max<int64_t>(1, std::min<int64_t>((n + kThreads - 1) / kThreads, cap));
    // 32-bit indices when i + grid stride cannot overflow.
    if (n + blocks * kThreads < static_cast<int64_t>(std::numeric_limits<int32_t>::max())) {
      flat_kernel<scalar_t, int32_t, Op><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(
          op, out_ptr, static_cast<int32_t>(n), static_cast<int32_t>(inner), static_cast<int32_t>(channels));
    } else {
      flat_kernel<scalar_t, int64_t, Op><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(
          op, out_ptr, n, inner, channels);
    }
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename scalar_t, int ACT>
void forward_act(const at::Tensor& x, const std::optional<at::Tensor>& b, at::Tensor& y,
                 double alpha, double gain, int64_t channels, int64_t inner) {
  using acc_t = at::acc_type<scalar_t, true>;
  if (b.has_value()) {
    ForwardOp<scalar_t, ACT, true> op{x.data_ptr<scalar_t>(), b->data_ptr<scalar_t>(),
                                      static_cast<acc_t>(alpha), static_cast<acc_t>(gain)};
    launch<scalar_t>(op, y, channels, inner);
  } else {
    ForwardOp<scalar_t, ACT, false> op{x.data_ptr<scalar_t>(), nullptr,
                                       static_cast<acc_t>(alpha), static_cast<acc_t>(gain)};
    launch<scalar_t>(op, y, channels, inner);
  }
}

template <typename scalar_t, int ACT, int MODE>
void backward_mode(const at::Tensor& grad, const std::optional<at::Tensor>& ref,
                   const std::optional<at::Tensor>& ref_bias, at::Tensor& out,
                   double alpha, double gain, int64_t channels, int64_t inner) {
  using acc_t = at::acc_type<scalar_t, true>;
  const scalar_t* ref_ptr = ref.has_value() ? ref->data_ptr<scalar_t>() : nullptr;
  if constexpr (MODE == kModePreact) {
    if (ref_bias.has_value()) {
      BackwardOp<scalar_t, ACT, MODE, true> op{grad.data_ptr<scalar_t>(), ref_ptr, ref_bias->data_ptr<scalar_t>(),
                                               static_cast<acc_t>(alpha), static_cast<acc_t>(gain)};
      launch<scalar_t>(op, out, channels, inner);
      return;
    }
  }
  {
    BackwardOp<scalar_t, ACT, MODE, false> op{grad.data_ptr<scalar_t>(), ref_ptr, nullptr,
                                              static_cast<acc_t>(alpha), static_cast<acc_t>(gain)};
    launch<scalar_t>(op, out, channels, inner);
  }
}

template <typename scalar_t, int ACT>
void backward_act(const at::Tensor& grad, const std::optional<at::Tensor>& ref,
                  const std::optional<at::Tensor>& ref_bias, at::Tensor& out, int64_t mode,
                  double alpha, double gain, int64_t channels, int64_t inner) {
  if constexpr (ACT == kLinear) {
    backward_mode<scalar_t, ACT, kModeNone>(grad, ref, ref_bias, out, alpha, gain, channels, inner);
  } else {
    if (mode == kModeNone)
      backward_mode<scalar_t, ACT, kModeNone>(grad, ref, ref_bias, out, alpha, gain, channels, inner);
    else if (mode == kModeOutput)
      backward_mode<scalar_t, ACT, kModeOutput>(grad, ref, ref_bias, out, alpha, gain, channels, inner);
    else
      backward_mode<scalar_t, ACT, kModePreact>(grad, ref, ref_bias, out, alpha, gain, channels, inner);
  }
}

}  // namespace

void bias_act_forward_cuda(const at::Tensor& x, const std::optional<at::Tensor>& b, at::Tensor& y,
                           int64_t act, double alpha, double gain, int64_t channels, int64_t inner) {
  const c10::cuda::CUDAGuard guard(x.device());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::ScalarType::Half, at::ScalarType::BFloat16, x.scalar_type(),
                                  "blendgan_bias_act_forward", [&] {
    switch (act) {
      case kRelu: forward_act<scalar_t, kRelu>(x, b, y, alpha, gain, channels, inner); break;
      case kLrelu: forward_act<scalar_t, kLrelu>(x, b, y, alpha, gain, channels, inner); break;
      default: forward_act<scalar_t, kLinear>(x, b, y, alpha, gain, channels, inner); break;
    }
  });
}

void bias_act_backward_cuda(const at::Tensor& grad, const std::optional<at::Tensor>& ref,
                            const std::optional<at::Tensor>& ref_bias, at::Tensor& grad_in,
                            int64_t act, double alpha, double gain, int64_t mode,
                            int64_t channels, int64_t inner) {
  const c10::cuda::CUDAGuard guard(grad.device());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::ScalarType::Half, at::ScalarType::BFloat16, grad.scalar_type(),
                                  "blendgan_bias_act_backward", [&] {
    switch (act) {
      case kRelu:
        backward_act<scalar_t, kRelu>(grad, ref, ref_bias, grad_in, mode, alpha, gain, channels, inner);
        break;
      case kLrelu:
        backward_act<scalar_t, kLrelu>(grad, ref, ref_bias, grad_in, mode, alpha, gain, channels, inner);
        break;
      default:
        backward_act<scalar_t, kLinear>(grad, ref, ref_bias, grad_in, mode, alpha, gain, channels, inner);
        break;
    }
  });
}
