//! A buffer's complete state as bytes, for checkpoints: a buffer restored from them holds the
//! same samples in the same slots and makes the same random choices from then on.
//!
//! Layout: the magic line `DCLBUF1\n`, then three sections, each a little-endian u64 length
//! followed by that many bytes: the bookkeeping as JSON, the slots' sample bytes one after the
//! other (in slot order; their lengths are in the JSON), and the payloads as little-endian f32.

use std::io::{Read, Write};

use serde::{Deserialize, Serialize};

use crate::buffer::Bookkeeping;
use crate::{BufferConfig, BufferError, RehearsalBuffer};

const MAGIC: &[u8; 8] = b"DCLBUF1\n";
/// The largest section read (64 GiB): a corrupt length fails fast instead of allocating.
const MAX_SECTION: u64 = 1 << 36;

/// The JSON section.
#[derive(Serialize, Deserialize)]
struct Header {
    config: BufferConfig,
    /// The length of each slot's sample.
    lengths: Vec<u32>,
    bookkeeping: Bookkeeping,
}

impl RehearsalBuffer<u8> {
    /// Writes the buffer's state to `out`.
    pub fn save(&self, out: &mut impl Write) -> std::io::Result<()> {
        let (slots, payloads, bookkeeping) = self.parts();
        let lengths: Vec<u32> = (0..self.config().capacity)
            .map(|slot| slots.get(slot).len() as u32)
            .collect();
        let header = Header {
            config: *self.config(),
            lengths,
            bookkeeping: bookkeeping.clone(),
        };
        let json = serde_json::to_vec(&header).map_err(std::io::Error::other)?;
        out.write_all(MAGIC)?;
        write_section(out, &json)?;
        // The samples slot by slot, straight from the slots.
        let total: u64 = header.lengths.iter().map(|&l| u64::from(l)).sum();
        out.write_all(&total.to_le_bytes())?;
        for slot in 0..self.config().capacity {
            out.write_all(slots.get(slot))?;
        }
        let payload_bytes: Vec<u8> = payloads.iter().flat_map(|p| p.to_le_bytes()).collect();
        write_section(out, &payload_bytes)
    }

    /// Reads a state written by [`RehearsalBuffer::save`]. `expected`, when given, is the
    /// configuration the caller runs with: a state of another one is refused.
    pub fn load(input: &mut impl Read, expected: Option<&BufferConfig>) -> Result<Self, BufferError> {
        let broken = |what: String| BufferError::State(what);
        let mut magic = [0u8; 8];
        input
            .read_exact(&mut magic)
            .map_err(|e| broken(format!("cannot read the header: {e}")))?;
        if &magic != MAGIC {
            return Err(broken("not a dcl buffer state (bad magic)".to_owned()));
        }
        let json = read_section(input, "bookkeeping")?;
        let header: Header = serde_json::from_slice(&json).map_err(|e| broken(format!("corrupt bookkeeping: {e}")))?;
        if let Some(expected) = expected {
            if &header.config != expected {
                return Err(broken(format!(
                    "saved with another buffer configuration ({:?}, this run: {expected:?})",
                    header.config
                )));
            }
        }
        let samples = read_section(input, "samples")?;
        let payload_bytes = read_section(input, "payloads")?;
        if payload_bytes.len() % 4 != 0 {
            return Err(broken("payloads are not whole f32 values".to_owned()));
        }
        let payloads: Vec<f32> = payload_bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
            .collect();
        RehearsalBuffer::from_parts(header.config, &header.lengths, &samples, payloads, header.bookkeeping)
    }
}

fn write_section(out: &mut impl Write, bytes: &[u8]) -> std::io::Result<()> {
    out.write_all(&(bytes.len() as u64).to_le_bytes())?;
    out.write_all(bytes)
}

fn read_section(input: &mut impl Read, what: &str) -> Result<Vec<u8>, BufferError> {
    let broken = |detail: String| BufferError::State(format!("{what}: {detail}"));
    let mut len = [0u8; 8];
    input
        .read_exact(&mut len)
        .map_err(|e| broken(format!("cannot read the length: {e}")))?;
    let len = u64::from_le_bytes(len);
    if len > MAX_SECTION {
        return Err(broken(format!("implausible length {len}")));
    }
    let mut bytes = Vec::new();
    input
        .take(len)
        .read_to_end(&mut bytes)
        .map_err(|e| broken(format!("cannot read: {e}")))?;
    if bytes.len() as u64 != len {
        return Err(broken(format!("truncated: {} of {len} bytes", bytes.len())));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Drawn, InsertionPolicy, SampleLen};

    fn filled(policy: InsertionPolicy) -> RehearsalBuffer<u8> {
        let config = BufferConfig {
            capacity: 12,
            num_classes: 3,
            sample_len: SampleLen::Variable,
            payload_len: 1,
            policy,
            seed: 5,
        };
        let mut buffer = RehearsalBuffer::new(config).unwrap();
        for batch in 0..10u8 {
            buffer.begin_era(u32::from(batch / 4));
            let ids: Vec<u8> = (0..5).map(|i| batch * 5 + i).collect();
            let samples: Vec<u8> = ids.iter().flat_map(|&id| vec![id; 1 + id as usize % 4]).collect();
            let lengths: Vec<u32> = ids.iter().map(|&id| 1 + u32::from(id) % 4).collect();
            let labels: Vec<u32> = ids.iter().map(|&id| u32::from(id) % 3).collect();
            let payloads: Vec<f32> = ids.iter().map(|&id| f32::from(id)).collect();
            buffer.offer_records(&samples, &lengths, &labels, &payloads).unwrap();
        }
        buffer
    }

    /// What `buffer` does next: a few draws and offers.
    fn future(buffer: &mut RehearsalBuffer<u8>) -> Vec<Drawn<u8>> {
        let mut draws = Vec::new();
        for step in 0..4u8 {
            let mut drawn = Drawn::default();
            buffer.draw(5, Some(2), &mut drawn);
            draws.push(drawn);
            buffer
                .offer_records(&[200 + step, 201], &[1, 1], &[0, 2], &[0.0, 1.0])
                .unwrap();
        }
        draws
    }

    #[test]
    fn a_restored_buffer_continues_exactly_as_the_saved_one() {
        for policy in [
            InsertionPolicy::Reservoir,
            InsertionPolicy::ClassBalanced,
            InsertionPolicy::Upstream {
                candidates: 2,
                batch_size: 5,
            },
        ] {
            let mut original = filled(policy);
            let mut bytes = Vec::new();
            original.save(&mut bytes).unwrap();
            let mut restored = RehearsalBuffer::load(&mut bytes.as_slice(), Some(original.config())).unwrap();
            assert_eq!(restored.class_counts(), original.class_counts());
            assert_eq!(restored.seen_per_class(), original.seen_per_class());
            assert_eq!(future(&mut restored), future(&mut original), "{policy:?}");
        }
    }

    #[test]
    fn damaged_or_foreign_states_are_refused_with_the_reason() {
        let buffer = filled(InsertionPolicy::Reservoir);
        let mut bytes = Vec::new();
        buffer.save(&mut bytes).unwrap();
        let error = |bytes: &[u8], expected: Option<&BufferConfig>| {
            RehearsalBuffer::load(&mut &bytes[..], expected)
                .expect_err("refused")
                .to_string()
        };
        assert!(error(&bytes[..bytes.len() - 3], None).contains("payloads: truncated"));
        assert!(error(b"PNG", None).contains("cannot read the header"));
        assert!(error(b"DCLBUF2\n", None).contains("bad magic"));
        let mut corrupt = bytes.clone();
        corrupt[20] = b'#';
        assert!(error(&corrupt, None).contains("corrupt bookkeeping"));
        let other = BufferConfig {
            seed: 6,
            ..*buffer.config()
        };
        assert!(error(&bytes, Some(&other)).contains("another buffer configuration"));
        // Every truncation and every flipped byte is an error or a valid buffer, never a panic.
        for cut in 0..bytes.len() {
            let _ = RehearsalBuffer::load(&mut &bytes[..cut], None);
        }
        for at in 0..bytes.len() {
            let mut flipped = bytes.clone();
            flipped[at] ^= 0x5A;
            let _ = RehearsalBuffer::load(&mut flipped.as_slice(), None);
        }
    }
}
