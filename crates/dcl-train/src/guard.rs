//! libtorch failures as errors, not panics.
//!
//! tch's infallible API (a model's forward pass, most layer calls) panics when libtorch
//! raises, e.g. when an allocation fails. [`guarded`] runs such code, turns a panic into a
//! [`TrainError`] with libtorch's own first line (no C++ frame dump), and keeps the panic
//! quiet; its fallible API's errors go through [`torch_error`] to the same form.

use std::cell::Cell;
use std::panic::AssertUnwindSafe;
use std::sync::Once;

use crate::TrainError;

thread_local! {
    /// Whether this thread runs guarded code (its panics are reported as errors).
    static GUARDED: Cell<bool> = const { Cell::new(false) };
}

/// Installs, once, a panic hook that is silent for guarded code and the previous hook otherwise.
fn install_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !GUARDED.get() {
                previous(info);
            }
        }));
    });
}

/// Runs `work` (`what`: what it does, for messages); a panic inside becomes an error.
pub fn guarded<T>(what: &str, work: impl FnOnce() -> Result<T, TrainError>) -> Result<T, TrainError> {
    install_hook();
    let was = GUARDED.replace(true);
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(work));
    GUARDED.set(was);
    outcome.unwrap_or_else(|payload| {
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("unknown panic");
        Err(torch_error(what, message))
    })
}

/// The error of a libtorch failure during `what`, from its message (a panic's or a
/// `TchError`'s): the first line of libtorch's own text, and a hint when memory ran out.
pub fn torch_error(what: &str, message: &str) -> TrainError {
    // tch's panics carry the error's Debug form: `Torch("…\nException raised from …")`.
    let text = message
        .split_once("Torch(\"")
        .map_or(message, |(_, rest)| rest)
        .split("\\n")
        .next()
        .unwrap_or_default();
    let first = text.lines().next().unwrap_or_default().trim();
    let first = first.strip_prefix("Internal torch error: ").unwrap_or(first);
    // c10's failed-check prefix, `[enforce fail at alloc_cpu.cpp:127] err == 0. `, says
    // nothing to a user.
    let line = match first.strip_prefix("[enforce fail at") {
        Some(rest) => rest.split_once("] ").map_or(rest, |(_, check)| {
            check.split_once(". ").map_or(check, |(_, what)| what)
        }),
        None => first,
    }
    .trim_end_matches("\")");
    let lower = line.to_lowercase();
    if lower.contains("out of memory") || lower.contains("can't allocate memory") {
        TrainError::OutOfMemory {
            what: what.to_owned(),
            detail: line.to_owned(),
        }
    } else {
        TrainError::Torch(format!("{what}: {line}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Tensor;

    #[test]
    fn a_libtorch_panic_becomes_one_line_and_out_of_memory_gets_a_hint() {
        let shape_error = guarded("a test step", || {
            let a = Tensor::zeros([2, 3], tch::kind::FLOAT_CPU);
            let b = Tensor::zeros([4, 5], tch::kind::FLOAT_CPU);
            Ok(a.matmul(&b))
        })
        .unwrap_err()
        .to_string();
        assert!(shape_error.starts_with("libtorch: a test step: "), "{shape_error}");
        assert!(shape_error.contains("cannot be multiplied"), "{shape_error}");
        assert!(
            !shape_error.contains('\n') && !shape_error.contains("Exception raised"),
            "{shape_error}"
        );

        let oom = guarded("the training step", || {
            Ok(Tensor::zeros([1 << 44], tch::kind::FLOAT_CPU))
        })
        .unwrap_err()
        .to_string();
        assert!(oom.starts_with("out of memory in the training step"), "{oom}");
        assert!(oom.contains("--batch-size"), "{oom}");
        assert!(!oom.contains('\n'), "{oom}");
    }

    #[test]
    fn fallible_calls_report_the_same_way() {
        let error = Tensor::zeros([2], tch::kind::FLOAT_CPU)
            .f_view([3])
            .map_err(|e| torch_error("a view", &e.to_string()))
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("libtorch: a view: shape '[3]' is invalid"), "{error}");
        assert!(!error.contains('\n'), "{error}");
    }
}
