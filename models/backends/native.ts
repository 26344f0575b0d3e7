/**
 * The `native` backend: tfjs-wasm with its heavy kernels — Conv2D, Conv2DBackpropInput (also
 * conv2dTranspose, the whole generator), Conv2DBackpropFilter and BatchMatMul — executed by oneDNN
 * (`dnnl.ts`) on every core, reading and writing the tensors where they live in the wasm heap (no
 * copy). Training-mode batch norm + (leaky) ReLU is one fused kernel each way (native_batchnorm.ts)
 * and Adam one pass per weight (native_adam.ts, called by models/gan.ts); what else a step runs
 * stays on wasm's SIMD kernels, a small part of it.
 *
 * Kernels are swapped into the wasm backend's registry rather than registered under a new backend
 * name: tfjs-wasm binds its C functions into module-level variables when a backend instance starts,
 * so a second wasm instance in one process would silently point the first one's kernels at the
 * wrong heap. `removeNativeKernels` puts the wasm kernels back when another backend is chosen.
 *
 * Threads: all cores unless FACEGAN_THREADS says otherwise, fixed once per process (OpenMP), and
 * recorded with oneDNN's version and the instruction set it chose, since all three can change bits.
 * Where the library is looked for: `locateDnnl()` in dnnl.ts (FACEGAN_DNNL_PATH, the loader's path,
 * the distributions' folders).
 */
import * as tf from "../tf.ts";
import { type BackendInfo, BackendUnavailable } from "./common.ts";
import { startWasm } from "./wasm.ts";
import { type ConvolutionAttrs, forwardInfo, type Shape4 } from "./conv_gradients.ts";
import { RELU_GRADIENT_KERNEL } from "../gradients.ts";
import { alignTensors, bufferRegion, floats, region, type WasmBackend, writesTo } from "./wasm_heap.ts";
import { BATCH_NORM_KERNELS } from "./native_batchnorm.ts";
import { byColumns, type ColumnConvolution, columnConvolution } from "./native_columns.ts";
import { byPhases, type PhaseConvolution, phaseConvolution } from "./native_phases.ts";
import {
  alignedBytes,
  Arg,
  type ConvDirection,
  type ConvGeometry,
  type Dnnl,
  DnnlUnavailable,
  Eltwise,
  type Epilogue,
  loadDnnl,
  type PlannedPrimitive,
} from "./dnnl.ts";

type KernelArgs = Parameters<tf.KernelFunc>[0];
type TensorInfo = tf.TensorInfo;

const primitives = new Map<string, PlannedPrimitive>();
/**
 * Weights reordered into a planned primitive's layout, per weights tensor (its data id), with the
 * writes they had then: D's and G's mirrored layers share a primitive (G's transposed convolution is
 * D's input gradient), and one copy per primitive had each evict the other's a step.
 */
const reordered = new WeakMap<PlannedPrimitive, WeakMap<object, { scratch: Uint8Array; writes: number }>>();
const matmuls = new Map<string, ReturnType<Dnnl["matmul"]>>();
/** Convolutions run another way than oneDNN's direct kernels, by geometry (made once each). */
const columnPlans = new Map<string, ColumnConvolution>();
const phasePlans = new Map<string, PhaseConvolution>();

/**
 * The plan `make` gives a convolution `applies` to (native_columns.ts, native_phases.ts), made once
 * per geometry; null where it does not apply.
 */
function planOf<T>(
  plans: Map<string, T>,
  g: ConvGeometry,
  applies: (g: ConvGeometry) => boolean,
  make: (dnnl: Dnnl, g: ConvGeometry) => T,
): T | null {
  if (!applies(g)) return null;
  const key = JSON.stringify(g);
  let plan = plans.get(key);
  if (!plan) plans.set(key, plan = make(loadDnnl(), g));
  return plan;
}

function geometry(info: tf.backend_util.Conv2DInfo): ConvGeometry {
  return {
    batch: info.batchSize,
    inChannels: info.inChannels,
    inHeight: info.inHeight,
    inWidth: info.inWidth,
    outChannels: info.outChannels,
    outHeight: info.outHeight,
    outWidth: info.outWidth,
    filterHeight: info.filterHeight,
    filterWidth: info.filterWidth,
    strides: [info.strideHeight, info.strideWidth],
    dilations: [info.dilationHeight - 1, info.dilationWidth - 1],
    padBefore: [info.padInfo.top, info.padInfo.left],
    padAfter: [info.padInfo.bottom, info.padInfo.right],
  };
}

/**
 * Run one convolution direction. `weights` is the tfjs-layout filter (an input, or the output for
 * the weight gradient); `data` maps the activation arguments to their tensors.
 */
function convolve(
  backend: WasmBackend,
  direction: ConvDirection,
  g: ConvGeometry,
  weights: TensorInfo,
  data: Record<number, TensorInfo>,
  epilogue?: Epilogue,
): void {
  const key = `${direction} ${JSON.stringify(g)} ${JSON.stringify(epilogue ?? null)}`;
  let planned = primitives.get(key);
  if (!planned) primitives.set(key, planned = loadDnnl().convolution(direction, g, epilogue));
  const regions: Record<number, ReturnType<typeof region>> = {};
  for (const [arg, tensor] of Object.entries(data)) regions[Number(arg)] = region(backend, tensor);
  const weightsArg = direction === "backwardWeights" ? Arg.diffWeights : Arg.weights;
  const user = region(backend, weights);
  const { reorder } = planned;
  if (!reorder) {
    planned.primitive.run({ ...regions, [weightsArg]: user });
    return;
  }
  if (!reorder.before) {
    const inner = bufferRegion(reorder.scratch);
    planned.primitive.run({ ...regions, [weightsArg]: inner });
    reorder.primitive.run({ [Arg.from]: inner, [Arg.to]: user });
    return;
  }
  // Reordered again only when the weights were written since (by Adam): a step uses D's weights
  // for the real and the fake batch, and G's twice, between updates.
  let copies = reordered.get(planned);
  if (!copies) reordered.set(planned, copies = new WeakMap());
  let held = copies.get(weights.dataId);
  if (!held) copies.set(weights.dataId, held = { scratch: alignedBytes(reorder.bytes), writes: -1 });
  const inner = bufferRegion(held.scratch);
  const writes = writesTo(weights);
  if (held.writes !== writes) {
    reorder.primitive.run({ [Arg.from]: user, [Arg.to]: inner });
    held.writes = writes;
  }
  planned.primitive.run({ ...regions, [weightsArg]: inner });
}

function conv2d(args: KernelArgs, fallback: tf.KernelFunc): TensorInfo {
  const { x, filter } = args.inputs as { x: TensorInfo; filter: TensorInfo };
  const attrs = args.attrs as unknown as ConvolutionAttrs;
  if (attrs.dataFormat === "NCHW") return fallback(args) as TensorInfo;
  const backend = args.backend as unknown as WasmBackend;
  const info = forwardInfo(attrs, x.shape as Shape4, filter.shape as Shape4);
  const out = backend.makeOutput(info.outShape, "float32");
  const g = geometry(info);
  const columns = planOf(columnPlans, g, byColumns, columnConvolution);
  if (columns) columns.forward(region(backend, x), region(backend, filter), region(backend, out));
  else convolve(backend, "forward", g, filter, { [Arg.src]: x, [Arg.dst]: out });
  return out;
}

function conv2dBackpropInput(args: KernelArgs, fallback: tf.KernelFunc): TensorInfo {
  const { dy, filter } = args.inputs as { dy: TensorInfo; filter: TensorInfo };
  const attrs = args.attrs as unknown as ConvolutionAttrs & { inputShape: Shape4 };
  if (attrs.dataFormat === "NCHW") return fallback(args) as TensorInfo;
  const backend = args.backend as unknown as WasmBackend;
  const info = forwardInfo(attrs, attrs.inputShape, filter.shape as Shape4);
  const out = backend.makeOutput(attrs.inputShape, "float32");
  const g = geometry(info);
  const phases = planOf(phasePlans, g, byPhases, phaseConvolution);
  if (phases) phases.backwardData(region(backend, dy), floats(backend, filter), region(backend, out));
  else convolve(backend, "backwardData", g, filter, { [Arg.diffSrc]: out, [Arg.diffDst]: dy });
  return out;
}

function conv2dBackpropFilter(args: KernelArgs, fallback: tf.KernelFunc): TensorInfo {
  const { x, dy } = args.inputs as { x: TensorInfo; dy: TensorInfo };
  const attrs = args.attrs as unknown as ConvolutionAttrs & { filterShape: Shape4 };
  if (attrs.dataFormat === "NCHW") return fallback(args) as TensorInfo;
  const backend = args.backend as unknown as WasmBackend;
  const info = forwardInfo(attrs, x.shape as Shape4, attrs.filterShape);
  const out = backend.makeOutput(attrs.filterShape, "float32");
  const g = geometry(info);
  const columns = planOf(columnPlans, g, byColumns, columnConvolution);
  if (columns) columns.backwardWeights(region(backend, x), region(backend, dy), region(backend, out));
  else convolve(backend, "backwardWeights", g, out, { [Arg.src]: x, [Arg.diffDst]: dy });
  return out;
}

/**
 * A matrix product with an inner size of 1 (the gradient of D's last dense layer with respect to its
 * input: [128, 1] x [1, 2048]), which oneDNN's matmul takes 0.5-0.8 ms for and a loop 0.1-0.2 ms.
 * With one inner value a transpose does not move anything: a holds the m rows' values and b the n
 * columns', in order. Each value as oneDNN's kernel gives it, a * b added to a zeroed accumulator
 * (so a product of -0 comes out +0).
 */
function outerProduct(a: Float32Array, b: Float32Array, out: Float32Array): void {
  const columns = b.length;
  for (let row = 0; row < a.length; row++) {
    const value = a[row];
    const first = row * columns;
    // A product of two float32 values is exact in float64: the store rounds it once, as float32 would.
    for (let column = 0; column < columns; column++) out[first + column] = value * b[column] + 0;
  }
}

/**
 * A convolution layer without batch norm in D: conv2d, + bias, then leaky ReLU, as one oneDNN
 * convolution that adds the bias and applies the slope as it writes each value: one pass over the
 * output instead of three (in a 32 px step 1.9 ms of Add and LeakyRelu). The same bits as the three
 * kernels (compared in C over D's first 32 and 64 px layers: no value differs).
 */
const CONV_BIAS_LEAKY_RELU = "FaceganNativeConvBiasLeakyRelu";

interface ConvBiasLeakyReluAttrs {
  strides: number;
  pad: "same";
  alpha: number;
}

function convBiasLeakyRelu(args: KernelArgs): TensorInfo {
  const { x, filter, bias } = args.inputs as Record<string, TensorInfo>;
  const { strides, pad, alpha } = args.attrs as unknown as ConvBiasLeakyReluAttrs;
  const backend = args.backend as unknown as WasmBackend;
  const info = forwardInfo({ strides, pad, dataFormat: "NHWC" }, x.shape as Shape4, filter.shape as Shape4);
  const out = backend.makeOutput(info.outShape, "float32");
  const data = { [Arg.src]: x, [Arg.dst]: out, [Arg.bias]: bias };
  convolve(backend, "forward", geometry(info), filter, data, { activation: Eltwise.relu, alpha });
  return out;
}

tf.registerGradient({
  kernelName: CONV_BIAS_LEAKY_RELU,
  inputsToSave: ["x", "filter"],
  outputsToSave: [true],
  gradFunc: (dy: tf.Tensor | tf.Tensor[], [x, filter, y]: tf.Tensor[], attrs: tf.NamedAttrMap) => {
    const { strides, pad, alpha } = attrs as unknown as ConvBiasLeakyReluAttrs;
    // The gradients the three kernels' gradients give. The slope's comes from the output: with
    // alpha > 0 a value is above zero exactly where the sum before the slope was.
    const before = tf.engine().runKernel(RELU_GRADIENT_KERNEL, { dy: dy as tf.Tensor, x: y }, { alpha }) as tf.Tensor;
    const convolution = { strides, pad, dataFormat: "NHWC" };
    return {
      x: () =>
        tf.engine().runKernel("Conv2DBackpropInput", { dy: before, filter }, { ...convolution, inputShape: x.shape }),
      filter: () =>
        tf.engine().runKernel("Conv2DBackpropFilter", { x, dy: before }, { ...convolution, filterShape: filter.shape }),
      bias: () => tf.sum(before, [0, 1, 2]),
    } as Record<string, () => tf.Tensor>;
  },
});

/**
 * conv2d (k4, s2 or 'same' padding as `conv` in models/layers.ts), + bias, leaky ReLU: one kernel
 * on native, where `nativeKernelsInstalled()`.
 */
export function convBiasLeakyReluInHeap(
  x: tf.Tensor4D,
  filter: tf.Tensor4D,
  bias: tf.Tensor,
  strides: number,
  alpha: number,
): tf.Tensor4D {
  const attrs: ConvBiasLeakyReluAttrs = { strides, pad: "same", alpha };
  return tf.engine().runKernel(
    CONV_BIAS_LEAKY_RELU,
    { x, filter, bias },
    attrs as unknown as tf.NamedAttrMap,
  ) as tf.Tensor4D;
}

/** The oneDNN product [batchA, m, k] x [batchB, k, n] (either operand read transposed), planned once. */
function matmul(
  batchA: number,
  batchB: number,
  m: number,
  k: number,
  n: number,
  transposeA: boolean,
  transposeB: boolean,
) {
  const key = [batchA, batchB, m, k, n, transposeA, transposeB].join();
  let primitive = matmuls.get(key);
  if (!primitive) {
    const lib = loadDnnl();
    const src = lib.strided([batchA, m, k], transposeA ? [m * k, 1, m] : [m * k, k, 1]);
    const weights = lib.strided([batchB, k, n], transposeB ? [k * n, 1, k] : [k * n, n, 1]);
    const dst = lib.strided([Math.max(batchA, batchB), m, n], [m * n, n, 1]);
    matmuls.set(key, primitive = lib.matmul(src, weights, dst));
  }
  return primitive;
}

/**
 * A x B from and into JavaScript buffers ([rows, columns] each, either read transposed), where the
 * native backend is in use: the primitive tfjs' matMul of the same tensors runs, so the same bits,
 * without copying the operands into the wasm heap and the product out (evaluate's projections:
 * ~16 MB a level, 1.2 s of the default evaluate). False elsewhere: the caller multiplies tensors.
 */
export function matMulInto(
  a: Float32Array,
  [rowsA, columnsA]: [number, number],
  b: Float32Array,
  [rowsB, columnsB]: [number, number],
  transposeA: boolean,
  transposeB: boolean,
  into: Float32Array,
): boolean {
  if (!nativeKernelsInstalled()) return false;
  const [m, k] = transposeA ? [columnsA, rowsA] : [rowsA, columnsA];
  const [k2, n] = transposeB ? [columnsB, rowsB] : [rowsB, columnsB];
  if (k !== k2 || k === 1) return false; // an inner size of 1 is the kernel's loop, not oneDNN
  matmul(1, 1, m, k, n, transposeA, transposeB).run({
    [Arg.src]: bufferRegion(a),
    [Arg.weights]: bufferRegion(b),
    [Arg.dst]: bufferRegion(into),
  });
  return true;
}

/** tfjs' BatchMatMul (any rank >= 2, batch dims broadcast when one side has a batch of 1). */
function batchMatMul(args: KernelArgs, fallback: tf.KernelFunc): TensorInfo {
  const { a, b } = args.inputs as { a: TensorInfo; b: TensorInfo };
  const { transposeA, transposeB } = args.attrs as unknown as { transposeA: boolean; transposeB: boolean };
  const batchA = tf.util.sizeFromShape(a.shape.slice(0, -2));
  const batchB = tf.util.sizeFromShape(b.shape.slice(0, -2));
  const sameOuter = a.shape.length === b.shape.length && a.shape.slice(0, -2).join() === b.shape.slice(0, -2).join();
  if (a.dtype !== "float32" || b.dtype !== "float32" || !(sameOuter || batchA === 1 || batchB === 1)) {
    return fallback(args) as TensorInfo;
  }
  const [rowsA, colsA] = a.shape.slice(-2);
  const [rowsB, colsB] = b.shape.slice(-2);
  const [m, k] = transposeA ? [colsA, rowsA] : [rowsA, colsA];
  const [k2, n] = transposeB ? [colsB, rowsB] : [rowsB, colsB];
  if (k !== k2) throw new Error(`matMul: inner shapes ${k} and ${k2} of [${a.shape}] and [${b.shape}] differ`);
  const outer = (batchA >= batchB ? a : b).shape.slice(0, -2);
  const batch = Math.max(batchA, batchB);
  const backend = args.backend as unknown as WasmBackend;
  if (k === 1 && batch === 1) {
    const product = backend.makeOutput([...outer, m, n], "float32");
    outerProduct(floats(backend, a), floats(backend, b), floats(backend, product));
    return product;
  }
  const primitive = matmul(batchA, batchB, m, k, n, transposeA, transposeB);
  const out = backend.makeOutput([...outer, m, n], "float32");
  primitive.run({ [Arg.src]: region(backend, a), [Arg.weights]: region(backend, b), [Arg.dst]: region(backend, out) });
  return out;
}

/**
 * The column sums of a [rows, columns] matrix in float64, each column added in row order. Four
 * rows a pass, so each running sum is loaded and stored once per four values (2-3x faster than one
 * row a pass, the same additions in the same order).
 */
function columnSums(input: Float32Array, rows: number, columns: number): Float64Array {
  const sums = new Float64Array(columns);
  let row = 0;
  for (; row + 4 <= rows; row += 4) {
    const first = row * columns;
    for (let column = 0; column < columns; column++) {
      let sum = sums[column];
      sum += input[first + column];
      sum += input[first + columns + column];
      sum += input[first + 2 * columns + column];
      sum += input[first + 3 * columns + column];
      sums[column] = sum;
    }
  }
  for (let at = row * columns; row < rows; row++) {
    for (let column = 0; column < columns; column++, at++) sums[column] += input[at];
  }
  return sums;
}

/**
 * Sum and Mean over leading axes (batch-norm statistics and the bias and batch-norm gradients: NHWC
 * reduced over N, H, W) or trailing ones, summed in float64 straight from the wasm heap: tfjs-wasm
 * transposes the whole tensor first to bring the reduced axes inwards (5 ms for a 128x16x16x32
 * tensor, 5x this loop). Other axis patterns and other dtypes stay on wasm.
 */
function reduction(kind: "Sum" | "Mean") {
  return (args: KernelArgs, fallback: tf.KernelFunc): TensorInfo => {
    const { x } = args.inputs as { x: TensorInfo };
    const { axis, keepDims } = args.attrs as unknown as { axis: number | number[]; keepDims: boolean };
    const rank = x.shape.length;
    const axes = tf.util.parseAxisParam(axis, x.shape).sort((p, q) => p - q);
    const leading = axes.every((a, i) => a === i);
    const trailing = axes.every((a, i) => a === rank - axes.length + i);
    if (x.dtype !== "float32" || !axes.length || !(leading || trailing) || tf.util.sizeFromShape(x.shape) === 0) {
      return fallback(args) as TensorInfo;
    }
    const reduced = tf.util.sizeFromShape(axes.map((a) => x.shape[a]));
    const kept = tf.util.sizeFromShape(x.shape) / reduced;
    const backend = args.backend as unknown as WasmBackend;
    const shape = keepDims
      ? x.shape.map((d, a) => axes.includes(a) ? 1 : d)
      : x.shape.filter((_, a) => !axes.includes(a));
    const out = backend.makeOutput(shape, "float32");
    const input = floats(backend, x);
    const output = floats(backend, out);
    const scale = kind === "Mean" ? 1 / reduced : 1;
    if (leading) {
      const sums = columnSums(input, reduced, kept);
      for (let column = 0; column < kept; column++) output[column] = sums[column] * scale;
    } else {
      // [kept, reduced]: row sums
      for (let row = 0, at = 0; row < kept; row++) {
        let sum = 0;
        for (let column = 0; column < reduced; column++, at++) sum += input[at];
        output[row] = sum * scale;
      }
    }
    return out;
  };
}

const channelAdds = new Map<string, ReturnType<Dnnl["channelAdd"]>>();

/**
 * Below this many values a oneDNN call costs more than the work: each call wakes the OpenMP
 * threads (they wait passively, see dnnl.ts), ~40 us here, where wasm or a plain loop needs a few.
 */
const SMALL = 4096;

/**
 * A bias add, x [..., C] + b [C], on every core: wasm's broadcasting Add is scalar (3.5 ms for
 * 128x32x32x64 + 64, oneDNN 0.8 ms). Under 16 channels oneDNN is slow too (0.5-1 ms for
 * 128x32x32x3 + 3), and a loop takes 0.3 ms. The same float32 additions, so the same bits. Other
 * adds stay on wasm.
 */
function add(args: KernelArgs, fallback: tf.KernelFunc): TensorInfo {
  const { a, b } = args.inputs as { a: TensorInfo; b: TensorInfo };
  const channels = a.shape[a.shape.length - 1];
  const size = tf.util.sizeFromShape(a.shape);
  if (
    a.dtype !== "float32" || b.dtype !== "float32" || size < SMALL || b.shape.length > a.shape.length ||
    tf.util.sizeFromShape(b.shape) !== channels || b.shape[b.shape.length - 1] !== channels
  ) {
    return fallback(args) as TensorInfo;
  }
  const backend = args.backend as unknown as WasmBackend;
  if (channels < 16) {
    const sum = backend.makeOutput(a.shape, "float32");
    biasAddHere(floats(backend, a), floats(backend, b), floats(backend, sum));
    return sum;
  }
  const rows = size / channels;
  const key = `${rows} ${channels}`;
  let primitive = channelAdds.get(key);
  if (!primitive) channelAdds.set(key, primitive = loadDnnl().channelAdd(rows, channels));
  const out = backend.makeOutput(a.shape, "float32");
  primitive.run({ [Arg.src]: region(backend, a), [Arg.src1]: region(backend, b), [Arg.dst]: region(backend, out) });
  return out;
}

/**
 * x + b with b repeated along x, for few channels: b is laid out again and again over at least 96
 * values, so the inner loop is long (a loop over the channels inside a loop over the rows is 1.5x
 * slower at 3 channels). A float64 sum of two float32 values rounded to float32 is their float32 sum.
 */
function biasAddHere(x: Float32Array, b: Float32Array, out: Float32Array): void {
  const period = b.length * Math.ceil(96 / b.length);
  const pattern = new Float32Array(period);
  for (let i = 0; i < period; i++) pattern[i] = b[i % b.length];
  let at = 0;
  for (; at + period <= x.length; at += period) {
    for (let i = 0; i < period; i++) out[at + i] = x[at + i] + pattern[i];
  }
  for (let i = 0; at < x.length; at++, i++) out[at] = x[at] + pattern[i];
}

const eltwises = new Map<string, ReturnType<Dnnl["eltwise"]>>();

/**
 * (leaky) ReLU and its gradient as oneDNN computes them (x > 0 ? x : alpha * x, so -0 below zero
 * for plain ReLU; dy or alpha * dy), for tensors too small to be worth a oneDNN call (SMALL).
 */
function reluHere(x: Float32Array, out: Float32Array, alpha: number): void {
  for (let i = 0; i < x.length; i++) out[i] = x[i] > 0 ? x[i] : Math.fround(x[i] * alpha);
}

function reluGradientHere(x: Float32Array, dy: Float32Array, out: Float32Array, alpha: number): void {
  for (let i = 0; i < x.length; i++) out[i] = x[i] > 0 ? dy[i] : Math.fround(dy[i] * alpha);
}

/** tanh, sigmoid and (leaky) ReLU on every core, vectorised: wasm's tanh is scalar, 4 ms for 128x32x32x3. */
function elementwise(algorithm: number, alphaAttr?: string) {
  return (args: KernelArgs, fallback: tf.KernelFunc): TensorInfo => {
    const { x } = args.inputs as { x: TensorInfo };
    if (x.dtype !== "float32") return fallback(args) as TensorInfo;
    const alpha = alphaAttr ? (args.attrs as Record<string, number>)[alphaAttr] : 0;
    const size = tf.util.sizeFromShape(x.shape);
    const backend = args.backend as unknown as WasmBackend;
    if (algorithm === Eltwise.relu && size < SMALL) {
      const activated = backend.makeOutput(x.shape, "float32");
      reluHere(floats(backend, x), floats(backend, activated), alpha);
      return activated;
    }
    const key = `${algorithm} ${alpha} ${size}`;
    let primitive = eltwises.get(key);
    if (!primitive) eltwises.set(key, primitive = loadDnnl().eltwise(algorithm, size, alpha, false));
    const out = backend.makeOutput(x.shape, "float32");
    primitive.run({ [Arg.src]: region(backend, x), [Arg.dst]: region(backend, out) });
    return out;
  };
}

/** The (leaky) ReLU gradient in one pass (see models/gradients.ts): dx = x > 0 ? dy : alpha * dy. */
function reluGradient(args: KernelArgs): TensorInfo {
  const { dy, x } = args.inputs as { dy: TensorInfo; x: TensorInfo };
  const { alpha } = args.attrs as { alpha: number };
  const size = tf.util.sizeFromShape(x.shape);
  const backend = args.backend as unknown as WasmBackend;
  if (size < SMALL) {
    const dx = backend.makeOutput(x.shape, "float32");
    reluGradientHere(floats(backend, x), floats(backend, dy), floats(backend, dx), alpha);
    return dx;
  }
  const key = `gradient ${alpha} ${size}`;
  let primitive = eltwises.get(key);
  if (!primitive) eltwises.set(key, primitive = loadDnnl().eltwise(Eltwise.relu, size, alpha, true));
  const out = backend.makeOutput(x.shape, "float32");
  primitive.run({
    [Arg.src]: region(backend, x),
    [Arg.diffDst]: region(backend, dy),
    [Arg.diffSrc]: region(backend, out),
  });
  return out;
}

/**
 * Identity, and Cast to the same dtype (the gradient machinery and tf.moments make ~130 such copies
 * of activations per step): shared data with a reference count, as tfjs-wasm's own Reshape does.
 */
function share(args: KernelArgs, fallback: tf.KernelFunc): TensorInfo {
  const { x } = args.inputs as { x: TensorInfo };
  const dtype = (args.attrs as { dtype?: string } | undefined)?.dtype ?? x.dtype;
  if (dtype !== x.dtype || x.dtype === "string") return fallback(args) as TensorInfo;
  (args.backend as unknown as WasmBackend).incRef(x.dataId);
  return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
}

/**
 * Concat of float32 tensors: wasm's kernel copies each input's piece of each row with a subarray and
 * a set, so one call per value where the pieces are single channels (face-api's normalize joins
 * three 1-channel planes on the channel axis: 1.6 s of the default evaluate). The same copy, with
 * short pieces copied value by value.
 */
function concat(args: KernelArgs, fallback: tf.KernelFunc): TensorInfo {
  const inputs = args.inputs as unknown as TensorInfo[];
  if (inputs.length < 2 || inputs.some((t) => t.dtype !== "float32" || tf.util.sizeFromShape(t.shape) === 0)) {
    return fallback(args) as TensorInfo;
  }
  const shapes = inputs.map((t) => t.shape);
  const axis = tf.util.parseAxisParam((args.attrs as { axis: number }).axis, shapes[0])[0];
  tf.backend_util.assertParamsConsistent(shapes, axis);
  const backend = args.backend as unknown as WasmBackend;
  const out = backend.makeOutput(tf.backend_util.computeOutShape(shapes, axis), "float32");
  const rows = tf.util.sizeFromShape(shapes[0].slice(0, axis));
  const widths = shapes.map((shape) => tf.util.sizeFromShape(shape.slice(axis)));
  const rowWidth = widths.reduce((sum, width) => sum + width, 0);
  const target = floats(backend, out); // views taken after makeOutput: a heap that grew has moved
  // One input at a time, so each loop reads one array with one stride.
  for (let k = 0, offset = 0; k < inputs.length; offset += widths[k++]) {
    const source = floats(backend, inputs[k]);
    const width = widths[k];
    if (width === 1) { // face-api's normalize, one channel each: 1.7x faster than the loops below
      for (let row = 0, to = offset; row < rows; row++, to += rowWidth) target[to] = source[row];
      continue;
    }
    for (let row = 0; row < rows; row++) {
      const from = row * width, to = row * rowWidth + offset;
      if (width >= 64) target.set(source.subarray(from, from + width), to);
      else for (let i = 0; i < width; i++) target[to + i] = source[from + i];
    }
  }
  return out;
}

const KERNELS: Record<string, (args: KernelArgs, fallback: tf.KernelFunc) => TensorInfo> = {
  Conv2D: conv2d,
  Conv2DBackpropInput: conv2dBackpropInput,
  Conv2DBackpropFilter: conv2dBackpropFilter,
  BatchMatMul: batchMatMul,
  Add: add,
  Sum: reduction("Sum"),
  Mean: reduction("Mean"),
  Tanh: elementwise(Eltwise.tanh),
  Sigmoid: elementwise(Eltwise.logistic),
  Relu: elementwise(Eltwise.relu),
  LeakyRelu: elementwise(Eltwise.relu, "alpha"),
  Identity: share,
  Cast: share,
  Concat: concat,
};

/** The wasm kernels the native ones replace, while they are installed. */
const replaced = new Map<string, tf.KernelConfig>();

/** Kernels wasm does not have, which the native backend adds to its registry while installed. */
const ADDED: tf.KernelConfig[] = [
  { kernelName: RELU_GRADIENT_KERNEL, backendName: "wasm", kernelFunc: reluGradient },
  { kernelName: CONV_BIAS_LEAKY_RELU, backendName: "wasm", kernelFunc: convBiasLeakyRelu },
  ...BATCH_NORM_KERNELS,
];

function installNativeKernels(): void {
  if (replaced.size) return;
  for (const config of ADDED) tf.registerKernel(config);
  for (const [kernelName, kernelFunc] of Object.entries(KERNELS)) {
    const original = tf.getKernel(kernelName, "wasm")!;
    replaced.set(kernelName, original);
    tf.unregisterKernel(kernelName, "wasm");
    tf.registerKernel({
      kernelName,
      backendName: "wasm",
      kernelFunc: (args) => kernelFunc(args, original.kernelFunc),
    });
  }
}

/** Whether the backend in use is native (wasm with these kernels installed). */
export function nativeKernelsInstalled(): boolean {
  return replaced.size > 0 && tf.getBackend() === "wasm";
}

/** Put tfjs-wasm's own kernels back (when another backend, wasm itself included, is chosen). */
export function removeNativeKernels(): void {
  if (!replaced.size) return;
  for (const { kernelName } of ADDED) tf.unregisterKernel(kernelName, "wasm");
  for (const [kernelName, original] of replaced) {
    tf.unregisterKernel(kernelName, "wasm");
    tf.registerKernel(original);
  }
  replaced.clear();
}

export async function startNative(): Promise<BackendInfo> {
  let lib: Dnnl;
  try {
    lib = loadDnnl();
  } catch (error) {
    if (error instanceof DnnlUnavailable) throw new BackendUnavailable(`backend 'native': ${error.message}`);
    throw error;
  }
  const wasm = await startWasm(); // starts the backend, so its own kernels' setup has run
  alignTensors(tf.backend() as unknown as WasmBackend);
  installNativeKernels();
  return {
    name: "native",
    threads: lib.threads,
    detail: `oneDNN ${lib.version} ${lib.isa}, ${lib.threads} threads; other ops wasm ${wasm.detail}`,
  };
}
