/// <reference lib="deno.worker" />
/** download's worker for data.source=synthetic: draw a synthetic face and encode it as JPEG. */
import { Image } from "imagescript";
import { renderSyntheticFace, SYNTHETIC_HEIGHT, SYNTHETIC_WIDTH } from "./synthetic.ts";
import { serve, type WorkerResponse } from "./worker_serve.ts";

export interface SyntheticRequest {
  seed: number;
  index: number;
}

/** CelebA's own JPEGs are high quality; so are the synthetic ones. */
const SYNTHETIC_JPEG_QUALITY = 95;

async function synthetic(request: SyntheticRequest): Promise<WorkerResponse> {
  const image = new Image(SYNTHETIC_WIDTH, SYNTHETIC_HEIGHT);
  image.bitmap.set(renderSyntheticFace(request.seed, request.index));
  const pixels = await image.encodeJPEG(SYNTHETIC_JPEG_QUALITY);
  return { ok: true, pixels, width: SYNTHETIC_WIDTH, height: SYNTHETIC_HEIGHT, sourceWidth: 0, sourceHeight: 0 };
}

serve(synthetic);
