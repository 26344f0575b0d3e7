/**
 * crop: decode every image (on all cores) and cut the aligned-CelebA face box, scaled to the
 * image's size so the 89x109 half-size photos and the 178x218 originals give the same crop.
 * Output: a pack of crops at the box's size in the first image's pixels, and `crop.json`
 * listing every file that was skipped (corrupt, truncated, empty, not an image) and why.
 */
import { join } from "node:path";
import type { StageContext } from "../pipeline/types.ts";
import { UserError } from "../pipeline/errors.ts";
import { openRawSource } from "../data/source.ts";
import { PackWriter } from "../data/pack.ts";
import { orderedMap, WorkerPool } from "../data/pool.ts";
import { decodePhoto } from "../data/decode.ts";
import { REFERENCE_HEIGHT, REFERENCE_WIDTH } from "../data/frame.ts";
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

export async function run(ctx: StageContext): Promise<void> {
  const mode = ctx.param<string>("data.crop");
  if (!(mode in FACE_BOXES)) {
    throw new UserError(`data.crop '${mode}' is not one of ${Object.keys(FACE_BOXES).join(", ")}`);
  }
  const box = FACE_BOXES[mode];
  const source = await openRawSource(ctx.inputs.download);
  const limit = ctx.param<number>("data.max_images");
  const names = limit > 0 ? source.names.slice(0, limit) : source.names;
  const skipped: { name: string; reason: string }[] = [];
  const pool = new WorkerPool<DecodeRequest>(new URL("../data/decode_worker.ts", import.meta.url));
  let writer: PackWriter | null = null;
  let seen = 0;
  const started = performance.now();
  try {
    // The output size follows the first decodable image: the box's size in its pixels.
    const size = await outputSize(source, names, box);
    writer = new PackWriter(ctx.outDir, size.width, size.height);
    await orderedMap(
      pool,
      names,
      async (name) => {
        const bytes = await source.read(name).catch(() => new Uint8Array());
        return {
          request: { bytes, box, outWidth: size.width, outHeight: size.height },
          transfer: [bytes.buffer as ArrayBuffer],
        };
      },
      async (response, name) => {
        seen++;
        if (response.ok) await writer!.add(response.pixels, name);
        else skipped.push({ name, reason: response.error });
        const rate = seen / ((performance.now() - started) / 1000);
        ctx.progress(`cropped ${seen}/${names.length} (${rate.toFixed(0)} images/s, ${skipped.length} skipped)`);
      },
    );
  } finally {
    pool.close();
    source.close();
  }
  if (!writer || writer.count === 0) {
    throw new UserError(
      `no usable images in the download (${names.length} image files, all unreadable): check data.source`,
    );
  }
  await writer.finish();
  await Deno.writeTextFile(
    join(ctx.outDir, "crop.json"),
    JSON.stringify({ box: mode, count: writer.count, skipped, not_images: source.ignored }, null, 1),
  );
  ctx.log(
    `cropped ${writer.count} images to ${writer.width}x${writer.height}` +
      (skipped.length ? `; skipped ${skipped.length} unusable files (listed in crop.json)` : "") +
      (source.ignored.length ? `; ignored ${source.ignored.length} non-image entries` : ""),
  );
}

async function outputSize(source: Awaited<ReturnType<typeof openRawSource>>, names: string[], box: Rect | null) {
  for (const name of names) {
    try {
      const image = await decodePhoto(await source.read(name));
      const width = box ? Math.round(box.width * image.width / REFERENCE_WIDTH) : image.width;
      const height = box ? Math.round(box.height * image.height / REFERENCE_HEIGHT) : image.height;
      return { width, height };
    } catch {
      // unusable: the workers will list it
    }
  }
  throw new UserError(`no decodable image among ${names.length} image files: check data.source`);
}
