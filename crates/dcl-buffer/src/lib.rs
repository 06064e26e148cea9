//! The rehearsal buffer of dcl: the re-implementation of upstream's C++ backend (Neomem),
//! usable on its own (no dependency on models or training).
//!
//! A [`RehearsalBuffer`] keeps representatives of the samples it was offered in contiguous,
//! preallocated slots, with a label and an optional payload (stored logits, for DER-style
//! agents) per slot. An [`InsertionPolicy`] decides which offered samples are kept and which
//! stored ones they replace; [`RehearsalBuffer::sample`] draws representatives uniformly and
//! without duplicates. A [`Transport`] decides which buffers a draw reaches: the local one
//! ([`LocalTransport`]) or, in data-parallel runs, the union of every worker's.

mod buffer;
mod policy;
mod state;
mod timing;
mod transport;

pub use buffer::{BufferConfig, BufferError, Drawn, RehearsalBuffer, SampleLen};
pub use policy::InsertionPolicy;
pub use timing::{StepTimings, TimingStage};
pub use transport::{LocalTransport, Transport};
