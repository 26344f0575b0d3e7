/**
 * The native (oneDNN) backend: its kernels against the cpu reference, its safety checks, and the
 * pipeline with it and without it. Ignored, with the reason, where libdnnl.so.2 cannot load.
 */
import assert from "node:assert/strict";
import * as tf from "../models/tf.ts";
import { useBackend } from "../models/backend.ts";
import { Arg, loadDnnl, VECTOR_BYTES } from "../models/backends/dnnl.ts";
import { heapOffset, type WasmBackend } from "../models/backends/wasm_heap.ts";
import { matMulInto } from "../models/backends/native.ts";
import { batchNorm, conv } from "../models/layers.ts";
import { ParamStore } from "../models/params.ts";
import { Rng } from "../models/rng.ts";
import type { Activation } from "../models/backends/webgpu_batchnorm.ts";
import { adamCounts } from "../models/backends/native_adam.ts";
import { Adam } from "../models/gan.ts";
import { backendMissing, facegan, readLock, tinyDataCopy } from "./support/helpers.ts";
import { requires } from "./support/requires.ts";

tf.env().set("IS_TEST", true);

const why = await backendMissing("native") ?? "";

/** A test that needs libdnnl: ignored with the reason in its name where the library cannot load. */
function nativeTest(name: string, fn: () => Promise<void> | void) {
  Deno.test({ ...requires(name, why), fn });
}

/** The same random inputs on every backend: drawn once, on cpu. */
async function inputs(shapes: number[][]): Promise<Float32Array[]> {
  await useBackend("cpu");
  return shapes.map((shape, i) => tf.randomNormal(shape, 0, 1, "float32", 100 + i).dataSync() as Float32Array);
}

async function maxRelativeErrors(
  shapes: number[][],
  compute: (xs: tf.Tensor[]) => tf.Tensor[],
): Promise<{ name: number; error: number }[]> {
  const values = await inputs(shapes);
  const on = async (backend: "cpu" | "native") => {
    await useBackend(backend);
    const outs = compute(values.map((v, i) => tf.tensor(v, shapes[i])));
    return await Promise.all(outs.map((t) => t.data() as Promise<Float32Array>));
  };
  const expected = await on("cpu");
  const actual = await on("native");
  return expected.map((e, name) => {
    assert.equal(actual[name].length, e.length, `output ${name} size`);
    let worst = 0, scale = 1e-30;
    for (let i = 0; i < e.length; i++) {
      worst = Math.max(worst, Math.abs(actual[name][i] - e[i]));
      scale = Math.max(scale, Math.abs(e[i]));
    }
    return { name, error: worst / scale };
  });
}

nativeTest(
  "native matrix products, reductions, elementwise functions, their gradients, copies and concats match cpu within 1e-4",
  async () => {
    const checks: [string, number[][], (xs: tf.Tensor[]) => tf.Tensor[]][] = [
      ["matMul", [[3, 5, 7], [3, 7, 6]], ([a, b]) => [tf.matMul(a, b)]],
      ["matMul transposed", [[3, 7, 5], [3, 6, 7]], ([a, b]) => [tf.matMul(a, b, true, true)]],
      [
        "matMul 2-D, dense layer shapes",
        [[64, 100], [100, 2048]],
        ([a, b]) => [tf.matMul(a, b), tf.matMul(b, b, true)],
      ],
      ["matMul broadcast batch", [[1, 4, 9], [5, 9, 3]], ([a, b]) => [tf.matMul(a, b)]],
      [
        "sum and mean over leading and trailing axes",
        [[16, 8, 8, 24]],
        ([x]) => [tf.sum(x, [0, 1, 2]), tf.mean(x, [0, 1, 2], true), tf.sum(x), tf.sum(x, [1, 2, 3]), tf.mean(x, 3)],
      ],
      ["sum over middle axes (wasm's kernel)", [[4, 5, 6, 7]], ([x]) => [tf.sum(x, [1, 2])]],
      [
        "tanh, sigmoid, relu, leaky relu",
        [[8, 16, 16, 3]],
        ([x]) => [tf.tanh(x), tf.sigmoid(x), tf.relu(x), tf.leakyRelu(x, 0.2)],
      ],
      [
        "relu and leaky relu and their gradients, below and above the size worth a oneDNN call",
        [[128, 1], [8, 16, 16, 3]],
        (xs) =>
          xs.flatMap((x) => [
            tf.relu(x),
            tf.leakyRelu(x, 0.2),
            tf.grad((v: tf.Tensor) => tf.relu(v).mul(v))(x),
            tf.grad((v: tf.Tensor) => tf.leakyRelu(v, 0.2).mul(v))(x),
          ]),
      ],
      [
        "bias adds over the last axis (oneDNN's broadcast; a loop under 16 channels), small and same-shape adds (wasm's)",
        [[8, 16, 16, 32], [32], [64, 128], [128], [50, 29, 3], [3], [997, 5], [5], [4, 3]],
        ([x, b, y, c, image, d, rows, e, small]) => [
          x.add(b),
          y.add(c),
          image.add(d),
          rows.add(e),
          small.add(d),
          x.add(x),
        ],
      ],
      [
        "matMul with an inner size of 1 (an outer product), either side transposed",
        [[128, 1], [2048, 1]],
        ([a, b]) => [tf.matMul(a, b, false, true), tf.matMul(a.reshape([1, 128]), b, true, true)],
      ],
      [
        "copies and casts",
        [[2, 3, 4]],
        ([x]) => [x.clone(), tf.cast(x, "float32"), tf.cast(tf.greater(x, 0), "float32")],
      ],
      [
        "concat of single channels (face-api's normalize), of wide rows, on the first axis",
        [[2, 5, 5, 1], [2, 5, 5, 1], [2, 5, 5, 2], [3, 70], [3, 100]],
        ([a, b, c, d, e]) => [tf.concat([a, b, c], 3), tf.concat([d, e], 1), tf.concat([a, b], 0)],
      ],
    ];
    for (const [what, shapes, compute] of checks) {
      for (const { name, error } of await maxRelativeErrors(shapes, compute)) {
        assert.ok(error < 1e-4, `${what}, output ${name}: relative error ${error}`);
      }
    }
  },
);

nativeTest(
  "native fused batch norm + (leaky) ReLU in training: output, running statistics and gradients match cpu within 1e-5",
  async () => {
    // [batch, height, width, channels] of the batch-norm layers of the 32 px network (conv dim 32)
    // and of the 64 and 128 px ones (conv dim 64): D's and G's, fewer images for the larger ones; and
    // one of the 64 px network at its batch of 128, large enough to run on every core (THREADED_VALUES).
    const shapes = [
      [128, 16, 16, 128],
      [32, 8, 8, 64],
      [32, 4, 4, 128],
      [16, 16, 16, 32],
      [8, 16, 16, 128],
      [8, 8, 8, 256],
      [4, 32, 32, 64],
      [4, 64, 64, 64],
      [4, 4, 4, 1024],
    ];
    for (const shape of shapes) {
      for (const activation of ["leakyRelu", "relu", "none"] as Activation[]) {
        // x scaled and shifted so that the statistics are not those of a standard normal.
        const errors = await maxRelativeErrors([shape, shape], ([x, weights]) => {
          const store = new ParamStore("T", new Rng(7));
          const pass = { training: true, spectralNorm: false, updates: [] as [tf.Variable, tf.Tensor][] };
          const input = tf.variable(x.mul(3).add(0.5), true);
          batchNorm(store, "bn", input as tf.Tensor4D, { ...pass, training: false }); // creates gamma, beta
          const gamma = store.trainable.get("T/bn/gamma")!;
          gamma.assign(tf.randomNormal(gamma.shape, 1, 0.5, "float32", 5));
          const beta = store.trainable.get("T/bn/beta")!;
          beta.assign(tf.randomNormal(beta.shape, 0, 0.5, "float32", 6));
          let y: tf.Tensor | null = null;
          const { grads } = tf.variableGrads(() => {
            y = tf.keep(batchNorm(store, "bn", input as tf.Tensor4D, pass, activation));
            return y.mul(weights).sum() as tf.Scalar;
          }, [input, gamma, beta]);
          return [
            y!,
            grads[input.name],
            grads[gamma.name],
            grads[beta.name],
            ...pass.updates.map(([, value]) => value),
          ];
        });
        for (const { name, error } of errors) {
          const what = ["y", "dx", "d gamma", "d beta", "running mean", "running var"][name];
          assert.ok(error < 1e-5, `${activation} ${shape}: ${what} relative error ${error}`);
        }
      }
    }
    // What was compared is the fused kernel, forward and backward, not the tf ops cpu runs.
    await useBackend("native");
    const store = new ParamStore("T", new Rng(7));
    const x = tf.variable(tf.randomNormal([4, 4, 4, 8]), true);
    const pass = { training: true, spectralNorm: false, updates: [] };
    const { kernelNames } = await tf.profile(() =>
      tf.variableGrads(() => batchNorm(store, "bn", x as tf.Tensor4D, pass).sum() as tf.Scalar, [x]).grads
    );
    assert.deepEqual(kernelNames.filter((name) => name.startsWith("FaceganNative")), [
      "FaceganNativeBatchNormTrain",
      "FaceganNativeBatchNormTrainGrad",
    ]);
  },
);

nativeTest(
  "native fused convolution + bias + leaky ReLU (D's layers without batch norm): output and gradients match cpu within 1e-5",
  async () => {
    // [batch, size, size, channels in] -> channels out: D's first layer at 32, 64 and 128 px, and a
    // later one (WGAN-GP's D has no batch norm).
    const layers: [number[], number][] = [[[8, 32, 32, 3], 32], [[2, 64, 64, 3], 64], [[1, 128, 128, 3], 64], [
      [8, 16, 16, 32],
      64,
    ]];
    for (const [shape, channels] of layers) {
      const outShape = [shape[0], shape[1] / 2, shape[2] / 2, channels];
      const errors = await maxRelativeErrors([shape, outShape], ([x, weights]) => {
        const store = new ParamStore("T", new Rng(7));
        const pass = { training: true, spectralNorm: false, updates: [] as [tf.Variable, tf.Tensor][] };
        const input = tf.variable(x, true);
        conv(store, "c", input as tf.Tensor4D, channels, pass, { leaky: true }); // creates w and b
        const bias = store.trainable.get("T/c/b")!;
        bias.assign(tf.randomNormal(bias.shape, 0, 0.1, "float32", 6));
        const filter = store.trainable.get("T/c/w")!;
        let y: tf.Tensor | null = null;
        const { grads } = tf.variableGrads(() => {
          y = tf.keep(conv(store, "c", input as tf.Tensor4D, channels, pass, { leaky: true }));
          return y.mul(weights).sum() as tf.Scalar;
        }, [input, filter, bias]);
        return [y!, grads[input.name], grads[filter.name], grads[bias.name]];
      });
      for (const { name, error } of errors) {
        assert.ok(
          error < 1e-5,
          `${shape} -> ${channels}: ${["y", "dx", "d filter", "d bias"][name]} relative error ${error}`,
        );
      }
    }
    // What was compared is the fused kernel, not the tf ops cpu runs.
    await useBackend("native");
    const store = new ParamStore("T", new Rng(7));
    const x = tf.variable(tf.randomNormal([2, 8, 8, 3]), true);
    const pass = { training: true, spectralNorm: false, updates: [] };
    const { kernelNames } = await tf.profile(() =>
      tf.variableGrads(() => conv(store, "c", x as tf.Tensor4D, 4, pass, { leaky: true }).sum() as tf.Scalar, [x]).grads
    );
    assert.ok(kernelNames.includes("FaceganNativeConvBiasLeakyRelu"), kernelNames.join());
    assert.ok(!kernelNames.includes("LeakyRelu") && !kernelNames.includes("Conv2D"), kernelNames.join());
  },
);

nativeTest(
  "native Adam, one pass per weight over the wasm heap (WebAssembly SIMD, JavaScript for the last values), gives the bits of the tf-ops Adam on wasm",
  async () => {
    const shapes = [[4, 4, 3, 32], [32], [100, 2048], [1], [7, 5]]; // [1] and [7, 5] end in the JavaScript pass
    const values = await inputs([...shapes, ...shapes]); // weights, then gradients
    const train = async (backend: "wasm" | "native") => {
      await useBackend(backend);
      // Made outside a tidy, so each weight's data is shared with its initial tensor at first.
      const weights = new Map(shapes.map((shape, i) => [`w${i}`, tf.variable(tf.tensor(values[i], shape))]));
      const adam = new Adam("adam", 0.9, 0.999);
      adam.init(weights);
      for (let step = 1; step <= 3; step++) {
        const grads = Object.fromEntries(
          [...weights.values()].map((w, i) => [w.name, tf.tensor(values[shapes.length + i], shapes[i]).mul(step)]),
        );
        adam.apply(weights, grads, 2e-4 * step);
      }
      return [...weights.values(), ...adam.moments.values()].map((v) => Array.from(v.dataSync()));
    };
    const expected = await train("wasm");
    const passes = adamCounts.passes;
    const actual = await train("native");
    assert.equal(adamCounts.passes - passes, 3 * shapes.length, "one pass per weight and step");
    actual.forEach((values, tensor) => {
      const differ = values.findIndex((value, i) => !Object.is(value, expected[tensor][i]));
      assert.equal(differ, -1, `tensor ${tensor}, value ${differ}: ${values[differ]} vs ${expected[tensor][differ]}`);
    });
  },
);

nativeTest(
  "matMulInto (evaluate's projections) gives tf.matMul's bits, into a shared buffer, on native only",
  async () => {
    const [a, b] = await inputs([[48, 512], [300, 48]]);
    await useBackend("native");
    const into = new Float32Array(new SharedArrayBuffer(512 * 300 * 4));
    assert.ok(matMulInto(a, [48, 512], b, [300, 48], true, true, into));
    const expected = tf.matMul(tf.tensor2d(a, [48, 512]), tf.tensor2d(b, [300, 48]), true, true).dataSync();
    assert.deepEqual(into, Float32Array.from(expected));
    await useBackend("wasm");
    assert.equal(matMulInto(a, [48, 512], b, [300, 48], true, true, into), false);
  },
);

nativeTest(
  "on native every tensor starts on a 64-byte boundary of the wasm heap, and disposing it frees its block",
  async () => {
    await useBackend("native");
    const backend = tf.backend() as unknown as WasmBackend;
    const heapBytes = () => backend.wasm.HEAPU8.byteLength;
    const before = heapBytes();
    // 100 rounds of ~8 MB: a block not given back would grow the heap by ~800 MB.
    for (let round = 0; round < 100; round++) {
      const tensors = [tf.zeros([1]), tf.tensor([1, 2, 3]), tf.zeros([1027]), tf.fill([2 << 20], round)];
      for (const tensor of tensors) assert.equal(heapOffset(backend, tensor) % VECTOR_BYTES, 0, `${tensor.shape}`);
      assert.equal((await tensors[3].data())[5], round);
      tf.dispose(tensors);
    }
    assert.ok(heapBytes() <= before + (64 << 20), `the heap grew from ${before} to ${heapBytes()} bytes`);
  },
);

nativeTest("a buffer of the wrong size is refused with an error before oneDNN sees it", () => {
  const dnnl = loadDnnl();
  const product = dnnl.matmul(
    dnnl.strided([1, 2, 3], [6, 3, 1]),
    dnnl.strided([1, 3, 4], [12, 4, 1]),
    dnnl.strided([1, 2, 4], [8, 4, 1]),
  );
  const buffer = (floats: number) => {
    const bytes = new Uint8Array(floats * 4);
    return { pointer: Deno.UnsafePointer.of(bytes), bytes: bytes.byteLength };
  };
  assert.throws(
    () => product.run({ [Arg.src]: buffer(6), [Arg.weights]: buffer(12), [Arg.dst]: buffer(2) }),
    /argument 17 has 8 bytes, the primitive needs 32/,
  );
  product.run({ [Arg.src]: buffer(6), [Arg.weights]: buffer(12), [Arg.dst]: buffer(8) });
});

nativeTest(
  "train on native: the lock records oneDNN, its ISA and threads, and verify train is reproducible",
  async () => {
    const root = await tinyDataCopy();
    const tiny = ["--params", "params/tiny.json", "--set", "train.backend=native"];
    const run = await facegan(root, ["run", "--until", "train", ...tiny]);
    assert.equal(run.code, 0, run.stderr);
    const environment = (await readLock(root)).stages.train.environment;
    assert.equal(environment.backend, "native");
    assert.match(environment.backend_detail, /^oneDNN 2\.\d+\.\d+ (avx|sse)\S*, \d+ threads/);
    assert.ok(environment.threads >= 1);
    const verify = await facegan(root, ["verify", "train", ...tiny]);
    assert.equal(verify.code, 0, verify.stdout + verify.stderr);
    assert.match(verify.stdout, /train\s+reproducible/);
  },
);

Deno.test("without libdnnl: auto trains and evaluates on wasm and says why; backend=native is one line, exit 2", async () => {
  const root = await tinyDataCopy();
  const tiny = ["--params", "params/tiny.json"];
  const missing = { FACEGAN_DNNL_PATH: "/nonexistent/libdnnl.so.2" };
  const auto = await facegan(
    root,
    ["run", ...tiny, "--set", "train.backend=auto", "--set", "eval.backend=auto"],
    missing,
  );
  assert.equal(auto.code, 0, auto.stderr);
  assert.match(auto.stderr, /train: .*\/nonexistent\/libdnnl\.so\.2 could not be loaded .*apt-get install libdnnl2/);
  assert.match(auto.stderr, /evaluate: .*could not be loaded.*evaluating on wasm/);
  const { stages } = await readLock(root);
  assert.equal(stages.train.environment.backend, "wasm");
  assert.equal(stages.evaluate.environment.backend, "wasm");
  const named = await facegan(root, ["run", ...tiny, "--until", "train", "--set", "train.backend=native"], missing);
  assert.equal(named.code, 2, named.stderr);
  const lines = named.stderr.trim().split("\n").filter((line) => line.startsWith("error"));
  assert.equal(lines.length, 1, named.stderr);
  assert.match(lines[0], /backend 'native': .*could not be loaded.*train\.backend=auto/);
  assert.doesNotMatch(named.stderr, /^\s+at /m, "no stack trace");
});
