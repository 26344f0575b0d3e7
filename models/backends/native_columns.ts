/**
 * Convolutions as one matrix product over a column matrix (im2col), for the layers where oneDNN
 * 2.6's direct convolutions are slow: a small output (D's last layer and G's first, at most 4x4 per
 * image) read from many input channels. There brgconv's forward runs at ~230 GFLOP/s where oneDNN's
 * matrix product reaches ~360 on the same work (2-core AVX-512 VM; the 64 px network's
 * 8x8x256 -> 4x4x512 layer: 35-43 ms a forward call, 23-24 ms as a product), and the weight gradient
 * at ~280.
 *
 * The columns: one row per output pixel (batch x outHeight x outWidth), one column per filter tap
 * and input channel (filterHeight x filterWidth x inChannels, the order of tfjs' HWIO filter, so the
 * filter is the product's right-hand matrix as it lies). Each tap is one strided copy (a oneDNN
 * reorder) of the input pixels it reads; the entries a tap would read from the padding are zero from
 * the start and never written. Forward: out = columns x filter; weight gradient: filter' =
 * columnsᵀ x dy. Different sums from the direct convolution's, so other bits (fixed for a fixed
 * thread count, like every oneDNN product).
 */
import { alignedBytes, Arg, type ConvGeometry, type Dnnl, type Primitive, type Region } from "./dnnl.ts";

/** Output pixels per image up to which a convolution runs as a product (4x4: D's last layer). */
const MAX_OUTPUT_PIXELS = 16;
/** Input channels from which it does: with 64 (the 32 px network's), brgconv was faster (measured). */
const MIN_IN_CHANNELS = 256;
/**
 * Rows (batch x output pixels) from which it does: face-api's nets in evaluate, at batches of 8
 * (128 rows), embedded 128 faces in 491-501 ms this way against 457-481 ms direct.
 */
const MIN_ROWS = 512;

/**
 * Whether a convolution runs as a product: undilated, with a small output per image, many input
 * channels and a large batch, and its output rows (columns) times the stride within the input's, as
 * oneDNN's strided views of a tap's pixels must be (odd sizes with "same" padding stay direct).
 */
export function byColumns(g: ConvGeometry): boolean {
  const pixels = g.outHeight * g.outWidth;
  return pixels <= MAX_OUTPUT_PIXELS && g.batch * pixels >= MIN_ROWS && g.inChannels >= MIN_IN_CHANNELS &&
    g.dilations.every((dilation) => dilation === 0) &&
    g.outHeight * g.strides[0] <= g.inHeight && g.outWidth * g.strides[1] <= g.inWidth;
}

/** One tap's copy: the input pixels it reads (from an offset in floats) to its columns. */
interface TapCopy {
  primitive: Primitive;
  from: { offset: number; bytes: number };
  to: { offset: number; bytes: number };
}

export interface ColumnConvolution {
  /** out (NHWC) = convolution of x (NHWC) with the HWIO filter */
  forward(x: Region, filter: Region, out: Region): void;
  /** filterGradient (HWIO) from x and dy (both NHWC) */
  backwardWeights(x: Region, dy: Region, filterGradient: Region): void;
}

/** The output rows (or columns) a tap reads inside the input: [first, last + 1). */
function validRange(outSize: number, inSize: number, stride: number, tap: number, padBefore: number): [number, number] {
  let first = 0;
  while (first < outSize && first * stride + tap - padBefore < 0) first++;
  let end = outSize;
  while (end > first && (end - 1) * stride + tap - padBefore >= inSize) end--;
  return [first, end];
}

export function columnConvolution(dnnl: Dnnl, g: ConvGeometry): ColumnConvolution {
  const rows = g.batch * g.outHeight * g.outWidth;
  const depth = g.filterHeight * g.filterWidth * g.inChannels;
  const bytes = alignedBytes(rows * depth * 4);
  const columns = { pointer: Deno.UnsafePointer.of(bytes), bytes: bytes.byteLength };
  const copies: TapCopy[] = [];
  for (let ty = 0; ty < g.filterHeight; ty++) {
    const [y0, y1] = validRange(g.outHeight, g.inHeight, g.strides[0], ty, g.padBefore[0]);
    for (let tx = 0; tx < g.filterWidth; tx++) {
      const [x0, x1] = validRange(g.outWidth, g.inWidth, g.strides[1], tx, g.padBefore[1]);
      if (y0 === y1 || x0 === x1) continue;
      const shape = [g.batch, y1 - y0, x1 - x0, g.inChannels];
      const from = dnnl.strided(shape, [
        g.inHeight * g.inWidth * g.inChannels,
        g.strides[0] * g.inWidth * g.inChannels,
        g.strides[1] * g.inChannels,
        1,
      ]);
      const to = dnnl.strided(shape, [g.outHeight * g.outWidth * depth, g.outWidth * depth, depth, 1]);
      const [iy, ix] = [y0 * g.strides[0] + ty - g.padBefore[0], x0 * g.strides[1] + tx - g.padBefore[1]];
      copies.push({
        primitive: dnnl.reorder(from.pointer, to.pointer),
        from: { offset: (iy * g.inWidth + ix) * g.inChannels, bytes: dnnl.bytesOf(from.pointer) },
        to: {
          offset: (y0 * g.outWidth + x0) * depth + (ty * g.filterWidth + tx) * g.inChannels,
          bytes: dnnl.bytesOf(to.pointer),
        },
      });
    }
  }
  /** The view of a tap's copy inside a region: `offset` floats in, as many bytes as the view spans. */
  const at = (region: Region, view: { offset: number; bytes: number }): Region => ({
    pointer: Deno.UnsafePointer.offset(region.pointer!, view.offset * 4),
    bytes: view.bytes,
  });
  const gather = (x: Region) => {
    for (const { primitive, from, to } of copies) primitive.run({ [Arg.from]: at(x, from), [Arg.to]: at(columns, to) });
  };
  const plain = (m: number, n: number) => dnnl.strided([1, m, n], [m * n, n, 1]);
  const product = dnnl.matmul(plain(rows, depth), plain(depth, g.outChannels), plain(rows, g.outChannels));
  const gradient = dnnl.matmul(
    dnnl.strided([1, depth, rows], [rows * depth, 1, depth]),
    plain(rows, g.outChannels),
    plain(depth, g.outChannels),
  );
  return {
    forward(x, filter, out) {
      gather(x);
      product.run({ [Arg.src]: columns, [Arg.weights]: filter, [Arg.dst]: out });
    },
    backwardWeights(x, dy, filterGradient) {
      gather(x);
      gradient.run({ [Arg.src]: columns, [Arg.weights]: dy, [Arg.dst]: filterGradient });
    },
  };
}
