/// <reference lib="deno.worker" />
/**
 * crop's worker: read a photo (or take its bytes), decode it, cut the face box (scaled to the
 * image size) and resample it to the requested square size(s) with the project's one filter; or
 * report why the file is unusable. A file read from a referenced folder is checked against the
 * size and sha256 it had when the pipeline hashed it: different bytes are never used.
 */
import { type DecodedPhoto, decodePhoto, loadTurboJpeg } from "./decode.ts";
import { REFERENCE_HEIGHT, REFERENCE_WIDTH } from "./frame.ts";
import { type Rect, resampleArea } from "./resample.ts";
import { serve, type WorkerResponse } from "./worker_serve.ts";
import type { TurboJpeg } from "./turbojpeg.ts";
import { sha256 } from "../pipeline/core/hash.ts";

export interface DecodeRequest {
  /** the photo's bytes, or (`file`) where to read them */
  bytes?: Uint8Array;
  file?: { path: string; size?: number; sha256?: string };
  /** crop rectangle in the reference frame (CelebA aligned, 178x218), or null for the whole image */
  box: Rect | null;
  /** square sizes the crop is resampled through, in order: [size] or, in two steps, [2 * size, size] */
  sizes: number[];
  /** decode JPEGs with libjpeg-turbo (scaled in the DCT domain), else with imagescript */
  turbo: boolean;
}

let turbo: TurboJpeg | null | undefined;

function read(file: NonNullable<DecodeRequest["file"]>): Uint8Array | WorkerResponse {
  let bytes: Uint8Array;
  try {
    bytes = Deno.readFileSync(file.path);
  } catch (error) {
    return { ok: false, fatal: true, error: `${file.path} cannot be read (${(error as Error).message})` };
  }
  const changed = (file.size !== undefined && bytes.length !== file.size) ||
    (file.sha256 !== undefined && sha256(bytes) !== file.sha256);
  if (changed) return { ok: false, fatal: true, error: `${file.path} changed after the pipeline hashed it` };
  return bytes;
}

async function decodeAndCrop(request: DecodeRequest): Promise<WorkerResponse> {
  const bytes = request.file ? read(request.file) : request.bytes!;
  if (!(bytes instanceof Uint8Array)) return bytes;
  if (bytes.length === 0) return { ok: false, error: "empty file" };
  if (request.turbo && turbo === undefined) turbo = loadTurboJpeg().turbo;
  const box = request.box;
  const fraction = box
    ? { fractionX: box.width / REFERENCE_WIDTH, fractionY: box.height / REFERENCE_HEIGHT }
    : { fractionX: 1, fractionY: 1 };
  let image: DecodedPhoto;
  try {
    image = await decodePhoto(bytes, request.turbo ? turbo : null, {
      width: request.sizes[0],
      height: request.sizes[0],
      ...fraction,
    });
  } catch (error) {
    return { ok: false, error: `cannot decode: ${(error as Error).message ?? error}` };
  }
  const { width, height, scale, fileWidth, fileHeight } = image;
  if (fileWidth < 8 || fileHeight < 8) return { ok: false, error: `image too small (${fileWidth}x${fileHeight})` };
  // The box scales with the file's own size; decoded pixel i covers the file's [i, i + 1) / scale.
  const sx = fileWidth / REFERENCE_WIDTH * scale;
  const sy = fileHeight / REFERENCE_HEIGHT * scale;
  let rect = box
    ? { x: box.x * sx, y: box.y * sy, width: box.width * sx, height: box.height * sy }
    : { x: 0, y: 0, width, height };
  let [pixels, channels, sourceWidth, sourceHeight] = [image.pixels, image.channels, width, height];
  for (const size of request.sizes) {
    pixels = resampleArea(pixels, sourceWidth, sourceHeight, channels, rect, size, size);
    [channels, sourceWidth, sourceHeight] = [3, size, size];
    rect = { x: 0, y: 0, width: size, height: size };
  }
  const size = request.sizes[request.sizes.length - 1];
  return {
    ok: true,
    pixels: pixels as Uint8Array,
    width: size,
    height: size,
    sourceWidth: fileWidth,
    sourceHeight: fileHeight,
  };
}

serve(decodeAndCrop);
