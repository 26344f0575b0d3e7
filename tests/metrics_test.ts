/** Evaluation math (SWD, Frechet distance, KID) against known values, and on real faces. */
import assert from "node:assert/strict";
import { join } from "node:path";
import * as tf from "../models/tf.ts";
import { useBackend, useEvalBackend } from "../models/backend.ts";
import { fitGaussian, frechetDistance, kernelDistance, slicedWasserstein, sqrtPsd } from "../models/metrics.ts";
import { Rng } from "../models/rng.ts";
import { sortRunsHere } from "../models/radix_sort.ts";
import { SortWorkers } from "../data/sort_workers.ts";
import { FaceFeatures } from "../data/face_features.ts";
import { readPackImages, readPackIndex } from "../data/pack.ts";
import { copyRealPhotos, facegan, localSource, needsRealSample, projectCopy, REAL_SAMPLE } from "./support/helpers.ts";

tf.env().set("IS_TEST", true);

function gaussianSamples(n: number, dim: number, rng: Rng, mean: number[] = [], std: number[] = []): Float32Array[] {
  return Array.from(
    { length: n },
    () => Float32Array.from({ length: dim }, (_, i) => (mean[i] ?? 0) + (std[i] ?? 1) * rng.normal()),
  );
}

function noiseImages(n: number, size: number, rng: Rng): Uint8Array[] {
  return Array.from({ length: n }, () => Uint8Array.from({ length: size * size * 3 }, () => rng.int(256)));
}

Deno.test("radix sort of runs: each run in Float32Array.prototype.sort's order, signed zeros, infinities and subnormals too", async () => {
  const rng = new Rng(5);
  const special = [0, -0, Infinity, -Infinity, 1e-40, -1e-40, 3.4e38, -3.4e38];
  const values = Float32Array.from(
    { length: 3 * 1000 },
    (_, i) => special[i % 97] ?? (rng.normal() * 10 ** rng.int(6)),
  );
  const expected = [0, 1, 2].map((run) => values.slice(run * 1000, (run + 1) * 1000).sort());
  const sorted = await sortRunsHere.sort(values.slice(), 1000);
  for (const run of [0, 1, 2]) {
    const got = sorted.subarray(run * 1000, (run + 1) * 1000);
    assert.ok(got.every((v, i) => Object.is(v, expected[run][i])), `run ${run}`);
  }
});

Deno.test("SWD with its sorts on worker threads equals SWD sorted on this thread, to the bit", async () => {
  await useBackend("wasm");
  const rng = new Rng(3);
  const [a, b] = [noiseImages(6, 32, rng), noiseImages(6, 32, rng)];
  const options = { patchesPerImage: 32, directions: 64 };
  const here = await slicedWasserstein(a, b, 32, new Rng(4), options);
  const workers = new SortWorkers();
  try {
    assert.deepEqual(await slicedWasserstein(a, b, 32, new Rng(4), options, workers), here);
  } finally {
    workers.close();
  }
});

Deno.test("SWD of a set against itself is 0 and grows with added noise", async () => {
  await useBackend("wasm");
  const rng = new Rng(1);
  const base = Array.from(
    { length: 24 },
    (_, n) => Uint8Array.from({ length: 32 * 32 * 3 }, (_, i) => 128 + 100 * Math.sin((i % 96) / (5 + (n % 7)) + n)),
  );
  assert.equal((await slicedWasserstein(base, base, 32, new Rng(2))).mean, 0);
  let previous = 0;
  for (const amount of [10, 40, 120]) {
    const noisy = base.map((image) =>
      image.map((v) => Math.min(255, Math.max(0, v + (rng.next() - 0.5) * 2 * amount)))
    );
    const swd = await slicedWasserstein(base, noisy, 32, new Rng(2));
    assert.deepEqual(Object.keys(swd.levels).sort(), ["16", "32"]);
    assert.ok(swd.mean > previous, `noise ${amount}: ${swd.mean} should exceed ${previous}`);
    previous = swd.mean;
  }
});

Deno.test("the symmetric square root squares back to its matrix", () => {
  const n = 6;
  const rng = new Rng(3);
  const a = Float64Array.from({ length: n * n }, () => rng.normal());
  const psd = new Float64Array(n * n); // A A^T
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) for (let k = 0; k < n; k++) psd[i * n + j] += a[i * n + k] * a[j * n + k];
  }
  const root = sqrtPsd(psd, n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      let square = 0;
      for (let k = 0; k < n; k++) square += root[i * n + k] * root[k * n + j];
      assert.ok(Math.abs(square - psd[i * n + j]) < 1e-9, `(${i},${j}) ${square} vs ${psd[i * n + j]}`);
    }
  }
});

Deno.test("Frechet distance: identical Gaussians give 0, diagonal and shifted cases match the closed form", () => {
  const dim = 4;
  const diagonal = (mean: number[], variances: number[]) => ({
    mean: Float64Array.from(mean),
    covariance: Float64Array.from(
      { length: dim * dim },
      (_, k) => (k % (dim + 1) === 0 ? variances[k / (dim + 1)] : 0),
    ),
    dim,
  });
  const p = diagonal([0, 1, 2, 3], [1, 4, 9, 0.25]);
  assert.ok(frechetDistance(p, p) < 1e-9);
  const q = diagonal([1, 1, 0, 3], [4, 1, 1, 1]);
  // |mu1 - mu2|^2 + sum (sqrt(a) - sqrt(b))^2 for diagonal covariances
  const expected = (1 + 0 + 4 + 0) +
    [[1, 4], [4, 1], [9, 1], [0.25, 1]].reduce((s, [a, b]) => s + (Math.sqrt(a) - Math.sqrt(b)) ** 2, 0);
  assert.ok(Math.abs(frechetDistance(p, q) - expected) < 1e-9, `${frechetDistance(p, q)} vs ${expected}`);

  const rng = new Rng(4);
  const a = fitGaussian(gaussianSamples(4000, 8, rng));
  const b = fitGaussian(gaussianSamples(4000, 8, rng));
  assert.ok(frechetDistance(a, b) < 0.05, `two samples of one Gaussian: ${frechetDistance(a, b)}`);
  const shifted = fitGaussian(gaussianSamples(4000, 8, rng, [2, 0, 0, 0, 0, 0, 0, 0]));
  assert.ok(
    Math.abs(frechetDistance(a, shifted) - 4) < 0.25,
    `shift by 2: ${frechetDistance(a, shifted)} should be about 4`,
  );
});

Deno.test("KID is unbiased: near 0 on equal distributions, clearly positive on different ones", () => {
  const rng = new Rng(5);
  const x = gaussianSamples(300, 16, rng);
  const y = gaussianSamples(300, 16, rng);
  // Subsets of 100 from 300: the spread across subsets measures the estimator's noise.
  const same = kernelDistance(x, y, new Rng(6), 50, 100);
  assert.ok(
    Math.abs(same.mean) < same.std,
    `equal distributions: ${same.mean} should be within one std (${same.std}) of 0`,
  );
  const z = gaussianSamples(300, 16, rng, Array(16).fill(0.5));
  const different = kernelDistance(x, z, new Rng(6), 50, 100);
  assert.ok(different.mean > 5 * same.std, `different: ${different.mean} vs noise ${same.std}`);
});

Deno.test("KID read from Gram matrices equals the definition evaluated pair by pair, to the bit", () => {
  const rng = new Rng(11);
  const x = gaussianSamples(40, 8, rng);
  const y = gaussianSamples(30, 8, rng, Array(8).fill(0.3));
  const m = 20, subsets = 5;
  // The definition: a fresh permutation of each set per subset, every kernel value computed in place.
  const kernel = (a: Float32Array, b: Float32Array) => {
    let dot = 0;
    for (let i = 0; i < a.length; i++) dot += a[i] * b[i];
    return (dot / a.length + 1) ** 3;
  };
  const draw = new Rng(12);
  const estimates = Array.from({ length: subsets }, () => {
    const a = Array.from(draw.permutation(x.length).subarray(0, m), (i) => x[i]);
    const b = Array.from(draw.permutation(y.length).subarray(0, m), (i) => y[i]);
    let kxx = 0, kyy = 0, kxy = 0;
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < m; j++) {
        if (i !== j) {
          kxx += kernel(a[i], a[j]);
          kyy += kernel(b[i], b[j]);
        }
        kxy += kernel(a[i], b[j]);
      }
    }
    return kxx / (m * (m - 1)) + kyy / (m * (m - 1)) - (2 * kxy) / (m * m);
  });
  const mean = estimates.reduce((p, q) => p + q, 0) / subsets;
  assert.equal(kernelDistance(x, y, new Rng(12), subsets, m).mean, mean);
});

Deno.test({
  ...needsRealSample("real CelebA: the real-vs-real floor is far below noise images and blurred real images"),
  fn: async () => {
    const folder = await copyRealPhotos(REAL_SAMPLE!, 400);
    const root = await projectCopy();
    const result = await facegan(root, [
      "run",
      "--until",
      "crop",
      ...localSource(folder),
    ]);
    assert.equal(result.code, 0, result.stderr);
    const dir = join(root, "outputs", "latest", "crop");
    const images: Uint8Array[] = [];
    for await (const { pixels } of readPackImages(dir, await readPackIndex(dir))) images.push(pixels.slice());
    const [a, b] = [images.slice(0, 200), images.slice(200, 400)];
    const blurred = b.map((image) => boxBlur(image, 32, 2));
    const noise = noiseImages(200, 32, new Rng(7));

    // The evaluate stage's backend (native where oneDNN loads): wasm took 4x as long for these 800 faces.
    await useEvalBackend("auto");
    const swd = async (x: Uint8Array[], y: Uint8Array[]) => (await slicedWasserstein(x, y, 32, new Rng(8))).mean;
    const features = await FaceFeatures.load();
    const embed = (set: Uint8Array[]) => features.embed(set, 32, () => {});
    const [ea, eb, eBlur, eNoise] = [await embed(a), await embed(b), await embed(blurred), await embed(noise)];
    const fd = (x: Float32Array[], y: Float32Array[]) => frechetDistance(fitGaussian(x), fitGaussian(y));
    const kid = (x: Float32Array[], y: Float32Array[]) => kernelDistance(x, y, new Rng(9), 20).mean;
    const table = {
      swd: [await swd(a, b), await swd(a, blurred), await swd(a, noise)],
      fd: [fd(ea, eb), fd(ea, eBlur), fd(ea, eNoise)],
      kid: [kid(ea, eb), kid(ea, eBlur), kid(ea, eNoise)],
    };
    console.log("real-vs-real floor, vs blurred real, vs noise:", JSON.stringify(table));
    for (const [name, [floor, blur, random]] of Object.entries(table)) {
      assert.ok(floor * 2 < blur && blur < random, `${name}: floor ${floor} << blurred ${blur} < noise ${random}`);
    }
    const detected = await features.detectionRate(a.slice(0, 100), 32);
    const detectedNoise = await features.detectionRate(noise.slice(0, 100), 32);
    console.log(`face detection rate: real ${detected}, noise ${detectedNoise}`);
    assert.ok(detected > 0.5 && detectedNoise < 0.1);
    // Batched on native: the same images found as face-api's detectSingleFace, one image at a time.
    // deno-lint-ignore no-explicit-any
    const api = (features as unknown as { api: any }).api;
    const options = new api.TinyFaceDetectorOptions({ inputSize: 160, scoreThreshold: 0.5 });
    let one = 0;
    for (const pixels of a.slice(0, 100)) {
      const framed = tf.tidy(() =>
        tf.pad(tf.image.resizeBilinear(tf.tensor3d(Float32Array.from(pixels), [32, 32, 3]), [96, 96]), [
          [32, 32],
          [32, 32],
          [0, 0],
        ], 128)
      );
      if (await api.detectSingleFace(framed, options)) one++;
      framed.dispose();
    }
    assert.equal(detected, one / 100);
  },
});

function boxBlur(image: Uint8Array, size: number, radius: number): Uint8Array {
  const out = new Uint8Array(image.length);
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      for (let c = 0; c < 3; c++) {
        let sum = 0, n = 0;
        for (let dy = -radius; dy <= radius; dy++) {
          for (let dx = -radius; dx <= radius; dx++) {
            const [sx, sy] = [Math.min(size - 1, Math.max(0, x + dx)), Math.min(size - 1, Math.max(0, y + dy))];
            sum += image[(sy * size + sx) * 3 + c];
            n++;
          }
        }
        out[(y * size + x) * 3 + c] = Math.round(sum / n);
      }
    }
  }
  return out;
}
