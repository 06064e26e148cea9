//! The communicator of dcl: what data-parallel workers exchange (Horovod's role upstream).
//!
//! [`Communicator`] is the seam; [`SingleProcess`] is the world of one worker and
//! [`MpiCommunicator`] (cargo feature `mpi`, on by default) the MPI one, started by
//! `mpirun -np N dcl …` or `srun`. A binary started without a launcher is a world of size 1.

#[cfg(feature = "mpi")]
mod mpi_backend;
#[cfg(feature = "mpi")]
mod remote_buffer;
#[cfg(feature = "mpi")]
mod watch;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use dcl_buffer::{LocalTransport, RehearsalBuffer, Transport};

#[cfg(feature = "mpi")]
pub use mpi_backend::MpiCommunicator;

/// What the process does before a fatal communication error ends the job.
type FatalHook = Box<dyn Fn(&str) + Send + Sync>;
static FATAL_HOOK: OnceLock<FatalHook> = OnceLock::new();

/// Sets what runs before a rank ends the job after a communication deadline passed (rank 0
/// marks its results as failed with the message). Only the first call counts.
pub fn on_fatal(hook: impl Fn(&str) + Send + Sync + 'static) {
    let _ = FATAL_HOOK.set(Box::new(hook));
}

/// Runs the hook of [`on_fatal`], then prints `message` as one `error:` line.
#[cfg_attr(not(feature = "mpi"), allow(dead_code))]
fn fatal(message: &str) {
    if let Some(hook) = FATAL_HOOK.get() {
        hook(message);
    }
    write_line(&format!("error: {message}"));
}

/// Writes `line` to standard error in one call, so that the lines of several ranks sharing a
/// terminal or a log never interleave.
pub fn write_line(line: &str) {
    use std::io::Write;
    let mut text = String::with_capacity(line.len() + 1);
    text.push_str(line);
    text.push('\n');
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// A rehearsal buffer as the workers share it: samples as bytes (a tensor's values in native
/// byte order, or an encoded file), which only their owner interprets.
pub type SharedBuffer = Arc<Mutex<RehearsalBuffer<u8>>>;

/// This rank's buffer, served to the other ranks, and the draws over every rank's buffer.
pub trait BufferService: Send + Sync {
    /// A transport drawing uniformly without duplicates over the union of every rank's
    /// buffer; `seed` and the draw's step (from `first_step` on: a pass resumed there) drive
    /// its choice of how many samples come from which rank.
    fn client(&self, seed: u64, first_step: u64) -> Box<dyn Transport<u8>>;
    /// Stops serving. Every rank calls it after its last draw; it returns once every rank
    /// has called it, so that no draw is left unanswered.
    fn stop(self: Box<Self>);
}

/// The service of a worker that draws from its own buffer only.
struct LocalService {
    buffer: SharedBuffer,
    rank: usize,
}

impl BufferService for LocalService {
    fn client(&self, _seed: u64, _first_step: u64) -> Box<dyn Transport<u8>> {
        Box::new(LocalTransport::new(Arc::clone(&self.buffer), self.rank))
    }
    fn stop(self: Box<Self>) {}
}

/// What can go wrong while joining or using the world.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DistError {
    #[error("{0}")]
    Launch(String),
}

/// The operations data-parallel training needs. Every rank calls them in the same order.
pub trait Communicator: Send + Sync {
    /// This worker's rank, from 0.
    fn rank(&self) -> usize;
    /// The number of workers.
    fn size(&self) -> usize;
    /// This worker's rank among the workers of its node.
    fn local_rank(&self) -> usize;
    /// The number of workers on this worker's node.
    fn local_size(&self) -> usize;
    /// Copies rank `root`'s `data` to every rank.
    fn broadcast(&self, root: usize, data: &mut [f32]);
    /// Writes the element-wise sum over the ranks of `send` into `recv` (same length). The
    /// path of gradients: no copy beyond MPI's own.
    fn all_reduce_sum_into(&self, send: &[f32], recv: &mut [f32]);
    /// Replaces `data` by its element-wise sum over the ranks (exact counters and sums).
    fn all_reduce_sum_f64(&self, data: &mut [f64]);
    /// Every rank's `value`, by rank.
    fn all_gather(&self, value: u64) -> Vec<u64>;
    /// Waits for every rank (without spinning: a long wait costs no CPU).
    fn barrier(&self);
    /// Stops every rank of the world with `code` (after an error on this one), so that no
    /// rank waits forever for it.
    fn abort(&self, code: i32) -> !;
    /// Serves `buffer` to the other ranks (a collective call) for global sampling.
    fn serve_buffer(&self, buffer: SharedBuffer) -> Box<dyn BufferService> {
        self.local_buffer(buffer)
    }

    /// Draws from `buffer` alone (local sampling), as this rank.
    fn local_buffer(&self, buffer: SharedBuffer) -> Box<dyn BufferService> {
        Box::new(LocalService {
            buffer,
            rank: self.rank(),
        })
    }

    /// Sets how long any collective or remote draw may make no progress before the job ends
    /// with an error naming the rank(s) that stopped answering (worlds of several ranks).
    fn set_timeout(&self, _timeout: Duration) {}

    /// Writes the element-wise sum over the ranks of `send` into `recv`, both IEEE
    /// half-precision values given by their bits (gradient compression: half the bytes).
    fn all_reduce_sum_f16_into(&self, send: &[u16], recv: &mut [u16]);

    /// Replaces `data` by its element-wise sum over the ranks.
    fn all_reduce_sum(&self, data: &mut [f32]) {
        if self.size() > 1 {
            let send = data.to_vec();
            self.all_reduce_sum_into(&send, data);
        }
    }

    /// Replaces `data` by its element-wise mean over the ranks.
    fn all_reduce_mean(&self, data: &mut [f32]) {
        self.all_reduce_sum(data);
        let n = self.size() as f32;
        if n > 1.0 {
            data.iter_mut().for_each(|v| *v /= n);
        }
    }

    /// Whether this rank writes results and shows progress.
    fn is_root(&self) -> bool {
        self.rank() == 0
    }
}

/// The world of one worker: every collective is the identity.
#[derive(Debug, Clone, Copy, Default)]
pub struct SingleProcess;

impl Communicator for SingleProcess {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn local_rank(&self) -> usize {
        0
    }
    fn local_size(&self) -> usize {
        1
    }
    fn broadcast(&self, _root: usize, _data: &mut [f32]) {}
    fn all_reduce_sum_into(&self, send: &[f32], recv: &mut [f32]) {
        recv.copy_from_slice(send);
    }
    fn all_reduce_sum_f16_into(&self, send: &[u16], recv: &mut [u16]) {
        recv.copy_from_slice(send);
    }
    fn all_reduce_sum_f64(&self, _data: &mut [f64]) {}
    fn all_gather(&self, value: u64) -> Vec<u64> {
        vec![value]
    }
    fn barrier(&self) {}
    fn abort(&self, code: i32) -> ! {
        std::process::exit(code)
    }
}

/// Adds the half-precision values `a` to `b`, element by element (bits in, bits out).
pub fn add_f16(a: &[u16], b: &mut [u16]) {
    for (x, y) in a.iter().zip(b.iter_mut()) {
        *y = half::f16::from_f32(half::f16::from_bits(*x).to_f32() + half::f16::from_bits(*y).to_f32()).to_bits();
    }
}

/// The number of ranks an MPI launcher says it started, from the environment it gives every
/// rank (MPICH's Hydra and PMI, Open MPI), if any.
pub fn launcher_size(env: impl Fn(&str) -> Option<String>) -> Option<usize> {
    ["PMI_SIZE", "OMPI_COMM_WORLD_SIZE"]
        .iter()
        .find_map(|name| env(name)?.parse().ok())
}

/// How a world of `size` ranks compares with what the environment `env` says was launched.
/// `Err`: a launcher started more ranks than joined the world (another MPI's launcher);
/// `Ok(Some(notice))`: a Slurm allocation of several tasks runs this one process alone.
pub fn check_launch(size: usize, env: impl Fn(&str) -> Option<String>) -> Result<Option<String>, DistError> {
    if let Some(launched) = launcher_size(&env) {
        if launched > 1 && size != launched {
            return Err(DistError::Launch(format!(
                "the launcher started {launched} ranks but they joined a world of {size}: dcl was built against \
                 another MPI than the launcher's (use MPICH's mpirun.mpich, or rebuild{})",
                if cfg!(feature = "mpi") {
                    ""
                } else {
                    " with the mpi feature"
                }
            )));
        }
        return Ok(None);
    }
    // srun's step of several tasks whose processes did not join one world would run as so
    // many independent copies writing the same results.
    let step_tasks: Option<usize> = env("SLURM_STEP_NUM_TASKS").and_then(|n| n.parse().ok());
    if let Some(tasks) = step_tasks.filter(|&n| n > 1 && size == 1) {
        return Err(DistError::Launch(format!(
            "srun started {tasks} tasks but they joined a world of 1: MPICH did not reach Slurm's PMI (try \
             `srun --mpi=pmi2`, or `mpirun -np {tasks}` inside the allocation)"
        )));
    }
    let slurm_tasks: Option<usize> = env("SLURM_NTASKS").and_then(|n| n.parse().ok());
    Ok(match slurm_tasks {
        Some(tasks) if tasks > 1 && size == 1 => Some(format!(
            "this Slurm allocation has {tasks} tasks but dcl was started without a launcher: it runs as one worker \
             (use `srun dcl …` or `mpirun -np {tasks} dcl …` for {tasks} workers)"
        )),
        _ => None,
    })
}

/// Joins the world: MPI when built with it, else a single process. Fails when a launcher
/// started several ranks that did not join one world (an MPI library mismatch); returns a
/// notice to show when a Slurm allocation of several tasks runs a single process.
pub fn init() -> Result<(Box<dyn Communicator>, Option<String>), DistError> {
    #[cfg(feature = "mpi")]
    let communicator: Box<dyn Communicator> = Box::new(MpiCommunicator::init()?);
    #[cfg(not(feature = "mpi"))]
    let communicator: Box<dyn Communicator> = Box::new(SingleProcess);
    let notice = check_launch(communicator.size(), |name| std::env::var(name).ok())?;
    Ok((communicator, notice))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_precision_sums_add_values() {
        let bits = |v: &[f32]| {
            v.iter()
                .map(|&x| half::f16::from_f32(x).to_bits())
                .collect::<Vec<u16>>()
        };
        let mut b = bits(&[1.5, -2.0, 0.25]);
        add_f16(&bits(&[0.5, 3.0, 0.25]), &mut b);
        assert_eq!(b, bits(&[2.0, 1.0, 0.5]));
    }

    #[test]
    fn only_an_mpi_launcher_bigger_than_the_world_is_refused() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
        };
        let mismatch = check_launch(1, env(&[("PMI_SIZE", "4")])).unwrap_err().to_string();
        assert!(
            mismatch.contains("started 4 ranks but they joined a world of 1"),
            "{mismatch}"
        );
        assert!(check_launch(1, env(&[("OMPI_COMM_WORLD_SIZE", "2")])).is_err());
        assert_eq!(
            check_launch(4, env(&[("PMI_SIZE", "4"), ("SLURM_NTASKS", "4")])).unwrap(),
            None
        );
        // sbatch without srun: one process in an allocation of 8 tasks runs, with a notice.
        let notice = check_launch(1, env(&[("SLURM_NTASKS", "8")])).unwrap().unwrap();
        assert!(notice.contains("runs as one worker"), "{notice}");
        assert_eq!(check_launch(1, env(&[("SLURM_NTASKS", "1")])).unwrap(), None);
        // srun's tasks that each see a world of 1 would be independent copies of the run.
        let copies = check_launch(1, env(&[("SLURM_NTASKS", "4"), ("SLURM_STEP_NUM_TASKS", "4")]));
        assert!(copies.unwrap_err().to_string().contains("srun started 4 tasks"));
        assert_eq!(
            check_launch(4, env(&[("SLURM_NTASKS", "4"), ("SLURM_STEP_NUM_TASKS", "4")])).unwrap(),
            None
        );
        assert_eq!(check_launch(1, env(&[])).unwrap(), None);
    }

    #[test]
    fn a_single_process_is_its_own_world() {
        let world = SingleProcess;
        let mut data = [1.0f32, 2.0];
        world.all_reduce_mean(&mut data);
        world.broadcast(0, &mut data);
        assert_eq!(data, [1.0, 2.0]);
        assert_eq!(world.all_gather(7), vec![7]);
        assert!(world.is_root());
    }
}
