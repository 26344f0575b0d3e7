/**
 * Training-mode batch norm + activation on the native backend: oneDNN's batch-normalization
 * primitive (statistics, normalisation, gamma and beta; its backward gives dx, d gamma and d beta;
 * on one thread but for large layers, THREADED_VALUES) and, for (leaky) ReLU, oneDNN's eltwise in
 * place on its output, on every core. One tfjs kernel
 * forward and one backward, where the same layer as tf ops took ~16 and ~30 wasm kernels.
 * oneDNN's batch norm fuses plain ReLU only (dnnl_fuse_norm_relu), not the discriminator's leaky
 * one, so both take the separate eltwise, whose gradient reads the output (relu_use_dst_for_bwd:
 * with a slope >= 0 the output's sign is the input's). Same formulas as `batchNorm` in
 * models/layers.ts, which cpu and wasm keep; the running statistics are updated here with the same
 * float32 operations as there.
 */
import * as tf from "../tf.ts";
import { Arg, type Dnnl, Eltwise, loadDnnl, type Primitive } from "./dnnl.ts";
import { bufferRegion, floats, region, type WasmBackend } from "./wasm_heap.ts";
import type { Activation, BatchNormOptions, FusedBatchNorm } from "./webgpu_batchnorm.ts";

const FORWARD_KERNEL = "FaceganNativeBatchNormTrain";
const BACKWARD_KERNEL = "FaceganNativeBatchNormTrainGrad";
type KernelArgs = Parameters<tf.KernelFunc>[0];
type TensorInfo = tf.TensorInfo;

/**
 * Values from which batch norm runs on every core, below which on one. oneDNN's batch norm spins at
 * barriers between its passes: on 2 cores shared with another process a 32 px forward call took
 * ~22 ms on 2 threads against ~2.6 ms on one. The 64 px network's two largest layers (128 x 16 x 16 x
 * 128 and 128 x 32 x 32 x 64 values) take 2-5 ms a call on one thread, where the waits are a small
 * part: on two threads their batch norm took 56 instead of 84 ms a step, and two such processes
 * sharing the cores ran 55-58 images/s each against 52-60 on one thread.
 */
const THREADED_VALUES = 128 * 16 * 16 * 128;

/** A batch norm's primitives, and whether they run on every core (THREADED_VALUES). */
const normalizations = new Map<string, { planned: ReturnType<Dnnl["batchNormalization"]>; threaded: boolean }>();
const eltwises = new Map<string, Primitive>();

function normalization(shape: number[], eps: number) {
  const [batch, height, width, channels] = shape;
  const key = `${shape} ${eps}`;
  let normalized = normalizations.get(key);
  if (!normalized) {
    const lib = loadDnnl();
    const threaded = tf.util.sizeFromShape(shape) >= THREADED_VALUES;
    const plan = () => lib.batchNormalization([batch, channels, height, width], eps);
    normalized = { planned: threaded ? plan() : lib.singleThreaded(plan), threaded };
    normalizations.set(key, normalized);
  }
  return normalized;
}

/** Run a batch norm's primitive on the threads it was planned for. */
function onItsThreads(threaded: boolean, work: () => void): void {
  if (threaded) work();
  else loadDnnl().singleThreaded(work);
}

/** (leaky) ReLU over `size` floats, or its gradient from the output; null for no activation. */
function activation(kind: Activation, alpha: number, size: number, backward: boolean): Primitive | null {
  if (kind === "none") return null;
  const slope = kind === "leakyRelu" ? alpha : 0;
  const key = `${slope} ${size} ${backward}`;
  let primitive = eltwises.get(key);
  if (!primitive) eltwises.set(key, primitive = loadDnnl().eltwise(Eltwise.reluUseDst, size, slope, backward));
  return primitive;
}

/** gamma and beta side by side, as oneDNN takes them. */
function scaleShift(backend: WasmBackend, gamma: TensorInfo, beta: TensorInfo): Float32Array {
  const channels = gamma.shape[0];
  const packed = new Float32Array(2 * channels);
  packed.set(floats(backend, gamma));
  packed.set(floats(backend, beta), channels);
  return packed;
}

/** Rows [first, first + 1) of a [2, C] tensor: its mean or its variance, as oneDNN reads and writes them. */
function half(backend: WasmBackend, stats: TensorInfo, first: 0 | 1) {
  const { pointer, bytes } = region(backend, stats);
  return { pointer: Deno.UnsafePointer.offset(pointer!, first * bytes / 2), bytes: bytes / 2 };
}

/** Inputs x, gamma, beta, running mean, running var -> y, stats [mean, variance], new running mean, new running var. */
function forwardKernel({ inputs, backend: kernelBackend, attrs }: KernelArgs): TensorInfo[] {
  const backend = kernelBackend as unknown as WasmBackend;
  const { x, gamma, beta, runningMean, runningVar } = inputs as Record<string, TensorInfo>;
  const { eps, momentum, activation: kind, alpha } = attrs as unknown as BatchNormOptions;
  const channels = x.shape[3];
  const y = backend.makeOutput(x.shape, "float32");
  const stats = backend.makeOutput([2, channels], "float32");
  const { planned: { forward }, threaded } = normalization(x.shape, eps);
  onItsThreads(threaded, () =>
    forward.run({
      [Arg.src]: region(backend, x),
      [Arg.dst]: region(backend, y),
      [Arg.mean]: half(backend, stats, 0),
      [Arg.variance]: half(backend, stats, 1),
      [Arg.scaleShift]: bufferRegion(scaleShift(backend, gamma, beta)),
    }));
  activation(kind, alpha, tf.util.sizeFromShape(x.shape), false)?.run({
    [Arg.src]: region(backend, y),
    [Arg.dst]: region(backend, y),
  });
  // The running statistics as models/layers.ts updates them, one float32 operation at a time.
  const f = Math.fround;
  const count = tf.util.sizeFromShape(x.shape) / channels;
  const [keep, share, unbias] = [f(1 - momentum), f(momentum), f(count / Math.max(count - 1, 1))];
  const newMean = backend.makeOutput([channels], "float32");
  const newVar = backend.makeOutput([channels], "float32");
  const [statsOut, oldMean, oldVar, meanOut, varOut] = [stats, runningMean, runningVar, newMean, newVar].map((t) =>
    floats(backend, t)
  );
  for (let c = 0; c < channels; c++) {
    meanOut[c] = f(oldMean[c] * keep) + f(statsOut[c] * share);
    varOut[c] = f(oldVar[c] * keep) + f(f(statsOut[channels + c] * unbias) * share);
  }
  return [y, stats, newMean, newVar];
}

/** Inputs x, gamma, beta, stats, y, dy -> dx, d gamma, d beta. */
function backwardKernel({ inputs, backend: kernelBackend, attrs }: KernelArgs): TensorInfo[] {
  const backend = kernelBackend as unknown as WasmBackend;
  const { x, gamma, beta, stats, y, dy } = inputs as Record<string, TensorInfo>;
  const { eps, activation: kind, alpha } = attrs as unknown as BatchNormOptions;
  const channels = x.shape[3];
  const dx = backend.makeOutput(x.shape, "float32");
  // The activation's gradient goes into dx, which batch norm's backward then reads and overwrites.
  const slope = activation(kind, alpha, tf.util.sizeFromShape(x.shape), true);
  slope?.run({ [Arg.dst]: region(backend, y), [Arg.diffDst]: region(backend, dy), [Arg.diffSrc]: region(backend, dx) });
  const diffScaleShift = new Float32Array(2 * channels);
  const { planned: { backward }, threaded } = normalization(x.shape, eps);
  onItsThreads(threaded, () =>
    backward.run({
      [Arg.src]: region(backend, x),
      [Arg.mean]: half(backend, stats, 0),
      [Arg.variance]: half(backend, stats, 1),
      [Arg.diffDst]: region(backend, slope ? dx : dy),
      [Arg.scaleShift]: bufferRegion(scaleShift(backend, gamma, beta)),
      [Arg.diffSrc]: region(backend, dx),
      [Arg.diffScaleShift]: bufferRegion(diffScaleShift),
    }));
  const dGamma = backend.makeOutput([channels], "float32");
  const dBeta = backend.makeOutput([channels], "float32");
  floats(backend, dGamma).set(diffScaleShift.subarray(0, channels));
  floats(backend, dBeta).set(diffScaleShift.subarray(channels));
  return [dx, dGamma, dBeta];
}

tf.registerGradient({
  kernelName: FORWARD_KERNEL,
  inputsToSave: ["x", "gamma", "beta"],
  outputsToSave: [true, true, false, false],
  gradFunc: (dys: tf.Tensor | tf.Tensor[], saved: tf.Tensor[], attrs: tf.NamedAttrMap) => {
    const [x, gamma, beta, y, stats] = saved;
    const dy = (dys as tf.Tensor[])[0];
    // Computed here, not in the closures: tfjs runs each closure in its own tidy.
    const [dx, dGamma, dBeta] = tf.engine().runKernel(
      BACKWARD_KERNEL,
      { x, gamma, beta, stats, y, dy },
      attrs,
    ) as tf.Tensor[];
    // The running statistics are state, never trained: tfjs asks for no gradient of them.
    const untrained = () => {
      throw new Error("batch norm's running statistics have no gradient");
    };
    return { x: () => dx, gamma: () => dGamma, beta: () => dBeta, runningMean: untrained, runningVar: untrained };
  },
});

/** The kernels the native backend adds to wasm's registry while it is installed (native.ts). */
export const BATCH_NORM_KERNELS: tf.KernelConfig[] = [
  { kernelName: FORWARD_KERNEL, backendName: "wasm", kernelFunc: forwardKernel as tf.KernelFunc },
  { kernelName: BACKWARD_KERNEL, backendName: "wasm", kernelFunc: backwardKernel as tf.KernelFunc },
];

/** Whether the backend in use has these kernels (the native backend is installed). */
export function nativeBatchNormAvailable(): boolean {
  return tf.getKernel(FORWARD_KERNEL, tf.getBackend()) !== undefined;
}

export const batchNormInHeap: FusedBatchNorm = (x, gamma, beta, runningMean, runningVar, options) => {
  const [y, , newMean, newVar] = tf.engine().runKernel(
    FORWARD_KERNEL,
    { x, gamma, beta, runningMean, runningVar },
    options as unknown as tf.NamedAttrMap,
  ) as tf.Tensor[];
  return { y: y as tf.Tensor4D, runningMean: newMean, runningVar: newVar };
};
