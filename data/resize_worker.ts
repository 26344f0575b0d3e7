/// <reference lib="deno.worker" />
/** resize's worker: resample a whole RGB image through a list of square sizes (one step or two). */
import { resampleArea } from "./resample.ts";
import { serve, type WorkerResponse } from "./worker_serve.ts";

export interface ResizeRequest {
  pixels: Uint8Array;
  width: number;
  height: number;
  sizes: number[];
}

function resize(request: ResizeRequest): WorkerResponse {
  let { pixels, width, height } = request;
  for (const size of request.sizes) {
    pixels = resampleArea(pixels, width, height, 3, { x: 0, y: 0, width, height }, size, size);
    width = height = size;
  }
  return { ok: true, pixels, width, height, sourceWidth: request.width, sourceHeight: request.height };
}

serve(resize);
