/**
 * The one resampling filter facegan uses everywhere (crop, resize, evaluation): exact area
 * averaging. Each output pixel is the mean of the source area it covers, with fractional
 * coverage at the edges. For downscaling it is alias-free and, for integer factors, identical to
 * box-filter averaging; it is deterministic and needs no library. (The filter changes FID-style
 * metrics, so it must not vary between stages.)
 */

export interface Rect {
  x: number;
  y: number;
  width: number;
  height: number;
}

/**
 * Per output index o: the source indices it covers, `index[offset[o] .. offset[o + 1])`, and their
 * weights (summing to 1), in flat typed arrays so the inner loops allocate nothing.
 */
interface Taps {
  offset: Int32Array;
  index: Int32Array;
  weight: Float64Array;
}

function coverage(start: number, length: number, outSize: number, limit: number): Taps {
  const scale = length / outSize;
  const offset = new Int32Array(outSize + 1);
  const index: number[] = [];
  const weight: number[] = [];
  for (let o = 0; o < outSize; o++) {
    const from = start + o * scale;
    const to = from + scale;
    for (let s = Math.floor(from); s < Math.ceil(to); s++) {
      const overlap = Math.min(to, s + 1) - Math.max(from, s);
      if (overlap > 1e-9) {
        index.push(Math.min(Math.max(s, 0), limit - 1));
        weight.push(overlap / scale);
      }
    }
    offset[o + 1] = index.length;
  }
  return { offset, index: Int32Array.from(index), weight: Float64Array.from(weight) };
}

/**
 * Resample `rect` of an RGB or RGBA image (`channelsIn`) to an RGB uint8 image of
 * `outWidth` x `outHeight`. Source pixels outside the image repeat the edge.
 */
export function resampleArea(
  pixels: Uint8Array | Uint8ClampedArray,
  width: number,
  height: number,
  channelsIn: number,
  rect: Rect,
  outWidth: number,
  outHeight: number,
): Uint8Array {
  if (isPixelAlignedCopy(rect, outWidth, outHeight, width, height)) {
    return copyRect(pixels, width, channelsIn, rect, outWidth, outHeight);
  }
  const columns = coverage(rect.x, rect.width, outWidth, width);
  const rows = coverage(rect.y, rect.height, outHeight, height);
  // Horizontal pass into floats for the (contiguous) source rows the output covers, then the
  // vertical pass: separable, O(area) per output pixel.
  const firstRow = Math.min(...rows.index);
  const lastRow = Math.max(...rows.index);
  const lineLength = outWidth * 3;
  const horizontal = new Float32Array((lastRow - firstRow + 1) * lineLength);
  const { offset: columnOffset, index: columnIndex, weight: columnWeight } = columns;
  for (let y = firstRow; y <= lastRow; y++) {
    const base = y * width * channelsIn;
    const line = (y - firstRow) * lineLength;
    for (let o = 0; o < outWidth; o++) {
      let r = 0, g = 0, b = 0;
      for (let t = columnOffset[o]; t < columnOffset[o + 1]; t++) {
        const p = base + columnIndex[t] * channelsIn;
        const weight = columnWeight[t];
        r += pixels[p] * weight;
        g += pixels[p + 1] * weight;
        b += pixels[p + 2] * weight;
      }
      horizontal[line + o * 3] = r;
      horizontal[line + o * 3 + 1] = g;
      horizontal[line + o * 3 + 2] = b;
    }
  }
  const out = new Uint8Array(outWidth * outHeight * 3);
  const sums = new Float64Array(lineLength);
  for (let o = 0; o < outHeight; o++) {
    sums.fill(0);
    for (let t = rows.offset[o]; t < rows.offset[o + 1]; t++) {
      const line = (rows.index[t] - firstRow) * lineLength;
      const weight = rows.weight[t];
      for (let i = 0; i < lineLength; i++) sums[i] += horizontal[line + i] * weight;
    }
    const target = o * lineLength;
    for (let i = 0; i < lineLength; i++) out[target + i] = Math.min(255, Math.max(0, Math.round(sums[i])));
  }
  return out;
}

/** A whole-pixel rectangle inside the image at its own size: every weight is 1, so a copy is exact. */
function isPixelAlignedCopy(rect: Rect, outWidth: number, outHeight: number, width: number, height: number): boolean {
  return Number.isInteger(rect.x) && Number.isInteger(rect.y) && rect.width === outWidth &&
    rect.height === outHeight && rect.x >= 0 && rect.y >= 0 && rect.x + outWidth <= width &&
    rect.y + outHeight <= height;
}

function copyRect(
  pixels: Uint8Array | Uint8ClampedArray,
  width: number,
  channelsIn: number,
  rect: Rect,
  outWidth: number,
  outHeight: number,
): Uint8Array {
  const out = new Uint8Array(outWidth * outHeight * 3);
  for (let y = 0; y < outHeight; y++) {
    if (channelsIn === 3) {
      const start = ((rect.y + y) * width + rect.x) * 3;
      out.set(pixels.subarray(start, start + outWidth * 3), y * outWidth * 3);
      continue;
    }
    for (let x = 0; x < outWidth; x++) {
      const source = ((rect.y + y) * width + rect.x + x) * channelsIn;
      const target = (y * outWidth + x) * 3;
      out[target] = pixels[source];
      out[target + 1] = pixels[source + 1];
      out[target + 2] = pixels[source + 2];
    }
  }
  return out;
}
