/**
 * Decoding a photo's bytes to pixels: JPEGs with libjpeg-turbo (data/turbojpeg.ts, scaled in the
 * DCT domain: the npm package's build, else the system's) where one loads, else with imagescript's
 * codecs.
 *
 * imagescript: RGB JPEGs (all of CelebA) go straight to its wasm JPEG decoder, one instance kept
 * per thread: imagescript's own `decode()` builds a fresh WebAssembly instance for every image,
 * which was 1.0-1.5 ms of the 1.3-1.8 ms it took per 89x109 CelebA photo (same pixels either way).
 * Everything else (PNG, grayscale or CMYK JPEG) goes through `decode()`.
 */
import { decode, Image } from "imagescript";
import jpegCodec from "imagescript/wasm/node/jpeg.js";
import { type ScaleNeed, TurboJpeg, TURBOJPEG_FIX, turboJpegCandidates, TurboJpegUnavailable } from "./turbojpeg.ts";

export interface DecodedPhoto {
  pixels: Uint8Array | Uint8ClampedArray;
  width: number;
  height: number;
  /** 3 (RGB) or 4 (RGBA) */
  channels: number;
  /** decoded size / the file's own size (below 1 when decoded scaled in the DCT domain) */
  scale: number;
  /** the file's own size */
  fileWidth: number;
  fileHeight: number;
}

interface JpegFrame {
  width: number;
  height: number;
  /** 0 gray, 1 RGB, 2 CMYK */
  format: number;
  buffer: Uint8Array;
}

const JPEG_RGB = 1;
/** imagescript's version (deno.json pins it): the fallback decoder's name in the lock. */
export const IMAGESCRIPT_DECODER = "imagescript 1.3.1";

let jpegDecoder: { decode(bytes: Uint8Array): JpegFrame } | null = null;

function isJpeg(bytes: Uint8Array): boolean {
  return bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff;
}

/**
 * libjpeg-turbo (one per thread): the first of `turboJpegCandidates()` that loads, else null.
 * `why`: why the ones before it did not load, and the fix when none did ("" when the first did).
 */
export function loadTurboJpeg(): { turbo: TurboJpeg | null; why: string } {
  const { paths, skipped } = turboJpegCandidates();
  const failures = [...skipped];
  for (const path of paths) {
    try {
      return { turbo: new TurboJpeg(path), why: failures.join("; ") };
    } catch (error) {
      if (!(error instanceof TurboJpegUnavailable)) throw error;
      failures.push(error.message);
    }
  }
  return { turbo: null, why: `${failures.join("; ")}: ${TURBOJPEG_FIX}` };
}

/**
 * Decode a still image; throws with the codec's message when the bytes are not one. With
 * `turbo`, a JPEG is decoded by libjpeg-turbo, scaled down as far as `need` allows; CMYK JPEGs and
 * other formats go to imagescript at full size.
 */
export async function decodePhoto(
  bytes: Uint8Array,
  turbo?: TurboJpeg | null,
  need?: ScaleNeed,
): Promise<DecodedPhoto> {
  if (isJpeg(bytes) && turbo) {
    let decoded = null;
    try {
      decoded = turbo.decode(bytes, need);
    } catch (error) {
      if (!/CMYK/.test((error as Error).message)) throw error;
    }
    if (decoded) {
      const { pixels, width, height, scale, jpegWidth, jpegHeight } = decoded;
      return { pixels, width, height, channels: 3, scale, fileWidth: jpegWidth, fileHeight: jpegHeight };
    }
  }
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
      const { width, height } = frame;
      return { pixels: frame.buffer, width, height, channels: 3, scale: 1, fileWidth: width, fileHeight: height };
    }
  }
  const image = await decode(bytes);
  if (!(image instanceof Image)) throw new Error("animated image, not a photo");
  const { width, height } = image;
  return { pixels: image.bitmap, width, height, channels: 4, scale: 1, fileWidth: width, fileHeight: height };
}
