/**
 * train: the DCGAN on the training shards. Writes, per epoch, a checkpoint (weights, optimizer
 * moments, counters and RNG state: see docs/file-formats.md, "Checkpoint format"), the fixed-z sample grid and
 * the losses so far; at the end the generator. A killed run resumes from its last complete
 * checkpoint and ends byte-identical to an uninterrupted one on the same backend.
 */
import { join } from "node:path";
import * as tf from "../models/tf.ts";
import type { StageContext } from "../pipeline/core/types.ts";
import { UserError } from "../pipeline/core/errors.ts";
import { type BackendName, BackendUnavailable, useBackend } from "../models/backend.ts";
import { Gan, type GanConfig, LOSS_READ_EVERY } from "../models/gan.ts";
import type { LossName, LrDecay, SpectralNorm } from "../models/choices.ts";
import { Rng } from "../models/rng.ts";
import { fromUint8Images, toUint8Images } from "../models/serialize.ts";
import { readPackIndex, readPackPixels } from "../data/pack.ts";
import { encodePng, gridImage } from "../data/image_io.ts";
import { writeGenerator } from "../data/generator_file.ts";
import { pruneCheckpoints, resumeFrom, writeCheckpoint } from "../data/checkpoint_file.ts";
import {
  epochSamplePath,
  type EpochStats,
  type LossRow,
  readLosses,
  readTrainingSummary,
  writeLosses,
  writeTrainingSummary,
} from "../data/training_log.ts";
import { type LiveState, writeLivePage } from "../data/live_page.ts";

/**
 * The GAN's configuration from the params, as typed values: the engine checked each against the
 * schema (stages/params_schema.ts) before the stage started, so nothing is checked again here.
 */
export function ganConfig(ctx: StageContext, imageSize: number, totalSteps: number): GanConfig {
  const loss = ctx.param<LossName>("train.loss");
  const lr = ctx.param<number>("train.lr");
  return {
    model: {
      imageSize: imageSize as 32 | 64 | 128,
      zSize: ctx.param<number>("train.z_size"),
      gConvDim: ctx.param<number>("train.g_conv_dim"),
      dConvDim: ctx.param<number>("train.d_conv_dim"),
      spectralNorm: ctx.param<SpectralNorm>("train.spectral_norm"),
      selfAttention: ctx.param<boolean>("train.self_attention"),
      dDropout: ctx.param<number>("train.d_dropout"),
      minibatchStd: ctx.param<boolean>("train.minibatch_std"),
      residual: ctx.param<boolean>("train.residual"),
      // The gradient penalty is per sample; batch norm in D would mix samples (Gulrajani et al.).
      dBatchNorm: loss !== "wgan-gp",
    },
    loss,
    lrG: ctx.param<number | null>("train.lr_g") ?? lr,
    lrD: ctx.param<number | null>("train.lr_d") ?? lr,
    beta1: ctx.param<number>("train.beta1"),
    beta2: ctx.param<number>("train.beta2"),
    realLabel: ctx.param<number>("train.label_smoothing"),
    flipLabels: ctx.param<number>("train.flip_labels"),
    featureMatching: ctx.param<boolean>("train.feature_matching"),
    gradientPenalty: ctx.param<number>("train.gp_weight"),
    lrDecay: ctx.param<LrDecay>("train.lr_decay"),
    decayEvery: ctx.param<number>("train.lr_decay_every"),
    decayGamma: ctx.param<number>("train.lr_decay_gamma"),
    totalSteps,
    emaDecay: ctx.param<number>("train.ema"),
    seed: ctx.param<number>("train.seed"),
  };
}

/** Mean pairwise L2 distance between images, divided by sqrt(pixels): ~0 means mode collapse. */
export function diversity(pixels: Uint8Array, count: number): number {
  const size = pixels.length / count;
  let total = 0;
  let pairs = 0;
  for (let a = 0; a < count; a++) {
    for (let b = a + 1; b < count; b++) {
      let sum = 0;
      for (let i = 0; i < size; i++) {
        const d = (pixels[a * size + i] - pixels[b * size + i]) / 127.5;
        sum += d * d;
      }
      total += Math.sqrt(sum / size);
      pairs++;
    }
  }
  return pairs ? total / pairs : 0;
}

export async function run(ctx: StageContext): Promise<void> {
  // The split is known now: a batch it cannot fill is refused before the backend loads or anything is written.
  const index = await readPackIndex(ctx.inputs.shard, "train");
  const batchSize = ctx.param<number>("train.batch_size");
  if (batchSize > index.count) {
    throw new UserError(
      `train.batch_size ${batchSize} is larger than the ${index.count} images of the training split (shard's ` +
        `train.json): lower train.batch_size to ${index.count} or less, or give it more data`,
    );
  }
  const backendName = ctx.param<BackendName>("train.backend");
  tf.env().set("IS_TEST", true); // silences tfjs' "install tfjs-node" banner
  const backend = await useBackend(backendName).catch((error) => {
    // A backend asked for by name that cannot start here is the user's to fix (install it, or pick another).
    throw error instanceof BackendUnavailable ? new UserError(`${error.message} (or set train.backend=auto)`) : error;
  });
  ctx.recordEnvironment("backend", backend.name);
  ctx.recordEnvironment("backend_detail", backend.detail);
  ctx.recordEnvironment("threads", backend.threads);
  if (backend.note) ctx.log(`${backend.note}; training on ${backend.name}`);
  ctx.log(`backend ${backend.name} (${backend.detail})`);

  const pixels = await readPackPixels(ctx.inputs.shard, index);
  const size = index.width;
  const imageBytes = size * size * 3;
  const epochs = ctx.param<number>("train.epochs");
  const stepsPerEpoch = Math.floor(index.count / batchSize);
  const config = ganConfig(ctx, size, epochs * stepsPerEpoch);
  const gan = new Gan(config);
  const gridSide = ctx.param<number>("train.sample_grid");
  const keepCheckpoints = ctx.param<number>("train.keep_checkpoints");
  const fixedZ = tf.tensor2d(new Rng(config.seed + 7919).normals(gridSide * gridSide * config.model.zSize), [
    gridSide * gridSide,
    config.model.zSize,
  ]);

  const checkpoints = join(ctx.outDir, "checkpoints");
  await Deno.mkdir(checkpoints, { recursive: true });
  await Deno.mkdir(join(ctx.outDir, "samples"), { recursive: true });
  const startEpoch = ctx.resumed ? await resumeFrom(checkpoints, gan, ctx.log) : 0;
  const lossRows: LossRow[] = startEpoch ? (await readLosses(ctx.outDir)).slice(0, gan.step) : [];
  const history: EpochStats[] = startEpoch ? (await readTrainingSummary(ctx.outDir)).epochs.slice(0, startEpoch) : [];

  const batchPixels = new Uint8Array(batchSize * imageBytes);
  const totalSteps = epochs * stepsPerEpoch;
  const live = liveView(ctx, {
    epoch: startEpoch,
    epochs,
    step: gan.step,
    steps: totalSteps,
    grid: null,
    losses: lossRows,
    history,
  });
  for (let epoch = startEpoch + 1; epoch <= epochs; epoch++) {
    // Each epoch's order depends only on the seed and the epoch number, so a resume needs no state.
    const order = new Rng(config.seed * 100_003 + epoch).permutation(index.count);
    const sums = { d_real: 0, d_fake: 0, g: 0 };
    for (let step = 0; step < stepsPerEpoch; step++) {
      for (let i = 0; i < batchSize; i++) {
        const source = order[step * batchSize + i] * imageBytes;
        batchPixels.set(pixels.subarray(source, source + imageBytes), i * imageBytes);
      }
      // Let the event loop run once per step: the runner's exit-with-the-engine watch lives there.
      await new Promise((resolve) => setTimeout(resolve, 0));
      const real = fromUint8Images(batchPixels, batchSize, size);
      gan.queueStep(real);
      real.dispose();
      // The losses stay on the device for a few steps, then every step's are read in one go.
      if (gan.pendingSteps < LOSS_READ_EVERY && step < stepsPerEpoch - 1) continue;
      const read = await gan.readLosses();
      for (const [i, losses] of read.entries()) {
        sums.d_real += losses.dReal;
        sums.d_fake += losses.dFake;
        sums.g += losses.g;
        const globalStep = gan.step - read.length + i + 1;
        lossRows.push({ step: globalStep, epoch, d_real: losses.dReal, d_fake: losses.dFake, g: losses.g });
      }
      const last = lossRows[lossRows.length - 1];
      ctx.progress({
        done: gan.step * batchSize,
        total: totalSteps * batchSize,
        unit: "img",
        note: `epoch ${epoch}/${epochs}  D ${(last.d_real + last.d_fake).toFixed(3)} G ${last.g.toFixed(3)}`,
      });
      await live.update({ epoch, step: gan.step }, false);
    }
    const fake = gan.sample(fixedZ);
    const grid = await toUint8Images(fake);
    fake.dispose();
    const stats: EpochStats = {
      epoch,
      steps: gan.step,
      d_real: sums.d_real / stepsPerEpoch,
      d_fake: sums.d_fake / stepsPerEpoch,
      g: sums.g / stepsPerEpoch,
      diversity: diversity(grid, gridSide * gridSide),
    };
    history.push(stats);
    const png = await encodePng(gridImage(grid, gridSide * gridSide, size, gridSide));
    await Deno.writeFile(epochSamplePath(ctx.outDir, epoch), png);
    await live.update({ epoch, step: gan.step, grid: { epoch, png } }, true);
    await writeLosses(ctx.outDir, lossRows);
    const summary = { params: ctx.params, images: index.count, steps_per_epoch: stepsPerEpoch, epochs: history };
    await writeTrainingSummary(ctx.outDir, summary);
    await writeCheckpoint(checkpoints, epoch, gan);
    await pruneCheckpoints(checkpoints, epoch, keepCheckpoints);
    await ctx.resumePoint(`epoch ${epoch} of ${epochs}`);
    ctx.log(
      `epoch ${epoch}: D ${(stats.d_real + stats.d_fake).toFixed(3)}  G ${stats.g.toFixed(3)}  diversity ${
        stats.diversity.toFixed(3)
      }` +
        (epoch > 1 && stats.diversity < 0.5 * history[0].diversity ? "  (diversity fell: possible mode collapse)" : ""),
    );
  }
  await writeGenerator(ctx.outDir, gan.samplingGenerator());
  fixedZ.dispose();
}

/** Between epochs, the live page is rewritten at most this often (the losses move). */
const LIVE_EVERY_MS = 10_000;

/**
 * The live page, where the engine gave a folder for it: rewritten at each epoch's end and every
 * 10 s between. It is a view, not a result: a failure to write it is said once and training goes on.
 */
function liveView(ctx: StageContext, state: LiveState) {
  let written = 0;
  let failed = false;
  return {
    async update(change: Partial<LiveState>, now: boolean) {
      Object.assign(state, change);
      if (!ctx.liveDir || failed || (!now && Date.now() - written < LIVE_EVERY_MS)) return;
      written = Date.now();
      await writeLivePage(ctx.liveDir, state).catch((error) => {
        failed = true;
        ctx.log(`the live page could not be written (${error.message}); training goes on without it`);
      });
    },
  };
}
