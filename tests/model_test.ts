/** Models and the train stage: custom wasm kernels, backends agreeing, deterministic resumable training. */
import assert from "node:assert/strict";
import { join } from "node:path";
import * as tf from "../models/tf.ts";
import { useBackend } from "../models/backend.ts";
import { Gan, type GanConfig } from "../models/gan.ts";
import { STEP_CONFIG_32 } from "../bench/bench_config.ts";
import { backendMissing, exists, facegan, partialDirs, readLock, tinyDataCopy, waitFor } from "./support/helpers.ts";
import { requires } from "./support/requires.ts";

tf.env().set("IS_TEST", true);

/** max |a - b| / max |b|: the error relative to the values' scale. */
function relativeError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let worst = 0, scale = 0;
  for (let i = 0; i < b.length; i++) {
    worst = Math.max(worst, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return worst / scale;
}

async function onBackend<T>(name: "cpu" | "native" | "wasm" | "webgpu", compute: () => Promise<T> | T): Promise<T> {
  await useBackend(name);
  return await compute();
}

Deno.test("the native, wasm and webgpu convolutions and their gradients match the cpu backend within 1e-4 on random inputs", async (t) => {
  type Shape4 = [number, number, number, number];
  const cases: { x: Shape4; w: Shape4; stride: number; pad: "same" | "valid" | number }[] = [
    { x: [4, 32, 32, 3], w: [4, 4, 3, 8], stride: 2, pad: "same" },
    { x: [4, 16, 16, 8], w: [4, 4, 8, 16], stride: 2, pad: 1 },
    { x: [3, 15, 15, 5], w: [4, 4, 5, 7], stride: 2, pad: "valid" },
    { x: [2, 8, 8, 6], w: [3, 3, 6, 4], stride: 1, pad: "same" },
    // Layers of the 64 and 128 px networks (conv dim 64), one image each: D's first and last convolutions.
    { x: [1, 64, 64, 3], w: [4, 4, 3, 64], stride: 2, pad: "same" },
    { x: [1, 128, 128, 3], w: [4, 4, 3, 64], stride: 2, pad: "same" },
    { x: [1, 8, 8, 256], w: [4, 4, 256, 512], stride: 2, pad: "same" },
    // Outputs of at most 4x4 from 256 channels over 32 images, which native computes as one matrix
    // product (native_columns.ts): uneven padding (none before, 1 after), none, a stride of 1, and
    // an odd input with "same" padding (2 after), which stays a direct convolution.
    { x: [32, 8, 8, 256], w: [3, 3, 256, 8], stride: 2, pad: "same" },
    { x: [32, 5, 5, 256], w: [2, 2, 256, 8], stride: 1, pad: "valid" },
    { x: [32, 7, 7, 256], w: [4, 4, 256, 8], stride: 2, pad: "same" },
  ];
  const gradientsOn = async (
    backend: "cpu" | "native" | "wasm" | "webgpu",
    { x: xShape, w: wShape, stride, pad }: typeof cases[0],
  ) => {
    await useBackend("cpu");
    const xValues = tf.randomNormal(xShape, 0, 1, "float32", 1).dataSync();
    const wValues = tf.randomNormal(wShape, 0, 1, "float32", 2).dataSync();
    return await onBackend(backend, async () => {
      const x = tf.tensor4d(xValues, xShape);
      const w = tf.tensor4d(wValues, wShape);
      const loss = (a: tf.Tensor, b: tf.Tensor) =>
        tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, stride, pad).square().sum();
      const [dx, dw] = tf.grads(loss)([x, w]);
      const y = tf.conv2d(x, w, stride, pad);
      // conv2dTranspose's forward pass is the input gradient: check it too.
      const outShape = y.shape;
      const transposed = tf.conv2dTranspose(
        tf.randomNormal(outShape, 0, 1, "float32", 3) as tf.Tensor4D,
        w,
        xShape,
        stride,
        pad,
      );
      // data(), not dataSync(): WebGPU in Deno cannot read synchronously.
      return [
        Array.from(await dx.data()),
        Array.from(await dw.data()),
        Array.from(await transposed.data()),
        Array.from(await y.data()),
      ];
    });
  };
  const expectations = new Map<typeof cases[0], number[][]>();
  for (const backend of ["native", "wasm", "webgpu"] as const) {
    await t.step(onlyWhereAvailable(backend, backend, async () => {
      for (const convolution of cases) {
        if (!expectations.has(convolution)) expectations.set(convolution, await gradientsOn("cpu", convolution));
        const expected = expectations.get(convolution)!;
        const actual = await gradientsOn(backend, convolution);
        for (let i = 0; i < 4; i++) {
          const error = relativeError(actual[i], expected[i]);
          assert.ok(
            error < 1e-4,
            `${backend} ${["dx", "dW", "conv2dTranspose", "y"][i]} ${JSON.stringify(convolution)}: ${error}`,
          );
        }
      }
    }));
  }
});

Deno.test("Sum and Mean gradients (ones made on the device) give the closed-form values on every backend", async (t) => {
  const shape: [number, number, number, number] = [2, 2, 4, 3];
  const x = Float32Array.from({ length: 48 }, (_, i) => Math.sin(i));
  const channelWeights = [1, -2, 0.5];
  const pixelWeights = Float32Array.from({ length: 2 * 3 }, (_, i) => i - 2.5);
  for (const backend of ["cpu", "wasm", "webgpu"] as const) {
    await t.step(onlyWhereAvailable(backend, backend, async () => {
      await useBackend(backend);
      const input = tf.tensor4d(x, shape);
      const meanGrad = tf.grad((v: tf.Tensor) => tf.mean(v, [0, 1, 2]).mul(channelWeights).sum())(input);
      const sumGrad = tf.grad((v: tf.Tensor) => tf.sum(v, [1, 2]).mul(tf.tensor2d(pixelWeights, [2, 3])).sum())(input);
      const mean = await meanGrad.data();
      const sum = await sumGrad.data();
      for (let i = 0; i < 48; i++) {
        const [b, c] = [Math.floor(i / 24), i % 3];
        assert.equal(mean[i], channelWeights[c] / 16, `d mean / dx[${i}]`);
        assert.equal(sum[i], pixelWeights[b * 3 + c], `d sum / dx[${i}]`);
      }
      tf.dispose([input, meanGrad, sumGrad]);
    }));
  }
});

// The seeds' network, shrunk so a step takes milliseconds.
const STEP_CONFIG: GanConfig = {
  ...STEP_CONFIG_32,
  model: { ...STEP_CONFIG_32.model, zSize: 16, gConvDim: 8, dConvDim: 8 },
  totalSteps: 10,
  seed: 3,
};

async function twoSteps(config: GanConfig) {
  const gan = new Gan(config);
  const real = tf.tensor4d(REAL_BATCH, [8, 32, 32, 3]);
  const losses = [await gan.trainStep(real), await gan.trainStep(real)];
  const weights: number[] = [];
  for (const [, variable] of gan.stateTensors()) weights.push(...await variable.data());
  gan.dispose();
  real.dispose();
  return { losses, weights };
}

/** Why each optional backend cannot start here (webgpu: no Vulkan driver; native: no libdnnl2), or null. */
const MISSING = { native: await backendMissing("native"), webgpu: await backendMissing("webgpu") };

/** A step that needs `backend`: reported as ignored, with the reason, where it cannot start. */
function onlyWhereAvailable(backend: "cpu" | "native" | "wasm" | "webgpu", name: string, fn: () => Promise<void>) {
  const why = backend === "webgpu" || backend === "native" ? MISSING[backend] : null;
  return { ...requires(name, why), fn };
}

// The same real batch on every backend.
const REAL_BATCH = Float32Array.from({ length: 8 * 32 * 32 * 3 }, (_, i) => Math.sin(i * 12.9898) * 0.9);

Deno.test("training steps on wasm, native and webgpu match cpu (weights within 1e-4 relative)", async (t) => {
  const expected = await onBackend("cpu", () => twoSteps(STEP_CONFIG));
  const wasm = await onBackend("wasm", () => twoSteps(STEP_CONFIG));
  assert.ok(
    relativeError(wasm.weights, expected.weights) < 1e-4,
    `wasm: ${relativeError(wasm.weights, expected.weights)}`,
  );
  await t.step(onlyWhereAvailable("native", "native (oneDNN)", async () => {
    await useBackend("native");
    const native = await twoSteps(STEP_CONFIG);
    const error = relativeError(native.weights, expected.weights);
    assert.ok(error < 1e-4, `native: ${error}`);
  }));
  await t.step(onlyWhereAvailable("webgpu", "webgpu (a software adapter is enough)", async () => {
    await useBackend("webgpu");
    const webgpu = await twoSteps(STEP_CONFIG);
    const error = relativeError(webgpu.weights, expected.weights);
    assert.ok(error < 1e-3, `webgpu: ${error}`);
  }));
});

Deno.test("train.ema: G's weights averaged after each G step (warmed up), sampled from, and in the checkpoint's state", async () => {
  await useBackend("cpu");
  const values = async (gan: Gan) =>
    await Promise.all([...gan.generator.store.trainable.values()].map((v) => v.data()));
  const real = tf.tensor4d(REAL_BATCH, [8, 32, 32, 3]);
  const gan = new Gan({ ...STEP_CONFIG, emaDecay: 0.9 });
  let expected = await values(gan); // the average starts at G's initial weights
  for (let step = 0; step < 3; step++) {
    await gan.trainStep(real);
    const decay = Math.min(0.9, (1 + step) / (10 + step));
    const weights = await values(gan);
    expected = expected.map((average, i) =>
      average.map((a, j) =>
        Math.fround(Math.fround(a * Math.fround(decay)) + Math.fround(weights[i][j] * Math.fround(1 - decay)))
      )
    );
  }
  const averaged = gan.samplingGenerator();
  assert.notEqual(averaged, gan.generator);
  const got = await Promise.all([...averaged.store.trainable.values()].map((v) => v.data()));
  assert.deepEqual(got.map((a) => Array.from(a)), expected.map((a) => Array.from(a)));
  // The averaged weights are what samples: G's own weights give other images.
  const z = tf.randomNormal([2, STEP_CONFIG.model.zSize], 0, 1, "float32", 5) as tf.Tensor2D;
  const [fromGan, fromAverage, fromG] = [gan.sample(z), averaged.sample(z), gan.generator.sample(z)];
  assert.deepEqual(await fromGan.data(), await fromAverage.data());
  assert.notDeepEqual(await fromGan.data(), await fromG.data());
  // A checkpoint stores the average, so a resumed run goes on from it.
  const names = gan.stateTensors().map(([name]) => name);
  assert.equal(names.filter((name) => name.startsWith("ema/")).length, averaged.store.trainable.size);
  const off = new Gan(STEP_CONFIG);
  assert.equal(off.samplingGenerator(), off.generator);
  assert.ok(!off.stateTensors().some(([name]) => name.startsWith("ema/")), "off: the checkpoint is as before");
  tf.dispose([z, fromGan, fromAverage, fromG, real]);
  gan.dispose();
  off.dispose();
});

Deno.test("train.ema: a run restored from its state after step 2 ends step 3 byte-identical to one that went on", async () => {
  await useBackend("wasm");
  const config = { ...STEP_CONFIG, emaDecay: 0.99 };
  const real = tf.tensor4d(REAL_BATCH, [8, 32, 32, 3]);
  const state = async (gan: Gan) =>
    await Promise.all(gan.stateTensors().map(async ([, v]) => Array.from(await v.data())));
  const straight = new Gan(config);
  for (let step = 0; step < 3; step++) await straight.trainStep(real);
  const first = new Gan(config);
  for (let step = 0; step < 2; step++) await first.trainStep(real);
  // what a checkpoint holds: every state tensor by name, and the counters
  const saved = new Map(first.stateTensors().map(([name, v]) => [name, v.clone()]));
  const counters = first.counters();
  first.dispose();
  const resumed = new Gan(config);
  for (const [name, variable] of resumed.stateTensors()) variable.assign(saved.get(name)!);
  resumed.restoreCounters(counters);
  await resumed.trainStep(real);
  assert.deepEqual(await state(resumed), await state(straight));
  tf.dispose([real, ...saved.values()]);
  straight.dispose();
  resumed.dispose();
});

Deno.test("every option of the model family trains two steps on wasm with finite losses, and on native alike", async (t) => {
  const variants: Partial<GanConfig>[] = [
    { loss: "lsgan" },
    { loss: "hinge", flipLabels: 0.5 },
    { loss: "wgan-gp" },
    { featureMatching: true, lrDecay: "linear" },
  ];
  const models: Partial<GanConfig["model"]>[] = [
    { spectralNorm: "both" },
    { selfAttention: true },
    { dDropout: 0.3, minibatchStd: true },
    { residual: true },
  ];
  const configs = variants.map((variant, i) => {
    const config = { ...STEP_CONFIG, ...variant, model: { ...STEP_CONFIG.model, ...models[i] } };
    if (config.loss === "wgan-gp") config.model.dBatchNorm = false;
    return config;
  });
  await useBackend("wasm");
  const onWasm: Awaited<ReturnType<typeof twoSteps>>[] = [];
  for (const config of configs) onWasm.push(await twoSteps(config));
  onWasm.forEach(({ losses }, i) => {
    for (const step of losses) {
      for (const value of Object.values(step)) {
        assert.ok(Number.isFinite(value), `${JSON.stringify(variants[i])}: ${value}`);
      }
    }
  });
  // WGAN-GP's penalty differentiates D's input gradient: on native a second derivative through
  // its ReLU-gradient kernel (models/gradients.ts), which once had none.
  await t.step(onlyWhereAvailable("native", "native: the same weights within 1e-4 relative", async () => {
    await useBackend("native");
    for (let i = 0; i < configs.length; i++) {
      const error = relativeError((await twoSteps(configs[i])).weights, onWasm[i].weights);
      assert.ok(error < 1e-4, `${JSON.stringify(variants[i])}: native ${error}`);
    }
  }));
});

/**
 * Train tiny on `backend` twice (verify), and once killed after epoch 1 and resumed: all three
 * identical. `epochs`: enough that the run is still going when the test sees epoch 1's checkpoint.
 */
async function repeatAndResume(backend: "wasm" | "native", epochs: number) {
  const tiny = ["--params", "params/tiny.json", "--set", `train.epochs=${epochs}`, "--set", `train.backend=${backend}`];
  const uninterrupted = await tinyDataCopy();
  const first = await facegan(uninterrupted, ["run", "--until", "train", ...tiny]);
  assert.equal(first.code, 0, first.stderr);
  const expected = (await readLock(uninterrupted)).stages.train.output;
  const again = await facegan(uninterrupted, ["verify", "train", ...tiny]);
  assert.equal(again.code, 0, again.stdout + again.stderr);
  assert.match(again.stdout, /train\s+reproducible/);

  const killed = await tinyDataCopy();
  const engine = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "main.ts", "run", "--until", "train", ...tiny],
    cwd: killed,
    stdout: "null",
    stderr: "null",
  }).spawn();
  const checkpointOne = async () => {
    for (const dir of await partialDirs(killed)) {
      if (await exists(join(dir, "out", "checkpoints", "epoch-0001"))) return true;
    }
    return false;
  };
  await waitFor(checkpointOne, 120_000, "the checkpoint of epoch 1");
  engine.kill("SIGKILL");
  await engine.status;
  // The copy's data stages came cached from the template: the killed run may have written no lock at all.
  if (await exists(join(killed, "pipeline.lock.json"))) {
    assert.equal((await readLock(killed)).stages.train, undefined, "nothing promoted for the killed train");
  }
  const resumed = await facegan(killed, ["run", "--until", "train", ...tiny]);
  assert.equal(resumed.code, 0, resumed.stderr);
  assert.match(resumed.stderr, /\[resuming\]/);
  assert.match(resumed.stderr, /resuming after epoch \d+/);
  assert.doesNotMatch(resumed.stderr, new RegExp(`resuming after epoch ${epochs}\\b`), "killed before the end");
  assert.equal((await readLock(killed)).stages.train.output, expected, "resumed run ends byte-identical");
}

Deno.test("a tiny training run is byte-identical when repeated and when killed after epoch 1 and resumed", async (t) => {
  await t.step("wasm", () => repeatAndResume("wasm", 3));
  // A tiny epoch takes ~0.1 s on native: more of them, or the run ends before the kill.
  await t.step(onlyWhereAvailable("native", "native", () => repeatAndResume("native", 30)));
});
