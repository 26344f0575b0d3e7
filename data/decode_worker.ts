/// <reference lib="deno.worker" />
/**
 * crop's worker: decode a JPEG/PNG, cut the face box (scaled to the image size) and resample it
 * to the requested size with the project's one filter; or report why the file is unusable.
 */
import { type DecodedPhoto, decodePhoto } from "./decode.ts";
import { REFERENCE_HEIGHT, REFERENCE_WIDTH } from "./frame.ts";
import { type Rect, resampleArea } from "./resample.ts";
import { serve, type WorkerResponse } from "./worker_serve.ts";

export interface DecodeRequest {
  bytes: Uint8Array;
  /** crop rectangle in the reference frame (CelebA aligned, 178x218), or null for the whole image */
  box: Rect | null;
  /** output size; 0 = the box's size in the decoded image's pixels */
  outWidth: number;
  outHeight: number;
}

async function decodeAndCrop(request: DecodeRequest): Promise<WorkerResponse> {
  if (request.bytes.length === 0) return { ok: false, error: "empty file" };
  let image: DecodedPhoto;
  try {
    image = await decodePhoto(request.bytes);
  } catch (error) {
    return { ok: false, error: `cannot decode: ${(error as Error).message ?? error}` };
  }
  const { width, height } = image;
  if (width < 8 || height < 8) return { ok: false, error: `image too small (${width}x${height})` };
  const sx = width / REFERENCE_WIDTH;
  const sy = height / REFERENCE_HEIGHT;
  const rect = request.box
    ? { x: request.box.x * sx, y: request.box.y * sy, width: request.box.width * sx, height: request.box.height * sy }
    : { x: 0, y: 0, width, height };
  const outWidth = request.outWidth || Math.round(rect.width);
  const outHeight = request.outHeight || Math.round(rect.height);
  const pixels = resampleArea(image.pixels, width, height, image.channels, rect, outWidth, outHeight);
  return { ok: true, pixels, width: outWidth, height: outHeight, sourceWidth: width, sourceHeight: height };
}

serve(decodeAndCrop);
