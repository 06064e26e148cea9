//! SIGINT, SIGTERM and SIGHUP stop a run between two steps, with its results saved.
//!
//! The first signal sets a flag that the training loop reads after every step; a second
//! one of the same kind ends the process at once (a step that never ends is no trap).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

/// The signals that stop a run.
const STOPPING: [i32; 3] = [SIGINT, SIGTERM, SIGHUP];

/// The signal received, if any.
#[derive(Clone, Default)]
pub struct Interrupt(Arc<AtomicUsize>);

impl Interrupt {
    /// Starts listening for the stopping signals.
    pub fn listen() -> std::io::Result<Self> {
        let interrupt = Interrupt::default();
        for signal in STOPPING {
            // A second signal while the first is pending: exit with the signal's code now.
            let pending = Arc::new(std::sync::atomic::AtomicBool::new(false));
            signal_hook::flag::register_conditional_shutdown(signal, 128 + signal, Arc::clone(&pending))?;
            signal_hook::flag::register(signal, pending)?;
            signal_hook::flag::register_usize(signal, Arc::clone(&interrupt.0), signal as usize)?;
        }
        Ok(interrupt)
    }

    /// The signal that asked the run to stop.
    pub fn signal(&self) -> Option<i32> {
        match self.0.load(Ordering::Relaxed) {
            0 => None,
            signal => Some(signal as i32),
        }
    }
}

/// The conventional exit code of a process stopped by `signal` (130 for SIGINT, 143 for SIGTERM).
pub fn exit_code(signal: i32) -> i32 {
    128 + signal
}

/// The name of a stopping signal.
pub fn name(signal: i32) -> &'static str {
    match signal {
        SIGINT => "SIGINT",
        SIGTERM => "SIGTERM",
        SIGHUP => "SIGHUP",
        _ => "a signal",
    }
}

/// Makes this process ignore the stopping signals (the watchdog outlives the run's process).
pub fn ignore_stopping_signals() {
    for signal in STOPPING {
        // SAFETY: setting a signal's disposition to SIG_IGN installs no handler code.
        unsafe {
            libc::signal(signal, libc::SIG_IGN);
        }
    }
}
