// Winograd F(4x4, 3x3) convolution for float32 CPU inference: the input and output
// transforms as vectorised loops over channels (NHWC), around ATen's batched GEMM.
//
// Same maths, banding and argument meanings as the PyTorch path `conv3x3_ref` in
// blendgan/ops/winograd.py (`conv3x3`'s docstring is the specification); this file replaces the
// memory passes of that path (stacking, 6x6 transform products, the strided epilogue) with
// one pass per stage over a band that stays in cache.
//
//   V[a*6+b, t, c]      = sum_ij BT[a][i] * (x[n, y0+i, x0+j, c] * s[n, c]) * BT[b][j]
//   M[k, t, :]          = V[k, t, :] @ Wt[k]                     (36 GEMMs, at::bmm_out)
//   out[n, Y, X, o]     = act( (sum_ab AT[p][a] M[a*6+b, t, ph*Co+o] AT[q][b]) * d[n, o]
//                              + (noise[n, Y, X] + bias[o]) )
// with tile t = (n, tile row, tile column), output pixel Y = (4*row + p)*up + py,
// X = (4*col + q)*up + px and phase ph = py*up + px.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>

namespace {

// One build serves every x86-64 CPU: GCC emits an AVX2 copy of the hot loops and picks it at
// load time where the CPU has it (function multi-versioning, Linux ifunc).
#if defined(__x86_64__) && defined(__linux__) && defined(__GNUC__)
#define BLENDGAN_HOT __attribute__((target_clones("avx2", "default")))
#else
#define BLENDGAN_HOT
#endif

constexpr int64_t kTile = 4;     // outputs per tile side
constexpr int64_t kWindow = 6;   // inputs per tile side
constexpr int64_t kBlock = 64;   // channels per inner block (the 6x6 window stays in L1)
constexpr float kSqrt2 = 1.41421356237309504880f;

// Band geometry shared by the two transforms.
struct Band {
  int64_t n, h, w, tw;     // batch, input height and width, tiles per row
  int64_t r0, rows;        // first tile row of the band, tile rows in it
  int64_t tiles() const { return n * rows * tw; }
};

// The 1-D transforms along one axis of a tile, for `nc` channels at once: `in[k]` points
// at the k-th sample of each channel vector, `out[k]` receives the k-th transformed one.
// Bᵀ (6 -> 6) for inputs, Aᵀ (6 -> 4) for outputs (matrices in blendgan/ops/winograd.py).
inline void bt6(const float* const in[6], float* const out[6], int64_t nc) {
  const float *d0 = in[0], *d1 = in[1], *d2 = in[2], *d3 = in[3], *d4 = in[4], *d5 = in[5];
  float *o0 = out[0], *o1 = out[1], *o2 = out[2], *o3 = out[3], *o4 = out[4], *o5 = out[5];
#pragma GCC ivdep
  for (int64_t c = 0; c < nc; ++c) {
    const float e0 = d0[c], e1 = d1[c], e2 = d2[c], e3 = d3[c], e4 = d4[c], e5 = d5[c];
    o0[c] = 4.f * e0 - 5.f * e2 + e4;
    o1[c] = -4.f * (e1 + e2) + (e3 + e4);
    o2[c] = 4.f * (e1 - e2) + (e4 - e3);
    o3[c] = 2.f * (e3 - e1) + (e4 - e2);
    o4[c] = 2.f * (e1 - e3) + (e4 - e2);
    o5[c] = 4.f * e1 - 5.f * e3 + e5;
  }
}

inline void at4(const float* const in[6], float* const out[4], int64_t nc) {
  const float *d0 = in[0], *d1 = in[1], *d2 = in[2], *d3 = in[3], *d4 = in[4], *d5 = in[5];
  float *o0 = out[0], *o1 = out[1], *o2 = out[2], *o3 = out[3];
#pragma GCC ivdep
  for (int64_t c = 0; c < nc; ++c) {
    const float e0 = d0[c], e1 = d1[c], e2 = d2[c], e3 = d3[c], e4 = d4[c], e5 = d5[c];
    const float p12 = e1 + e2, m12 = e1 - e2, p34 = e3 + e4, m34 = e3 - e4;
    o0[c] = e0 + p12 + p34;
    o1[c] = m12 + 2.f * m34;
    o2[c] = p12 + 4.f * p34;
    o3[c] = m12 + 8.f * m34 + e5;
  }
}

// V for tiles [t0, t1) of the band: the window around each tile (zero outside the image),
// modulated by s [N, C] (or not, when s is null), transformed by Bᵀ along rows, then columns;
// v holds the band's 36 component planes [tiles, C], `plane` floats apart.
BLENDGAN_HOT void input_tiles(const float* __restrict x, const float* __restrict s,
                              float* __restrict v, int64_t plane, Band b, int64_t c_in, int64_t t0, int64_t t1) {
  alignas(64) float zeros[kBlock] = {};
  alignas(64) float mod[kWindow][kWindow][kBlock];   // modulated window (when s is given)
  alignas(64) float u[kWindow][kWindow][kBlock];     // after the row transform: [a][j]
  for (int64_t t = t0; t < t1; ++t) {
    const int64_t n = t / (b.rows * b.tw), tr = (t / b.tw) % b.rows, tc = t % b.tw;
    const int64_t y0 = kTile * (b.r0 + tr) - 1, x0 = kTile * tc - 1;
    for (int64_t c0 = 0; c0 < c_in; c0 += kBlock) {
      const int64_t nc = std::min(kBlock, c_in - c0);
      const float* sc = s != nullptr ? s + n * c_in + c0 : nullptr;
      for (int64_t j = 0; j < kWindow; ++j) {
        const float* col[kWindow];
        float* dst[kWindow];
        const int64_t xc = x0 + j;
        for (int64_t i = 0; i < kWindow; ++i) {
          const int64_t y = y0 + i;
          dst[i] = u[i][j];
          if (y < 0 || y >= b.h || xc < 0 || xc >= b.w) {
            col[i] = zeros;
            continue;
          }
          const float* src = x + ((n * b.h + y) * b.w + xc) * c_in + c0;
          if (sc == nullptr) {
            col[i] = src;
            continue;
          }
          float* m = mod[i][j];
          for (int64_t c = 0; c < nc; ++c) m[c] = src[c] * sc[c];
          col[i] = m;
        }
        bt6(col, dst, nc);   // u[a][j] = sum_i BT[a][i] d[i][j]
      }
      for (int64_t a = 0; a < kWindow; ++a) {
        const float* row[kWindow] = {u[a][0], u[a][1], u[a][2], u[a][3], u[a][4], u[a][5]};
        float* dst[kWindow];
        for (int64_t k = 0; k < kWindow; ++k) dst[k] = v + (a * kWindow + k) * plane + t * c_in + c0;
        bt6(row, dst, nc);   // V[a*6+b] = sum_j u[a][j] BT[b][j]
      }
    }
  }
}

struct Epilogue {
  const float* d;       // [N, Co] output scales, or null
  const float* bias;    // [Co], or null
  const float* noise;   // [N or 1, Ho, Wo] per-pixel offsets, or null
  int64_t noise_batch_stride;
  bool lrelu;
};

// Output pixels of tiles [t0, t1): Aᵀ M A per phase (columns, then rows), then scale,
// offset and activation, written into out [N, Ho, Wo, Co] (NHWC); m holds the band's 36
// component planes [tiles, up^2*Co], `plane` floats apart.
BLENDGAN_HOT void output_tiles(const float* __restrict m, int64_t plane, float* __restrict out, Band b,
                               int64_t c_out, int64_t up, Epilogue e, int64_t t0, int64_t t1) {
  alignas(64) float m1[kWindow][kTile][kBlock];   // after the column transform: [a][q]
  alignas(64) float y[kTile][kTile][kBlock];      // the tile's outputs: [q][p]
  alignas(64) float ones[kBlock], zeros[kBlock] = {}, shift[kBlock];
  std::fill(ones, ones + kBlock, 1.f);
  const int64_t width = up * up * c_out, ho = up * b.h, wo = up * b.w;
  for (int64_t t = t0; t < t1; ++t) {
    const int64_t n = t / (b.rows * b.tw), tr = (t / b.tw) % b.rows, tc = t % b.tw;
    for (int64_t ph = 0; ph < up * up; ++ph) {
      const int64_t py = ph / up, px = ph % up;
      for (int64_t c0 = 0; c0 < c_out; c0 += kBlock) {
        const int64_t nc = std::min(kBlock, c_out - c0);
        const float* base = m + t * width + ph * c_out + c0;
        for (int64_t a = 0; a < kWindow; ++a) {
          const float* comp[kWindow];
          for (int64_t k = 0; k < kWindow; ++k) comp[k] = base + (a * kWindow + k) * plane;
          float* dst[kTile] = {m1[a][0], m1[a][1], m1[a][2], m1[a][3]};
          at4(comp, dst, nc);   // m1[a][q] = sum_b AT[q][b] M[a][b]
        }
        for (int64_t q = 0; q < kTile; ++q) {
          const float* comp[kWindow] = {m1[0][q], m1[1][q], m1[2][q], m1[3][q], m1[4][q], m1[5][q]};
          float* dst[kTile] = {y[q][0], y[q][1], y[q][2], y[q][3]};
          at4(comp, dst, nc);   // y[p][q] = sum_a AT[p][a] m1[a][q]
        }
        const float* scale = e.d != nullptr ? e.d + n * c_out + c0 : ones;
        const float* bv = e.bias != nullptr ? e.bias + c0 : zeros;
        for (int64_t p = 0; p < kTile; ++p) {
          const int64_t oy = (kTile * (b.r0 + tr) + p) * up + py;
          for (int64_t q = 0; q < kTile; ++q) {
            const int64_t ox = (kTile * tc + q) * up + px;
            const float nz = e.noise != nullptr ? e.noise[n * e.noise_batch_stride + oy * wo + ox] : 0.f;
            for (int64_t c = 0; c < nc; ++c) shift[c] = nz + bv[c];
            float* dst = out + ((n * ho + oy) * wo + ox) * c_out + c0;
            const float* yp = y[q][p];
            if (e.lrelu) {
              for (int64_t c = 0; c < nc; ++c) {
                const float z = yp[c] * scale[c] + shift[c];
                dst[c] = std::max(z, z * 0.2f) * kSqrt2;   // leaky ReLU (slope 0.2) times √2
              }
            } else {
              for (int64_t c = 0; c < nc; ++c) dst[c] = yp[c] * scale[c] + shift[c];
            }
          }
        }
      }
    }
  }
}

// Tiles per parallel chunk for `channels` values per tile.
int64_t grain(int64_t channels) {
  return std::max<int64_t>(1, 4096 / channels);
}

const float* optional_data(const std::optional<at::Tensor>& t) {
  return t.has_value() ? t->data_ptr<float>() : nullptr;
}

// out = act(conv(x * in_scale) * out_scale + noise + bias), see the header comment.
// x [N, Ci, H, W] channels_last float32; weight_t [36, Ci, up^2*Co] contiguous;
// in_scale [N, Ci], out_scale [N, Co], bias [Co] contiguous; noise [N or 1, up*H, up*W]
// contiguous; band_rows tile rows per band. Returns [N, Co, up*H, up*W] channels_last.
at::Tensor conv3x3(const at::Tensor& x, const at::Tensor& weight_t, const std::optional<at::Tensor>& in_scale,
                   const std::optional<at::Tensor>& out_scale, const std::optional<at::Tensor>& bias,
                   const std::optional<at::Tensor>& noise, bool lrelu, int64_t up, int64_t band_rows) {
  TORCH_CHECK(x.device().is_cpu() && x.scalar_type() == at::kFloat && x.dim() == 4,
              "winograd conv3x3: x must be a float32 CPU tensor [N, C, H, W]");
  TORCH_CHECK(x.is_contiguous(at::MemoryFormat::ChannelsLast), "winograd conv3x3: x must be channels_last");
  TORCH_CHECK(up == 1 || up == 2, "winograd conv3x3: up must be 1 or 2");
  const int64_t n = x.size(0), c_in = x.size(1), h = x.size(2), w = x.size(3);
  TORCH_CHECK(h % kTile == 0 && w % kTile == 0, "winograd conv3x3: H and W must be multiples of 4");
  TORCH_CHECK(weight_t.is_contiguous() && weight_t.scalar_type() == at::kFloat && weight_t.dim() == 3 &&
                  weight_t.size(0) == kWindow * kWindow && weight_t.size(1) == c_in &&
                  weight_t.size(2) % (up * up) == 0,
              "winograd conv3x3: weight_t must be a contiguous float32 [36, C_in, up^2*C_out]");
  const int64_t c_out = weight_t.size(2) / (up * up);
  auto check_vec = [](const std::optional<at::Tensor>& t, at::IntArrayRef shape, const char* what) {
    if (t.has_value()) {
      TORCH_CHECK(t->scalar_type() == at::kFloat && t->is_contiguous() && t->sizes() == shape,
                  "winograd conv3x3: ", what, " must be a contiguous float32 tensor of shape ", shape);
    }
  };
  check_vec(in_scale, {n, c_in}, "in_scale");
  check_vec(out_scale, {n, c_out}, "out_scale");
  check_vec(bias, {c_out}, "bias");
  const int64_t ho = up * h, wo = up * w;
  int64_t noise_stride = 0;
  if (noise.has_value()) {
    TORCH_CHECK(noise->scalar_type() == at::kFloat && noise->is_contiguous() && noise->dim() == 3 &&
                    (noise->size(0) == 1 || noise->size(0) == n) && noise->size(1) == ho && noise->size(2) == wo,
                "winograd conv3x3: noise must be a contiguous float32 [N or 1, up*H, up*W]");
    noise_stride = noise->size(0) == 1 ? 0 : ho * wo;
  }
  const int64_t th = h / kTile, tw = w / kTile;
  const int64_t rows = std::max<int64_t>(1, std::min(band_rows, th));
  at::Tensor out = at::empty({n, c_out, ho, wo}, x.options().memory_format(at::MemoryFormat::ChannelsLast));
  // transformed inputs and products of the largest band; a shorter last band uses a prefix
  const int64_t max_tiles = n * rows * tw;
  at::Tensor v_all = at::empty({kWindow * kWindow * max_tiles * c_in}, x.options());
  at::Tensor m_all = at::empty({kWindow * kWindow * max_tiles * up * up * c_out}, x.options());
  const Epilogue epi{optional_data(out_scale), optional_data(bias), optional_data(noise), noise_stride, lrelu};
  const float* xp = x.data_ptr<float>();
  const float* sp = optional_data(in_scale);
  float* op = out.data_ptr<float>();
  for (int64_t r0 = 0; r0 < th; r0 += rows) {
    const Band band{n, h, w, tw, r0, std::min(rows, th - r0)};
    const int64_t tiles = band.tiles();
    const int64_t v_plane = tiles * c_in, m_plane = tiles * up * up * c_out;   // floats per component
    at::Tensor vb = v_all.narrow(0, 0, kWindow * kWindow * v_plane).view({kWindow * kWindow, tiles, c_in});
    at::Tensor mb = m_all.narrow(0, 0, kWindow * kWindow * m_plane).view({kWindow * kWindow, tiles, up * up * c_out});
    float* vp = vb.data_ptr<float>();
    // chunks of at least ~4K channel values per thread, so that small maps still split
    at::parallel_for(0, tiles, grain(c_in), [&](int64_t t0, int64_t t1) {
      input_tiles(xp, sp, vp, v_plane, band, c_in, t0, t1);
    });
    at::bmm_out(mb, vb, weight_t);
    const float* mp = mb.data_ptr<float>();
    at::parallel_for(0, tiles, grain(up * up * c_out), [&](int64_t t0, int64_t t1) {
      output_tiles(mp, m_plane, op, band, c_out, up, epi, t0, t1);
    });
  }
  return out;
}

}  // namespace

TORCH_LIBRARY(blendgan_winograd, lib) {
  lib.def("conv3x3(Tensor x, Tensor weight_t, Tensor? in_scale, Tensor? out_scale, Tensor? bias, "
          "Tensor? noise, bool lrelu, int up, int band_rows) -> Tensor");
  lib.impl("conv3x3", c10::DispatchKey::CPU, &conv3x3);
}
