//! The MPI backend (MPICH or Open MPI through the `mpi` crate).

use std::os::raw::{c_int, c_void};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use mpi::collective::{SystemOperation, UnsafeUserOperation};
use mpi::environment::Universe;
use mpi::topology::{Communicator as _, SimpleCommunicator};
use mpi::traits::*;
use mpi::Threading;

use crate::remote_buffer::MpiBufferService;
use crate::watch::Watch;
use crate::{BufferService, Communicator, DistError, SharedBuffer};

/// `MPI_Op` function summing half-precision values (MPI has no fp16 type or sum).
///
/// # Safety
/// Called by MPI with `len` elements of 16 bits in both buffers.
unsafe extern "C" fn sum_f16(
    invec: *mut c_void,
    inoutvec: *mut c_void,
    len: *mut c_int,
    _: *mut mpi::ffi::MPI_Datatype,
) {
    let n = *len as usize;
    let a = std::slice::from_raw_parts(invec as *const u16, n);
    let b = std::slice::from_raw_parts_mut(inoutvec as *mut u16, n);
    crate::add_f16(a, b);
}

/// A world of MPI ranks. Holds the MPI environment: MPI is finalised when it is dropped.
///
/// Every wait has a deadline ([`Communicator::set_timeout`], 300 s by default) and none
/// spins for long: see [`crate::watch`].
pub struct MpiCommunicator {
    world: SimpleCommunicator,
    local_rank: usize,
    local_size: usize,
    watch: Arc<Watch>,
    monitor: Option<JoinHandle<()>>,
    /// The half-precision sum (freed before MPI is finalised: fields drop in order).
    f16_sum: UnsafeUserOperation,
    // Dropped last: finalises MPI.
    _universe: Universe,
}

// SAFETY: MPI is initialised with MPI_THREAD_MULTIPLE (checked in `init`), under which every
// MPI call may be made from any thread; rsmpi's handles are plain integers/pointers owned
// by the MPI library.
unsafe impl Send for MpiCommunicator {}
unsafe impl Sync for MpiCommunicator {}

impl MpiCommunicator {
    /// Initialises MPI with full thread support and joins its world.
    pub fn init() -> Result<Self, DistError> {
        let (universe, threading) = mpi::initialize_with_threading(Threading::Multiple)
            .ok_or_else(|| DistError::Launch("MPI was already initialised".into()))?;
        if threading != Threading::Multiple {
            return Err(DistError::Launch(format!(
                "the MPI library grants {threading:?} threading, dcl needs Multiple"
            )));
        }
        let world = universe.world();
        let node = world.split_shared(world.rank());
        let (local_rank, local_size) = (node.rank() as usize, node.size() as usize);
        // SAFETY: `sum_f16` reads and writes exactly `len` 16-bit values, as the buffers it is
        // used with (u16 slices) hold.
        let f16_sum = unsafe { UnsafeUserOperation::commutative(sum_f16) };
        let watch = Arc::new(Watch::new(world.duplicate()));
        let monitor = (world.size() > 1).then(|| watch.start_monitor());
        Ok(MpiCommunicator {
            world,
            local_rank,
            local_size,
            watch,
            monitor,
            f16_sum,
            _universe: universe,
        })
    }

    /// Waits, without spinning for long and within the deadline, until every rank has
    /// reached this point: the large blocking collective that follows then runs with every
    /// rank present.
    fn arrive(&self, what: &'static str) {
        self.watch.wait(self.world.immediate_barrier(), what);
    }
}

impl Drop for MpiCommunicator {
    fn drop(&mut self) {
        self.watch.stop_monitor();
        if let Some(monitor) = self.monitor.take() {
            let _ = monitor.join();
        }
    }
}

impl Communicator for MpiCommunicator {
    fn rank(&self) -> usize {
        self.world.rank() as usize
    }

    fn size(&self) -> usize {
        self.world.size() as usize
    }

    fn local_rank(&self) -> usize {
        self.local_rank
    }

    fn local_size(&self) -> usize {
        self.local_size
    }

    fn broadcast(&self, root: usize, data: &mut [f32]) {
        if self.size() > 1 {
            self.arrive("a broadcast");
            let root = self.world.process_at_rank(root as i32);
            self.watch.blocking("a broadcast", || root.broadcast_into(data));
        }
    }

    fn all_reduce_sum_into(&self, send: &[f32], recv: &mut [f32]) {
        if self.size() == 1 {
            recv.copy_from_slice(send);
            return;
        }
        self.arrive("the gradient all-reduce");
        self.watch.blocking("the gradient all-reduce", || {
            self.world.all_reduce_into(send, recv, SystemOperation::sum())
        });
    }

    fn all_reduce_sum_f16_into(&self, send: &[u16], recv: &mut [u16]) {
        if self.size() == 1 {
            recv.copy_from_slice(send);
            return;
        }
        self.arrive("the gradient all-reduce");
        self.watch.blocking("the gradient all-reduce", || {
            self.world.all_reduce_into(send, recv, &self.f16_sum)
        });
    }

    fn all_reduce_sum_f64(&self, data: &mut [f64]) {
        if self.size() > 1 {
            let send = data.to_vec();
            mpi::request::scope(|scope| {
                let request = self
                    .world
                    .immediate_all_reduce_into(scope, &send[..], data, SystemOperation::sum());
                self.watch.wait(request, "an all-reduce of metrics");
            });
        }
    }

    fn all_gather(&self, value: u64) -> Vec<u64> {
        let mut all = vec![0u64; self.size()];
        mpi::request::scope(|scope| {
            let request = self.world.immediate_all_gather_into(scope, &value, &mut all[..]);
            self.watch.wait(request, "an all-gather");
        });
        all
    }

    fn barrier(&self) {
        self.watch.wait(self.world.immediate_barrier(), "a barrier");
    }

    fn set_timeout(&self, timeout: Duration) {
        self.watch.set_timeout(timeout);
    }

    fn abort(&self, code: i32) -> ! {
        self.world.abort(code)
    }

    fn serve_buffer(&self, buffer: SharedBuffer) -> Box<dyn BufferService> {
        if self.size() == 1 {
            return self.local_buffer(buffer);
        }
        Box::new(MpiBufferService::start(
            self.world.duplicate(),
            self.world.duplicate(),
            buffer,
            Arc::clone(&self.watch),
        ))
    }
}
