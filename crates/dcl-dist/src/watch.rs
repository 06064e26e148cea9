//! Deadlines on everything a rank waits for, so that a rank that stops answering (stopped,
//! hung, dead) ends the job with an error naming it instead of a hang.
//!
//! - Immediate MPI requests (barriers, small collectives, sample requests and replies) are
//!   polled with a back-off: a tight loop for the first 50 µs (most waits end there),
//!   then sleeps growing to [`MAX_SLEEP`], so that a long wait costs almost no CPU.
//! - A large collective (the gradient all-reduce) first waits for every rank to arrive
//!   through such a barrier, then runs MPI's blocking call at full speed. A monitor thread
//!   ends the job if a blocking call lasts longer than the deadline (a rank stopped in the
//!   middle of it).
//! - When a deadline passes, the rank tells every other rank on a communicator of its own
//!   and listens for the same notice from them for a grace period: the ranks it heard
//!   nothing from are the ones that stopped answering. It reports them in one line (through
//!   the hook set with [`crate::on_fatal`] first: rank 0 marks its results as failed) and
//!   aborts the job (`MPI_Abort`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mpi::request::{Request, Scope};
use mpi::topology::{Communicator as _, SimpleCommunicator};
use mpi::traits::*;

/// The deadline until [`Watch::set_timeout`] says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);
/// The longest sleep between two polls of a pending request.
const MAX_SLEEP: Duration = Duration::from_millis(1);
/// How long a wait polls without sleeping.
const SPIN: Duration = Duration::from_micros(50);
/// The tag of the notices of ranks whose deadline passed.
const NOTICE: i32 = 99;

/// Polls with a growing pause between polls.
pub struct Backoff {
    started: Instant,
    sleep: Duration,
    max_sleep: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::up_to(MAX_SLEEP)
    }
}

impl Backoff {
    /// A back-off whose pauses grow to `max_sleep` at most.
    pub fn up_to(max_sleep: Duration) -> Self {
        Backoff {
            started: Instant::now(),
            sleep: Duration::from_micros(10).min(max_sleep),
            max_sleep,
        }
    }

    /// Time since the wait started.
    pub fn waited(&self) -> Duration {
        self.started.elapsed()
    }

    /// Pauses before the next poll.
    pub fn pause(&mut self) {
        if self.started.elapsed() < SPIN {
            std::hint::spin_loop();
        } else {
            std::thread::sleep(self.sleep);
            self.sleep = (self.sleep * 2).min(self.max_sleep);
        }
    }
}

/// A blocking call in progress, for the monitor thread.
struct Blocking {
    since: Instant,
    what: &'static str,
}

/// The deadline of one rank's waits and the means to report a rank that stopped answering.
pub struct Watch {
    /// A communicator used only for the notices of the post-mortem.
    health: SimpleCommunicator,
    timeout_ms: AtomicU64,
    blocking: Mutex<Option<Blocking>>,
    stop_monitor: AtomicBool,
}

// SAFETY: MPI runs with MPI_THREAD_MULTIPLE (checked when the world starts), under which any
// thread may call MPI on any communicator.
unsafe impl Send for Watch {}
unsafe impl Sync for Watch {}

impl Watch {
    /// A watch reporting on `health`, a communicator of its own (a duplicate of the world).
    pub fn new(health: SimpleCommunicator) -> Self {
        Watch {
            health,
            timeout_ms: AtomicU64::new(DEFAULT_TIMEOUT.as_millis() as u64),
            blocking: Mutex::new(None),
            stop_monitor: AtomicBool::new(false),
        }
    }

    /// Starts the thread that ends the job when a blocking call outlives the deadline.
    pub fn start_monitor(self: &Arc<Self>) -> JoinHandle<()> {
        let watch = Arc::clone(self);
        std::thread::Builder::new()
            .name("dcl-watch".into())
            .spawn(move || {
                while !watch.stop_monitor.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(200));
                    let stalled = {
                        let blocking = watch.blocking.lock().expect("watch lock poisoned");
                        blocking
                            .as_ref()
                            .filter(|b| b.since.elapsed() > watch.timeout())
                            .map(|b| (b.what, b.since.elapsed()))
                    };
                    if let Some((what, waited)) = stalled {
                        watch.stalled(what, waited);
                    }
                }
            })
            .expect("cannot start the watch thread")
    }

    /// Asks the monitor thread to end (it does within 200 ms).
    pub fn stop_monitor(&self) {
        self.stop_monitor.store(true, Ordering::Relaxed);
    }

    /// The deadline of every wait.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms.load(Ordering::Relaxed))
    }

    /// Changes the deadline of every wait.
    pub fn set_timeout(&self, timeout: Duration) {
        self.timeout_ms
            .store(timeout.as_millis().max(1) as u64, Ordering::Relaxed);
    }

    /// Waits for `request` to complete; ends the job if it does not within the deadline.
    pub fn wait<'a, D: ?Sized, S: Scope<'a>>(&self, mut request: Request<'a, D, S>, what: &'static str) {
        let mut backoff = Backoff::default();
        loop {
            match request.test() {
                Ok(_) => return,
                Err(pending) => request = pending,
            }
            self.check(&backoff, what);
            backoff.pause();
        }
    }

    /// Ends the job if a wait that started with `backoff` has outlived the deadline.
    pub fn check(&self, backoff: &Backoff, what: &'static str) {
        let waited = backoff.waited();
        if waited > self.timeout() {
            self.stalled(what, waited);
        }
    }

    /// Runs `call`, a blocking MPI call, under the monitor thread's deadline.
    pub fn blocking<R>(&self, what: &'static str, call: impl FnOnce() -> R) -> R {
        *self.blocking.lock().expect("watch lock poisoned") = Some(Blocking {
            since: Instant::now(),
            what,
        });
        let result = call();
        *self.blocking.lock().expect("watch lock poisoned") = None;
        result
    }

    /// The post-mortem of a wait that outlived the deadline: finds the ranks that stopped
    /// answering, reports them and aborts the job.
    fn stalled(&self, what: &'static str, waited: Duration) -> ! {
        let (me, size) = (self.health.rank(), self.health.size());
        // The notice goes out without waiting for the receiver (a stopped rank never
        // receives it); the buffer lives until the abort.
        let notice: &'static [i32] = Box::leak(Box::new([me]));
        for peer in (0..size).filter(|&p| p != me) {
            let request =
                self.health
                    .process_at_rank(peer)
                    .immediate_send_with_tag(mpi::request::StaticScope, notice, NOTICE);
            // SAFETY: the buffer is 'static and the process aborts below; the request is never
            // completed on purpose.
            let _ = unsafe { request.into_raw() };
        }
        let grace = (self.timeout() / 2).clamp(Duration::from_secs(1), Duration::from_secs(10));
        let started = Instant::now();
        let mut heard = vec![false; size as usize];
        heard[me as usize] = true;
        while started.elapsed() < grace && heard.iter().any(|h| !h) {
            match self.health.any_process().immediate_matched_probe_with_tag(NOTICE) {
                Some(probed) => {
                    let (from, _) = probed.matched_receive_vec::<i32>();
                    if let Some(&rank) = from.first() {
                        heard[rank as usize] = true;
                    }
                }
                None => std::thread::sleep(Duration::from_millis(10)),
            }
        }
        let silent: Vec<String> = (0..size as usize)
            .filter(|&r| !heard[r])
            .map(|r| r.to_string())
            .collect();
        let culprit = if silent.is_empty() {
            "every rank is waiting (a deadlock)".to_owned()
        } else {
            format!(
                "rank{} {} stopped answering (stopped, hung or dead)",
                if silent.len() > 1 { "s" } else { "" },
                silent.join(", ")
            )
        };
        let message = format!(
            "rank {me}: no progress in {what} for {:.0} s (--comm-timeout {:.0}): {culprit}; ending the job",
            waited.as_secs_f64(),
            self.timeout().as_secs_f64()
        );
        if me != 0 && heard[0] {
            // Rank 0 reports the same; let it go first, so that its line and its results are
            // the ones left.
            std::thread::sleep(Duration::from_secs(2));
        }
        crate::fatal(&message);
        self.health.abort(1)
    }
}
