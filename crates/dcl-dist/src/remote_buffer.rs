//! Global sampling over MPI: every rank serves its rehearsal buffer from a background
//! thread on a communicator of its own, and draws over every rank's buffer.
//!
//! A draw of R representatives picks R positions uniformly without replacement over the
//! concatenation of every rank's eligible samples (sizes as last reported by each rank,
//! refreshed by every reply), asks each rank for its share in one request, draws the local
//! share directly, and gathers the replies. A rank that does not answer within
//! [`REPLY_TIMEOUT`] fails the draw with an error naming it.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use dcl_buffer::{BufferError, Drawn, Transport};
use mpi::datatype::Equivalence;
use mpi::point_to_point::MatchedReceiveVec;
use mpi::topology::{Communicator as _, SimpleCommunicator};
use mpi::traits::*;
use rand::seq::index;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::{BufferService, SharedBuffer};

/// How long a draw waits for another rank's reply.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the server sleeps when no request is waiting (it polls, so that it does not
/// spin a core that training needs).
const IDLE_POLL: Duration = Duration::from_micros(50);

const REQUEST: i32 = 1;
const HEADER: i32 = 2;
const LABELS: i32 = 3;
const SAMPLES: i32 = 4;
/// The request that stops a server.
const STOP: u64 = u64::MAX;

/// A communicator shared by the server thread and the drawing thread.
struct Shared(SimpleCommunicator);

// SAFETY: MPI runs with MPI_THREAD_MULTIPLE (checked when the world starts), under which
// every thread may call MPI on the same communicator.
unsafe impl Send for Shared {}
unsafe impl Sync for Shared {}

/// The MPI buffer service of one rank.
pub struct MpiBufferService {
    comm: Arc<Shared>,
    buffer: SharedBuffer,
    server: Option<JoinHandle<()>>,
}

impl MpiBufferService {
    /// Starts serving `buffer` on `comm` (a communicator of its own).
    pub fn start(comm: SimpleCommunicator, buffer: SharedBuffer) -> Self {
        let comm = Arc::new(Shared(comm));
        let server = {
            let (comm, buffer) = (Arc::clone(&comm), Arc::clone(&buffer));
            std::thread::Builder::new()
                .name("dcl-buffer-server".into())
                .spawn(move || serve(&comm.0, &buffer))
                .expect("cannot start the buffer server thread")
        };
        MpiBufferService {
            comm,
            buffer,
            server: Some(server),
        }
    }
}

/// Answers requests until a stop request arrives.
fn serve(comm: &SimpleCommunicator, buffer: &SharedBuffer) {
    let mut drawn = Drawn::default();
    loop {
        let Some(probed) = comm.any_process().immediate_matched_probe_with_tag(REQUEST) else {
            std::thread::sleep(IDLE_POLL);
            continue;
        };
        let (request, status) = probed.matched_receive_vec::<u64>();
        if request[0] == STOP {
            return;
        }
        let before_era = (request[1] > 0).then(|| (request[1] - 1) as u32);
        drawn.clear();
        let eligible = {
            let mut buffer = buffer.lock().expect("buffer lock poisoned");
            buffer.draw(request[0] as usize, before_era, &mut drawn);
            buffer.eligible(before_era)
        };
        let client = comm.process_at_rank(status.source_rank());
        client.send_with_tag(&[drawn.len() as u64, eligible as u64][..], HEADER);
        if !drawn.is_empty() {
            client.send_with_tag(&drawn.labels[..], LABELS);
            client.send_with_tag(&drawn.samples[..], SAMPLES);
        }
    }
}

impl BufferService for MpiBufferService {
    fn client(&self, seed: u64) -> Box<dyn Transport<f32>> {
        let size = self.comm.0.size() as usize;
        Box::new(GlobalClient {
            comm: Arc::clone(&self.comm),
            buffer: Arc::clone(&self.buffer),
            rank: self.comm.0.rank() as usize,
            sizes: vec![0; size],
            rng: ChaCha8Rng::seed_from_u64(seed),
        })
    }

    fn stop(mut self: Box<Self>) {
        // Every rank has made its last draw once all are here.
        self.comm.0.barrier();
        let me = self.comm.0.rank();
        self.comm.0.process_at_rank(me).send_with_tag(&[STOP, 0][..], REQUEST);
        if let Some(server) = self.server.take() {
            server.join().expect("the buffer server thread panicked");
        }
    }
}

/// Draws over every rank's buffer.
struct GlobalClient {
    comm: Arc<Shared>,
    buffer: SharedBuffer,
    rank: usize,
    /// Each rank's eligible samples, as last reported.
    sizes: Vec<u64>,
    rng: ChaCha8Rng,
}

impl GlobalClient {
    fn receive<T: Equivalence>(&self, peer: usize, tag: i32) -> Result<Vec<T>, BufferError> {
        let deadline = Instant::now() + REPLY_TIMEOUT;
        let process = self.comm.0.process_at_rank(peer as i32);
        loop {
            if let Some(probed) = process.immediate_matched_probe_with_tag(tag) {
                return Ok(probed.matched_receive_vec::<T>().0);
            }
            if Instant::now() > deadline {
                return Err(BufferError::Transport(format!(
                    "rank {peer} did not answer a sample request within {} s (dead or stuck)",
                    REPLY_TIMEOUT.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_micros(10));
        }
    }
}

impl Transport<f32> for GlobalClient {
    fn draw(&mut self, count: usize, before_era: Option<u32>, out: &mut Drawn<f32>) -> Result<(), BufferError> {
        self.sizes[self.rank] = self.buffer.lock().expect("buffer lock poisoned").eligible(before_era) as u64;
        let total: u64 = self.sizes.iter().sum();
        let mut shares = vec![0u64; self.sizes.len()];
        if total > 0 {
            for position in index::sample(&mut self.rng, total as usize, count.min(total as usize)) {
                let mut end = 0;
                for (rank, &n) in self.sizes.iter().enumerate() {
                    end += n;
                    if (position as u64) < end {
                        shares[rank] += 1;
                        break;
                    }
                }
            }
        }
        let era = before_era.map_or(0, |e| e as u64 + 1);
        let peers: Vec<usize> = (0..self.sizes.len()).filter(|&r| r != self.rank).collect();
        for &peer in &peers {
            self.comm
                .0
                .process_at_rank(peer as i32)
                .send_with_tag(&[shares[peer], era][..], REQUEST);
        }
        self.buffer
            .lock()
            .expect("buffer lock poisoned")
            .draw(shares[self.rank] as usize, before_era, out);
        for &peer in &peers {
            let header = self.receive::<u64>(peer, HEADER)?;
            self.sizes[peer] = header[1];
            if header[0] > 0 {
                out.labels.extend(self.receive::<u32>(peer, LABELS)?);
                out.samples.extend(self.receive::<f32>(peer, SAMPLES)?);
            }
        }
        Ok(())
    }
}
