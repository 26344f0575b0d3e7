/**
 * Convolution gradients built from a backend's own fast Conv2D, for the tfjs wasm and webgpu backends.
 *
 * Conv2DBackpropFilter (the weight gradient of a convolution, also used by conv2dTranspose):
 *   dW[kh,kw,ci,co] = sum_{b,oh,ow} xPadded[b, oh*s+kh, ow*s+kw, ci] * dy[b,oh,ow,co]
 * which is itself a convolution: the input's channels become the batch (x -> [Ci,H,W,B]), the
 * gradient becomes the filter (dy -> [OH,OW,B,Co]) dilated by the stride, giving [Ci,KH,KW,Co].
 * - wasm has no such kernel at all.
 * - webgpu has one that gives each output weight one thread looping over batch x positions: a few
 *   thousand threads on a GPU. Measured on an H100 for the seeds' layers at batch 128: 149, 99 and
 *   53 ms vs 14, 19 and 13 ms as the dilated Conv2D (at batch 512: 703, 369, 150 vs 31, 34, 19 ms).
 *
 * Conv2DBackpropInput (the input gradient, and conv2dTranspose, i.e. the whole DCGAN generator), wasm
 * only: tfjs-wasm has one, but as plain loops it is 10-20x slower than its Conv2D (measured: 368 ms
 * vs 22 ms for the seeds' 8x8x64->128 layer at batch 128), so it is rebuilt from Conv2D below.
 */
import * as tf from "../tf.ts";

type KernelArgs = Parameters<tf.KernelFunc>[0];
type TensorInfo = tf.TensorInfo;
export type Shape4 = [number, number, number, number];

/**
 * The attributes tfjs' convolution kernels carry, besides the shape of what they compute (only
 * Conv2D has dilations; the gradients are of undilated convolutions).
 */
export interface ConvolutionAttrs {
  strides: [number, number] | number;
  pad: "valid" | "same" | number | tf.backend_util.ExplicitPadding;
  dimRoundingMode?: "floor" | "round" | "ceil";
  dataFormat: "NHWC" | "NCHW";
  dilations?: [number, number] | number;
}

/** Geometry of the forward convolution a kernel (or a gradient) belongs to. */
export function forwardInfo(attrs: ConvolutionAttrs, inputShape: Shape4, filterShape: Shape4) {
  return tf.backend_util.computeConv2DInfo(
    inputShape,
    filterShape,
    attrs.strides,
    attrs.dilations ?? 1,
    attrs.pad,
    attrs.dimRoundingMode,
  );
}

function kernel(name: string, backendName: string): tf.KernelFunc {
  const config = tf.getKernel(name, backendName);
  if (!config) throw new Error(`${backendName} backend has no ${name} kernel`);
  return config.kernelFunc;
}

export function conv2dBackpropFilter(backendName: string, { inputs, backend, attrs }: KernelArgs): TensorInfo {
  const { x, dy } = inputs as { x: TensorInfo; dy: TensorInfo };
  const convolution = attrs as unknown as ConvolutionAttrs & { filterShape: Shape4 };
  if (convolution.dataFormat === "NCHW") throw new Error(`Conv2DBackpropFilter on ${backendName} supports NHWC only`);
  const { filterShape } = convolution;
  const info = forwardInfo(convolution, x.shape as Shape4, filterShape);
  const transpose = kernel("Transpose", backendName);
  const conv2d = kernel("Conv2D", backendName);
  const slice = kernel("Slice", backendName);
  const temporaries: TensorInfo[] = [];
  const run = (f: tf.KernelFunc, args: KernelArgs) => {
    const out = f(args) as TensorInfo;
    temporaries.push(out);
    return out;
  };
  const xT = run(transpose, { inputs: { x }, backend, attrs: { perm: [3, 1, 2, 0] } });
  const dyT = run(transpose, { inputs: { x: dy }, backend, attrs: { perm: [1, 2, 0, 3] } });
  const { top, bottom, left, right } = info.padInfo;
  let grad = run(conv2d, {
    inputs: { x: xT, filter: dyT },
    backend,
    attrs: {
      strides: [1, 1],
      pad: [[0, 0], [top, bottom], [left, right], [0, 0]],
      dilations: [info.strideHeight, info.strideWidth],
      dataFormat: "NHWC",
    },
  });
  const [, kh, kw] = grad.shape;
  if (kh !== filterShape[0] || kw !== filterShape[1]) {
    // Padding past the last window position adds rows no output used: drop them.
    grad = run(slice, {
      inputs: { x: grad },
      backend,
      attrs: { begin: [0, 0, 0, 0], size: [grad.shape[0], filterShape[0], filterShape[1], grad.shape[3]] },
    });
  }
  const result = transpose({ inputs: { x: grad }, backend, attrs: { perm: [1, 2, 0, 3] } }) as TensorInfo;
  for (const temporary of temporaries) (backend as tf.KernelBackend).disposeData(temporary.dataId);
  return result;
}

/**
 * dx for x -> conv2d(x, W, stride s, pad p), split into the s*s output phases ("sub-pixel"
 * form): output rows s*m+a only receive filter taps k = r_a + s*j, so each phase is a stride-1
 * conv of dy with a (K/s)x(K/s) slice of the rotated filter, and the phases are interleaved.
 * Same arithmetic as the gradient, no multiplications by inserted zeros.
 */
export function conv2dBackpropInput(args: KernelArgs, fallback: tf.KernelFunc): TensorInfo {
  const { inputs, backend, attrs } = args;
  const { dy, filter } = inputs as { dy: TensorInfo; filter: TensorInfo };
  const convolution = attrs as unknown as ConvolutionAttrs & { inputShape: Shape4 };
  if (convolution.dataFormat === "NCHW") return fallback(args) as TensorInfo;
  const { inputShape } = convolution;
  const info = forwardInfo(convolution, inputShape, filter.shape as Shape4);
  const { strideHeight: sh, strideWidth: sw, filterHeight: kh, filterWidth: kw, inHeight, inWidth } = info;
  const [batch, outHeight, outWidth] = dy.shape;
  const inChannels = inputShape[3];
  if (inHeight % sh || inWidth % sw || kh % sh || kw % sw) return fallback(args) as TensorInfo;
  // Per axis and phase a: first tap r, left padding, right padding of the stride-1 phase conv.
  const phasePlan = (stride: number, size: number, taps: number, padStart: number, outSize: number) =>
    Array.from({ length: stride }, (_, a) => {
      const r = (a + padStart) % stride;
      const shift = Math.floor((a + padStart) / stride);
      const phaseTaps = taps / stride;
      const before = phaseTaps - 1 - shift;
      const after = size / stride - outSize - before + phaseTaps - 1;
      return { r, before, after };
    });
  const rows = phasePlan(sh, inHeight, kh, info.padInfo.top, outHeight);
  const columns = phasePlan(sw, inWidth, kw, info.padInfo.left, outWidth);
  if ([...rows, ...columns].some((p) => p.before < 0 || p.after < 0)) return fallback(args) as TensorInfo;

  const temporaries: TensorInfo[] = [];
  const run = (name: string, kernelArgs: Omit<KernelArgs, "backend">) => {
    const out = kernel(name, "wasm")({ ...kernelArgs, backend } as KernelArgs) as TensorInfo;
    temporaries.push(out);
    return out;
  };
  const rotated = run("Transpose", {
    inputs: { x: run("Reverse", { inputs: { x: filter }, attrs: { dims: [0, 1] } }) },
    attrs: { perm: [0, 1, 3, 2] },
  });
  const phaseRows: TensorInfo[] = [];
  for (const row of rows) {
    const phaseColumns: TensorInfo[] = [];
    for (const column of columns) {
      // Taps r + s*j of the original filter, reversed: in the rotated filter they start at
      // (K-1-r) - s*(J-1) and step by s.
      const startH = kh - 1 - row.r - sh * (kh / sh - 1);
      const startW = kw - 1 - column.r - sw * (kw / sw - 1);
      const phaseFilter = run("StridedSlice", {
        inputs: { x: rotated },
        attrs: {
          begin: [startH, startW, 0, 0],
          end: [kh, kw, rotated.shape[2], rotated.shape[3]],
          strides: [sh, sw, 1, 1],
          beginMask: 0,
          endMask: 0,
          ellipsisMask: 0,
          newAxisMask: 0,
          shrinkAxisMask: 0,
        },
      });
      phaseColumns.push(run("Conv2D", {
        inputs: { x: dy, filter: phaseFilter },
        attrs: {
          strides: [1, 1],
          pad: [[0, 0], [row.before, row.after], [column.before, column.after], [0, 0]],
          dilations: [1, 1],
          dataFormat: "NHWC",
        },
      }));
    }
    phaseRows.push(run("Pack", { inputs: phaseColumns as unknown as tf.NamedTensorInfoMap, attrs: { axis: 3 } })); // [B,h,w,sw,C]
  }
  const stacked = run("Pack", { inputs: phaseRows as unknown as tf.NamedTensorInfoMap, attrs: { axis: 2 } }); // [B,h,sh,w,sw,C]
  const result = kernel("Reshape", "wasm")({
    inputs: { x: stacked },
    backend,
    attrs: { shape: [batch, inHeight, inWidth, inChannels] },
  }) as TensorInfo;
  // Reshape shares its input's data (with a reference count), so every temporary can go.
  for (const temporary of temporaries) (backend as tf.KernelBackend).disposeData(temporary.dataId);
  return result;
}
