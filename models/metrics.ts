/**
 * Distribution distances for evaluating a generator (pure math; tensors only for the big
 * matrix products). Every random choice takes an Rng, so the numbers are reproducible.
 *
 * - Sliced Wasserstein distance on Laplacian-pyramid patches, as in ProGAN (Karras et al. 2018).
 * - Frechet distance between Gaussians fitted to embeddings, with a symmetric square root.
 * - Kernel inception distance (unbiased MMD^2, cubic polynomial kernel), Binkowski et al. 2018.
 */
import * as tf from "./tf.ts";
import { Rng } from "./rng.ts";
import { type RunSorter, sortRunsHere } from "./radix_sort.ts";
import { readInto } from "./backends/wasm_heap.ts";
import { matMulInto } from "./backends/native.ts";

// ---------------------------------------------------------------- SWD (ProGAN)

const GAUSSIAN_5 = [1, 4, 6, 4, 1].map((v) => v / 16);

/** A float image, HWC, 3 channels. */
interface FloatImage {
  size: number;
  data: Float32Array;
}

/**
 * The 5-tap Gaussian, rows then columns, edges clamped. Written out tap by tap (same products,
 * summed in the same order as a loop over the taps) with the clamped positions looked up: SWD
 * builds a pyramid of every image of every epoch's grid, and this was a third of its time.
 */
function blur(image: FloatImage): FloatImage {
  const { size, data } = image;
  const [g0, g1, g2, g3, g4] = GAUSSIAN_5;
  // at[i + 2] = i clamped to the image, for i = -2 .. size + 1
  const at = Int32Array.from({ length: size + 4 }, (_, i) => Math.min(size - 1, Math.max(0, i - 2)));
  const temp = new Float32Array(data.length);
  const out = new Float32Array(data.length);
  for (let y = 0; y < size; y++) {
    const row = y * size;
    for (let x = 0; x < size; x++) {
      const a = (row + at[x]) * 3, b = (row + at[x + 1]) * 3, c = (row + at[x + 2]) * 3;
      const d = (row + at[x + 3]) * 3, e = (row + at[x + 4]) * 3;
      const o = (row + x) * 3;
      for (let ch = 0; ch < 3; ch++) {
        let sum = 0;
        sum += g0 * data[a + ch];
        sum += g1 * data[b + ch];
        sum += g2 * data[c + ch];
        sum += g3 * data[d + ch];
        sum += g4 * data[e + ch];
        temp[o + ch] = sum;
      }
    }
  }
  for (let y = 0; y < size; y++) {
    const [a, b, c, d, e] = [at[y], at[y + 1], at[y + 2], at[y + 3], at[y + 4]].map((r) => r * size * 3);
    for (let x = 0; x < size; x++) {
      for (let ch = 0; ch < 3; ch++) {
        const i = x * 3 + ch;
        let sum = 0;
        sum += g0 * temp[a + i];
        sum += g1 * temp[b + i];
        sum += g2 * temp[c + i];
        sum += g3 * temp[d + i];
        sum += g4 * temp[e + i];
        out[(y * size + x) * 3 + ch] = sum;
      }
    }
  }
  return { size, data: out };
}

function downsample(image: FloatImage): FloatImage {
  const blurred = blur(image);
  const size = image.size / 2;
  const out = new Float32Array(size * size * 3);
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      for (let c = 0; c < 3; c++) out[(y * size + x) * 3 + c] = blurred.data[((2 * y) * image.size + 2 * x) * 3 + c];
    }
  }
  return { size, data: out };
}

function upsample(image: FloatImage): FloatImage {
  const size = image.size * 2;
  const zeros = new Float32Array(size * size * 3);
  for (let y = 0; y < image.size; y++) {
    for (let x = 0; x < image.size; x++) {
      // Zero insertion then a Gaussian blur scaled by 4 (ProGAN's pyr_up).
      for (let c = 0; c < 3; c++) {
        zeros[((2 * y) * size + 2 * x) * 3 + c] = 4 * image.data[(y * image.size + x) * 3 + c];
      }
    }
  }
  return blur({ size, data: zeros });
}

/** Laplacian pyramid from the image size down to 16x16 (the last level is the Gaussian). */
export function laplacianPyramid(image: FloatImage, minSize = 16): FloatImage[] {
  const levels: FloatImage[] = [];
  let current = image;
  while (current.size > minSize) {
    const smaller = downsample(current);
    const up = upsample(smaller);
    const difference = new Float32Array(current.data.length);
    for (let i = 0; i < difference.length; i++) difference[i] = current.data[i] - up.data[i];
    levels.push({ size: current.size, data: difference });
    current = smaller;
  }
  levels.push(current);
  return levels;
}

interface SwdOptions {
  patchesPerImage?: number;
  patchSize?: number;
  directions?: number;
}

/** One set's side of an SWD, drawn once: patch positions, directions, and its sorted projections per level. */
export interface SwdReference {
  size: number;
  count: number;
  patchesPerImage: number;
  patchSize: number;
  levels: { size: number; positions: Int32Array; directions: Float32Array; sorted: Float32Array }[];
}

/**
 * SWD x 1e3 per pyramid level and their mean, between two sets of uint8 RGB images of the same
 * size. 128 random 7x7 patches per image per level, each set normalised per channel by its own
 * mean and std over all its patches, 512 random unit directions (4 x 128), sorted projections.
 * `sort` sorts them: on this thread unless given (evaluate gives its worker threads).
 */
export async function slicedWasserstein(
  setA: Uint8Array[],
  setB: Uint8Array[],
  size: number,
  rng: Rng,
  options: SwdOptions = {},
  sort: RunSorter = sortRunsHere,
): Promise<{ levels: Record<string, number>; mean: number }> {
  const count = Math.min(setA.length, setB.length); // equal patch counts on both sides
  return await slicedWassersteinTo(await swdReference(setB, size, count, rng, options, sort), setA, sort);
}

/**
 * The first `count` images of `set` as one side of SWDs, so that several sets compared with the same
 * reference (each epoch's samples vs the real images) pay for its pyramids, projections and sorts
 * once. Draws from `rng` exactly as slicedWasserstein does.
 */
export async function swdReference(
  set: Uint8Array[],
  size: number,
  count: number,
  rng: Rng,
  { patchesPerImage = 128, patchSize = 7, directions = 512 }: SwdOptions = {},
  sort: RunSorter = sortRunsHere,
): Promise<SwdReference> {
  const pyramids = toPyramids(set.slice(0, count), size);
  const dims = patchSize * patchSize * 3;
  // Every level's draws first, in the order they were always drawn; then the sorts, all at once.
  const levels = pyramids[0].map(({ size: levelSize }, level) => {
    // The same patch positions for both sets, so only content differs.
    const positions = new Int32Array(count * patchesPerImage * 2);
    for (let p = 0; p < positions.length; p++) positions[p] = rng.int(levelSize - patchSize + 1);
    const directionMatrix = new Float32Array(dims * directions);
    for (let d = 0; d < directions; d++) {
      const v = rng.normals(dims);
      const norm = Math.hypot(...v);
      for (let i = 0; i < dims; i++) directionMatrix[i * directions + d] = v[i] / norm;
    }
    const descriptors = patchDescriptors(pyramids, level, levelSize, positions, patchesPerImage, patchSize);
    const projected = projections(descriptors, directionMatrix, dims, directions, sort);
    return { size: levelSize, positions, directions: directionMatrix, projected, rows: descriptors.length / dims };
  });
  const sorted = await Promise.all(levels.map(({ projected, rows }) => sort.sort(projected, rows)));
  return {
    size,
    count,
    patchesPerImage,
    patchSize,
    levels: levels.map(({ size, positions, directions }, level) => ({
      size,
      positions,
      directions,
      sorted: sorted[level],
    })),
  };
}

/** SWD between the first `reference.count` images of `set` and the reference (same patches and directions). */
export async function slicedWassersteinTo(
  reference: SwdReference,
  set: Uint8Array[],
  sort: RunSorter = sortRunsHere,
): Promise<{ levels: Record<string, number>; mean: number }> {
  const { count, patchesPerImage, patchSize } = reference;
  if (set.length < reference.count) throw new Error(`SWD: ${set.length} images, the reference has ${count}`);
  const pyramids = toPyramids(set.slice(0, count), reference.size);
  const dims = patchSize * patchSize * 3;
  // Per level, each direction's sum of |sorted projections - the reference's|: sorted and summed by `sort`.
  const sums = await Promise.all(reference.levels.map(({ size: levelSize, positions, directions, sorted }, level) => {
    const descriptors = patchDescriptors(pyramids, level, levelSize, positions, patchesPerImage, patchSize);
    const projected = projections(descriptors, directions, dims, directions.length / dims, sort);
    return sort.distances(projected, sorted, descriptors.length / dims);
  }));
  const levels: Record<string, number> = {};
  reference.levels.forEach(({ size: levelSize, sorted }, level) => {
    const directions = sums[level].length;
    const rows = sorted.length / directions;
    let total = 0;
    for (let d = 0; d < directions; d++) total += sums[level][d] / rows;
    levels[String(levelSize)] = total / directions * 1e3;
  });
  const values = Object.values(levels);
  return { levels, mean: values.reduce((a, b) => a + b, 0) / values.length };
}

function toPyramids(set: Uint8Array[], size: number): FloatImage[][] {
  return set.map((pixels) => {
    // a loop, not Float32Array.from(pixels, map): a call per value made this a tenth of SWD's time
    const data = new Float32Array(pixels.length);
    for (let i = 0; i < pixels.length; i++) data[i] = pixels[i] / 127.5 - 1;
    return laplacianPyramid({ size, data });
  });
}

/**
 * The descriptors' buffer, reused: each set of them is projected as soon as it is made (the product
 * reads it, or tfjs copies it), and a fresh ~5 MB array per level of every epoch's grid cost more in
 * page faults than filling it.
 */
let descriptorScratch = new Float32Array(0);

/** patchSize x patchSize x 3 patches at `positions` (x, y pairs; patchesPerImage per image), normalised. */
function patchDescriptors(
  pyramids: FloatImage[][],
  level: number,
  levelSize: number,
  positions: Int32Array,
  patchesPerImage: number,
  patchSize: number,
): Float32Array {
  const dims = patchSize * patchSize * 3;
  const patches = positions.length / 2;
  if (descriptorScratch.length !== patches * dims) descriptorScratch = new Float32Array(patches * dims);
  const out = descriptorScratch;
  for (let p = 0; p < patches; p++) {
    const image = pyramids[Math.floor(p / patchesPerImage)][level];
    const [px, py] = [positions[2 * p], positions[2 * p + 1]];
    let o = p * dims;
    for (let y = 0; y < patchSize; y++) {
      for (let x = 0; x < patchSize; x++) {
        const i = ((py + y) * levelSize + px + x) * 3;
        out[o++] = image.data[i];
        out[o++] = image.data[i + 1];
        out[o++] = image.data[i + 2];
      }
    }
  }
  return normalisePerChannel(out);
}

/**
 * Each channel's values (every third one) less their mean, over their std. One pass takes all three
 * channels' sums, one normalises: each channel's sums add the same values in the same order as one
 * pass per channel did, in a third of the passes over a ~5 MB array.
 */
function normalisePerChannel(descriptors: Float32Array): Float32Array {
  // Scalars, not arrays indexed by channel: this is a third faster.
  let sumR = 0, sumG = 0, sumB = 0, squaresR = 0, squaresG = 0, squaresB = 0;
  for (let i = 0; i < descriptors.length; i += 3) {
    const r = descriptors[i], g = descriptors[i + 1], b = descriptors[i + 2];
    sumR += r;
    sumG += g;
    sumB += b;
    squaresR += r * r;
    squaresG += g * g;
    squaresB += b * b;
  }
  const n = descriptors.length / 3;
  const meanAndStd = (sum: number, squares: number) => {
    const mean = sum / n;
    return [mean, Math.sqrt(Math.max(squares / n - mean * mean, 0)) || 1];
  };
  const [[meanR, stdR], [meanG, stdG], [meanB, stdB]] = [
    meanAndStd(sumR, squaresR),
    meanAndStd(sumG, squaresG),
    meanAndStd(sumB, squaresB),
  ];
  for (let i = 0; i < descriptors.length; i += 3) {
    descriptors[i] = (descriptors[i] - meanR) / stdR;
    descriptors[i + 1] = (descriptors[i + 1] - meanG) / stdG;
    descriptors[i + 2] = (descriptors[i + 2] - meanB) / stdB;
  }
  return descriptors;
}

/**
 * Each direction's projections of the descriptors, unsorted: directions x rows, row-major, in a
 * buffer from `sort` (so its worker threads sort them where they are).
 */
function projections(
  set: Float32Array,
  directionMatrix: Float32Array,
  dims: number,
  directions: number,
  sort: RunSorter,
): Float32Array {
  const rows = set.length / dims;
  const into = sort.buffer(rows * directions);
  // directions x rows (both operands read transposed), so each direction's projections are
  // contiguous for sorting without a transpose pass over the whole product.
  if (matMulInto(directionMatrix, [dims, directions], set, [rows, dims], true, true, into)) return into;
  const projected = tf.tidy(() =>
    tf.matMul(tf.tensor2d(directionMatrix, [dims, directions]), tf.tensor2d(set, [rows, dims]), true, true)
  );
  // Not dataSync(): a fresh 16 MB array for every level of every epoch's grid.
  readInto(projected, into);
  projected.dispose();
  return into;
}

// ---------------------------------------------------------------- Frechet distance

export interface Gaussian {
  mean: Float64Array;
  /** row-major dim x dim */
  covariance: Float64Array;
  dim: number;
}

/** Mean and unbiased covariance of row vectors. */
export function fitGaussian(rows: Float32Array[] | Float64Array[]): Gaussian {
  const n = rows.length;
  const dim = rows[0].length;
  const mean = new Float64Array(dim);
  for (const row of rows) for (let i = 0; i < dim; i++) mean[i] += row[i] / n;
  const covariance = new Float64Array(dim * dim);
  for (const row of rows) {
    for (let i = 0; i < dim; i++) {
      const di = row[i] - mean[i];
      for (let j = i; j < dim; j++) covariance[i * dim + j] += di * (row[j] - mean[j]);
    }
  }
  for (let i = 0; i < dim; i++) {
    for (let j = i; j < dim; j++) {
      covariance[i * dim + j] /= Math.max(n - 1, 1);
      covariance[j * dim + i] = covariance[i * dim + j];
    }
  }
  return { mean, covariance, dim };
}

/**
 * Eigen-decomposition of a symmetric matrix by cyclic Jacobi rotations (float64): stable for the
 * positive semi-definite covariances here, where a generic sqrtm can return complex noise.
 */
export function symmetricEigen(matrix: Float64Array, n: number): { values: Float64Array; vectors: Float64Array } {
  const a = Float64Array.from(matrix);
  const v = new Float64Array(n * n);
  for (let i = 0; i < n; i++) v[i * n + i] = 1;
  for (let sweep = 0; sweep < 100; sweep++) {
    let off = 0;
    for (let p = 0; p < n; p++) for (let q = p + 1; q < n; q++) off += a[p * n + q] ** 2;
    if (off < 1e-30) break;
    for (let p = 0; p < n; p++) {
      for (let q = p + 1; q < n; q++) {
        const apq = a[p * n + q];
        if (Math.abs(apq) < 1e-300) continue;
        const theta = (a[q * n + q] - a[p * n + p]) / (2 * apq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        for (let k = 0; k < n; k++) {
          const akp = a[k * n + p], akq = a[k * n + q];
          a[k * n + p] = c * akp - s * akq;
          a[k * n + q] = s * akp + c * akq;
        }
        for (let k = 0; k < n; k++) {
          const apk = a[p * n + k], aqk = a[q * n + k];
          a[p * n + k] = c * apk - s * aqk;
          a[q * n + k] = s * apk + c * aqk;
        }
        for (let k = 0; k < n; k++) {
          const vkp = v[k * n + p], vkq = v[k * n + q];
          v[k * n + p] = c * vkp - s * vkq;
          v[k * n + q] = s * vkp + c * vkq;
        }
      }
    }
  }
  return { values: Float64Array.from({ length: n }, (_, i) => a[i * n + i]), vectors: v };
}

/** Symmetric PSD square root: V diag(sqrt(max(lambda, 0))) V^T. */
export function sqrtPsd(matrix: Float64Array, n: number): Float64Array {
  const { values, vectors } = symmetricEigen(matrix, n);
  const out = new Float64Array(n * n);
  for (let k = 0; k < n; k++) {
    const root = Math.sqrt(Math.max(values[k], 0));
    if (root === 0) continue;
    for (let i = 0; i < n; i++) {
      const vik = vectors[i * n + k] * root;
      for (let j = 0; j < n; j++) out[i * n + j] += vik * vectors[j * n + k];
    }
  }
  return out;
}

function multiply(a: Float64Array, b: Float64Array, n: number): Float64Array {
  const out = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < n; k++) {
      const aik = a[i * n + k];
      for (let j = 0; j < n; j++) out[i * n + j] += aik * b[k * n + j];
    }
  }
  return out;
}

/**
 * FD = |mu1 - mu2|^2 + Tr(S1) + Tr(S2) - 2 Tr((S1 S2)^1/2), with the trace of the square root
 * taken as Tr((A S2 A)^1/2), A = S1^1/2: the same eigenvalues, but a symmetric PSD matrix.
 */
export function frechetDistance(p: Gaussian, q: Gaussian): number {
  const n = p.dim;
  let meanTerm = 0;
  for (let i = 0; i < n; i++) meanTerm += (p.mean[i] - q.mean[i]) ** 2;
  const root = sqrtPsd(p.covariance, n);
  const middle = multiply(multiply(root, q.covariance, n), root, n);
  for (let i = 0; i < n; i++) {
    for (let j = i + 1; j < n; j++) middle[i * n + j] = middle[j * n + i] = (middle[i * n + j] + middle[j * n + i]) / 2;
  }
  const { values } = symmetricEigen(middle, n);
  let traceRoot = 0;
  for (const value of values) traceRoot += Math.sqrt(Math.max(value, 0));
  let traces = 0;
  for (let i = 0; i < n; i++) traces += p.covariance[i * n + i] + q.covariance[i * n + i];
  return Math.max(meanTerm + traces - 2 * traceRoot, 0);
}

// ---------------------------------------------------------------- KID

/**
 * Unbiased MMD^2 with k(x, y) = (x.y / d + 1)^3, averaged over random subsets; mean and std.
 * Every kernel value a subset needs is read from Gram matrices computed once (a subset of m rows
 * would otherwise recompute 3m^2 of them, 100 subsets over); the sums run in the same order as
 * computing each value in place, so the result is the same to the bit.
 */
export function kernelDistance(
  x: Float32Array[],
  y: Float32Array[],
  rng: Rng,
  subsets = 100,
  maxSubsetSize = 1000,
): { mean: number; std: number; subsetSize: number } {
  const m = Math.min(x.length, y.length, maxSubsetSize);
  const kxxAll = polynomialGram(x, x);
  const kyyAll = polynomialGram(y, y);
  const kxyAll = polynomialGram(x, y);
  const estimates: number[] = [];
  for (let s = 0; s < subsets; s++) {
    const a = rng.permutation(x.length).subarray(0, m);
    const b = rng.permutation(y.length).subarray(0, m);
    let kxx = 0, kyy = 0, kxy = 0;
    for (let i = 0; i < m; i++) {
      const rowXX = a[i] * x.length, rowYY = b[i] * y.length, rowXY = a[i] * y.length;
      for (let j = 0; j < m; j++) {
        if (i !== j) {
          kxx += kxxAll[rowXX + a[j]];
          kyy += kyyAll[rowYY + b[j]];
        }
        kxy += kxyAll[rowXY + b[j]];
      }
    }
    estimates.push(kxx / (m * (m - 1)) + kyy / (m * (m - 1)) - (2 * kxy) / (m * m));
  }
  const mean = estimates.reduce((a, b) => a + b, 0) / subsets;
  const std = Math.sqrt(estimates.reduce((a, b) => a + (b - mean) ** 2, 0) / subsets);
  return { mean, std, subsetSize: m };
}

/** k(a_i, b_j) = (a_i.b_j / d + 1)^3 for every pair, row-major a.length x b.length, in float64. */
function polynomialGram(a: Float32Array[], b: Float32Array[]): Float64Array {
  const dim = a[0].length;
  const gram = new Float64Array(a.length * b.length);
  for (let i = 0; i < a.length; i++) {
    for (let j = 0; j < b.length; j++) {
      let dot = 0;
      for (let k = 0; k < dim; k++) dot += a[i][k] * b[j][k];
      gram[i * b.length + j] = (dot / dim + 1) ** 3;
    }
  }
  return gram;
}
