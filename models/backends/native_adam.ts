/**
 * Adam on the native backend: one pass per weight over the wasm heap, updating the weight and
 * both moments in place, where the same update as tf ops took 13 wasm kernels per weight (about
 * 260 of a 32 px step's kernels). Every operation is rounded to float32 in the order of the tf-ops
 * Adam in models/gan.ts, so this gives its bits. It runs on the main thread: the seeds' 32 px
 * network has ~0.5 M weights, a pass over them a few milliseconds (see `deno task bench training`).
 */
import * as tf from "../tf.ts";
import type { AdamConstants } from "./webgpu_device.ts";
import { floats, type WasmBackend } from "./wasm_heap.ts";

/** Adam passes run so far: what `deno task bench training` counts per step. */
export const adamCounts = { passes: 0 };

/** Give a variable its own data (a shared buffer would change its other owners). */
function own(backend: WasmBackend, variable: tf.Variable): void {
  if (backend.dataIdMap.get(variable.dataId).refCount === 1) return;
  const copy = variable.mul(1);
  variable.assign(copy);
  copy.dispose();
}

export function adamInHeap(
  triples: { variable: tf.Variable; m: tf.Variable; v: tf.Variable; grad: tf.Tensor }[],
  constants: AdamConstants,
): void {
  const backend = tf.backend() as unknown as WasmBackend;
  const f = Math.fround;
  const [beta1, keep1, beta2, keep2] = [constants.beta1, 1 - constants.beta1, constants.beta2, 1 - constants.beta2]
    .map(f);
  const [correction1, correction2, lr, epsilon] = [constants.correction1, constants.correction2, constants.lr, 1e-8]
    .map(f);
  for (const { variable, m, v, grad } of triples) {
    // Views taken after every copy `own` may make (a copy can grow the heap and move it).
    for (const state of [variable, m, v]) own(backend, state);
    const [weights, firsts, seconds, gradients] = [variable, m, v, grad].map((t) => floats(backend, t));
    pass(weights, firsts, seconds, gradients, beta1, keep1, beta2, keep2, correction1, correction2, lr, epsilon);
    adamCounts.passes++;
  }
}

/** One weight's update; the constants are float32 values (a function of its own, so V8 compiles the loop tight). */
function pass(
  weights: Float32Array,
  firsts: Float32Array,
  seconds: Float32Array,
  gradients: Float32Array,
  beta1: number,
  keep1: number,
  beta2: number,
  keep2: number,
  correction1: number,
  correction2: number,
  lr: number,
  epsilon: number,
): void {
  const f = Math.fround;
  for (let i = 0; i < weights.length; i++) {
    const g = gradients[i];
    const first = f(f(firsts[i] * beta1) + f(g * keep1));
    const second = f(f(seconds[i] * beta2) + f(f(g * g) * keep2));
    firsts[i] = first;
    seconds[i] = second;
    weights[i] = weights[i] - f(f(f(first / correction1) / f(f(Math.sqrt(f(second / correction2))) + epsilon)) * lr);
  }
}
