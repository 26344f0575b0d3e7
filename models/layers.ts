/**
 * The building blocks of the DCGAN family as functions over a ParamStore. A forward pass in
 * training mode collects side effects (batch-norm running-stat updates) in `Pass.updates`, to be
 * applied after the gradient step, so gradient tapes never see a variable assignment.
 */
import * as tf from "./tf.ts";
import type { ParamStore } from "./params.ts";
import type { Rng } from "./rng.ts";
import { type Activation, batchNormOnDevice } from "./backends/webgpu_batchnorm.ts";
import { batchNormInHeap, nativeBatchNormAvailable } from "./backends/native_batchnorm.ts";
import { convBiasLeakyReluInHeap, nativeKernelsInstalled } from "./backends/native.ts";

export interface Pass {
  training: boolean;
  spectralNorm: boolean;
  /** variable -> new value, applied by `applyUpdates` after the step */
  updates: [tf.Variable, tf.Tensor][];
  /** draws dropout masks; absent means no dropout in this pass */
  rng?: Rng;
}

const BN_MOMENTUM = 0.1; // PyTorch's default, which the seeds used
export const BN_EPSILON = 1e-5;
const LEAKY_SLOPE = 0.2;

/** W / sigma(W), sigma from one step of power iteration whose vectors were updated beforehand. */
export function spectral(store: ParamStore, name: string, weight: tf.Tensor, pass: Pass, rows: number): tf.Tensor {
  if (!pass.spectralNorm) return weight;
  const columns = weight.size / rows;
  const u = store.unitVector(`${name}/sn_u`, columns);
  const v = store.unitVector(`${name}/sn_v`, rows);
  const matrix = weight.reshape([rows, columns]);
  const sigma = tf.matMul(tf.matMul(v, matrix), u, false, true).reshape([]);
  return weight.div(sigma);
}

/**
 * One power-iteration step for every spectrally normalised weight of the store, outside any
 * gradient tape (u and v are constants to the gradient, as in Miyato et al. and PyTorch).
 */
export function updateSpectralVectors(store: ParamStore): void {
  tf.tidy(() => {
    for (const [name, u] of store.state) {
      if (!name.endsWith("/sn_u")) continue;
      const base = name.slice(0, -"/sn_u".length);
      const v = store.state.get(`${base}/sn_v`)!;
      const weight = store.trainable.get(`${base}/w`)!;
      const matrix = weight.reshape([v.shape[1]!, u.shape[1]!]);
      const newV = tf.matMul(u, matrix, false, true);
      const normalisedV = newV.div(tf.norm(newV).add(1e-12));
      const newU = tf.matMul(normalisedV, matrix);
      u.assign(newU.div(tf.norm(newU).add(1e-12)));
      v.assign(normalisedV);
    }
  });
}

/** A convolution, + bias unless `bias` is false, then leaky ReLU when `leaky` (one kernel on native). */
export function conv(
  store: ParamStore,
  name: string,
  x: tf.Tensor4D,
  outChannels: number,
  pass: Pass,
  { kernel = 4, stride = 2, bias = true, leaky = false } = {},
): tf.Tensor4D {
  const inChannels = x.shape[3];
  const w = store.normal(`${name}/w`, [kernel, kernel, inChannels, outChannels]);
  const weight = spectral(store, name, w, pass, kernel * kernel * inChannels) as tf.Tensor4D;
  const b = bias ? store.constant(`${name}/b`, [outChannels], 0) : null;
  if (b && leaky && nativeKernelsInstalled()) return convBiasLeakyReluInHeap(x, weight, b, stride, LEAKY_SLOPE);
  // 'same' with k4/s2 pads 1 on each side: PyTorch's Conv2d(k=4, s=2, p=1).
  let y = tf.conv2d(x, weight, stride, "same");
  if (b) y = y.add(b);
  return leaky ? leakyRelu(y) : y;
}

/** ConvTranspose2d(k=4, s=2, p=1): doubles height and width. */
export function convTranspose(
  store: ParamStore,
  name: string,
  x: tf.Tensor4D,
  outChannels: number,
  pass: Pass,
  { bias = true } = {},
): tf.Tensor4D {
  const [batch, height, width, inChannels] = x.shape;
  const w = store.normal(`${name}/w`, [4, 4, outChannels, inChannels]);
  const weight = spectral(store, name, w, pass, 4 * 4 * outChannels) as tf.Tensor4D;
  let y = tf.conv2dTranspose(x, weight, [batch, height * 2, width * 2, outChannels], 2, "same");
  if (bias) y = y.add(store.constant(`${name}/b`, [outChannels], 0));
  return y;
}

export function dense(store: ParamStore, name: string, x: tf.Tensor2D, units: number, pass: Pass): tf.Tensor2D {
  const w = store.normal(`${name}/w`, [x.shape[1], units]);
  const weight = spectral(store, name, w, pass, x.shape[1]) as tf.Tensor2D;
  return tf.matMul(x, weight).add(store.constant(`${name}/b`, [units], 0));
}

/**
 * Batch norm over N, H, W (weights N(1, 0.02) as in DCGAN), then `activation`. In training on
 * webgpu both are one fused dispatch forward and one backward (backends/webgpu_batchnorm.ts), on
 * native one fused kernel each way on oneDNN (backends/native_batchnorm.ts).
 */
export function batchNorm(
  store: ParamStore,
  name: string,
  x: tf.Tensor4D,
  pass: Pass,
  activation: Activation = "none",
): tf.Tensor4D {
  const channels = x.shape[3];
  const gamma = store.normal(`${name}/gamma`, [channels], 1, 0.02);
  const beta = store.constant(`${name}/beta`, [channels], 0);
  const runningMean = store.constant(`${name}/running_mean`, [channels], 0, false);
  const runningVar = store.constant(`${name}/running_var`, [channels], 1, false);
  const onDevice = tf.getBackend() === "webgpu";
  if (pass.training && (onDevice || nativeBatchNormAvailable())) {
    const options = { eps: BN_EPSILON, momentum: BN_MOMENTUM, activation, alpha: LEAKY_SLOPE };
    const fused = (onDevice ? batchNormOnDevice : batchNormInHeap)(x, gamma, beta, runningMean, runningVar, options);
    pass.updates.push([runningMean, tf.keep(fused.runningMean)], [runningVar, tf.keep(fused.runningVar)]);
    return fused.y;
  }
  if (!pass.training) {
    return activate(x.sub(runningMean).div(runningVar.add(BN_EPSILON).sqrt()).mul(gamma).add(beta), activation);
  }
  const { mean, variance } = tf.moments(x, [0, 1, 2]);
  const count = x.size / channels;
  // Running variance is unbiased, as PyTorch keeps it.
  const unbiased = variance.mul(count / Math.max(count - 1, 1));
  pass.updates.push([runningMean, tf.keep(runningMean.mul(1 - BN_MOMENTUM).add(mean.mul(BN_MOMENTUM)))]);
  pass.updates.push([runningVar, tf.keep(runningVar.mul(1 - BN_MOMENTUM).add(unbiased.mul(BN_MOMENTUM)))]);
  return activate(x.sub(mean).div(variance.add(BN_EPSILON).sqrt()).mul(gamma).add(beta), activation);
}

function activate(x: tf.Tensor4D, activation: Activation): tf.Tensor4D {
  if (activation === "relu") return tf.relu(x);
  if (activation === "leakyRelu") return leakyRelu(x);
  return x;
}

export function applyUpdates(pass: Pass): void {
  for (const [variable, value] of pass.updates) {
    variable.assign(value);
    value.dispose();
  }
  pass.updates.length = 0;
}

/** Inverted dropout with a mask drawn from the pass's seeded generator. */
export function dropout(x: tf.Tensor4D, rate: number, pass: Pass): tf.Tensor4D {
  if (!pass.training || !pass.rng || rate <= 0) return x;
  const mask = tf.randomUniform(x.shape, 0, 1, "float32", pass.rng.nextUint32()).greaterEqual(rate);
  return x.mul(mask.cast("float32")).div(1 - rate);
}

/** SAGAN self-attention (Zhang et al. 2019): out = x + gamma * attention(x), gamma starts at 0. */
export function selfAttention(store: ParamStore, name: string, x: tf.Tensor4D, pass: Pass): tf.Tensor4D {
  const [batch, height, width, channels] = x.shape;
  const reduced = Math.max(1, Math.floor(channels / 8));
  const n = height * width;
  const query = conv(store, `${name}/query`, x, reduced, pass, { kernel: 1, stride: 1 }).reshape([batch, n, reduced]);
  const key = conv(store, `${name}/key`, x, reduced, pass, { kernel: 1, stride: 1 }).reshape([batch, n, reduced]);
  const value = conv(store, `${name}/value`, x, channels, pass, { kernel: 1, stride: 1 }).reshape([batch, n, channels]);
  const attention = tf.softmax(tf.matMul(query, key, false, true));
  const attended = tf.matMul(attention, value).reshape([batch, height, width, channels]);
  return x.add(attended.mul(store.constant(`${name}/gamma`, [1], 0)));
}

/** Minibatch standard deviation (Karras et al. 2018): one extra channel, the mean std over the batch. */
export function minibatchStd(x: tf.Tensor4D): tf.Tensor4D {
  const { variance } = tf.moments(x, 0);
  const meanStd = variance.add(1e-8).sqrt().mean();
  const [batch, height, width] = x.shape;
  return tf.concat([x, tf.fill([batch, height, width, 1], 1).mul(meanStd)], 3) as tf.Tensor4D;
}

export function leakyRelu(x: tf.Tensor4D): tf.Tensor4D {
  return tf.leakyRelu(x, LEAKY_SLOPE);
}
