// The arithmetic of PyTorch's optimisers that tch's generated API lacks: it drops the scalar
// argument of `add` (alpha), `addcmul` and `addcdiv` (value), and has no way to set a gradient
// to none. The optimisers of src/optimizer.rs call these with PyTorch's own arguments, so that
// they run the very kernels (and roundings) of torch/optim/*.py.
//
// The functions but `dcl_clear_gradient` return 0 on success; on failure, 1 with libtorch's
// message in `error`.

#include <ATen/ATen.h>

#include <cstdio>
#include <exception>

namespace {

template <typename F>
int guarded(char* error, size_t error_len, F&& f) {
  try {
    f();
    return 0;
  } catch (const std::exception& e) {
    std::snprintf(error, error_len, "%s", e.what());
    return 1;
  }
}

}  // namespace

extern "C" {

// `tensor.add_(other, alpha=alpha)`.
int dcl_add_(const at::Tensor* tensor, const at::Tensor* other, double alpha, char* error, size_t error_len) {
  return guarded(error, error_len, [&] { tensor->add_(*other, alpha); });
}

// `*out = tensor.add(other, alpha=alpha)`, a new tensor owned by the caller (as tch's are).
int dcl_add(const at::Tensor* tensor, const at::Tensor* other, double alpha, at::Tensor** out, char* error,
            size_t error_len) {
  return guarded(error, error_len, [&] { *out = new at::Tensor(tensor->add(*other, alpha)); });
}

// `tensor.addcmul_(a, b, value=value)`.
int dcl_addcmul_(const at::Tensor* tensor, const at::Tensor* a, const at::Tensor* b, double value, char* error,
                 size_t error_len) {
  return guarded(error, error_len, [&] { tensor->addcmul_(*a, *b, value); });
}

// `tensor.addcdiv_(a, b, value=value)`.
int dcl_addcdiv_(const at::Tensor* tensor, const at::Tensor* a, const at::Tensor* b, double value, char* error,
                 size_t error_len) {
  return guarded(error, error_len, [&] { tensor->addcdiv_(*a, *b, value); });
}

// `tensor.grad = None` (PyTorch's `zero_grad(set_to_none=True)`): dropping a reference cannot fail.
void dcl_clear_gradient(const at::Tensor* tensor) noexcept { tensor->mutable_grad().reset(); }
}
