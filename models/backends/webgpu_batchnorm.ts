/**
 * Training-mode batch norm + activation on the webgpu backend: one dispatch forward (statistics,
 * running-statistic updates, normalisation, activation) and one backward (the closed-form
 * gradient), where the same layer as tf ops took ~16 dispatches forward and ~30 backward, most of
 * a step's dispatches. One workgroup per channel sums in a fixed tree order, so results are the
 * same run to run. Same formulas as `batchNorm` in models/layers.ts, which cpu and wasm keep.
 */
import * as tf from "../tf.ts";
import {
  bufferOf,
  copyFloats,
  deviceTensorInfo,
  encodeDispatches,
  pipelineFor,
  uniformBlock,
  webgpuBackend,
  type WebgpuInternals,
} from "./webgpu_device.ts";

export type Activation = "none" | "relu" | "leakyRelu";
const ACTIVATIONS: Record<Activation, number> = { none: 0, relu: 1, leakyRelu: 2 };

const THREADS = 256;
/** A workgroup-wide sum in a fixed order (the same on every run). */
const TREE_SUM = `
var<workgroup> partial: array<f32, ${THREADS}>;
fn total(t: u32, value: f32) -> f32 {
  partial[t] = value;
  workgroupBarrier();
  for (var s = ${THREADS / 2}u; s > 0u; s = s >> 1u) {
    if (t < s) { partial[t] = partial[t] + partial[t + s]; }
    workgroupBarrier();
  }
  let result = partial[0];
  workgroupBarrier();
  return result;
}`;

/** Input layout [rows, channels] (NHWC flattened); params: gamma, beta, running mean, running var. */
const FORWARD = `
struct Constants { rows: u32, channels: u32, eps: f32, momentum: f32,
                   keep: f32, unbias: f32, activation: u32, alpha: f32 }
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> params: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read_write> stats: array<f32>; // mean, std, new running mean, new running var
@group(0) @binding(4) var<uniform> k: Constants;
${TREE_SUM}
@compute @workgroup_size(${THREADS})
fn main(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let c = group.x;
  let C = k.channels;
  var sum = 0.0;
  for (var r = t; r < k.rows; r = r + ${THREADS}u) { sum = sum + x[r * C + c]; }
  let mean = total(t, sum) / f32(k.rows);
  var squares = 0.0;
  for (var r = t; r < k.rows; r = r + ${THREADS}u) {
    let d = x[r * C + c] - mean;
    squares = squares + d * d;
  }
  let variance = total(t, squares) / f32(k.rows);
  let deviation = sqrt(variance + k.eps);
  let gamma = params[c];
  let beta = params[C + c];
  for (var r = t; r < k.rows; r = r + ${THREADS}u) {
    let i = r * C + c;
    var v = (x[i] - mean) / deviation * gamma + beta;
    if (k.activation == 1u && v < 0.0) { v = 0.0; }
    if (k.activation == 2u && v < 0.0) { v = v * k.alpha; }
    y[i] = v;
  }
  if (t == 0u) {
    stats[c] = mean;
    stats[C + c] = deviation;
    stats[2u * C + c] = params[2u * C + c] * k.keep + mean * k.momentum;
    stats[3u * C + c] = params[3u * C + c] * k.keep + (variance * k.unbias) * k.momentum;
  }
}`;

/** dx = gamma / deviation * (g - mean(g) - xhat * mean(g * xhat)), g = dy * activation'(pre-activation). */
const BACKWARD = `
struct Constants { rows: u32, channels: u32, activation: u32, alpha: f32 }
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> params: array<f32>;
@group(0) @binding(2) var<storage, read> stats: array<f32>;
@group(0) @binding(3) var<storage, read> dy: array<f32>;
@group(0) @binding(4) var<storage, read_write> dx: array<f32>;
@group(0) @binding(5) var<storage, read_write> dParams: array<f32>; // d gamma, d beta
@group(0) @binding(6) var<uniform> k: Constants;
${TREE_SUM}
fn slope(pre: f32) -> f32 {
  if (k.activation == 1u && pre <= 0.0) { return 0.0; }
  if (k.activation == 2u && pre <= 0.0) { return k.alpha; }
  return 1.0;
}
@compute @workgroup_size(${THREADS})
fn main(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let c = group.x;
  let C = k.channels;
  let mean = stats[c];
  let deviation = stats[C + c];
  let gamma = params[c];
  let beta = params[C + c];
  var sumG = 0.0;
  var sumGX = 0.0;
  for (var r = t; r < k.rows; r = r + ${THREADS}u) {
    let i = r * C + c;
    let xhat = (x[i] - mean) / deviation;
    let g = dy[i] * slope(xhat * gamma + beta);
    sumG = sumG + g;
    sumGX = sumGX + g * xhat;
  }
  let dBeta = total(t, sumG);
  let dGamma = total(t, sumGX);
  let meanG = dBeta / f32(k.rows);
  let meanGX = dGamma / f32(k.rows);
  for (var r = t; r < k.rows; r = r + ${THREADS}u) {
    let i = r * C + c;
    let xhat = (x[i] - mean) / deviation;
    let g = dy[i] * slope(xhat * gamma + beta);
    dx[i] = (g - meanG - xhat * meanGX) * gamma / deviation;
  }
  if (t == 0u) {
    dParams[c] = dGamma;
    dParams[C + c] = dBeta;
  }
}`;

export interface BatchNormOptions {
  eps: number;
  momentum: number;
  activation: Activation;
  /** leakyRelu's slope for negative inputs */
  alpha: number;
}

/**
 * act(batchNorm(x)) in training mode with gradients for x, gamma and beta, and the updated
 * running statistics (not differentiated): what a backend's fused batch norm gives.
 */
export type FusedBatchNorm = (
  x: tf.Tensor4D,
  gamma: tf.Tensor,
  beta: tf.Tensor,
  runningMean: tf.Tensor,
  runningVar: tf.Tensor,
  options: BatchNormOptions,
) => { y: tf.Tensor4D; runningMean: tf.Tensor; runningVar: tf.Tensor };

const FORWARD_KERNEL = "FaceganBatchNormTrain";
const BACKWARD_KERNEL = "FaceganBatchNormTrainGrad";
type KernelArgs = Parameters<tf.KernelFunc>[0];

/** Floats [index * count, (index + 1) * count) of a device tensor, as their own [count] tensor. */
function part(backend: WebgpuInternals, packed: tf.TensorInfo, index: number, count: number): tf.Tensor {
  const out = deviceTensorInfo(backend, [count]);
  copyFloats(backend, packed, index * count, out, 0, count);
  return tf.engine().makeTensorFromTensorInfo(out);
}

/** Inputs x, gamma, beta, running mean, running var -> y and stats (mean, std, new running mean, new running var). */
function forwardKernel({ inputs, backend: kernelBackend, attrs }: KernelArgs): tf.TensorInfo[] {
  const backend = kernelBackend as unknown as WebgpuInternals;
  const { x, gamma, beta, runningMean, runningVar } = inputs as Record<string, tf.TensorInfo>;
  const { eps, momentum, activation, alpha } = attrs as unknown as BatchNormOptions;
  const channels = x.shape[3];
  const rows = tf.util.sizeFromShape(x.shape) / channels;
  // gamma, beta and the running statistics side by side: one storage binding, not four.
  const params = deviceTensorInfo(backend, [4, channels]);
  [gamma, beta, runningMean, runningVar].forEach((t, i) => copyFloats(backend, t, 0, params, i * channels, channels));
  const y = deviceTensorInfo(backend, x.shape);
  const stats = deviceTensorInfo(backend, [4, channels]);
  const block = new ArrayBuffer(32);
  new Uint32Array(block, 0, 2).set([rows, channels]);
  // The same float32 numbers as the tf-ops batch norm (models/layers.ts).
  new Float32Array(block, 8, 4).set([eps, momentum, 1 - momentum, rows / Math.max(rows - 1, 1)]);
  new Uint32Array(block, 24, 1)[0] = ACTIVATIONS[activation];
  new Float32Array(block, 28, 1)[0] = alpha;
  const buffers = [x, params, y, stats].map((t) => bufferOf(backend, t));
  encodeDispatches(backend, pipelineFor(backend.device, FORWARD), [
    { buffers: [...buffers, uniformBlock(backend, block)], workgroups: channels },
  ]);
  (kernelBackend as tf.KernelBackend).disposeData(params.dataId); // freed once the dispatch is submitted
  return [y, stats];
}

/** Inputs x, gamma, beta, stats, dy -> dx and [d gamma, d beta]. */
function backwardKernel({ inputs, backend: kernelBackend, attrs }: KernelArgs): tf.TensorInfo[] {
  const backend = kernelBackend as unknown as WebgpuInternals;
  const { x, gamma, beta, stats, dy } = inputs as Record<string, tf.TensorInfo>;
  const { activation, alpha } = attrs as unknown as BatchNormOptions;
  const channels = x.shape[3];
  const rows = tf.util.sizeFromShape(x.shape) / channels;
  const params = deviceTensorInfo(backend, [2, channels]);
  [gamma, beta].forEach((t, i) => copyFloats(backend, t, 0, params, i * channels, channels));
  const dx = deviceTensorInfo(backend, x.shape);
  const dParams = deviceTensorInfo(backend, [2, channels]);
  const block = new ArrayBuffer(16);
  new Uint32Array(block, 0, 3).set([rows, channels, ACTIVATIONS[activation]]);
  new Float32Array(block, 12, 1)[0] = alpha;
  const buffers = [x, params, stats, dy, dx, dParams].map((t) => bufferOf(backend, t));
  encodeDispatches(backend, pipelineFor(backend.device, BACKWARD), [
    { buffers: [...buffers, uniformBlock(backend, block)], workgroups: channels },
  ]);
  (kernelBackend as tf.KernelBackend).disposeData(params.dataId);
  return [dx, dParams];
}

let registered = false;

function register(): void {
  if (registered) return;
  registered = true;
  tf.registerKernel({ kernelName: FORWARD_KERNEL, backendName: "webgpu", kernelFunc: forwardKernel });
  tf.registerKernel({ kernelName: BACKWARD_KERNEL, backendName: "webgpu", kernelFunc: backwardKernel });
  tf.registerGradient({
    kernelName: FORWARD_KERNEL,
    inputsToSave: ["x", "gamma", "beta"],
    outputsToSave: [false, true],
    gradFunc: (dys: tf.Tensor | tf.Tensor[], saved: tf.Tensor[], attrs: tf.NamedAttrMap) => {
      const [x, gamma, beta, stats] = saved;
      const dy = (dys as tf.Tensor[])[0];
      // Computed here, not in the closures: tfjs runs each closure in its own tidy.
      const [dx, dParams] = tf.engine().runKernel(BACKWARD_KERNEL, { x, gamma, beta, stats, dy }, attrs) as tf.Tensor[];
      const channels = x.shape[3]!;
      const [dGamma, dBeta] = [0, 1].map((i) => part(webgpuBackend(), dParams, i, channels));
      return {
        x: () => dx,
        gamma: () => dGamma,
        beta: () => dBeta,
        runningMean: () => tf.zerosLike(gamma),
        runningVar: () => tf.zerosLike(gamma),
      };
    },
  });
}

export const batchNormOnDevice: FusedBatchNorm = (x, gamma, beta, runningMean, runningVar, options) => {
  register();
  const [y, stats] = tf.engine().runKernel(
    FORWARD_KERNEL,
    { x, gamma, beta, runningMean, runningVar },
    options as unknown as tf.NamedAttrMap,
  ) as tf.Tensor[];
  const channels = x.shape[3];
  const backend = webgpuBackend();
  return {
    y: y as tf.Tensor4D,
    runningMean: part(backend, stats, 2, channels),
    runningVar: part(backend, stats, 3, channels),
  };
};
