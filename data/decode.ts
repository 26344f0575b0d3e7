/**
 * Decoding a photo's bytes to pixels, with imagescript's codecs.
 *
 * RGB JPEGs (all of CelebA) go straight to imagescript's wasm JPEG decoder, one instance kept per
 * thread: imagescript's own `decode()` builds a fresh WebAssembly instance for every image, which
 * was 1.0-1.5 ms of the 1.3-1.8 ms it took per 89x109 CelebA photo (same pixels either way).
 * Everything else (PNG, grayscale or CMYK JPEG) goes through `decode()`.
 */
import { decode, Image } from "imagescript";
import jpegCodec from "imagescript/wasm/node/jpeg.js";

export interface DecodedPhoto {
  pixels: Uint8Array | Uint8ClampedArray;
  width: number;
  height: number;
  /** 3 (RGB) or 4 (RGBA) */
  channels: number;
}

interface JpegFrame {
  width: number;
  height: number;
  /** 0 gray, 1 RGB, 2 CMYK */
  format: number;
  buffer: Uint8Array;
}

const JPEG_RGB = 1;

let jpegDecoder: { decode(bytes: Uint8Array): JpegFrame } | null = null;

function isJpeg(bytes: Uint8Array): boolean {
  return bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff;
}

/** Decode a still image; throws with the codec's message when the bytes are not one. */
export async function decodePhoto(bytes: Uint8Array): Promise<DecodedPhoto> {
  if (isJpeg(bytes)) {
    jpegDecoder ??= await jpegCodec.init();
    let frame: JpegFrame;
    try {
      frame = jpegDecoder!.decode(bytes);
    } catch (error) {
      // A decoder that failed mid-image may hold a broken heap: start the next one afresh.
      jpegDecoder = null;
      throw error;
    }
    if (frame.format === JPEG_RGB) {
      return { pixels: frame.buffer, width: frame.width, height: frame.height, channels: 3 };
    }
  }
  const image = await decode(bytes);
  if (!(image instanceof Image)) throw new Error("animated image, not a photo");
  return { pixels: image.bitmap, width: image.width, height: image.height, channels: 4 };
}
