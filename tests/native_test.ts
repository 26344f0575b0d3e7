/**
 * The native (oneDNN) backend: its kernels against the cpu reference, its safety checks, and the
 * pipeline with it and without it. Ignored, with the reason, where libdnnl.so.2 cannot load.
 */
import assert from "node:assert/strict";
import * as tf from "../models/tf.ts";
import { useBackend } from "../models/backend.ts";
import { loadDnnl } from "../models/backends/native.ts";
import { Arg } from "../models/backends/dnnl.ts";
import { backendMissing, facegan, projectCopy, readLock } from "./helpers.ts";

tf.env().set("IS_TEST", true);

const why = await backendMissing("native") ?? "";

/** A test that needs libdnnl: ignored with the reason in its name where the library cannot load. */
function nativeTest(name: string, fn: () => Promise<void> | void) {
  Deno.test({ name: why ? `${name} (ignored: ${why})` : name, ignore: why !== "", fn });
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
  "native matrix products, reductions, elementwise functions, their gradients and copies match cpu within 1e-4",
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
        "copies and casts",
        [[2, 3, 4]],
        ([x]) => [x.clone(), tf.cast(x, "float32"), tf.cast(tf.greater(x, 0), "float32")],
      ],
    ];
    for (const [what, shapes, compute] of checks) {
      for (const { name, error } of await maxRelativeErrors(shapes, compute)) {
        assert.ok(error < 1e-4, `${what}, output ${name}: relative error ${error}`);
      }
    }
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
    const root = await projectCopy();
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
  const root = await projectCopy();
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
