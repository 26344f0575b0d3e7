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
  seed: 1,
};
