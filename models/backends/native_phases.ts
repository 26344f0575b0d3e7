/**
 * The input gradient of a stride-2 4x4 convolution whose input has few channels (the image: G's
 * last transposed convolution, and D's first layer's input gradient in G's update) as one stride-1
 * 3x3 convolution to 4x the channels and a pixel shuffle. oneDNN 2.6's backward-data kernels
 * vectorise over the input's channels, 3 here, and reach ~60-70 GFLOP/s on this work (1.4-1.7 ms a
 * call at 32 px, 11.6 ms at 64 px with 64 filters); its brgconv forward runs the 3x3 form at
 * ~290 GFLOP/s, 0.78 and 7.3 ms, and the shuffle (a oneDNN reorder) takes 0.06 and 0.23 ms
 * (2-core AVX-512 VM, C, best of 10).
 *
 * Each output pixel pair (row 2m+p, column 2u+q) takes its rows from dy rows m-1..m+1 and its
 * columns likewise, so one 3x3 window of dy, "same" padded, gives all four phases (p, q). The
 * 3x3 filter holds, for phase (p, q) and channel c, the 4x4 filter's tap (p + 3 - 2dh, q + 3 - 2dw)
 * at window position (dh, dw), and zero where that tap lies outside the 4x4 filter (5 of a phase's
 * 9 taps): 2.25x the multiply-adds, at ~4x the speed. The phases come out side by side in the
 * channels, [N, H, W, 2 (p), 2 (q), C], and the shuffle moves each to its pixel of [N, 2H, 2W, C].
 * Other sums from the direct kernel's, so other bits (fixed, like every oneDNN convolution's).
 */
import { alignedBytes, Arg, type ConvGeometry, type Dnnl, type Region } from "./dnnl.ts";
import { bufferRegion } from "./wasm_heap.ts";

/** Input channels up to which the input gradient runs by phases (measured with 3, the image's). */
const MAX_CHANNELS = 4;

/** Whether an input gradient runs by phases: few input channels, a 4x4 filter, stride 2, padding 1 each side. */
export function byPhases(g: ConvGeometry): boolean {
  const all = (values: number[], value: number) => values.every((v) => v === value);
  return g.inChannels <= MAX_CHANNELS && g.filterHeight === 4 && g.filterWidth === 4 && all(g.strides, 2) &&
    all(g.dilations, 0) && all(g.padBefore, 1) && all(g.padAfter, 1) &&
    g.inHeight === 2 * g.outHeight && g.inWidth === 2 * g.outWidth;
}

export interface PhaseConvolution {
  /** dx (NHWC) from dy (NHWC) and the HWIO filter's values */
  backwardData(dy: Region, filter: Float32Array, dx: Region): void;
}

export function phaseConvolution(dnnl: Dnnl, g: ConvGeometry): PhaseConvolution {
  const { batch, inChannels: channels, outChannels: filters, outHeight: height, outWidth: width } = g;
  const phases = 4 * channels;
  const window: ConvGeometry = {
    batch,
    inChannels: filters,
    inHeight: height,
    inWidth: width,
    outChannels: phases,
    outHeight: height,
    outWidth: width,
    filterHeight: 3,
    filterWidth: 3,
    strides: [1, 1],
    dilations: [0, 0],
    padBefore: [1, 1],
    padAfter: [1, 1],
  };
  const planned = dnnl.convolution("forward", window);
  if (planned.reorder && !planned.reorder.before) {
    throw new Error("oneDNN planned a forward convolution whose weights reorder runs after it, not before");
  }
  // Per dimension, the (window position, phase, 4x4 tap) triples that exist: tap = phase + 3 - 2 x position.
  const pairs = [0, 1, 2].flatMap((position) =>
    [0, 1].map((phase) => ({ position, phase, tap: phase + 3 - 2 * position }))
  ).filter(({ tap }) => tap >= 0 && tap <= 3);
  // Where each 4x4 tap's [channels][filters] block starts, and where its values go in the 3x3 filter
  // (HWIO: [3][3][filters][phases], a phase's channels side by side).
  const blocks = pairs.flatMap((row) =>
    pairs.map((column) => ({
      from: (row.tap * 4 + column.tap) * channels * filters,
      to: (row.position * 3 + column.position) * filters * phases + (row.phase * 2 + column.phase) * channels,
    }))
  );
  const filterBytes = alignedBytes(9 * filters * phases * 4);
  // The taps a phase does not use stay zero from here on: only `blocks` are written.
  const filter3 = new Float32Array(filterBytes.buffer, filterBytes.byteOffset, 9 * filters * phases);
  const weights = bufferRegion(filter3);
  const inner = planned.reorder ? bufferRegion(alignedBytes(planned.reorder.bytes)) : weights;
  const phased = bufferRegion(alignedBytes(batch * height * width * phases * 4));
  const shape = [batch, height, width, 2, 2, channels];
  const side = dnnl.strided(shape, [height * width * phases, width * phases, phases, 2 * channels, channels, 1]);
  const placed = dnnl.strided(shape, [
    4 * height * width * channels,
    4 * width * channels,
    2 * channels,
    2 * width * channels,
    channels,
    1,
  ]);
  const shuffle = dnnl.reorder(side.pointer, placed.pointer);
  return {
    backwardData(dy, filter, dx) {
      for (const { from, to } of blocks) {
        for (let c = 0; c < channels; c++) {
          for (let f = 0; f < filters; f++) filter3[to + f * phases + c] = filter[from + c * filters + f];
        }
      }
      planned.reorder?.primitive.run({ [Arg.from]: weights, [Arg.to]: inner });
      planned.primitive.run({ [Arg.src]: dy, [Arg.weights]: inner, [Arg.dst]: phased });
      shuffle.run({ [Arg.from]: phased, [Arg.to]: dx });
    },
  };
}
