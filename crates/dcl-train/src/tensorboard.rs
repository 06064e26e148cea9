//! TensorBoard event files: scalars written as training goes, in the format TensorBoard reads
//! (TFRecord framing of `Event` protocol buffers with masked CRC-32C checksums). Only what
//! scalars need is encoded, by hand: `Event { wall_time = 1, step = 2, file_version = 3,
//! summary = 5 }`, `Summary { value = 1 }`, `Summary.Value { tag = 1, simple_value = 2 }`.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Appends scalar events to one event file.
pub struct EventWriter {
    file: BufWriter<File>,
    path: PathBuf,
}

impl EventWriter {
    /// A new event file in `dir` (created if need be), named as TensorBoard expects
    /// (`events.out.tfevents.SECONDS.HOST`), starting with the file-version event.
    pub fn create(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_else(|_| "localhost".into());
        let name = format!(
            "events.out.tfevents.{}.{}.{}",
            now.as_secs(),
            host.trim(),
            std::process::id()
        );
        let path = dir.join(name);
        let mut writer = EventWriter {
            file: BufWriter::new(File::create(&path)?),
            path,
        };
        let mut event = Vec::new();
        field_double(&mut event, 1, wall_time());
        field_bytes(&mut event, 3, b"brain.Event:2");
        writer.record(&event)?;
        writer.file.flush()?;
        Ok(writer)
    }

    /// The file written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes the scalars `values` (tag, value) at `step`, then flushes them to the file.
    pub fn scalars(&mut self, step: u64, values: &[(&str, f64)]) -> std::io::Result<()> {
        let mut summary = Vec::new();
        for (tag, value) in values {
            let mut entry = Vec::new();
            field_bytes(&mut entry, 1, tag.as_bytes());
            field_float(&mut entry, 2, *value as f32);
            field_bytes(&mut summary, 1, &entry);
        }
        let mut event = Vec::new();
        field_double(&mut event, 1, wall_time());
        field_varint(&mut event, 2, step);
        field_bytes(&mut event, 5, &summary);
        self.record(&event)?;
        self.file.flush()
    }

    /// One TFRecord: length, its masked CRC, the data, its masked CRC.
    fn record(&mut self, data: &[u8]) -> std::io::Result<()> {
        let length = (data.len() as u64).to_le_bytes();
        self.file.write_all(&length)?;
        self.file.write_all(&masked_crc(&length).to_le_bytes())?;
        self.file.write_all(data)?;
        self.file.write_all(&masked_crc(data).to_le_bytes())
    }
}

fn wall_time() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

fn varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn key(out: &mut Vec<u8>, field: u32, wire_type: u8) {
    varint(out, u64::from(field) << 3 | u64::from(wire_type));
}

fn field_varint(out: &mut Vec<u8>, field: u32, value: u64) {
    key(out, field, 0);
    varint(out, value);
}

fn field_double(out: &mut Vec<u8>, field: u32, value: f64) {
    key(out, field, 1);
    out.extend_from_slice(&value.to_le_bytes());
}

fn field_bytes(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    key(out, field, 2);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn field_float(out: &mut Vec<u8>, field: u32, value: f32) {
    key(out, field, 5);
    out.extend_from_slice(&value.to_le_bytes());
}

/// CRC-32C (Castagnoli), as TFRecord uses, masked as TFRecord masks it.
fn masked_crc(data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut crc = i as u32;
            let mut bit = 0;
            while bit < 8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0x82F6_3B78
                } else {
                    crc >> 1
                };
                bit += 1;
            }
            table[i] = crc;
            i += 1;
        }
        table
    };
    let crc = !data.iter().fold(!0u32, |crc, &b| {
        TABLE[((crc ^ u32::from(b)) & 0xFF) as usize] ^ (crc >> 8)
    });
    crc.rotate_right(15).wrapping_add(0xA282_EAD8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_reference_check_value() {
        // CRC-32C of "123456789" is 0xE3069283 (RFC 3720's check value); masked as TFRecord.
        let crc: u32 = 0xE306_9283;
        assert_eq!(masked_crc(b"123456789"), crc.rotate_right(15).wrapping_add(0xA282_EAD8));
    }

    #[test]
    fn varints_encode_as_protocol_buffers() {
        let mut out = Vec::new();
        varint(&mut out, 300);
        assert_eq!(out, [0xAC, 0x02]);
        let mut out = Vec::new();
        field_float(&mut out, 2, 1.0);
        assert_eq!(out, [0x15, 0, 0, 0x80, 0x3F]);
    }

    #[test]
    fn records_are_framed_with_their_lengths_and_checksums() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = EventWriter::create(dir.path()).unwrap();
        writer.scalars(7, &[("train/loss", 0.5)]).unwrap();
        let bytes = std::fs::read(writer.path()).unwrap();
        let mut at = 0;
        let mut records = 0;
        while at < bytes.len() {
            let length = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap()) as usize;
            assert_eq!(
                u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap()),
                masked_crc(&bytes[at..at + 8])
            );
            let data = &bytes[at + 12..at + 12 + length];
            let crc = u32::from_le_bytes(bytes[at + 12 + length..at + 16 + length].try_into().unwrap());
            assert_eq!(crc, masked_crc(data));
            at += 16 + length;
            records += 1;
        }
        assert_eq!(records, 2, "the version event and one scalar event");
    }
}
