/* Decoding one rectangle of a JPEG image with libjpeg(-turbo), for crates/dcl-data's
 * decode/region.rs. Columns outside the rectangle are not inverse-transformed, upsampled or
 * colour-converted (jpeg_crop_scanline), rows above it are only entropy-decoded
 * (jpeg_skip_scanlines), and the decoder stops after its last row, so rows below it are not
 * even entropy-decoded (single-scan files; progressive ones are entropy-decoded whole by
 * jpeg_start_decompress).
 *
 * The pixels are those of decoding the whole image and cropping: fancy upsampling treats
 * the first and last columns that it is given as the image's edges, so the columns handed to
 * it start and end at least one pixel outside the rectangle; jpeg_skip_scanlines decodes the
 * rows that the upsampling of the first row kept needs itself (the unit tests compare every
 * position). The libjpeg structures are used only through the system's jpeglib.h, never
 * laid out by hand in Rust. */

#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>

/* Return values of dcl_jpeg_decode_region. */
enum { DCL_JPEG_OK = 0, DCL_JPEG_TRUNCATED = 1, DCL_JPEG_ERROR = 2 };

/* An error manager that jumps back instead of exiting, and records truncation. */
struct error_manager {
  struct jpeg_error_mgr pub;
  jmp_buf escape;
  /* Whether libjpeg warned that the data ended before the image (it then decodes on as if
   * the rest were blank). Other warnings are ignored, as PIL ignores them. */
  int truncated;
};

static void on_error(j_common_ptr cinfo) {
  longjmp(((struct error_manager *)cinfo->err)->escape, 1);
}

static void on_message(j_common_ptr cinfo, int level) {
  if (level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF)
    ((struct error_manager *)cinfo->err)->truncated = 1;
}

/* An output row of `width` pixels that starts 4 bytes past a 32-byte boundary, as long as
 * jpeg_alloc_sarray would make it. libjpeg-turbo's SIMD colour conversion writes rows that
 * start on a boundary with non-temporal stores, which bypass the cache, so that reading them
 * back costs trips to memory; it writes other rows through the cache (about 7 % less
 * decoding time for the photographs of the loader benchmark). */
static JSAMPROW alloc_row(j_decompress_ptr cinfo, JDIMENSION width) {
  size_t length = ((size_t)width * cinfo->output_components + 63) / 64 * 64;
  JSAMPLE *block = (*cinfo->mem->alloc_large)((j_common_ptr)cinfo, JPOOL_IMAGE, length + 32 + 4);
  return block + (32 - (uintptr_t)block % 32) % 32 + 4;
}

/* Reads the `height` rows from the next one on into `row` (of alloc_row), and writes the
 * `width` pixels of each from column `left` to `out` as three planes: the values of a
 * grayscale image into every plane, those of RGBX pixels (four bytes, which vectorises where
 * three do not) into one each. Apart from `dcl_jpeg_decode_region`, whose setjmp keeps its
 * variables out of registers. */
__attribute__((noinline)) static void read_rows(j_decompress_ptr cinfo, JSAMPROW row,
                                                size_t left, size_t height, size_t width,
                                                uint8_t *out) {
  size_t plane = height * width;
  int components = cinfo->output_components;
  for (size_t r = 0; r < height; r++) {
    jpeg_read_scanlines(cinfo, &row, 1);
    const JSAMPLE *restrict pixels = row + left * components;
    uint8_t *restrict red = out + r * width;
    uint8_t *restrict green = red + plane;
    uint8_t *restrict blue = green + plane;
    if (components == 1) {
      memcpy(red, pixels, width);
      memcpy(green, pixels, width);
      memcpy(blue, pixels, width);
      continue;
    }
    for (size_t i = 0; i < width; i++) {
      red[i] = pixels[4 * i];
      green[i] = pixels[4 * i + 1];
      blue[i] = pixels[4 * i + 2];
    }
  }
}

/* Decodes the rectangle of rows [top, top + height) and columns [left, left + width) of the
 * JPEG image in `data` (`len` bytes), scaled by 1/`reduction` in the DCT domain (1, 2, 4 or
 * 8; the rectangle is in the scaled image's pixels), into `out`: three planes of `height` x
 * `width` bytes (red, green, blue; a grayscale image's value in all three), as PIL's
 * convert('RGB'): libjpeg's default (islow) IDCT and fancy upsampling. Only grayscale, YCbCr
 * and RGB files: libjpeg refuses to convert the others to RGB.
 *
 * Returns DCL_JPEG_OK, DCL_JPEG_TRUNCATED when the data ended before the rows read did (the
 * missing part then reads grey), or DCL_JPEG_ERROR with libjpeg's message (or why the
 * rectangle or `out` does not fit) in `message`, `message_len` bytes with the NUL. */
int dcl_jpeg_decode_region(const uint8_t *data, size_t len, int reduction, size_t top,
                           size_t left, size_t height, size_t width, uint8_t *out,
                           size_t out_len, char *message, size_t message_len) {
  struct jpeg_decompress_struct cinfo;
  struct error_manager errors;
  cinfo.err = jpeg_std_error(&errors.pub);
  errors.pub.error_exit = on_error;
  errors.pub.emit_message = on_message;
  errors.truncated = 0;
  if (setjmp(errors.escape)) {
    char text[JMSG_LENGTH_MAX];
    (*cinfo.err->format_message)((j_common_ptr)&cinfo, text);
    snprintf(message, message_len, "%s", text);
    jpeg_destroy_decompress(&cinfo);
    return DCL_JPEG_ERROR;
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, data, (unsigned long)len);
  jpeg_read_header(&cinfo, TRUE);
  cinfo.out_color_space = cinfo.jpeg_color_space == JCS_GRAYSCALE ? JCS_GRAYSCALE : JCS_EXT_RGBX;
  cinfo.scale_num = 1;
  cinfo.scale_denom = (unsigned int)reduction;
  jpeg_start_decompress(&cinfo);

  if (height == 0 || width == 0 || top > cinfo.output_height ||
      height > cinfo.output_height - top || left > cinfo.output_width ||
      width > cinfo.output_width - left || out_len / 3 < height * width) {
    snprintf(message, message_len,
             "cannot decode %zux%zu pixels at (%zu, %zu) of a %ux%u image into %zu bytes",
             width, height, left, top, (unsigned)cinfo.output_width,
             (unsigned)cinfo.output_height, out_len);
    jpeg_destroy_decompress(&cinfo);
    return DCL_JPEG_ERROR;
  }
  /* One column more on each side, where the image has one, then out to the iMCU columns
   * holding them (jpeg_crop_scanline moves the start left). */
  JDIMENSION crop_left = (JDIMENSION)(left > 0 ? left - 1 : left);
  JDIMENSION crop_width =
      (JDIMENSION)(left + width < cinfo.output_width ? left + width + 1 : left + width) -
      crop_left;
  jpeg_crop_scanline(&cinfo, &crop_left, &crop_width);
  jpeg_skip_scanlines(&cinfo, (JDIMENSION)top);
  read_rows(&cinfo, alloc_row(&cinfo, crop_width), left - crop_left, height, width, out);
  if (cinfo.output_scanline == cinfo.output_height)
    jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  return errors.truncated ? DCL_JPEG_TRUNCATED : DCL_JPEG_OK;
}
