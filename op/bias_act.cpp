// Host-side entry points of the fused bias + activation extension (blendgan_bias_act).
//
// Tensor conventions (all tensors on one CUDA device, same floating dtype):
//   x    : any shape, C = x.size(dim) channels along `dim`
//   b    : [C] or None
//   ref  : tensor the activation slope is read from in the backward (see `mode`)
// The kernels view x as [outer, C, inner] with inner = prod(x.shape[dim+1:]); inputs
// are made contiguous first and outputs are contiguous.
#include <torch/extension.h>

#include <optional>

// Activation ids, shared with bias_act_kernel.cu and blendgan/ops/_bias_act_cuda.py.
//   0 linear, 1 relu, 2 lrelu
// Backward modes:
//   0 MODE_NONE   : slope is constant 1 (linear), `ref` unused
//   1 MODE_OUTPUT : `ref` is the forward output y; slope = y > 0 ? 1 : alpha
//   2 MODE_PREACT : `ref` is the forward input x (plus `ref_bias`); slope = x+b > 0 ? 1 : alpha

void bias_act_forward_cuda(const at::Tensor& x, const std::optional<at::Tensor>& b, at::Tensor& y,
                           int64_t act, double alpha, double gain, int64_t channels, int64_t inner);
void bias_act_backward_cuda(const at::Tensor& grad, const std::optional<at::Tensor>& ref,
                            const std::optional<at::Tensor>& ref_bias, at::Tensor& grad_in,
                            int64_t act, double alpha, double gain, int64_t mode,
                            int64_t channels, int64_t inner);

namespace {

void check_act(int64_t act) {
  TORCH_CHECK(act >= 0 && act <= 2, "bias_act: unknown activation id ", act);
}

int64_t normalize_dim(const at::Tensor& x, int64_t dim) {
  TORCH_CHECK(x.dim() >= 1, "bias_act: x must have at least one dimension");
  if (dim < 0) dim += x.dim();
  TORCH_CHECK(dim >= 0 && dim < x.dim(), "bias_act: dim out of range for x of rank ", x.dim());
  return dim;
}

int64_t inner_size(const at::Tensor& x, int64_t dim) {
  int64_t inner = 1;
  for (int64_t d = dim + 1; d < x.dim(); ++d) inner *= x.size(d);
  return inner;
}

void check_bias(const at::Tensor& x, const std::optional<at::Tensor>& b, int64_t dim, const char* what) {
  if (!b.has_value()) return;
  const at::Tensor& t = *b;
  TORCH_CHECK(t.is_cuda() && t.device() == x.device(), "bias_act: ", what, " must be on the device of x");
  TORCH_CHECK(t.scalar_type() == x.scalar_type(), "bias_act: ", what, " must have the dtype of x");
  TORCH_CHECK(t.dim() == 1 && t.size(0) == x.size(dim), "bias_act: ", what, " must have shape [",
              x.size(dim), "], got ", t.sizes());
}

}  // namespace

// y = act(x + b) * gain.   x: [..., C (at dim), ...], b: [C] or None  ->  y: shape of x
at::Tensor bias_act_forward(const at::Tensor& x_in, const std::optional<at::Tensor>& b_in,
                            int64_t act, double alpha, double gain, int64_t dim) {
  check_act(act);
  TORCH_CHECK(x_in.is_cuda(), "bias_act: x must be a CUDA tensor");
  TORCH_CHECK(at::isFloatingType(x_in.scalar_type()), "bias_act: x must be floating point");
  dim = normalize_dim(x_in, dim);
  check_bias(x_in, b_in, dim, "b");
  at::Tensor x = x_in.contiguous();
  std::optional<at::Tensor> b;
  if (b_in.has_value()) b = b_in->contiguous();
  at::Tensor y = at::empty(x.sizes(), x.options());
  if (x.numel() > 0) bias_act_forward_cuda(x, b, y, act, alpha, gain, x.size(dim), inner_size(x, dim));
  return y;
}

// grad_in = grad * gain * act'(pre-activation); act' comes from `ref` according to `mode`.
//   grad: shape of x; ref: shape of x (modes 1, 2) or None; ref_bias: [C] or None (mode 2)
at::Tensor bias_act_backward(const at::Tensor& grad_in_, const std::optional<at::Tensor>& ref_in,
                             const std::optional<at::Tensor>& ref_bias_in, int64_t act,
                             double alpha, double gain, int64_t dim, int64_t mode) {
  check_act(act);
  TORCH_CHECK(mode >= 0 && mode <= 2, "bias_act: unknown backward mode ", mode);
  TORCH_CHECK(grad_in_.is_cuda(), "bias_act: grad must be a CUDA tensor");
  TORCH_CHECK(at::isFloatingType(grad_in_.scalar_type()), "bias_act: grad must be floating point");
  dim = normalize_dim(grad_in_, dim);
  at::Tensor grad = grad_in_.contiguous();
  std::optional<at::Tensor> ref, ref_bias;
  if (mode != 0) {
    TORCH_CHECK(ref_in.has_value(), "bias_act: backward mode ", mode, " needs ref");
    TORCH_CHECK(ref_in->is_cuda() && ref_in->device() == grad.device(),
                "bias_act: ref must be on the device of grad");
    TORCH_CHECK(ref_in->scalar_type() == grad.scalar_type(), "bias_act: ref must have the dtype of grad");
    TORCH_CHECK(ref_in->sizes() == grad.sizes(), "bias_act: ref must have the shape of grad");
    ref = ref_in->contiguous();
  }
  if (mode == 2 && ref_bias_in.has_value()) {
    check_bias(grad, ref_bias_in, dim, "ref_bias");
    ref_bias = ref_bias_in->contiguous();
  }
  at::Tensor out = at::empty(grad.sizes(), grad.options());
  if (grad.numel() > 0)
    bias_act_backward_cuda(grad, ref, ref_bias, out, act, alpha, gain, mode, grad.size(dim),
                           inner_size(grad, dim));
  return out;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "blendgan fused bias + activation (CUDA)";
  m.def("forward", &bias_act_forward, "y = act(x + b) * gain",
        py::arg("x"), py::arg("b"), py::arg("act"), py::arg("alpha"), py::arg("gain"), py::arg("dim"));
  m.def("backward", &bias_act_backward, "grad * gain * act'(ref)",
        py::arg("grad"), py::arg("ref"), py::arg("ref_bias"), py::arg("act"), py::arg("alpha"),
        py::arg("gain"), py::arg("dim"), py::arg("mode"));
}
