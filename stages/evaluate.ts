/**
 * evaluate: how close the generator's faces are to held-out real faces (see docs/stages.md, "Evaluation").
 * Every metric is computed twice at the same sample sizes: N generated faces vs a reference set of
 * N held-out real faces (the value), and N other held-out real faces vs that same reference (the
 * floor: what a perfect generator would score at this N, since FD's bias grows as 1/N). Writes
 * metrics.json: values, floor, floor_n (N per side), which direction is better, N and seeds. Every
 * random choice is seeded, so the file is byte-identical on a re-run.
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
  slicedWassersteinTo,
  type SwdReference,
  swdReference,
} from "../models/metrics.ts";
import type { RunSorter } from "../models/radix_sort.ts";
import { SortWorkers } from "../data/sort_workers.ts";
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
  if (index.count < 2 * count) {
    throw new UserError(
      `eval.n_samples ${count} needs ${2 * count} held-out images (a real reference set and a real stand-in ` +
        `for the generated set, ${count} each) but the split holds ${index.count}: lower eval.n_samples to ` +
        `${Math.floor(index.count / 2)} or raise data.eval_fraction`,
    );
  }
  const real = split(await readPackPixels(ctx.inputs.shard, index), index.count, size);
  // Both comparisons measure against the same reference; the stand-in takes the generated set's place.
  const [reference, standIn] = [real.slice(0, count), real.slice(count, 2 * count)];
  const generated = await generate(
    ctx.inputs.train,
    count,
    seed,
    size,
    (done) => ctx.progress({ done, total: count, unit: "img", note: "generating faces" }),
  );
  ctx.log(`${count} generated vs ${count} held-out real images at ${size}x${size}; floor: ${count} other real ones`);

  // The SWDs' sorts run on worker threads while this thread embeds and detects faces.
  const sorter = new SortWorkers();
  const [{ swd, swdFloor, perEpoch, perEpochFloor }, faces] = await Promise.all([
    swdMetrics(ctx.inputs.train, { generated, reference, standIn }, size, seed, sorter, ctx.progress),
    faceMetrics(ctx, { generated, reference, standIn }, size, seed),
  ]).finally(() => sorter.close());

  const swdValues = (result: Swd) =>
    Object.fromEntries([
      ...Object.entries(result.levels).map(([level, value]) => [`swd_${level}px`, value]),
      ["swd_mean", result.mean],
    ]);
  const { fd, fdFloor, kid, kidFloor, detected, detectedReal, subsets } = faces;
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
    n: { generated: count, real: count, floor: [count, count], held_out: real.length },
    floor_n: Object.fromEntries(Object.keys(values).map((name) => [name, count])),
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

type Swd = Awaited<ReturnType<typeof slicedWassersteinTo>>;
type Sets = { generated: Uint8Array[]; reference: Uint8Array[]; standIn: Uint8Array[] };

/** FD and KID of face embeddings, and the face detection rate: the generated set's and their floors. */
async function faceMetrics(ctx: StageContext, { generated, reference, standIn }: Sets, size: number, seed: number) {
  const features = await FaceFeatures.load();
  const embed = async (images: Uint8Array[], label: string) =>
    await features.embed(
      images,
      size,
      (done) => ctx.progress({ done, total: images.length, unit: "faces", note: `face embeddings of ${label}` }),
    );
  const generatedEmbeddings = await embed(generated, "generated images");
  const referenceEmbeddings = await embed(reference, "real images");
  const standInEmbeddings = await embed(standIn, "other real images");
  const referenceGaussian = fitGaussian(referenceEmbeddings);
  const subsets = ctx.param<number>("eval.kid_subsets");
  const distances = {
    fd: frechetDistance(fitGaussian(generatedEmbeddings), referenceGaussian),
    fdFloor: frechetDistance(fitGaussian(standInEmbeddings), referenceGaussian),
    kid: kernelDistance(generatedEmbeddings, referenceEmbeddings, new Rng(seed + 2), subsets),
    kidFloor: kernelDistance(standInEmbeddings, referenceEmbeddings, new Rng(seed + 2), subsets),
    subsets,
  };
  ctx.progress({ note: "face detection" });
  const detected = await features.detectionRate(generated, size);
  const detectedReal = await features.detectionRate(standIn, size);
  return { ...distances, detected, detectedReal };
}

/**
 * The SWDs, each against the first images of the same real reference set: the generated set's
 * and its floor (N = eval.n_samples, Rng(seed + 1)), and per epoch the fixed-z sample grid train
 * wrote at each epoch's end. SWD grows as N shrinks, so these (N = the grid, 64 by default) get
 * their own floor at that N: the final SWD's floor would sit far below every epoch's value. One
 * reference (patches, directions, sorted projections) per N serves every set compared at that N:
 * the same numbers as a fresh slicedWasserstein each time, drawn from the same seeds.
 */
async function swdMetrics(
  trainDir: string,
  { generated, reference, standIn }: Sets,
  size: number,
  seed: number,
  sort: RunSorter,
  progress: StageContext["progress"],
) {
  const finalReference = await swdReference(reference, size, generated.length, new Rng(seed + 1), {}, sort);
  const [swd, swdFloor] = await Promise.all(
    [generated, standIn].map((set) => slicedWassersteinTo(finalReference, set, sort)),
  );
  const gridReferences = new Map<number, Promise<SwdReference>>();
  const gridReference = (n: number) => {
    if (!gridReferences.has(n)) gridReferences.set(n, swdReference(reference, size, n, new Rng(seed + 3), {}, sort));
    return gridReferences.get(n)!;
  };
  const epochFiles = await epochSampleFiles(trainDir);
  // One epoch ahead: this thread makes an epoch's patches and projections while the workers sort
  // the previous epoch's (so at most two epochs' projections, 2 x 32 MB by default, are held).
  const perEpoch: { epoch: number; swd_mean: number; n: number }[] = [];
  let previous: Promise<(typeof perEpoch)[number]> | undefined;
  for (const [done, { epoch, path }] of epochFiles.entries()) {
    progress({ done, total: epochFiles.length, unit: "epochs", note: `SWD of epoch ${epoch} samples` });
    const tiles = await readGridTiles(path, size);
    const n = Math.min(tiles.length, generated.length);
    const measured = slicedWassersteinTo(await gridReference(n), tiles, sort)
      .then(({ mean }) => ({ epoch, swd_mean: mean, n }));
    measured.catch(() => {}); // a failure is thrown where it is awaited, after the previous epoch's
    if (previous) perEpoch.push(await previous);
    previous = measured;
  }
  if (previous) perEpoch.push(await previous);
  const gridN = perEpoch[0]?.n;
  const perEpochFloor = gridN === undefined
    ? undefined
    : { swd_mean: (await slicedWassersteinTo(await gridReference(gridN), standIn, sort)).mean, n: gridN };
  return { swd, swdFloor, perEpoch, perEpochFloor };
}
