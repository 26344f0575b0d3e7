/**
 * evaluate: how close the generator's faces are to the held-out real faces (see README,
 * "Evaluation"). Writes metrics.json: values (generated vs the real held-out split), floor (the
 * same metrics between two disjoint halves of the real split), which direction is better, N and
 * seeds. Every random choice is seeded, so the file is byte-identical on a re-run.
 */
import { join } from "node:path";
import * as tf from "../models/tf.ts";
import type { MetricsFile, StageContext } from "../pipeline/core/types.ts";
import { UserError } from "../pipeline/core/errors.ts";
import { BackendUnavailable, EVAL_BACKENDS, type EvalBackendName, useEvalBackend } from "../models/backend.ts";
import {
  fitGaussian,
  frechetDistance,
  kernelDistance,
  slicedWasserstein,
  slicedWassersteinTo,
  type SwdReference,
  swdReference,
} from "../models/metrics.ts";
import { Rng } from "../models/rng.ts";
import { toUint8Images } from "../models/serialize.ts";
import { readGenerator } from "../data/generator_file.ts";
import { readPackIndex, readPackPixels } from "../data/pack.ts";
import { readGridTiles } from "../data/image_io.ts";
import { epochSampleFiles } from "../data/training_log.ts";
import { FaceFeatures } from "../data/face_features.ts";

/** metrics.json as render and the experiments page read it. */
export type EvaluationMetrics = MetricsFile & {
  per_epoch?: { epoch: number; swd_mean: number; n: number }[];
  per_epoch_floor?: { swd_mean: number; n: number };
};

export async function run(ctx: StageContext): Promise<void> {
  const count = ctx.param<number>("eval.n_samples");
  if (!(count >= 4)) throw new UserError(`eval.n_samples must be at least 4, got ${count}`);
  const seed = ctx.param<number>("eval.seed");
  const backendName = ctx.param<EvalBackendName>("eval.backend");
  if (!EVAL_BACKENDS.includes(backendName)) {
    throw new UserError(`eval.backend '${backendName}' is not one of ${EVAL_BACKENDS.join(", ")}`);
  }
  tf.env().set("IS_TEST", true);
  const backend = await useEvalBackend(backendName).catch((error) => {
    throw error instanceof BackendUnavailable ? new UserError(`${error.message} (or set eval.backend=auto)`) : error;
  });
  if (backend.note) ctx.log(`${backend.note}; evaluating on ${backend.name}`);
  ctx.recordEnvironment("backend", backend.name);
  ctx.recordEnvironment("threads", backend.threads);

  const index = await readPackIndex(ctx.inputs.shard, "eval");
  const size = index.width;
  const realPixels = await readPackPixels(ctx.inputs.shard, index);
  const real = split(realPixels, index.count, size);
  const generated = await generate(
    ctx.inputs.train,
    count,
    seed,
    size,
    (done) => ctx.progress({ done, total: count, unit: "img", note: "generating faces" }),
  );
  ctx.log(`${generated.length} generated vs ${real.length} held-out real images at ${size}x${size}`);

  const half = Math.floor(real.length / 2);
  const [realA, realB] = [real.slice(0, half), real.slice(half, 2 * half)];

  ctx.progress({ note: "sliced Wasserstein distance" });
  const swd = slicedWasserstein(generated, real, size, new Rng(seed + 1));
  const swdFloor = slicedWasserstein(realA, realB, size, new Rng(seed + 1));

  const features = await FaceFeatures.load();
  const embed = async (images: Uint8Array[], label: string) =>
    await features.embed(
      images,
      size,
      (done) => ctx.progress({ done, total: images.length, unit: "faces", note: `face embeddings of ${label}` }),
    );
  const generatedEmbeddings = await embed(generated, "generated images");
  const realEmbeddings = await embed(real, "real images");
  const [embeddingsA, embeddingsB] = [realEmbeddings.slice(0, half), realEmbeddings.slice(half, 2 * half)];
  const fd = frechetDistance(fitGaussian(generatedEmbeddings), fitGaussian(realEmbeddings));
  const fdFloor = frechetDistance(fitGaussian(embeddingsA), fitGaussian(embeddingsB));
  const subsets = ctx.param<number>("eval.kid_subsets");
  const kid = kernelDistance(generatedEmbeddings, realEmbeddings, new Rng(seed + 2), subsets);
  const kidFloor = kernelDistance(embeddingsA, embeddingsB, new Rng(seed + 2), subsets);
  ctx.progress({ note: "face detection" });
  const detected = await features.detectionRate(generated, size);
  const detectedReal = await features.detectionRate(real, size);

  // Per epoch: SWD of the fixed-z sample grid train wrote at each epoch's end, vs as many real images.
  // SWD grows as N shrinks, so these (N = the grid, 64 by default) get their own floor at that N:
  // the final SWD's floor (N = half the held-out split) would sit far below every epoch's value.
  // Every epoch's grid has as many tiles, so the real side (patches, directions, sorted
  // projections) is drawn once and shared: the same numbers as a fresh slicedWasserstein per epoch.
  const perEpoch = [];
  let reference: SwdReference | undefined;
  const epochFiles = await epochSampleFiles(ctx.inputs.train);
  for (const [done, { epoch, path }] of epochFiles.entries()) {
    ctx.progress({ done, total: epochFiles.length, unit: "epochs", note: `SWD of epoch ${epoch} samples` });
    const tiles = await readGridTiles(path, size);
    const n = Math.min(tiles.length, real.length);
    if (reference?.count !== n) reference = swdReference(real, size, n, new Rng(seed + 3));
    perEpoch.push({ epoch, swd_mean: slicedWassersteinTo(reference, tiles).mean, n });
  }
  const gridN = perEpoch[0]?.n;
  const perEpochFloor = gridN === undefined ? undefined : {
    swd_mean: slicedWasserstein(realA.slice(0, gridN), realB.slice(0, gridN), size, new Rng(seed + 3)).mean,
    n: Math.min(gridN, half),
  };

  const swdValues = (result: typeof swd) =>
    Object.fromEntries([
      ...Object.entries(result.levels).map(([level, value]) => [`swd_${level}px`, value]),
      ["swd_mean", result.mean],
    ]);
  const values = { ...swdValues(swd), fd_face: fd, kid_face: kid.mean, face_detection_rate: detected };
  const floor = {
    ...swdValues(swdFloor),
    fd_face: fdFloor,
    kid_face: kidFloor.mean,
    face_detection_rate: detectedReal,
  };
  const better = Object.fromEntries(
    Object.keys(values).map((name) => [name, name === "face_detection_rate" ? "higher" as const : "lower" as const]),
  );
  const metrics: EvaluationMetrics = {
    values,
    floor,
    better,
    kid_std: {
      generated: kid.std,
      floor: kidFloor.std,
      subset_size: { generated: kid.subsetSize, floor: kidFloor.subsetSize },
      subsets,
    },
    n: { generated: generated.length, real: real.length, floor_halves: half },
    per_epoch: perEpoch,
    per_epoch_floor: perEpochFloor,
    seed,
    image_size: size,
    embedding: "face-api face_recognition (128-D), images resized by face-api to 150x150",
    detector: "face-api tiny_face_detector, face resized to 96 px on a 160 px grey canvas, score >= 0.5",
    note:
      "floor = the same metric between two disjoint halves of the real held-out split; Frechet distance is biased at small N, KID is not",
  };
  await Deno.writeTextFile(join(ctx.outDir, "metrics.json"), JSON.stringify(metrics, null, 1) + "\n");
  ctx.log(
    `SWD ${swd.mean.toFixed(1)} (floor ${swdFloor.mean.toFixed(1)})  FD ${fd.toFixed(4)} (floor ${
      fdFloor.toFixed(4)
    })  ` +
      `KID ${kid.mean.toFixed(5)} (floor ${kidFloor.mean.toFixed(5)})  faces detected ${
        (detected * 100).toFixed(1)
      }% ` +
      `(real ${(detectedReal * 100).toFixed(1)}%)`,
  );
}

function split(pixels: Uint8Array, count: number, size: number): Uint8Array[] {
  const bytes = size * size * 3;
  return Array.from({ length: count }, (_, i) => pixels.subarray(i * bytes, (i + 1) * bytes));
}

/** `count` generated images (eval mode), z drawn from Rng(seed), as uint8 like the real ones. */
async function generate(
  trainDir: string,
  count: number,
  seed: number,
  size: number,
  progress: (done: number) => void,
): Promise<Uint8Array[]> {
  const generator = await readGenerator(trainDir);
  if (generator.config.imageSize !== size) {
    throw new UserError(`the generator makes ${generator.config.imageSize} px images but the shards hold ${size} px`);
  }
  const rng = new Rng(seed);
  const images: Uint8Array[] = [];
  for (let start = 0; start < count; start += 64) {
    const batch = Math.min(64, count - start);
    const z = tf.tensor2d(rng.normals(batch * generator.config.zSize), [batch, generator.config.zSize]);
    const out = generator.sample(z);
    images.push(...split(await toUint8Images(out), batch, size));
    tf.dispose([z, out]);
    progress(images.length);
  }
  generator.store.dispose();
  return images;
}
