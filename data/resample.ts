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

/** Per output index: the source indices it covers and their weights (summing to 1). */
function coverage(start: number, length: number, outSize: number, limit: number) {
  const scale = length / outSize;
  const taps: { index: number; weight: number }[][] = [];
  for (let o = 0; o < outSize; o++) {
    const from = start + o * scale;
    const to = from + scale;
    const row: { index: number; weight: number }[] = [];
    for (let s = Math.floor(from); s < Math.ceil(to); s++) {
      const overlap = Math.min(to, s + 1) - Math.max(from, s);
      if (overlap > 1e-9) row.push({ index: Math.min(Math.max(s, 0), limit - 1), weight: overlap / scale });
    }
    taps.push(row);
  }
  return taps;
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
  const columns = coverage(rect.x, rect.width, outWidth, width);
  const rows = coverage(rect.y, rect.height, outHeight, height);
  // Horizontal pass into floats, then vertical pass: separable, O(area) per output pixel.
  const sourceRows = new Set(rows.flat().map((tap) => tap.index));
  const horizontal = new Map<number, Float32Array>();
  for (const y of sourceRows) {
    const line = new Float32Array(outWidth * 3);
    const base = y * width * channelsIn;
    for (let o = 0; o < outWidth; o++) {
      let r = 0, g = 0, b = 0;
      for (const { index, weight } of columns[o]) {
        const p = base + index * channelsIn;
        r += pixels[p] * weight;
        g += pixels[p + 1] * weight;
        b += pixels[p + 2] * weight;
      }
      line[o * 3] = r;
      line[o * 3 + 1] = g;
      line[o * 3 + 2] = b;
    }
    horizontal.set(y, line);
  }
  const out = new Uint8Array(outWidth * outHeight * 3);
  for (let o = 0; o < outHeight; o++) {
    const target = o * outWidth * 3;
    const taps = rows[o].map(({ index, weight }) => ({ line: horizontal.get(index)!, weight }));
    for (let i = 0; i < outWidth * 3; i++) {
      let sum = 0;
      for (const { line, weight } of taps) sum += line[i] * weight;
      out[target + i] = Math.min(255, Math.max(0, Math.round(sum)));
    }
  }
  return out;
}
