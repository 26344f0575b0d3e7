/**
 * resize: every crop to data.size x data.size with the project's one filter (exact area
 * averaging, data/resample.ts), on all cores. With data.two_step the crops go to 2*size first,
 * then halve, as the seeds' 64 -> 32 preprocessing did.
 */
import type { StageContext } from "../pipeline/types.ts";
import { UserError } from "../pipeline/errors.ts";
import { PackWriter, readPackImages, readPackIndex } from "../data/pack.ts";
import { orderedMap, WorkerPool } from "../data/pool.ts";
import type { ResizeRequest } from "../data/resize_worker.ts";

export const SIZES = [32, 64, 128];

export async function run(ctx: StageContext): Promise<void> {
  const size = ctx.param<number>("data.size");
  if (!SIZES.includes(size)) throw new UserError(`data.size ${size} is not one of ${SIZES.join(", ")}`);
  const twoStep = ctx.param<boolean>("data.two_step");
  const index = await readPackIndex(ctx.inputs.crop);
  const writer = new PackWriter(ctx.outDir, size, size);
  const sizes = twoStep ? [size * 2, size] : [size];
  const pool = new WorkerPool<ResizeRequest>(new URL("../data/resize_worker.ts", import.meta.url));
  try {
    await orderedMap(
      pool,
      readPackImages(ctx.inputs.crop, index),
      ({ pixels }) => {
        // A copy of its own: posting a view would clone the whole pack file it points into.
        const own = pixels.slice();
        const request = { pixels: own, width: index.width, height: index.height, sizes };
        return Promise.resolve({ request, transfer: [own.buffer] });
      },
      async (response, { name }) => {
        if (!response.ok) throw new Error(`resize ${name}: ${response.error}`);
        await writer.add(response.pixels, name);
        if (writer.count % 1000 === 0) ctx.progress(`resized ${writer.count}/${index.count}`);
      },
      64,
    );
  } finally {
    pool.close();
  }
  await writer.finish();
  ctx.log(
    `resized ${writer.count} images from ${index.width}x${index.height} to ${size}x${size}${
      twoStep ? " (two steps)" : ""
    }`,
  );
}
