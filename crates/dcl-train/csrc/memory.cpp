// Page-locked host memory through libtorch's current API: tch's `pin_memory(device)` passes
// the device argument that libtorch 2.11 deprecates, with a warning per call.
//
// Returns 0 on success; on failure, 1 with libtorch's message in `error`.

#include <ATen/ATen.h>

#include <cstdio>
#include <exception>

extern "C" {

// `*out` receives a new tensor (owned by the caller, as tch's tensors are) holding a pinned
// copy of `tensor`.
int dcl_pin_memory(const at::Tensor* tensor, at::Tensor** out, char* error, size_t error_len) {
  try {
    *out = new at::Tensor(tensor->pin_memory());
    return 0;
  } catch (const std::exception& e) {
    std::snprintf(error, error_len, "%s", e.what());
    return 1;
  }
}
}
