// Mixed precision through libtorch's current C++ API: autocast regions (tch's own wrapper
// calls the CUDA-only functions that libtorch 2.11 deprecates, with a warning per call) and
// GradScaler's fused unscale-and-check of the gradients, which tch does not wrap.
//
// Every function returns 0 on success; on failure, 1 with libtorch's message in `error`.

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>

#include <cstdio>
#include <exception>
#include <vector>

namespace {

at::DeviceType device_type(int cuda) { return cuda ? at::kCUDA : at::kCPU; }

int fail(const std::exception& e, char* error, size_t error_len) {
  std::snprintf(error, error_len, "%s", e.what());
  return 1;
}

}  // namespace

extern "C" {

// Enters an autocast region on the CPU or CUDA (`cuda`) in bfloat16 or float16 (`half`);
// `was_enabled` receives the state to restore on leaving.
int dcl_autocast_enter(int cuda, int half, int* was_enabled, char* error, size_t error_len) {
  try {
    const auto device = device_type(cuda);
    *was_enabled = at::autocast::is_autocast_enabled(device);
    at::autocast::set_autocast_enabled(device, true);
    at::autocast::set_autocast_dtype(device, half ? at::kHalf : at::kBFloat16);
    at::autocast::increment_nesting();
    return 0;
  } catch (const std::exception& e) {
    return fail(e, error, error_len);
  }
}

// Leaves the region entered by dcl_autocast_enter; the outermost exit frees the cast cache.
int dcl_autocast_exit(int cuda, int was_enabled, char* error, size_t error_len) {
  try {
    if (at::autocast::decrement_nesting() == 0) {
      at::autocast::clear_cache();
    }
    at::autocast::set_autocast_enabled(device_type(cuda), was_enabled != 0);
    return 0;
  } catch (const std::exception& e) {
    return fail(e, error, error_len);
  }
}

// Multiplies the `count` gradients by `inv_scale` and sets `found_inf` to 1 if any value is
// infinite or NaN (PyTorch's torch._amp_foreach_non_finite_check_and_unscale_).
int dcl_unscale_gradients(at::Tensor** gradients, size_t count, at::Tensor* found_inf, const at::Tensor* inv_scale,
                          char* error, size_t error_len) {
  try {
    std::vector<at::Tensor> list;
    list.reserve(count);
    for (size_t i = 0; i < count; ++i) {
      list.push_back(*gradients[i]);
    }
    at::_amp_foreach_non_finite_check_and_unscale_(list, *found_inf, *inv_scale);
    return 0;
  } catch (const std::exception& e) {
    return fail(e, error, error_len);
  }
}
}
