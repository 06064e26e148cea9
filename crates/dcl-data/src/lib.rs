//! Data for dcl: dataset files in their real formats, the catalogue of known data sets
//! (with verified sources), and the background loader that turns a list of sample
//! indices into ready minibatches.
//!
//! Nothing here depends on a tensor library: the loader hands each [`HostBatch`] to a
//! caller-supplied `collate` function that runs on the loader thread, so the trainer can
//! build its tensors there.

pub mod archive;
pub mod catalog;
pub mod cifar;
pub mod dataset;
pub mod decode;
pub mod error;
pub mod fetch;
pub mod files;
pub mod folder;
pub mod idx;
pub mod image;
pub mod loader;
pub mod pipeline;
pub mod resize;
pub mod scenario;
pub mod source;
pub mod transform;

pub use catalog::{DatasetInfo, Kind, DATASETS};
pub use cifar::{Cifar, CifarFormat, InMemorySplit};
pub use dataset::{Augment, ImageSet, Normalization, SplitDataset};
pub use decode::{decode, decode_region, decode_scaled, read_shape, DecodeError, Placement};
pub use error::DataError;
pub use folder::{FileLayout, FileList, Splits};
pub use image::{Image, Window};
pub use loader::{shard, HostBatch, Loader, LoaderConfig, LoaderSource};
pub use pipeline::{Pipeline, Records, Scratch};
pub use resize::{resize, Resize};
pub use scenario::{
    ClassOrder, Resampling, SampleRef, Scenario, ScenarioError, ScenarioOptions, ScenarioSpec, Task, TaskIdentity, View,
};
pub use source::ImageSource;
pub use transform::{Draw, Transform};
