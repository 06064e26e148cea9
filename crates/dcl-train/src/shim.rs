//! Calling the C++ shims of csrc/ (libtorch's current APIs that tch does not wrap): each
//! function takes a buffer for libtorch's message and returns 0 on success.

use std::ffi::{c_char, c_int, CStr};

/// The size of the message buffer handed to a shim function.
const ERROR_LEN: usize = 512;

/// Calls a shim function with a message buffer; its failure is libtorch's message.
pub(crate) fn call(function: impl FnOnce(*mut c_char, usize) -> c_int) -> Result<(), String> {
    let mut error = [0 as c_char; ERROR_LEN];
    if function(error.as_mut_ptr(), ERROR_LEN) == 0 {
        return Ok(());
    }
    // SAFETY: the shim wrote a NUL-terminated message (snprintf) into the buffer.
    Err(unsafe { CStr::from_ptr(error.as_ptr()) }.to_string_lossy().into_owned())
}
