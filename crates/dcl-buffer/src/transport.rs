//! The seam between a worker and the buffers its representatives come from.

use std::sync::{Arc, Mutex};

use crate::{BufferError, Drawn, RehearsalBuffer};

/// Draws representatives from the buffers a worker reaches. The in-process implementation
/// reaches the local buffer; the distributed one (MPI) draws uniformly over the union of
/// every worker's buffer, fetching remote samples from their owners.
pub trait Transport<T>: Send {
    /// Appends up to `count` representatives, drawn uniformly without duplicates over the
    /// reachable buffers as they are now, to `out` (with the rank each came from); with
    /// `before_era`, only among samples written before that era.
    fn draw(&mut self, count: usize, before_era: Option<u32>, out: &mut Drawn<T>) -> Result<(), BufferError>;
}

/// The in-process transport: the worker's own buffer.
pub struct LocalTransport<T> {
    buffer: Arc<Mutex<RehearsalBuffer<T>>>,
    rank: u32,
}

impl<T> LocalTransport<T> {
    /// Draws from `buffer`, the buffer of worker `rank`.
    pub fn new(buffer: Arc<Mutex<RehearsalBuffer<T>>>, rank: usize) -> Self {
        LocalTransport {
            buffer,
            rank: rank as u32,
        }
    }
}

impl<T: Copy + Default + Send> Transport<T> for LocalTransport<T> {
    fn draw(&mut self, count: usize, before_era: Option<u32>, out: &mut Drawn<T>) -> Result<(), BufferError> {
        self.buffer
            .lock()
            .expect("buffer lock poisoned")
            .draw(count, before_era, out);
        out.origins.resize(out.len(), self.rank);
        Ok(())
    }
}
