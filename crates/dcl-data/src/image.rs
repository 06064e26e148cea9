//! Decoded images, as the loader hands them from a source to its transforms.

/// A decoded image: 8-bit channels, planar (channel-major, then rows), `pixels.len() == c * h * w`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Image {
    pub pixels: Vec<u8>,
    /// Channels, height, width.
    pub shape: [usize; 3],
}

impl Image {
    /// Gives the image `shape`, its pixels resized (not cleared), keeping their memory.
    pub fn reshape(&mut self, shape: [usize; 3]) {
        self.shape = shape;
        self.pixels.resize(shape.iter().product(), 0);
    }
}
