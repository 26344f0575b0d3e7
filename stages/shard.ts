/**
 * shard: the held-out evaluation split, by file (a file's side depends only on its name and
 * data.seed, so adding files never moves others), then a seeded shuffle of the training side,
 * written as fixed-size binary shards `train-NNNNN.bin` / `eval-NNNNN.bin` with indexes
 * `train.json` / `eval.json` (count, size, per-shard sha256). Images are read one at a time.
 */
import { createHash } from "node:crypto";
import { join } from "node:path";
import type { StageContext } from "../pipeline/core/types.ts";
import { UserError } from "../pipeline/core/errors.ts";
import { PackReader, PackWriter, readPackIndex } from "../data/pack.ts";
import { Rng } from "../models/rng.ts";

/** True when `name` falls in the evaluation split: a hash of seed and name, not its position. */
export function isEvalFile(name: string, seed: number, fraction: number): boolean {
  const digest = createHash("sha256").update(`${seed}:${name}`).digest();
  return digest.readUInt32BE(0) / 2 ** 32 < fraction;
}

export async function run(ctx: StageContext): Promise<void> {
  const seed = ctx.param<number>("data.seed");
  const fraction = ctx.param<number>("data.eval_fraction");
  const shardSize = ctx.param<number>("data.shard_size");
  if (!(fraction > 0 && fraction < 1)) {
    throw new UserError(`data.eval_fraction must be between 0 and 1, got ${fraction}`);
  }
  if (!(shardSize > 0)) throw new UserError(`data.shard_size must be positive, got ${shardSize}`);
  const index = await readPackIndex(ctx.inputs.crop);
  const evalPositions: number[] = [];
  const trainPositions: number[] = [];
  index.names.forEach((name, position) =>
    (isEvalFile(name, seed, fraction) ? evalPositions : trainPositions).push(position)
  );
  if (evalPositions.length < 2 || trainPositions.length < 2) {
    throw new UserError(
      `data.eval_fraction ${fraction} of ${index.count} images leaves ${trainPositions.length} to train and ` +
        `${evalPositions.length} to evaluate; use more images or another fraction`,
    );
  }
  const order = new Rng(seed).permutation(trainPositions.length);
  const reader = new PackReader(ctx.inputs.crop, index);
  try {
    for (
      const [split, positions] of [["train", Array.from(order, (i) => trainPositions[i])], [
        "eval",
        evalPositions,
      ]] as const
    ) {
      const writer = new PackWriter(ctx.outDir, index.width, index.height, split, shardSize, ctx.recordWritten);
      // One buffer for every image: the writer copies what it is given.
      const pixels = new Uint8Array(index.width * index.height * 3);
      for (const position of positions) await writer.add(reader.read(position, pixels), index.names[position]);
      await writer.finish({ seed, eval_fraction: fraction });
    }
  } finally {
    reader.close();
  }
  await Deno.writeTextFile(
    join(ctx.outDir, "split.json"),
    JSON.stringify({ train: trainPositions.length, eval: evalPositions.length, size: index.width }, null, 1),
  );
  ctx.log(`${trainPositions.length} training and ${evalPositions.length} held-out images in shards of ${shardSize}`);
}
