//! The buffer: contiguous slots, the bookkeeping of which class holds which slot, and the
//! insertion and sampling algorithms.

use rand::seq::index;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::InsertionPolicy;

/// The shape and budget of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BufferConfig {
    /// Slots in all; never exceeded. With [`InsertionPolicy::Upstream`], at least
    /// `num_classes`: one bucket per class, the capacity split as evenly as it goes.
    pub capacity: usize,
    pub num_classes: usize,
    /// Values per sample.
    pub sample_len: SampleLen,
    /// Values of the per-sample payload (0: none).
    pub payload_len: usize,
    pub policy: InsertionPolicy,
    /// Seed of the buffer's own random choices.
    pub seed: u64,
}

/// How many values the samples of a buffer have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SampleLen {
    /// Every sample has this many values (a tensor): the slots are one preallocated block.
    Fixed(usize),
    /// Each sample has a length of its own (an encoded file): each slot holds its own
    /// allocation, which a replacing sample reuses.
    Variable,
}

impl std::fmt::Display for SampleLen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SampleLen::Fixed(len) => write!(f, "{len}"),
            SampleLen::Variable => f.write_str("variable"),
        }
    }
}

impl BufferConfig {
    /// Refuses a configuration no buffer can run with, naming the problem.
    pub fn validate(&self) -> Result<(), BufferError> {
        if self.capacity == 0 || self.num_classes == 0 || self.sample_len == SampleLen::Fixed(0) {
            return Err(BufferError::Config(format!(
                "capacity ({}), classes ({}) and sample size ({}) must be positive",
                self.capacity, self.num_classes, self.sample_len
            )));
        }
        if let InsertionPolicy::Upstream { candidates, batch_size } = self.policy {
            if self.capacity < self.num_classes {
                return Err(BufferError::Config(format!(
                    "the upstream policy needs a slot per class: {} slots for {} classes",
                    self.capacity, self.num_classes
                )));
            }
            if batch_size == 0 || candidates > batch_size {
                return Err(BufferError::Config(format!(
                    "num_candidates ({candidates}) must be at most the batch size ({batch_size}), which must be positive"
                )));
            }
        }
        Ok(())
    }
}

/// A configuration or a sample that a buffer cannot take.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BufferError {
    #[error("rehearsal buffer: {0}")]
    Config(String),
    #[error("rehearsal buffer: label {label} is out of range ({num_classes} classes)")]
    Label { label: u32, num_classes: usize },
    #[error("rehearsal buffer: {values} values do not make whole samples of the buffer's length ({sample_len})")]
    Shape { values: usize, sample_len: SampleLen },
    /// Another worker's buffer could not be reached.
    #[error("rehearsal buffer: {0}")]
    Transport(String),
    /// A saved state that cannot be restored.
    #[error("rehearsal buffer state: {0}")]
    State(String),
}

/// Representatives drawn from a buffer, appended sample after sample.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Drawn<T> {
    /// The values of every sample, one after the other.
    pub samples: Vec<T>,
    /// The number of values of each sample.
    pub lengths: Vec<u32>,
    pub labels: Vec<u32>,
    pub payloads: Vec<f32>,
    /// The rank of the worker whose buffer each representative came from, as a
    /// [`crate::Transport`] fills it (a buffer's own draws leave it alone).
    pub origins: Vec<u32>,
}

impl<T> Drawn<T> {
    /// The number of representatives.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether nothing was drawn.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Each sample's values, in order.
    pub fn records(&self) -> impl Iterator<Item = &[T]> {
        let mut rest = &self.samples[..];
        self.lengths.iter().map(move |&len| {
            let (record, tail) = rest.split_at(len as usize);
            rest = tail;
            record
        })
    }

    /// Empties the lists, keeping their memory.
    pub fn clear(&mut self) {
        self.samples.clear();
        self.lengths.clear();
        self.labels.clear();
        self.payloads.clear();
        self.origins.clear();
    }
}

/// Where an offered sample goes.
enum Placement {
    /// Into slot `slot`, which was free.
    Free(u32),
    /// Over slot `slot`, whose sample is evicted.
    Replace(u32),
    /// Nowhere: the sample is not kept.
    Skip,
}

/// The samples of the slots.
#[derive(Debug, Clone)]
pub(crate) enum Slots<T> {
    /// `len` values per slot, slot after slot.
    Fixed { len: usize, values: Vec<T> },
    /// One allocation per slot.
    Variable(Vec<Vec<T>>),
}

impl<T: Copy + Default> Slots<T> {
    fn new(capacity: usize, sample_len: SampleLen) -> Self {
        match sample_len {
            SampleLen::Fixed(len) => Slots::Fixed {
                len,
                values: vec![T::default(); capacity * len],
            },
            SampleLen::Variable => Slots::Variable(vec![Vec::new(); capacity]),
        }
    }

    pub(crate) fn get(&self, slot: usize) -> &[T] {
        match self {
            Slots::Fixed { len, values } => &values[slot * len..(slot + 1) * len],
            Slots::Variable(slots) => &slots[slot],
        }
    }

    fn set(&mut self, slot: usize, sample: &[T]) {
        match self {
            Slots::Fixed { len, values } => values[slot * *len..(slot + 1) * *len].copy_from_slice(sample),
            Slots::Variable(slots) => {
                slots[slot].clear();
                slots[slot].extend_from_slice(sample);
            }
        }
    }
}

/// A rehearsal buffer of samples of type `T` (`f32` or `u8`).
#[derive(Debug, Clone)]
pub struct RehearsalBuffer<T> {
    config: BufferConfig,
    samples: Slots<T>,
    payloads: Vec<f32>,
    /// Label of each occupied slot.
    labels: Vec<u32>,
    /// The era (task) in which each occupied slot was last written.
    eras: Vec<u32>,
    /// The era of the samples offered now.
    era: u32,
    /// The occupied slots, in the order they were first filled.
    occupied: Vec<u32>,
    /// The slots of each class, and each slot's position in its class's list.
    by_class: Vec<Vec<u32>>,
    position: Vec<u32>,
    /// Samples offered so far, in all and per class.
    seen: u64,
    seen_per_class: Vec<u64>,
    rng: ChaCha8Rng,
}

/// A buffer's state but its samples and payloads, as a checkpoint keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Bookkeeping {
    labels: Vec<u32>,
    eras: Vec<u32>,
    era: u32,
    occupied: Vec<u32>,
    /// The slots of each class, in order (positions follow from it).
    by_class: Vec<Vec<u32>>,
    seen: u64,
    seen_per_class: Vec<u64>,
    rng_seed: [u8; 32],
    rng_stream: u64,
    /// The random stream's position (a u128, as decimal text).
    rng_word_pos: String,
}

impl<T: Copy + Default> RehearsalBuffer<T> {
    /// The slots, the payloads and the rest of the state.
    pub(crate) fn parts(&self) -> (&Slots<T>, &[f32], Bookkeeping) {
        let book = Bookkeeping {
            labels: self.labels.clone(),
            eras: self.eras.clone(),
            era: self.era,
            occupied: self.occupied.clone(),
            by_class: self.by_class.clone(),
            seen: self.seen,
            seen_per_class: self.seen_per_class.clone(),
            rng_seed: self.rng.get_seed(),
            rng_stream: self.rng.get_stream(),
            rng_word_pos: self.rng.get_word_pos().to_string(),
        };
        (&self.samples, &self.payloads, book)
    }

    /// The buffer of [`RehearsalBuffer::parts`], each slot `lengths[slot]` values of
    /// `samples` in turn; refuses parts that do not make a consistent buffer (the algorithms
    /// rely on it), naming the first inconsistency.
    pub(crate) fn from_parts(
        config: BufferConfig,
        lengths: &[u32],
        samples: &[T],
        payloads: Vec<f32>,
        book: Bookkeeping,
    ) -> Result<Self, BufferError> {
        config.validate().map_err(|e| BufferError::State(e.to_string()))?;
        let broken = |what: &str| Err(BufferError::State(what.to_owned()));
        let (capacity, classes) = (config.capacity, config.num_classes);
        if lengths.len() != capacity || book.labels.len() != capacity || book.eras.len() != capacity {
            return broken("slot lists of another length than the capacity");
        }
        if book.by_class.len() != classes || book.seen_per_class.len() != classes {
            return broken("class lists of another length than the classes");
        }
        if Some(payloads.len()) != capacity.checked_mul(config.payload_len) {
            return broken("payloads of another size than the slots'");
        }
        if lengths.iter().map(|&l| l as u64).sum::<u64>() != samples.len() as u64 {
            return broken("sample lengths that do not add up to the samples");
        }
        if let SampleLen::Fixed(len) = config.sample_len {
            if lengths.iter().any(|&l| l as usize != len) {
                return broken("a sample of another length than the buffer's");
            }
        }
        // Every occupied slot once, in its class's list at its label; nothing else listed.
        let mut listed = vec![false; capacity];
        let mut position = vec![0u32; capacity];
        for (class, slots) in book.by_class.iter().enumerate() {
            for (at, &slot) in slots.iter().enumerate() {
                let s = slot as usize;
                if s >= capacity || listed[s] || book.labels[s] as usize != class {
                    return broken("class lists that disagree with the labels");
                }
                listed[s] = true;
                position[s] = at as u32;
            }
        }
        let mut occupied = vec![false; capacity];
        for &slot in &book.occupied {
            let s = slot as usize;
            if s >= capacity || occupied[s] || !listed[s] {
                return broken("occupied slots that disagree with the class lists");
            }
            occupied[s] = true;
        }
        if listed.iter().filter(|&&l| l).count() != book.occupied.len() {
            return broken("class lists that hold free slots");
        }
        // Free slots are taken in order: the occupied ones are the first of their range.
        let first_free = |range: std::ops::Range<usize>, stored: usize| range.take(stored).all(|s| occupied[s]);
        let ordered = match config.policy {
            InsertionPolicy::Upstream { .. } => (0..classes).all(|class| {
                let (start, bucket) = upstream_bucket(capacity, classes, class);
                let stored = book.by_class[class].len();
                let in_bucket = book.by_class[class]
                    .iter()
                    .all(|&s| (start..start + bucket).contains(&(s as usize)));
                stored <= bucket && in_bucket && first_free(start..start + bucket, stored)
            }),
            _ => first_free(0..capacity, book.occupied.len()),
        };
        if !ordered {
            return broken("occupied slots out of the policy's order");
        }
        let word_pos: u128 = book
            .rng_word_pos
            .parse()
            .map_err(|_| BufferError::State("a random stream position that is not a number".to_owned()))?;
        let mut rng = ChaCha8Rng::from_seed(book.rng_seed);
        rng.set_stream(book.rng_stream);
        rng.set_word_pos(word_pos);
        let mut slots = Slots::new(capacity, config.sample_len);
        let mut start = 0;
        for (slot, &len) in lengths.iter().enumerate() {
            slots.set(slot, &samples[start..start + len as usize]);
            start += len as usize;
        }
        Ok(RehearsalBuffer {
            config,
            samples: slots,
            payloads,
            labels: book.labels,
            eras: book.eras,
            era: book.era,
            occupied: book.occupied,
            by_class: book.by_class,
            position,
            seen: book.seen,
            seen_per_class: book.seen_per_class,
            rng,
        })
    }

    /// A buffer with every slot preallocated.
    pub fn new(config: BufferConfig) -> Result<Self, BufferError> {
        config.validate()?;
        Ok(RehearsalBuffer {
            samples: Slots::new(config.capacity, config.sample_len),
            payloads: vec![0.0; config.capacity * config.payload_len],
            labels: vec![0; config.capacity],
            eras: vec![0; config.capacity],
            era: 0,
            occupied: Vec::with_capacity(config.capacity),
            by_class: vec![Vec::new(); config.num_classes],
            position: vec![0; config.capacity],
            seen: 0,
            seen_per_class: vec![0; config.num_classes],
            rng: ChaCha8Rng::seed_from_u64(config.seed),
            config,
        })
    }

    /// The buffer's configuration.
    pub fn config(&self) -> &BufferConfig {
        &self.config
    }

    /// The number of samples stored.
    pub fn len(&self) -> usize {
        self.occupied.len()
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.occupied.is_empty()
    }

    /// The number of samples stored per class.
    pub fn class_counts(&self) -> Vec<usize> {
        self.by_class.iter().map(Vec::len).collect()
    }

    /// The number of samples offered so far.
    pub fn seen(&self) -> u64 {
        self.seen
    }

    /// The number of samples offered so far, per class.
    pub fn seen_per_class(&self) -> &[u64] {
        &self.seen_per_class
    }

    /// Starts era `era` (a task): samples offered from now on are tagged with it, so that
    /// draws can be restricted to earlier eras.
    pub fn begin_era(&mut self, era: u32) {
        self.era = era;
    }

    /// Offers a batch of samples of a fixed length (`labels.len()` samples of `sample_len`
    /// values, and as many payloads when the buffer keeps them); the policy decides which
    /// are kept.
    pub fn offer(&mut self, samples: &[T], labels: &[u32], payloads: &[f32]) -> Result<(), BufferError> {
        let shape_error = || BufferError::Shape {
            values: samples.len(),
            sample_len: self.config.sample_len,
        };
        let SampleLen::Fixed(len) = self.config.sample_len else {
            return Err(shape_error());
        };
        if samples.len() != labels.len() * len {
            return Err(shape_error());
        }
        let lengths = vec![len as u32; labels.len()];
        self.offer_records(samples, &lengths, labels, payloads)
    }

    /// Offers a batch of samples given one after the other in `samples`, sample `i` being
    /// `lengths[i]` values long (which a buffer of fixed-length samples checks).
    pub fn offer_records(
        &mut self,
        samples: &[T],
        lengths: &[u32],
        labels: &[u32],
        payloads: &[f32],
    ) -> Result<(), BufferError> {
        self.check_records(samples, lengths, labels, payloads)?;
        let plen = self.config.payload_len;
        let mut start = 0;
        for (i, (&label, &len)) in labels.iter().zip(lengths).enumerate() {
            let sample = &samples[start..start + len as usize];
            start += len as usize;
            self.seen += 1;
            self.seen_per_class[label as usize] += 1;
            let slot = match self.place(label) {
                Placement::Skip => continue,
                Placement::Free(slot) => {
                    self.occupied.push(slot);
                    slot
                }
                Placement::Replace(slot) => {
                    self.release(slot);
                    slot
                }
            };
            self.assign(slot, label);
            let s = slot as usize;
            self.eras[s] = self.era;
            self.samples.set(s, sample);
            self.payloads[s * plen..(s + 1) * plen].copy_from_slice(&payloads[i * plen..(i + 1) * plen]);
        }
        Ok(())
    }

    /// Draws up to `count` stored samples uniformly without duplicates (all of them when
    /// fewer are stored) and appends them to `out`.
    pub fn sample(&mut self, count: usize, out: &mut Drawn<T>) {
        self.draw(count, None, out);
    }

    /// As [`RehearsalBuffer::sample`], among the samples written before era `era` only.
    pub fn sample_before(&mut self, era: u32, count: usize, out: &mut Drawn<T>) {
        self.draw(count, Some(era), out);
    }

    /// [`RehearsalBuffer::draw_with`] driven by the buffer's own random stream (which its
    /// insertions share: the draws of one worker, in stream order, are reproducible).
    pub fn draw(&mut self, count: usize, before_era: Option<u32>, out: &mut Drawn<T>) {
        let mut rng = self.rng.clone();
        self.draw_with(&mut rng, count, before_era, out);
        self.rng = rng;
    }

    /// Draws up to `count` samples uniformly without duplicates among those written before
    /// era `before_era` (all stored samples with `None`), choosing with `rng`, and appends
    /// them to `out`. Leaves the buffer untouched: draws served to other workers take their
    /// own seeded stream, so that they do not depend on when they arrive.
    pub fn draw_with(&self, rng: &mut impl Rng, count: usize, before_era: Option<u32>, out: &mut Drawn<T>) {
        match before_era {
            None => {
                for i in index::sample(rng, self.occupied.len(), count.min(self.occupied.len())) {
                    self.copy_slot(self.occupied[i] as usize, out);
                }
            }
            Some(era) => {
                let eligible: Vec<u32> = self
                    .occupied
                    .iter()
                    .copied()
                    .filter(|&s| self.eras[s as usize] < era)
                    .collect();
                for i in index::sample(rng, eligible.len(), count.min(eligible.len())) {
                    self.copy_slot(eligible[i] as usize, out);
                }
            }
        }
    }

    /// The number of samples a draw with `before_era` chooses from.
    pub fn eligible(&self, before_era: Option<u32>) -> usize {
        match before_era {
            Some(era) => self.occupied.iter().filter(|&&s| self.eras[s as usize] < era).count(),
            None => self.occupied.len(),
        }
    }

    /// Checks a batch given as [`RehearsalBuffer::offer_records`] takes it: as many lengths and
    /// payloads as labels, samples of those lengths (of the buffer's, when fixed), labels in range.
    fn check_records(
        &self,
        samples: &[T],
        lengths: &[u32],
        labels: &[u32],
        payloads: &[f32],
    ) -> Result<(), BufferError> {
        let (n, plen) = (labels.len(), self.config.payload_len);
        let total: usize = lengths.iter().map(|&l| l as usize).sum();
        let fits = |&l: &u32| match self.config.sample_len {
            SampleLen::Fixed(len) => l as usize == len,
            SampleLen::Variable => true,
        };
        if lengths.len() != n || total != samples.len() || !lengths.iter().all(fits) {
            return Err(BufferError::Shape {
                values: samples.len(),
                sample_len: self.config.sample_len,
            });
        }
        if payloads.len() != n * plen {
            return Err(BufferError::Shape {
                values: payloads.len(),
                sample_len: SampleLen::Fixed(plen),
            });
        }
        match labels.iter().find(|&&l| l as usize >= self.config.num_classes) {
            Some(&label) => Err(BufferError::Label {
                label,
                num_classes: self.config.num_classes,
            }),
            None => Ok(()),
        }
    }

    /// Appends every stored sample of `class` to `out`, in the order they were stored.
    pub fn class_samples(&self, class: usize, out: &mut Drawn<T>) {
        for &slot in &self.by_class[class] {
            self.copy_slot(slot as usize, out);
        }
    }

    /// Replaces the whole content by `samples` (as [`RehearsalBuffer::offer_records`] gives
    /// them), stored in order, tagged with the current era, bypassing the policy: a memory
    /// curated by its owner (iCaRL's exemplars). The counts of samples offered stay.
    pub fn replace_contents(
        &mut self,
        samples: &[T],
        lengths: &[u32],
        labels: &[u32],
        payloads: &[f32],
    ) -> Result<(), BufferError> {
        let (n, plen) = (labels.len(), self.config.payload_len);
        if n > self.config.capacity {
            return Err(BufferError::Shape {
                values: n,
                sample_len: SampleLen::Fixed(self.config.capacity),
            });
        }
        self.check_records(samples, lengths, labels, payloads)?;
        self.occupied.clear();
        for class in &mut self.by_class {
            class.clear();
        }
        let mut start = 0;
        for (i, (&label, &len)) in labels.iter().zip(lengths).enumerate() {
            let slot = i as u32;
            self.occupied.push(slot);
            self.assign(slot, label);
            self.eras[i] = self.era;
            self.samples.set(i, &samples[start..start + len as usize]);
            start += len as usize;
            self.payloads[i * plen..(i + 1) * plen].copy_from_slice(&payloads[i * plen..(i + 1) * plen]);
        }
        Ok(())
    }

    /// Appends slot `slot` to `out`.
    pub fn copy_slot(&self, slot: usize, out: &mut Drawn<T>) {
        let plen = self.config.payload_len;
        let sample = self.samples.get(slot);
        out.samples.extend_from_slice(sample);
        out.lengths.push(sample.len() as u32);
        out.payloads
            .extend_from_slice(&self.payloads[slot * plen..(slot + 1) * plen]);
        out.labels.push(self.labels[slot]);
    }

    /// The occupied slots, for transports that address slots directly.
    pub fn occupied_slots(&self) -> &[u32] {
        &self.occupied
    }

    fn assign(&mut self, slot: u32, label: u32) {
        self.labels[slot as usize] = label;
        self.position[slot as usize] = self.by_class[label as usize].len() as u32;
        self.by_class[label as usize].push(slot);
    }

    /// Takes `slot` out of its class's list (its data is about to be overwritten).
    fn release(&mut self, slot: u32) {
        let class = &mut self.by_class[self.labels[slot as usize] as usize];
        let at = self.position[slot as usize] as usize;
        class.swap_remove(at);
        if let Some(&moved) = class.get(at) {
            self.position[moved as usize] = at as u32;
        }
    }

    fn random_slot_of(&mut self, class: usize) -> u32 {
        let slots = &self.by_class[class];
        slots[self.rng.random_range(0..slots.len())]
    }

    fn place(&mut self, label: u32) -> Placement {
        let class = label as usize;
        let capacity = self.config.capacity;
        match self.config.policy {
            InsertionPolicy::Upstream { candidates, batch_size } => {
                let (start, bucket) = upstream_bucket(capacity, self.config.num_classes, class);
                let stored = self.by_class[class].len();
                if stored < bucket {
                    Placement::Free((start + stored) as u32)
                } else if self.rng.random_range(0..batch_size) < candidates {
                    Placement::Replace(self.random_slot_of(class))
                } else {
                    Placement::Skip
                }
            }
            InsertionPolicy::Reservoir => {
                if self.occupied.len() < capacity {
                    Placement::Free(self.occupied.len() as u32)
                } else {
                    let j = self.rng.random_range(0..self.seen);
                    if (j as usize) < capacity {
                        Placement::Replace(self.occupied[j as usize])
                    } else {
                        Placement::Skip
                    }
                }
            }
            InsertionPolicy::ClassBalanced => {
                if self.occupied.len() < capacity {
                    return Placement::Free(self.occupied.len() as u32);
                }
                let largest = self.by_class.iter().map(Vec::len).max().unwrap_or(0);
                if self.by_class[class].len() < largest {
                    let full: Vec<usize> = (0..self.by_class.len())
                        .filter(|&c| self.by_class[c].len() == largest)
                        .collect();
                    let victim = full[self.rng.random_range(0..full.len())];
                    Placement::Replace(self.random_slot_of(victim))
                } else {
                    let stored = self.by_class[class].len() as u64;
                    if self.rng.random_range(0..self.seen_per_class[class]) < stored {
                        Placement::Replace(self.random_slot_of(class))
                    } else {
                        Placement::Skip
                    }
                }
            }
        }
    }
}

/// The first slot and the size of class `class`'s bucket under the upstream policy: the
/// capacity split evenly over the classes, the remainder one slot each to the first classes.
fn upstream_bucket(capacity: usize, num_classes: usize, class: usize) -> (usize, usize) {
    let (base, remainder) = (capacity / num_classes, capacity % num_classes);
    (
        class * base + class.min(remainder),
        base + usize::from(class < remainder),
    )
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn config(capacity: usize, num_classes: usize, policy: InsertionPolicy, seed: u64) -> BufferConfig {
        BufferConfig {
            capacity,
            num_classes,
            sample_len: SampleLen::Fixed(2),
            payload_len: 0,
            policy,
            seed,
        }
    }

    /// Samples whose two values are (stream position, label).
    fn stream(labels: &[u32], start: usize) -> Vec<f32> {
        labels
            .iter()
            .enumerate()
            .flat_map(|(i, &l)| [(start + i) as f32, l as f32])
            .collect()
    }

    fn offer_stream(buffer: &mut RehearsalBuffer<f32>, labels: &[u32], batch: usize) {
        for (b, chunk) in labels.chunks(batch).enumerate() {
            buffer.offer(&stream(chunk, b * batch), chunk, &[]).unwrap();
        }
    }

    const POLICIES: [InsertionPolicy; 3] = [
        InsertionPolicy::Upstream {
            candidates: 8,
            batch_size: 64,
        },
        InsertionPolicy::Reservoir,
        InsertionPolicy::ClassBalanced,
    ];

    /// The stored (position, label) pairs, checked against the bookkeeping.
    fn contents(buffer: &mut RehearsalBuffer<f32>) -> Vec<(usize, u32)> {
        let mut drawn = Drawn::default();
        buffer.sample(usize::MAX, &mut drawn);
        let pairs: Vec<(usize, u32)> = drawn.samples.chunks(2).map(|s| (s[0] as usize, s[1] as u32)).collect();
        for (&(_, label), &stored) in pairs.iter().zip(&drawn.labels) {
            assert_eq!(label, stored, "a sample lost its label");
        }
        let counts = buffer.class_counts();
        for c in 0..counts.len() {
            assert_eq!(counts[c], pairs.iter().filter(|p| p.1 == c as u32).count());
        }
        pairs
    }

    #[test]
    fn no_policy_ever_exceeds_its_budget_or_mixes_up_samples() {
        for policy in POLICIES {
            for seed in 0..5 {
                let mut buffer = RehearsalBuffer::new(config(50, 10, policy, seed)).unwrap();
                let mut rng = ChaCha8Rng::seed_from_u64(seed + 100);
                let labels: Vec<u32> = (0..3000)
                    .map(|i| {
                        if i < 1500 {
                            rng.random_range(0..4)
                        } else {
                            rng.random_range(0..10)
                        }
                    })
                    .collect();
                for (b, chunk) in labels.chunks(64).enumerate() {
                    buffer.offer(&stream(chunk, b * 64), chunk, &[]).unwrap();
                    assert!(buffer.len() <= 50, "{policy:?} exceeded its budget");
                }
                let pairs = contents(&mut buffer);
                assert_eq!(pairs.len(), buffer.len());
                let distinct: HashSet<usize> = pairs.iter().map(|p| p.0).collect();
                assert_eq!(distinct.len(), pairs.len(), "{policy:?} stored a sample twice");
                for (position, label) in pairs {
                    assert_eq!(labels[position], label, "{policy:?}: slot data and label disagree");
                }
            }
        }
    }

    #[test]
    fn reservoir_keeps_every_stream_item_with_equal_probability() {
        // 20 slots, a stream of 100 items: each should be kept with probability 0.2.
        let trials = 4000;
        let mut kept = vec![0u32; 100];
        for seed in 0..trials {
            let mut buffer = RehearsalBuffer::new(config(20, 1, InsertionPolicy::Reservoir, seed)).unwrap();
            offer_stream(&mut buffer, &[0; 100], 7);
            for (position, _) in contents(&mut buffer) {
                kept[position] += 1;
            }
        }
        let expected = trials as f64 * 0.2;
        let tolerance = 4.0 * (trials as f64 * 0.2 * 0.8).sqrt(); // 4 sigma
        for (position, &k) in kept.iter().enumerate() {
            assert!(
                (k as f64 - expected).abs() < tolerance,
                "item {position} kept {k} times, expected {expected} ± {tolerance}"
            );
        }
    }

    #[test]
    fn upstream_favours_recent_samples_unlike_reservoir() {
        let trials = 400;
        let mut early = 0;
        for seed in 0..trials {
            let mut buffer = RehearsalBuffer::new(config(
                10,
                1,
                InsertionPolicy::Upstream {
                    candidates: 8,
                    batch_size: 16,
                },
                seed,
            ))
            .unwrap();
            offer_stream(&mut buffer, &[0; 200], 16);
            early += contents(&mut buffer).iter().filter(|p| p.0 < 100).count();
        }
        // A reservoir keeps half its slots for the first half of the stream; upstream far fewer.
        assert!((early as f64) < 0.2 * (trials * 10) as f64, "{early}");
    }

    #[test]
    fn class_balanced_rebalances_as_classes_arrive_and_samples_each_class_uniformly() {
        let mut buffer = RehearsalBuffer::new(config(100, 10, InsertionPolicy::ClassBalanced, 1)).unwrap();
        for task in 0..5u32 {
            let labels: Vec<u32> = (0..1000).map(|i| 2 * task + (i % 2)).collect();
            offer_stream(&mut buffer, &labels, 64);
            let counts = buffer.class_counts();
            let seen: Vec<usize> = counts[..2 * (task as usize + 1)].to_vec();
            let (min, max) = (seen.iter().min().unwrap(), seen.iter().max().unwrap());
            assert_eq!(buffer.len(), 100);
            assert!(max - min <= 1, "after task {task}: {counts:?}");
        }
        // Within a class, kept samples spread over its whole stream (not just its end).
        let trials = 300;
        let mut first_half = 0;
        let mut total = 0;
        for seed in 0..trials {
            let mut buffer = RehearsalBuffer::new(config(10, 2, InsertionPolicy::ClassBalanced, seed)).unwrap();
            let labels: Vec<u32> = (0..400).map(|i| i % 2).collect();
            offer_stream(&mut buffer, &labels, 16);
            let pairs = contents(&mut buffer);
            total += pairs.len();
            first_half += pairs.iter().filter(|p| p.0 < 200).count();
        }
        let share = first_half as f64 / total as f64;
        assert!(
            (share - 0.5).abs() < 0.05,
            "first half of the stream holds {share:.3} of the samples"
        );
    }

    #[test]
    fn sampling_is_without_duplicates_seeded_and_capped_by_the_content() {
        let mut buffer = RehearsalBuffer::new(config(30, 3, InsertionPolicy::ClassBalanced, 9)).unwrap();
        let mut drawn = Drawn::default();
        buffer.sample(8, &mut drawn);
        assert!(drawn.is_empty(), "an empty buffer gives nothing");
        offer_stream(&mut buffer, &(0..20).map(|i| i % 3).collect::<Vec<_>>(), 5);
        buffer.sample(8, &mut drawn);
        let positions: HashSet<u32> = drawn.samples.chunks(2).map(|s| s[0] as u32).collect();
        assert_eq!(positions.len(), 8);
        drawn.clear();
        buffer.sample(100, &mut drawn);
        assert_eq!(drawn.len(), 20, "fewer stored than asked: all of them");
        let mut again = RehearsalBuffer::new(config(30, 3, InsertionPolicy::ClassBalanced, 9)).unwrap();
        offer_stream(&mut again, &(0..20).map(|i| i % 3).collect::<Vec<_>>(), 5);
        let (mut a, mut b) = (Drawn::default(), Drawn::default());
        buffer.sample(5, &mut a);
        again.sample(8, &mut Drawn::default());
        again.sample(100, &mut Drawn::default());
        again.sample(5, &mut b);
        assert_eq!(a, b, "same seed and history, same draws");
    }

    #[test]
    fn draws_can_be_restricted_to_earlier_eras() {
        let mut buffer = RehearsalBuffer::new(config(100, 2, InsertionPolicy::ClassBalanced, 3)).unwrap();
        offer_stream(&mut buffer, &[0; 30], 10);
        buffer.begin_era(1);
        let mut drawn = Drawn::default();
        buffer.sample_before(1, 100, &mut drawn);
        assert_eq!(drawn.len(), 30);
        buffer.offer(&stream(&[1; 20], 30), &[1; 20], &[]).unwrap();
        drawn.clear();
        buffer.sample_before(1, 100, &mut drawn);
        assert_eq!(drawn.len(), 30, "samples of the current era are not drawn");
        assert!(drawn.labels.iter().all(|&l| l == 0));
        drawn.clear();
        buffer.sample(100, &mut drawn);
        assert_eq!(drawn.len(), 50);
    }

    #[test]
    fn a_curated_memory_replaces_the_content_and_keeps_its_order_per_class() {
        let mut buffer = RehearsalBuffer::new(config(6, 3, InsertionPolicy::ClassBalanced, 1)).unwrap();
        buffer.offer(&[1.0, 1.5, 2.0, 2.5, 3.0, 3.5], &[0, 1, 2], &[]).unwrap();
        buffer.begin_era(4);
        let samples = [10.0, 10.5, 11.0, 11.5, 12.0, 12.5, 20.0, 20.5];
        buffer.replace_contents(&samples, &[2; 4], &[1, 1, 1, 2], &[]).unwrap();
        assert_eq!(buffer.len(), 4);
        assert_eq!(buffer.class_counts(), vec![0, 3, 1]);
        assert_eq!(buffer.seen(), 3, "offered counts stay");
        let mut out = Drawn::default();
        buffer.class_samples(1, &mut out);
        assert_eq!(out.samples, vec![10.0, 10.5, 11.0, 11.5, 12.0, 12.5], "stored order");
        assert_eq!(buffer.eligible(Some(4)), 0, "all of era 4");
        assert_eq!(buffer.eligible(Some(5)), 4);
        assert!(
            buffer.replace_contents(&[0.0; 14], &[2; 7], &[0; 7], &[]).is_err(),
            "over capacity"
        );
        assert!(
            buffer.replace_contents(&[0.0; 2], &[2], &[3], &[]).is_err(),
            "label out of range"
        );
    }

    #[test]
    fn payloads_travel_with_their_samples() {
        let mut cfg = config(4, 2, InsertionPolicy::Reservoir, 0);
        cfg.payload_len = 1;
        let mut buffer = RehearsalBuffer::new(cfg).unwrap();
        buffer.offer(&[1.0, 1.0, 2.0, 0.0], &[1, 0], &[10.0, 20.0]).unwrap();
        let mut drawn = Drawn::default();
        buffer.sample(2, &mut drawn);
        for (i, sample) in drawn.samples.chunks(2).enumerate() {
            assert_eq!(drawn.payloads[i], sample[0] * 10.0);
        }
    }

    #[test]
    fn upstream_buckets_spread_a_capacity_that_is_not_a_multiple_of_the_classes() {
        let policy = InsertionPolicy::Upstream {
            candidates: 8,
            batch_size: 64,
        };
        let mut buffer = RehearsalBuffer::new(config(25, 10, policy, 0)).unwrap();
        let labels: Vec<u32> = (0..1000).map(|i| i % 10).collect();
        offer_stream(&mut buffer, &labels, 50);
        assert_eq!(buffer.class_counts(), vec![3, 3, 3, 3, 3, 2, 2, 2, 2, 2]);
        assert_eq!(buffer.len(), 25);
        contents(&mut buffer);
        let too_small = RehearsalBuffer::<f32>::new(config(9, 10, policy, 0)).unwrap_err();
        assert!(too_small
            .to_string()
            .contains("a slot per class: 9 slots for 10 classes"));
        // The other policies take any positive capacity.
        assert!(RehearsalBuffer::<f32>::new(config(5, 10, InsertionPolicy::Reservoir, 0)).is_ok());
    }

    #[test]
    fn seeded_draws_leave_the_buffer_and_its_stream_untouched() {
        let mut buffer = RehearsalBuffer::new(config(50, 10, InsertionPolicy::ClassBalanced, 3)).unwrap();
        let labels: Vec<u32> = (0..200).map(|i| i % 10).collect();
        offer_stream(&mut buffer, &labels, 20);
        let mut twin = buffer.clone();
        let draw = |seed: u64| {
            let mut out = Drawn::default();
            buffer.draw_with(&mut ChaCha8Rng::seed_from_u64(seed), 10, None, &mut out);
            out
        };
        assert_eq!(draw(1), draw(1));
        assert_ne!(draw(1).samples, draw(2).samples);
        let (mut a, mut b) = (Drawn::default(), Drawn::default());
        buffer.sample(10, &mut a);
        twin.sample(10, &mut b);
        assert_eq!(a, b, "a seeded draw moved the buffer's own stream");
    }

    #[test]
    fn bad_input_is_refused() {
        let mut buffer = RehearsalBuffer::<f32>::new(config(4, 2, InsertionPolicy::Reservoir, 0)).unwrap();
        assert!(matches!(
            buffer.offer(&[0.0; 2], &[2], &[]),
            Err(BufferError::Label { label: 2, .. })
        ));
        assert!(matches!(
            buffer.offer(&[0.0; 3], &[1], &[]),
            Err(BufferError::Shape { .. })
        ));
        assert_eq!(buffer.len(), 0);
        let greedy = RehearsalBuffer::<f32>::new(config(
            5,
            2,
            InsertionPolicy::Upstream {
                candidates: 5,
                batch_size: 4,
            },
            0,
        ));
        assert!(greedy
            .unwrap_err()
            .to_string()
            .contains("num_candidates (5) must be at most the batch size (4)"));
        assert!(RehearsalBuffer::<f32>::new(config(0, 2, InsertionPolicy::Reservoir, 0)).is_err());
        // A fixed length refuses records of another length.
        assert!(matches!(
            buffer.offer_records(&[0.0; 3], &[3], &[1], &[]),
            Err(BufferError::Shape { .. })
        ));
    }

    #[test]
    fn records_of_any_length_are_kept_whole_and_replaced_in_their_slot() {
        let mut buffer = RehearsalBuffer::<u8>::new(BufferConfig {
            sample_len: SampleLen::Variable,
            ..config(3, 2, InsertionPolicy::Reservoir, 0)
        })
        .unwrap();
        // Record i is i + 1 bytes of value i.
        let record = |i: u8| vec![i; i as usize + 1];
        let offer = |buffer: &mut RehearsalBuffer<u8>, ids: &[u8]| {
            let values: Vec<u8> = ids.iter().flat_map(|&i| record(i)).collect();
            let lengths: Vec<u32> = ids.iter().map(|&i| i as u32 + 1).collect();
            let labels: Vec<u32> = ids.iter().map(|&i| u32::from(i % 2)).collect();
            buffer.offer_records(&values, &lengths, &labels, &[]).unwrap();
        };
        offer(&mut buffer, &[0, 5, 2]);
        for ids in [[9, 1, 4], [3, 8, 6], [7, 10, 11]] {
            offer(&mut buffer, &ids);
        }
        let mut drawn = Drawn::default();
        buffer.sample(3, &mut drawn);
        assert_eq!(drawn.len(), 3);
        assert_eq!(drawn.samples.len(), drawn.lengths.iter().sum::<u32>() as usize);
        for (values, &label) in drawn.records().zip(&drawn.labels) {
            let id = values[0];
            assert_eq!(values, record(id), "a record comes back whole, whatever it replaced");
            assert_eq!(label, u32::from(id % 2));
        }
        // Variable records need their lengths.
        assert!(matches!(
            buffer.offer(&[1, 2], &[0], &[]),
            Err(BufferError::Shape { .. })
        ));
    }
}
