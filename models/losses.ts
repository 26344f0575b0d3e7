/** GAN losses on discriminator logits. Targets allow one-sided label smoothing (real = 0.9). */
import * as tf from "./tf.ts";
import type { LossName } from "./choices.ts";

/** Binary cross-entropy with logits, numerically stable: max(x,0) - x*t + log(1 + e^-|x|). */
export function bceWithLogits(logits: tf.Tensor, target: tf.Tensor | number): tf.Scalar {
  return tf.relu(logits).sub(logits.mul(target)).add(tf.log1p(tf.exp(tf.abs(logits).neg()))).mean();
}

/**
 * Discriminator loss on real and fake logits, as its real and fake parts (logged separately);
 * targets are per-sample tensors so labels can be smoothed or flipped.
 */
export function discriminatorLoss(
  loss: LossName,
  real: tf.Tensor2D,
  fake: tf.Tensor2D,
  realTarget: tf.Tensor2D,
  fakeTarget: tf.Tensor2D,
): { real: tf.Scalar; fake: tf.Scalar } {
  switch (loss) {
    case "bce":
      return { real: bceWithLogits(real, realTarget), fake: bceWithLogits(fake, fakeTarget) };
    case "lsgan":
      return {
        real: real.sub(realTarget).square().mean().mul(0.5),
        fake: fake.sub(fakeTarget).square().mean().mul(0.5),
      };
    case "hinge":
      return { real: tf.relu(tf.scalar(1).sub(real)).mean(), fake: tf.relu(fake.add(1)).mean() };
    case "wgan-gp":
      return { real: real.mean().neg() as tf.Scalar, fake: fake.mean() as tf.Scalar };
  }
}

export function generatorLoss(loss: LossName, fake: tf.Tensor2D): tf.Scalar {
  switch (loss) {
    case "bce":
      return bceWithLogits(fake, 1);
    case "lsgan":
      return fake.sub(1).square().mean().mul(0.5);
    case "hinge":
    case "wgan-gp":
      return fake.mean().neg() as tf.Scalar;
  }
}

/** Feature matching (Salimans et al. 2016): match the mean D features of real and fake batches. */
export function featureMatchingLoss(realFeatures: tf.Tensor2D, fakeFeatures: tf.Tensor2D): tf.Scalar {
  return realFeatures.mean(0).sub(fakeFeatures.mean(0)).square().mean();
}
