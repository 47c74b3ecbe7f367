// CUDA kernels of the upfirdn2d extension (blendgan_upfirdn2d).
//
// Notation (one axis; the other is identical).  The upsampled signal has a sample of
// x at every multiple of `up`:  u[s * up] = x[s].  Output o reads the taps
//     Y = o * down - p0 + i,   i = 0 .. k-1,
// and out[o] = sum over taps with Y a multiple of up and 0 <= Y/up < H of
//     x[Y / up] * f[k - 1 - i]                      (true convolution: flipped filter).
// Only taps that land on a real sample are visited, so the inserted zeros cost nothing.
//
// Two kernels:
//   * tiled kernel (templated on UP, DOWN, K and the output tile TH x TW) for the
//     generator's cases (4x4 filters; up=2/down=1, up=1/down=1, up=1/down=2 and equal
//     factors on both axes).  A block owns a TH x TW output tile and loops over planes
//     (N*C); per plane it stages the input rectangle the tile reads, plus the flipped
//     filter, in shared memory (zero outside the image, so there is no bounds check in
//     the tap loop), then each thread computes outputs from shared memory with the tap
//     loops fully unrolled.
//   * generic kernel for every other up/down/pad/filter size: one thread per output,
//     taps read through the cache.
// Accumulation is in at::acc_type (float, or double for double inputs).
#include <ATen/ATen.h>
#include <ATen/AccumulateType.h>
#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>

#include <algorithm>
#include <cstdint>

namespace {

constexpr int kGenericThreads = 256;

struct Params {
  int in_h, in_w, out_h, out_w;
  int upx, upy, downx, downy;
  int px0, py0;
  int kh, kw;
  int64_t planes;  // N * C
};

__host__ __device__ __forceinline__ int ceil_div_signed(int a, int b) {  // b > 0
  return a >= 0 ? (a + b - 1) / b : -((-a) / b);
}

__device__ __forceinline__ int pos_mod(int a, int b) {  // b > 0, result in [0, b)
  const int r = a % b;
  return r < 0 ? r + b : r;
}

// ---- generic kernel ---------------------------------------------------------------------

template <typename scalar_t>
__global__ void __launch_bounds__(kGenericThreads)
upfirdn2d_generic_kernel(const scalar_t* __restrict__ x, const at::acc_type<scalar_t, true>* __restrict__ f,
                         scalar_t* __restrict__ y, Params p) {
  using acc_t = at::acc_type<scalar_t, true>;
  const int64_t total = p.planes * p.out_h * p.out_w;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total; idx += stride) {
    const int ox = static_cast<int>(idx % p.out_w);
    const int64_t t = idx / p.out_w;
    const int oy = static_cast<int>(t % p.out_h);
    const int64_t plane = t / p.out_h;
    const scalar_t* xp = x + plane * p.in_h * p.in_w;
    // Upsampled coordinate of tap 0, and the first tap that lands on a sample.
    const int uy = oy * p.downy - p.py0;
    const int ux = ox * p.downx - p.px0;
    const int iy0 = pos_mod(-uy, p.upy);
    const int ix0 = pos_mod(-ux, p.upx);
    acc_t acc = acc_t(0);
    for (int i = iy0; i < p.kh; i += p.upy) {
      const int sy = (uy + i) / p.upy;  // exact division: uy + i is a multiple of upy
      if (sy < 0 || sy >= p.in_h) continue;
      const scalar_t* xrow = xp + static_cast<int64_t>(sy) * p.in_w;
      const acc_t* frow = f + static_cast<int64_t>(p.kh - 1 - i) * p.kw + (p.kw - 1);
      for (int j = ix0; j < p.kw; j += p.upx) {
        const int sx = (ux + j) / p.upx;
        if (sx < 0 || sx >= p.in_w) continue;
        acc += static_cast<acc_t>(xrow[sx]) * frow[-j];
      }
    }
    y[idx] = static_cast<scalar_t>(acc);
  }
}

// ---- tiled kernel -----------------------------------------------------------------------

template <typename scalar_t, int UP, int DOWN, int K, int TH, int TW, int THREADS>
__global__ void __launch_bounds__(THREADS)
upfirdn2d_tiled_kernel(const scalar_t* __restrict__ x, const at::acc_type<scalar_t, true>* __restrict__ f,
                       scalar_t* __restrict__ y, Params p) {
  using acc_t = at::acc_type<scalar_t, true>;
  // Input rows (cols) read by TH (TW) consecutive outputs: the multiples of UP in an
  // interval of (TH-1)*DOWN + K upsampled positions.
  constexpr int TIN_H = ((TH - 1) * DOWN + K + UP - 1) / UP;
  constexpr int TIN_W = ((TW - 1) * DOWN + K + UP - 1) / UP;
  constexpr int KT = (K + UP - 1) / UP;  // taps per axis that can land on a sample
  __shared__ acc_t s_f[K][K];            // flipped filter: s_f[i][j] = f[K-1-i][K-1-j]
  __shared__ acc_t s_x[TIN_H][TIN_W];

  const int tid = threadIdx.x;
  for (int i = tid; i < K * K; i += THREADS) {
    const int fy = i / K, fx = i % K;
    s_f[fy][fx] = f[(K - 1 - fy) * K + (K - 1 - fx)];
  }

  const int oy0 = blockIdx.y * TH, ox0 = blockIdx.x * TW;
  // Upsampled coordinate of tap 0 of the tile's first output, first input row/col read,
  // and the offset between the two, shifted by UP into [1, UP] so it stays positive.
  const int uy0 = oy0 * DOWN - p.py0, ux0 = ox0 * DOWN - p.px0;
  const int sy0 = ceil_div_signed(uy0, UP), sx0 = ceil_div_signed(ux0, UP);
  const int offy = uy0 - sy0 * UP + UP, offx = ux0 - sx0 * UP + UP;

  for (int64_t plane = blockIdx.z; plane < p.planes; plane += gridDim.z) {
    const scalar_t* xp = x + plane * p.in_h * p.in_w;
    scalar_t* yp = y + plane * p.out_h * p.out_w;

    __syncthreads();  // the previous plane's reads of s_x are finished
    for (int i = tid; i < TIN_H * TIN_W; i += THREADS) {
      const int r = i / TIN_W, c = i % TIN_W;
      const int sy = sy0 + r, sx = sx0 + c;
      acc_t v = acc_t(0);
      if (sy >= 0 && sy < p.in_h && sx >= 0 && sx < p.in_w)
        v = static_cast<acc_t>(xp[static_cast<int64_t>(sy) * p.in_w + sx]);
      s_x[r][c] = v;
    }
    __syncthreads();

    for (int i = tid; i < TH * TW; i += THREADS) {
      const int ty = i / TW, tx = i % TW;
      const int oy = oy0 + ty, ox = ox0 + tx;
      if (oy >= p.out_h || ox >= p.out_w) continue;
      // Tap t of this output sits at local upsampled position a + t - UP (relative to
      // input row/col sy0/sx0); it is a sample when a + t is a multiple of UP.
      const int ay = ty * DOWN + offy, ax = tx * DOWN + offx;
      const int iy0 = (UP - ay % UP) % UP, ix0 = (UP - ax % UP) % UP;
      const int ry0 = (ay + iy0) / UP - 1, rx0 = (ax + ix0) / UP - 1;
      acc_t acc = acc_t(0);
#pragma unroll
      for (int ky = 0; ky < KT; ++ky) {
        const int ti = iy0 + ky * UP;
        if (UP == 1 || ti < K) {
#pragma unroll
          for (int kx = 0; kx < KT; ++kx) {
            const int tj = ix0 + kx * UP;
            if (UP == 1 || tj < K) acc += s_x[ry0 + ky][rx0 + kx] * s_f[ti][tj];
          }
        }
      }
      yp[static_cast<int64_t>(oy) * p.out_w + ox] = static_cast<scalar_t>(acc);
    }
  }
}

int sm_count() { return at::cuda::getCurrentDeviceProperties()->multiProcessorCount; }

template <typename scalar_t, int UP, int DOWN, int K, int TH, int TW, int THREADS>
bool launch_tile(const scalar_t* x, const at::acc_type<scalar_t, true>* f, scalar_t* y, const Params& p,
                 cudaStream_t stream) {
  const int64_t tiles_x = (p.out_w + TW - 1) / TW;
  const int64_t tiles_y = (p.out_h + TH - 1) / TH;
  if (tiles_y > 65535 || tiles_x > 65535) return false;
  const int64_t grid_z = std::min<int64_t>(p.planes, 65535);
  dim3 grid(static_cast<unsigned>(tiles_x), static_cast<unsigned>(tiles_y), static_cast<unsigned>(grid_z));
  upfirdn2d_tiled_kernel<scalar_t, UP, DOWN, K, TH, TW, THREADS><<<grid, THREADS, 0, stream>>>(x, f, y, p);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return true;
}

// Tile size by output extent: small images get small tiles so threads are not idle.
template <typename scalar_t, int UP, int DOWN, int K>
bool launch_tiled(const scalar_t* x, const at::acc_type<scalar_t, true>* f, scalar_t* y, const Params& p,
                  cudaStream_t stream) {
  const int extent = std::max(p.out_h, p.out_w);
  if (extent <= 8) return launch_tile<scalar_t, UP, DOWN, K, 8, 8, 64>(x, f, y, p, stream);
  if (extent <= 16) return launch_tile<scalar_t, UP, DOWN, K, 16, 16, 256>(x, f, y, p, stream);
  return launch_tile<scalar_t, UP, DOWN, K, 32, 32, 256>(x, f, y, p, stream);
}

template <typename scalar_t>
void launch_generic(const scalar_t* x, const at::acc_type<scalar_t, true>* f, scalar_t* y, const Params& p,
                    cudaStream_t stream) {
  const int64_t total = p.planes * p.out_h * p.out_w;
  const int64_t blocks = std::max<int64_t>(
      1, std::min<int64_t>((total + kGenericThreads - 1) / kGenericThreads,
                           static_cast<int64_t>(sm_count()) * (2048 / kGenericThreads) * 4));
  upfirdn2d_generic_kernel<scalar_t><<<static_cast<unsigned>(blocks), kGenericThreads, 0, stream>>>(x, f, y, p);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace

// x: [N, C, H, W] contiguous; f: [kh, kw] contiguous in the accumulation dtype;
// y: [N, C, oh, ow] contiguous, preallocated.
void upfirdn2d_cuda(const at::Tensor& x, const at::Tensor& f, at::Tensor& y, int64_t upx, int64_t upy,
                    int64_t downx, int64_t downy, int64_t px0, int64_t py0) {
  const c10::cuda::CUDAGuard guard(x.device());
  Params p;
  p.in_h = static_cast<int>(x.size(2));
  p.in_w = static_cast<int>(x.size(3));
  p.out_h = static_cast<int>(y.size(2));
  p.out_w = static_cast<int>(y.size(3));
  p.upx = static_cast<int>(upx);
  p.upy = static_cast<int>(upy);
  p.downx = static_cast<int>(downx);
  p.downy = static_cast<int>(downy);
  p.px0 = static_cast<int>(px0);
  p.py0 = static_cast<int>(py0);
  p.kh = static_cast<int>(f.size(0));
  p.kw = static_cast<int>(f.size(1));
  p.planes = x.size(0) * x.size(1);
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();

  AT_DISPATCH_FLOATING_TYPES_AND2(at::ScalarType::Half, at::ScalarType::BFloat16, x.scalar_type(),
                                  "blendgan_upfirdn2d", [&] {
    using acc_t = at::acc_type<scalar_t, true>;
    const scalar_t* xp = x.data_ptr<scalar_t>();
    const acc_t* fp = f.data_ptr<acc_t>();
    scalar_t* yp = y.data_ptr<scalar_t>();
    bool done = false;
    if (p.upx == p.upy && p.downx == p.downy && p.kh == 4 && p.kw == 4) {
      if (p.upx == 1 && p.downx == 1) done = launch_tiled<scalar_t, 1, 1, 4>(xp, fp, yp, p, stream);
      else if (p.upx == 2 && p.downx == 1) done = launch_tiled<scalar_t, 2, 1, 4>(xp, fp, yp, p, stream);
      else if (p.upx == 1 && p.downx == 2) done = launch_tiled<scalar_t, 1, 2, 4>(xp, fp, yp, p, stream);
    }
    if (!done) launch_generic<scalar_t>(xp, fp, yp, p, stream);
  });
}
