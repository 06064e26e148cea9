//! Global sampling over MPI: every rank serves its rehearsal buffer from a background
//! thread on a communicator of its own, and draws over every rank's buffer.
//!
//! The draws of a pass run in lockstep over the ranks, one step per minibatch, so that what
//! a rank draws depends only on the seed and the stream, never on thread timing:
//!
//! 1. every rank reports how many samples its buffer offers to the draw (an all-gather on
//!    the drawing threads' communicator), so all agree on the sizes as of the end of the
//!    previous step;
//! 2. each rank picks R positions uniformly without replacement over the concatenation of
//!    every rank's eligible samples (a seeded stream of its own), asks each rank holding some
//!    for its share with a seed for that rank's choice, and draws its own share directly;
//! 3. once every rank has its replies (a barrier), every buffer may take the step's fresh
//!    samples: no rank serves a draw from a buffer that has moved on.
//!
//! A request that is not answered within the communicator's deadline ends the job with an
//! error naming the rank (see [`crate::watch`]). When a drawing client goes away (the end of
//! a pass, or a pass stopped early), it says so in the next all-gather, and every rank's
//! client ends its pass at the same step.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use dcl_buffer::{BufferError, Drawn, Transport};
use mpi::datatype::Equivalence;
use mpi::point_to_point::MatchedReceiveVec;
use mpi::topology::{Communicator as _, SimpleCommunicator};
use mpi::traits::*;
use rand::seq::index;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::watch::{Backoff, Watch};
use crate::{BufferService, SharedBuffer};

const REQUEST: i32 = 1;
const HEADER: i32 = 2;
const LABELS: i32 = 3;
const SAMPLES: i32 = 4;
const LENGTHS: i32 = 5;
const PAYLOADS: i32 = 6;
/// The request that stops a server.
const STOP: u64 = u64::MAX;
/// The longest a server sleeps between two polls for requests: a draw waits for it, every
/// step (about 1 % of a core while idle).
const SERVER_POLL: Duration = Duration::from_micros(50);

/// A communicator shared by threads.
struct Shared(SimpleCommunicator);

// SAFETY: MPI runs with MPI_THREAD_MULTIPLE (checked when the world starts), under which every
// thread may call MPI on the same communicator.
unsafe impl Send for Shared {}
unsafe impl Sync for Shared {}

/// The MPI buffer service of one rank.
pub struct MpiBufferService {
    /// Requests and replies: the server thread and the drawing thread.
    requests: Arc<Shared>,
    /// The drawing threads' collectives (one drawing thread per rank at a time).
    steps: Arc<Shared>,
    buffer: SharedBuffer,
    watch: Arc<Watch>,
    server: Option<JoinHandle<()>>,
}

impl MpiBufferService {
    /// Starts serving `buffer` on `requests`; draws agree on their steps over `steps` (two
    /// communicators of their own).
    pub fn start(
        requests: SimpleCommunicator,
        steps: SimpleCommunicator,
        buffer: SharedBuffer,
        watch: Arc<Watch>,
    ) -> Self {
        let requests = Arc::new(Shared(requests));
        let server = {
            let (comm, buffer) = (Arc::clone(&requests), Arc::clone(&buffer));
            std::thread::Builder::new()
                .name("dcl-buffer-server".into())
                .spawn(move || serve(&comm.0, &buffer))
                .expect("cannot start the buffer server thread")
        };
        MpiBufferService {
            requests,
            steps: Arc::new(Shared(steps)),
            buffer,
            watch,
            server: Some(server),
        }
    }
}

/// Answers requests until a stop request arrives. A request is (count, era + 1 or 0, seed):
/// `count` samples drawn with a stream seeded by `seed`.
fn serve(comm: &SimpleCommunicator, buffer: &SharedBuffer) {
    let mut drawn = Drawn::default();
    let mut idle = Backoff::up_to(SERVER_POLL);
    loop {
        let Some(probed) = comm.any_process().immediate_matched_probe_with_tag(REQUEST) else {
            idle.pause();
            continue;
        };
        idle = Backoff::up_to(SERVER_POLL);
        let (request, status) = probed.matched_receive_vec::<u64>();
        if request[0] == STOP {
            return;
        }
        let before_era = (request[1] > 0).then(|| (request[1] - 1) as u32);
        drawn.clear();
        let mut rng = ChaCha8Rng::seed_from_u64(request[2]);
        buffer
            .lock()
            .expect("buffer lock poisoned")
            .draw_with(&mut rng, request[0] as usize, before_era, &mut drawn);
        let client = comm.process_at_rank(status.source_rank());
        client.send_with_tag(&[drawn.len() as u64][..], HEADER);
        if !drawn.is_empty() {
            client.send_with_tag(&drawn.labels[..], LABELS);
            client.send_with_tag(&drawn.lengths[..], LENGTHS);
            client.send_with_tag(&drawn.samples[..], SAMPLES);
            client.send_with_tag(&drawn.payloads[..], PAYLOADS);
        }
    }
}

impl BufferService for MpiBufferService {
    fn client(&self, seed: u64, first_step: u64) -> Box<dyn Transport<u8>> {
        Box::new(GlobalClient {
            requests: Arc::clone(&self.requests),
            steps: Arc::clone(&self.steps),
            buffer: Arc::clone(&self.buffer),
            watch: Arc::clone(&self.watch),
            rank: self.requests.0.rank() as usize,
            size: self.requests.0.size() as usize,
            seed,
            step: first_step,
            ended: false,
        })
    }

    fn stop(mut self: Box<Self>) {
        // Every rank has made its last draw once all are here.
        self.watch
            .wait(self.requests.0.immediate_barrier(), "the end of rehearsal");
        let me = self.requests.0.rank();
        self.requests
            .0
            .process_at_rank(me)
            .send_with_tag(&[STOP, 0, 0][..], REQUEST);
        if let Some(server) = self.server.take() {
            server.join().expect("the buffer server thread panicked");
        }
    }
}

/// Draws over every rank's buffer, one lockstep step per draw.
struct GlobalClient {
    requests: Arc<Shared>,
    steps: Arc<Shared>,
    buffer: SharedBuffer,
    watch: Arc<Watch>,
    rank: usize,
    size: usize,
    /// This rank's seed for the pass.
    seed: u64,
    /// Draws so far in the pass.
    step: u64,
    /// Whether a rank ended the pass.
    ended: bool,
}

/// A seed for the choice of draw `step` made for rank `peer` (SplitMix64 mixing).
fn draw_seed(seed: u64, step: u64, peer: usize) -> u64 {
    let mut z = seed
        .wrapping_add(step.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add((peer as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED69));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl GlobalClient {
    /// Every rank's (eligible samples, still drawing) at this step.
    fn exchange(&self, eligible: u64, drawing: bool) -> Vec<[u64; 2]> {
        let mine = [eligible, u64::from(drawing)];
        let mut all = vec![[0u64; 2]; self.size];
        let flat: &mut [u64] = all.as_flattened_mut();
        mpi::request::scope(|scope| {
            let request = self.steps.0.immediate_all_gather_into(scope, &mine[..], flat);
            self.watch.wait(request, "a rehearsal draw (sizes)");
        });
        all
    }

    fn receive<T: Equivalence>(&self, peer: usize, tag: i32) -> Vec<T> {
        let process = self.requests.0.process_at_rank(peer as i32);
        let mut backoff = Backoff::default();
        loop {
            if let Some(probed) = process.immediate_matched_probe_with_tag(tag) {
                return probed.matched_receive_vec::<T>().0;
            }
            self.watch.check(&backoff, "a rehearsal draw (a reply)");
            backoff.pause();
        }
    }
}

impl Transport<u8> for GlobalClient {
    fn draw(&mut self, count: usize, before_era: Option<u32>, out: &mut Drawn<u8>) -> Result<(), BufferError> {
        if self.ended {
            return Err(BufferError::Transport("another rank stopped drawing".into()));
        }
        let eligible = self.buffer.lock().expect("buffer lock poisoned").eligible(before_era) as u64;
        let all = self.exchange(eligible, true);
        if all.iter().any(|[_, drawing]| *drawing == 0) {
            self.ended = true;
            return Err(BufferError::Transport("another rank stopped drawing".into()));
        }
        let step = self.step;
        self.step += 1;
        let sizes: Vec<u64> = all.iter().map(|[n, _]| *n).collect();
        let total: u64 = sizes.iter().sum();
        if total == 0 || count == 0 {
            return Ok(());
        }
        let mut shares = vec![0u64; self.size];
        let mut rng = ChaCha8Rng::seed_from_u64(draw_seed(self.seed, step, self.size));
        for position in index::sample(&mut rng, total as usize, count.min(total as usize)) {
            let mut end = 0;
            for (rank, &n) in sizes.iter().enumerate() {
                end += n;
                if (position as u64) < end {
                    shares[rank] += 1;
                    break;
                }
            }
        }
        let era = before_era.map_or(0, |e| e as u64 + 1);
        let peers: Vec<usize> = (0..self.size).filter(|&r| r != self.rank && shares[r] > 0).collect();
        for &peer in &peers {
            let request = [shares[peer], era, draw_seed(self.seed, step, peer)];
            self.requests
                .0
                .process_at_rank(peer as i32)
                .send_with_tag(&request[..], REQUEST);
        }
        let mut rng = ChaCha8Rng::seed_from_u64(draw_seed(self.seed, step, self.rank));
        self.buffer.lock().expect("buffer lock poisoned").draw_with(
            &mut rng,
            shares[self.rank] as usize,
            before_era,
            out,
        );
        out.origins.resize(out.labels.len(), self.rank as u32);
        for &peer in &peers {
            let header = self.receive::<u64>(peer, HEADER);
            if header[0] > 0 {
                out.labels.extend(self.receive::<u32>(peer, LABELS));
                out.lengths.extend(self.receive::<u32>(peer, LENGTHS));
                out.samples.extend(self.receive::<u8>(peer, SAMPLES));
                out.payloads.extend(self.receive::<f32>(peer, PAYLOADS));
                out.origins.resize(out.labels.len(), peer as u32);
            }
        }
        // No buffer takes the step's fresh samples before every rank has its replies.
        self.watch
            .wait(self.steps.0.immediate_barrier(), "a rehearsal draw (the step's end)");
        Ok(())
    }
}

impl Drop for GlobalClient {
    fn drop(&mut self) {
        // Tell the other ranks' clients that this one has stopped drawing, in the all-gather
        // of the step they are at (all of them end the pass there).
        if !self.ended {
            self.exchange(0, false);
        }
    }
}
