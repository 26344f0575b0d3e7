/**
 * crop: decode every image (on all cores), cut the aligned-CelebA face box, scaled to the image's
 * size so the 89x109 half-size photos and the 178x218 originals give the same crop, and resample
 * it straight to data.size with the project's one filter (via 2 * data.size with data.two_step).
 * Crop and resize are one stage: the 108x108 crops of the full dataset would be ~7 GB of
 * intermediate pixels (5x the photos), and knowing the final size lets libjpeg-turbo decode at
 * 1/2 or 1/4 scale in the DCT domain. Output: a pack of data.size crops, and `crop.json` listing
 * every file that was skipped (corrupt, truncated, empty, not an image) and why.
 */
import { join } from "node:path";
import type { StageContext } from "../pipeline/core/types.ts";
import { UserError } from "../pipeline/core/errors.ts";
import { openRawSource } from "../data/source.ts";
import { PackWriter } from "../data/pack.ts";
import { orderedMap, WorkerPool } from "../data/pool.ts";
import { IMAGESCRIPT_DECODER, loadTurboJpeg } from "../data/decode.ts";
import type { DecodeRequest } from "../data/decode_worker.ts";
import type { Rect } from "../data/resample.ts";

/**
 * Face boxes in the aligned CelebA frame (178x218).
 * - celeba: x=32, y=76, 108x108 — measured: it matches the tight crops in
 *   shared/celeba/crop128 (mean abs difference under 5/255 at 32 px for 000001, 000002, 000005).
 * - dcgan: x=35, y=55, 108x108 — the centre crop of the DCGAN-tensorflow CelebA recipe.
 */
export const FACE_BOXES: Record<string, Rect | null> = {
  celeba: { x: 32, y: 76, width: 108, height: 108 },
  dcgan: { x: 35, y: 55, width: 108, height: 108 },
  none: null,
};

export const SIZES = [32, 64, 128];

export async function run(ctx: StageContext): Promise<void> {
  const mode = ctx.param<string>("data.crop");
  if (!(mode in FACE_BOXES)) {
    throw new UserError(`data.crop '${mode}' is not one of ${Object.keys(FACE_BOXES).join(", ")}`);
  }
  const size = ctx.param<number>("data.size");
  if (!SIZES.includes(size)) throw new UserError(`data.size ${size} is not one of ${SIZES.join(", ")}`);
  const sizes = ctx.param<boolean>("data.two_step") ? [size * 2, size] : [size];
  const box = FACE_BOXES[mode];
  const { turbo, why } = loadTurboJpeg();
  ctx.recordEnvironment("decoder", turbo ? turbo.version : IMAGESCRIPT_DECODER);
  if (!turbo) ctx.log(`decoding with imagescript (about 10x slower): ${why}`);
  else if (why) ctx.log(`decoding with ${turbo.path} (${turbo.version}; its pixels may differ): ${why}`);
  turbo?.close();
  const source = await openRawSource(ctx.inputs.download);
  const limit = ctx.param<number>("data.max_images");
  const names = limit > 0 ? source.names.slice(0, limit) : source.names;
  const skipped: { name: string; reason: string }[] = [];
  const pool = new WorkerPool<DecodeRequest>(new URL("../data/decode_worker.ts", import.meta.url));
  const writer = new PackWriter(ctx.outDir, size, size, "pack", 4096, ctx.recordWritten);
  let seen = 0;
  const started = performance.now();
  try {
    await orderedMap(
      pool,
      names,
      async (name) => {
        const common = { box, sizes, turbo: turbo !== null };
        // Plain files are read by the workers themselves; zip entries are read here.
        if (source.file) return { request: { ...common, file: source.file(name) } };
        const bytes = await source.read(name).catch(() => new Uint8Array());
        return { request: { ...common, bytes }, transfer: [bytes.buffer as ArrayBuffer] };
      },
      async (response, name) => {
        seen++;
        if (response.ok) await writer.add(response.pixels, name);
        else if (response.fatal) throw new UserError(`${response.error}: run the pipeline again`);
        else skipped.push({ name, reason: response.error });
        ctx.progress({ done: seen, total: names.length, unit: "img", note: `${skipped.length} skipped` });
      },
    );
  } finally {
    pool.close();
    source.close();
  }
  if (writer.count === 0) {
    throw new UserError(`no decodable image among ${names.length} image files: check data.source`);
  }
  await writer.finish();
  await Deno.writeTextFile(
    join(ctx.outDir, "crop.json"),
    JSON.stringify({ box: mode, size, count: writer.count, skipped, not_images: source.ignored }, null, 1),
  );
  const seconds = (performance.now() - started) / 1000;
  ctx.log(
    `cropped ${writer.count} images to ${size}x${size} in ${seconds.toFixed(1)}s (${
      (names.length / seconds).toFixed(0)
    } images/s, ${turbo ? turbo.version : IMAGESCRIPT_DECODER})` +
      (skipped.length ? `; skipped ${skipped.length} unusable files (listed in crop.json)` : "") +
      (source.ignored.length ? `; ignored ${source.ignored.length} non-image entries` : ""),
  );
}
