/**
 * resize: every crop to data.size x data.size with the project's one filter (exact area
 * averaging, data/resample.ts). With data.two_step the crops go to 2*size first, then halve,
 * as the seeds' 64 -> 32 preprocessing did.
 */
import type { StageContext } from "../pipeline/types.ts";
import { UserError } from "../pipeline/errors.ts";
import { PackWriter, readPackImages, readPackIndex } from "../data/pack.ts";
import { resampleArea } from "../data/resample.ts";

export const SIZES = [32, 64, 128];

export async function run(ctx: StageContext): Promise<void> {
  const size = ctx.param<number>("data.size");
  if (!SIZES.includes(size)) throw new UserError(`data.size ${size} is not one of ${SIZES.join(", ")}`);
  const twoStep = ctx.param<boolean>("data.two_step");
  const index = await readPackIndex(ctx.inputs.crop);
  const writer = new PackWriter(ctx.outDir, size, size);
  const whole = (width: number, height: number) => ({ x: 0, y: 0, width, height });
  for await (const { pixels, name } of readPackImages(ctx.inputs.crop, index)) {
    let image = pixels;
    let [width, height] = [index.width, index.height];
    if (twoStep) {
      image = resampleArea(image, width, height, 3, whole(width, height), size * 2, size * 2);
      width = height = size * 2;
    }
    await writer.add(resampleArea(image, width, height, 3, whole(width, height), size, size), name);
    if (writer.count % 1000 === 0) ctx.progress(`resized ${writer.count}/${index.count}`);
  }
  await writer.finish();
  ctx.log(
    `resized ${writer.count} images from ${index.width}x${index.height} to ${size}x${size}${
      twoStep ? " (two steps)" : ""
    }`,
  );
}
