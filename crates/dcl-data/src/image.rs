//! The decoded image that the decoders produce and the transforms consume.

/// A decoded image: 8-bit channels, planar (channel-major, then rows), `pixels.len() == c * h * w`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Image {
    pub pixels: Vec<u8>,
    pub shape: [usize; 3], /* channels, height, width */
}

impl Image {
    /// A black (all-zero) image of `shape` (channels, height, width).
    pub fn new(shape: [usize; 3]) -> Self {
        Image {
            pixels: vec![0; shape.iter().product()],
            shape,
        }
    }

    /// Gives the image `shape`, reusing its buffer (no allocation once it has held an image
    /// that large). The pixel values are left unspecified: the caller overwrites them all.
    pub fn reshape(&mut self, shape: [usize; 3]) {
        self.shape = shape;
        self.pixels.resize(shape.iter().product(), 0);
    }

    /// The number of values of one channel: height x width.
    pub fn plane_len(&self) -> usize {
        self.shape[1] * self.shape[2]
    }

    /// The values of channel `c`, row after row.
    pub fn plane(&self, c: usize) -> &[u8] {
        let n = self.plane_len();
        &self.pixels[c * n..(c + 1) * n]
    }

    /// The values of channel `c`, row after row, to write.
    pub fn plane_mut(&mut self, c: usize) -> &mut [u8] {
        let n = self.plane_len();
        &mut self.pixels[c * n..(c + 1) * n]
    }

    /// Mirrors the image left to right, in place.
    pub fn flip_horizontally(&mut self) {
        let width = self.shape[2];
        if width > 0 {
            self.pixels.chunks_exact_mut(width).for_each(<[u8]>::reverse);
        }
    }
}

/// A rectangle of an image's pixel grid, possibly reaching past its edges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// The first row, negative above the image.
    pub top: isize,
    /// The first column, negative left of the image.
    pub left: isize,
    pub height: usize,
    pub width: usize,
}

impl Image {
    /// Copies `window` of the image into `out` (the image's channels, the window's height and
    /// width), with zeros where the window lies outside the image: a crop, a padding, or both.
    pub fn copy_window(&self, window: Window, out: &mut Image) {
        let [channels, height, width] = self.shape;
        out.reshape([channels, window.height, window.width]);
        let columns = window.left.max(0)..(window.left + window.width as isize).min(width as isize);
        for c in 0..channels {
            let plane = self.plane(c);
            for (r, row) in out.plane_mut(c).chunks_exact_mut(window.width.max(1)).enumerate() {
                row.fill(0);
                let y = window.top + r as isize;
                if (0..height as isize).contains(&y) && !columns.is_empty() {
                    let source = y as usize * width;
                    let target = (columns.start - window.left) as usize;
                    row[target..target + columns.len()]
                        .copy_from_slice(&plane[source + columns.start as usize..source + columns.end as usize]);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn planes_and_flips() {
        let mut image = Image {
            pixels: (0..12).collect(),
            shape: [2, 2, 3],
        };
        assert_eq!(image.plane_len(), 6);
        assert_eq!(image.plane(1), &[6, 7, 8, 9, 10, 11]);
        image.plane_mut(0)[0] = 100;
        image.flip_horizontally();
        assert_eq!(image.pixels, [2, 1, 100, 5, 4, 3, 8, 7, 6, 11, 10, 9]);
        image.reshape([1, 1, 2]);
        assert_eq!((image.pixels.len(), image.shape), (2, [1, 1, 2]));
        assert_eq!(Image::new([3, 2, 2]).pixels, vec![0; 12]);
        Image::default().flip_horizontally();
    }

    #[test]
    fn windows_crop_and_pad() {
        let image = Image {
            pixels: (1..=12).collect(),
            shape: [2, 2, 3],
        };
        let mut out = Image::default();
        let window = |top, left, height, width| Window {
            top,
            left,
            height,
            width,
        };
        image.copy_window(window(0, 1, 2, 2), &mut out);
        assert_eq!(
            (out.shape, &out.pixels[..]),
            ([2, 2, 2], &[2, 3, 5, 6, 8, 9, 11, 12][..])
        );
        image.copy_window(window(-1, -1, 4, 4), &mut out);
        #[rustfmt::skip]
        let padded = [
            0, 0, 0, 0,  0, 1, 2, 3,  0, 4, 5, 6,  0, 0, 0, 0,
            0, 0, 0, 0,  0, 7, 8, 9,  0, 10, 11, 12,  0, 0, 0, 0,
        ];
        assert_eq!(out.pixels, padded);
        image.copy_window(window(1, 2, 2, 3), &mut out);
        assert_eq!(out.pixels, [6, 0, 0, 0, 0, 0, 12, 0, 0, 0, 0, 0]);
        image.copy_window(window(5, -9, 1, 2), &mut out);
        assert_eq!(out.pixels, [0; 4]);
    }
}
