/// <reference lib="deno.worker" />
/**
 * Data worker: the CPU-heavy per-image work of the data stages, run on every core.
 * - "decode": decode a JPEG/PNG, cut the face box (scaled to the image size) and resample it to
 *   the requested size with the project's one filter; or report why the file is unusable.
 * - "resize": resample a whole RGB image through a list of square sizes (one step or two).
 * - "synthetic": draw a synthetic face and encode it as JPEG.
 */
import { Image } from "imagescript";
import { type DecodedPhoto, decodePhoto } from "./decode.ts";
import { type Rect, resampleArea } from "./resample.ts";
import { renderSyntheticFace, SYNTHETIC_HEIGHT, SYNTHETIC_WIDTH } from "./synthetic.ts";

export type WorkerRequest =
  | {
    kind: "decode";
    bytes: Uint8Array;
    /** crop rectangle in the reference frame (CelebA aligned, 178x218), or null for the whole image */
    box: Rect | null;
    /** output size; 0 = the box's size in the decoded image's pixels */
    outWidth: number;
    outHeight: number;
  }
  | { kind: "resize"; pixels: Uint8Array; width: number; height: number; sizes: number[] }
  | { kind: "synthetic"; seed: number; index: number };

export type WorkerResponse =
  | { ok: true; pixels: Uint8Array; width: number; height: number; sourceWidth: number; sourceHeight: number }
  | { ok: false; error: string };

/** CelebA's own JPEGs are high quality; so are the synthetic ones. */
const SYNTHETIC_JPEG_QUALITY = 95;

export const REFERENCE_WIDTH = 178;
export const REFERENCE_HEIGHT = 218;

async function decodeAndCrop(request: Extract<WorkerRequest, { kind: "decode" }>): Promise<WorkerResponse> {
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

function resize(request: Extract<WorkerRequest, { kind: "resize" }>): WorkerResponse {
  let { pixels, width, height } = request;
  for (const size of request.sizes) {
    pixels = resampleArea(pixels, width, height, 3, { x: 0, y: 0, width, height }, size, size);
    width = height = size;
  }
  return { ok: true, pixels, width, height, sourceWidth: request.width, sourceHeight: request.height };
}

async function synthetic(request: Extract<WorkerRequest, { kind: "synthetic" }>): Promise<WorkerResponse> {
  const image = new Image(SYNTHETIC_WIDTH, SYNTHETIC_HEIGHT);
  image.bitmap.set(renderSyntheticFace(request.seed, request.index));
  const pixels = await image.encodeJPEG(SYNTHETIC_JPEG_QUALITY);
  return { ok: true, pixels, width: SYNTHETIC_WIDTH, height: SYNTHETIC_HEIGHT, sourceWidth: 0, sourceHeight: 0 };
}

self.onmessage = async (event: MessageEvent<WorkerRequest[]>) => {
  const responses: WorkerResponse[] = [];
  for (const request of event.data) {
    if (request.kind === "decode") responses.push(await decodeAndCrop(request));
    else if (request.kind === "resize") responses.push(resize(request));
    else responses.push(await synthetic(request));
  }
  const transfer = responses.flatMap((response) => response.ok ? [response.pixels.buffer as ArrayBuffer] : []);
  self.postMessage(responses, { transfer });
};
