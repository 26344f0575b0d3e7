/**
 * The lean WebGPU training step (issue 13): the fused batch norm agrees with cpu, and the calls per
 * step meet their goals. Counts are hardware-independent, so the software adapter is enough.
 */
import assert from "node:assert/strict";
import * as tf from "../models/tf.ts";
import { useBackend } from "../models/backend.ts";
import { batchNorm, type Pass } from "../models/layers.ts";
import { ParamStore } from "../models/params.ts";
import { Rng } from "../models/rng.ts";
import type { Activation } from "../models/backends/webgpu_batchnorm.ts";
import { STEP_CONFIG_32 } from "../bench/bench_config.ts";
import { countSteps, GOALS } from "./support/step_counts.ts";
import { backendMissing } from "./support/helpers.ts";
import { requires } from "./support/requires.ts";

tf.env().set("IS_TEST", true);

const missing = await backendMissing("webgpu");
const needsWebgpu = (name: string) => requires(name, missing);

/** y, dx, d gamma, d beta and the two new running statistics of one training batch norm. */
async function batchNormResults(backend: "cpu" | "webgpu", activation: Activation): Promise<number[][]> {
  await useBackend(backend);
  const store = new ParamStore("T", new Rng(1));
  const shape: [number, number, number, number] = [4, 3, 3, 8];
  const x = tf.tensor4d(Float32Array.from({ length: 288 }, (_, i) => Math.sin(i * 1.7) * 2 + 0.3), shape);
  const weights = tf.tensor4d(Float32Array.from({ length: 288 }, (_, i) => Math.cos(i * 0.9)), shape);
  const pass: Pass = { training: true, spectralNorm: false, updates: [] };
  batchNorm(store, "bn", x, { ...pass, training: false }, activation); // creates the variables
  const loss = (input: tf.Tensor) => batchNorm(store, "bn", input as tf.Tensor4D, pass, activation).mul(weights).sum();
  const { value, grads } = tf.variableGrads(() => loss(x) as tf.Scalar, [...store.trainable.values()]);
  const dx = tf.grad(loss)(x);
  const tensors = [value, dx, ...Object.values(grads), ...pass.updates.map(([, update]) => update)];
  const results = await Promise.all(tensors.map(async (tensor) => Array.from(await tensor.data())));
  tf.dispose([x, weights, ...tensors]);
  store.dispose();
  return results;
}

Deno.test({
  ...needsWebgpu(
    "webgpu's fused training batch norm + activation matches cpu's tf ops within 1e-5 (values, gradients, running stats)",
  ),
  fn: async () => {
    for (const activation of ["none", "relu", "leakyRelu"] as const) {
      const expected = await batchNormResults("cpu", activation);
      const actual = await batchNormResults("webgpu", activation);
      for (const [i, values] of expected.entries()) {
        const scale = Math.max(1, ...values.map(Math.abs));
        const error = Math.max(...values.map((value, j) => Math.abs(value - actual[i][j]))) / scale;
        assert.ok(error < 1e-5, `${activation}, result ${i}: ${error}`);
      }
    }
  },
});

Deno.test({
  ...needsWebgpu(
    "a webgpu training step meets the call goals: <= 3 uploads, <= 0.1 readbacks, dispatches half of before",
  ),
  fn: async () => {
    await useBackend("webgpu");
    // The seeds' layers at a small width and batch: the counts depend on the layers, not their sizes.
    const config = { ...STEP_CONFIG_32, model: { ...STEP_CONFIG_32.model, zSize: 16, gConvDim: 8, dConvDim: 8 } };
    const per = await countSteps(config, 4);
    assert.ok(per.uploads <= GOALS.uploads, `uploads ${per.uploads}`);
    assert.ok(per.readbacks <= GOALS.readbacks, `readbacks ${per.readbacks}`);
    assert.ok(per.dispatches <= GOALS.dispatches, `dispatches ${per.dispatches}`);
  },
});
