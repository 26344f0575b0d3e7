import type { GanConfig } from "../models/gan.ts";

/** The seeds' baseline at 32 px (what bench times and bench_torch.py mirrors). */
export const STEP_CONFIG_32: GanConfig = {
  model: {
    imageSize: 32,
    zSize: 100,
    gConvDim: 32,
    dConvDim: 32,
    spectralNorm: "none",
    selfAttention: false,
    dDropout: 0,
    minibatchStd: false,
    residual: false,
    dBatchNorm: true,
  },
  loss: "bce",
  lrG: 2e-4,
  lrD: 2e-4,
  beta1: 0.5,
  beta2: 0.999,
  realLabel: 0.9,
  flipLabels: 0,
  featureMatching: false,
  gradientPenalty: 10,
  lrDecay: "none",
  decayEvery: 1,
  decayGamma: 1,
  totalSteps: 100,
  emaDecay: 0,
  seed: 1,
};

/** The 64 px network with conv dim 64 (the seeds' larger setting). */
export const STEP_CONFIG_64: GanConfig = {
  ...STEP_CONFIG_32,
  model: { ...STEP_CONFIG_32.model, imageSize: 64, gConvDim: 64, dConvDim: 64 },
};

/**
 * Convolution and dense FLOPs of one D+G training step per image (multiply-add = 2), counted as
 * the step computes them (models/gan.ts): the D update runs G forward, D forward and backward
 * (weights) on the real and the fake batch, with input gradients for every D layer but the first;
 * the G update runs G forward, D forward, D's input gradients down to the image, and G backward
 * (weights and inputs). So 4 G passes and 8 D passes, less 2 first-layer input gradients.
 */
export function stepFlopsPerImage(config: GanConfig): number {
  const { imageSize, zSize, gConvDim, dConvDim } = config.model;
  const depth = Math.log2(imageSize / 4);
  const conv = (outSize: number, inChannels: number, outChannels: number) =>
    2 * outSize * outSize * 16 * inChannels * outChannels;
  let d = 0, dFirst = 0, g = 0;
  for (let layer = 1; layer <= depth; layer++) {
    const flops = conv(imageSize >> layer, layer === 1 ? 3 : dConvDim * 2 ** (layer - 2), dConvDim * 2 ** (layer - 1));
    d += flops;
    if (layer === 1) dFirst = flops;
    // G's transposed convolution from size/2^layer to twice that, the mirror of D's layer.
    g += conv(imageSize >> layer, layer === 1 ? 3 : gConvDim * 2 ** (layer - 2), gConvDim * 2 ** (layer - 1));
  }
  const dDense = 2 * 16 * dConvDim * 2 ** (depth - 1);
  const gDense = 2 * zSize * 16 * gConvDim * 2 ** (depth - 1);
  return 4 * (g + gDense) + 8 * (d + dDense) - 2 * dFirst;
}
