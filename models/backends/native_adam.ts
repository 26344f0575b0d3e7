/**
 * Adam on the native backend: one pass per weight over the wasm heap, updating the weight and
 * both moments in place, where the same update as tf ops took 13 wasm kernels per weight (about
 * 260 of a 32 px step's kernels). Every operation is a float32 one in the order of the tf-ops Adam
 * in models/gan.ts, so this gives its bits.
 *
 * The pass is a small WebAssembly function on tfjs's own memory (built below), four values at a
 * time with 128-bit SIMD: in JavaScript each value took ~7.5 ns (three divisions and a square root
 * in float64, rounded to float32 after each operation), 4 ms of a 32 px step and ~45 ms of a 64 px
 * one. WebAssembly's float32 operations round as IEEE 754 says and are never fused, and float64
 * followed by a rounding to float32 gives the same value for +, -, *, / and square root, so both
 * give the same bits; the last values of a weight whose size is not a multiple of four go through
 * the JavaScript pass, which the tests compare with the tf ops.
 */
import * as tf from "../tf.ts";
import type { AdamConstants } from "./webgpu_device.ts";
import { floats, heapOffset, markWritten, type WasmBackend } from "./wasm_heap.ts";

/** Adam passes run so far: what `deno task bench training` counts per step. */
export const adamCounts = { passes: 0 };

/** Give a variable its own data (a shared buffer would change its other owners). */
function own(backend: WasmBackend, variable: tf.Variable): void {
  if (backend.dataIdMap.get(variable.dataId).refCount === 1) return;
  const copy = variable.mul(1);
  variable.assign(copy);
  copy.dispose();
}

type SimdPass = (
  weights: number,
  firsts: number,
  seconds: number,
  gradients: number,
  bytes: number,
  ...constants: number[]
) => void;

const simdPasses = new WeakMap<WebAssembly.Memory, SimdPass>();

export function adamInHeap(
  triples: { variable: tf.Variable; m: tf.Variable; v: tf.Variable; grad: tf.Tensor }[],
  constants: AdamConstants,
): void {
  const backend = tf.backend() as unknown as WasmBackend;
  const f = Math.fround;
  const values = [
    constants.beta1,
    1 - constants.beta1,
    constants.beta2,
    1 - constants.beta2,
    constants.correction1,
    constants.correction2,
    constants.lr,
    1e-8,
  ].map(f);
  const memory = backend.wasm.asm.memory;
  let simd = simdPasses.get(memory);
  if (!simd) simdPasses.set(memory, simd = simdPass(memory));
  for (const { variable, m, v, grad } of triples) {
    // Offsets and views taken after every copy `own` may make (a copy can grow the heap and move it).
    for (const state of [variable, m, v]) own(backend, state);
    const tensors = [variable, m, v, grad];
    const size = tf.util.sizeFromShape(variable.shape);
    const inSimd = size - size % 4;
    if (inSimd) {
      simd(...tensors.map((t) => heapOffset(backend, t)) as [number, number, number, number], 4 * inSimd, ...values);
    }
    if (inSimd < size) {
      const [weights, firsts, seconds, gradients] = tensors.map((t) => floats(backend, t).subarray(inSimd));
      pass(weights, firsts, seconds, gradients, values);
    }
    for (const state of [variable, m, v]) markWritten(state);
    adamCounts.passes++;
  }
}

/** One weight's update in JavaScript; the constants are float32 values. */
function pass(
  weights: Float32Array,
  firsts: Float32Array,
  seconds: Float32Array,
  gradients: Float32Array,
  [beta1, keep1, beta2, keep2, correction1, correction2, lr, epsilon]: number[],
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

/**
 * The same update as `pass`, four values at a time, as a WebAssembly module that imports tfjs's
 * memory. Its text form:
 *
 *   (func (export "adam") (param $w $m $v $g $bytes i32) (param $beta1 $keep1 $beta2 $keep2
 *       $correction1 $correction2 $lr $epsilon f32) (local $at i32) (local $first $second $grad
 *       and one splat per constant v128)
 *     (each constant: local.set $C (f32x4.splat (local.get $c)))
 *     loop
 *       $grad   = load($g + $at)
 *       $first  = load($m + $at) * BETA1 + $grad * KEEP1
 *       $second = load($v + $at) * BETA2 + ($grad * $grad) * KEEP2
 *       store($m + $at, $first); store($v + $at, $second)
 *       store($w + $at, load($w + $at) - (($first / CORRECTION1) / (sqrt($second / CORRECTION2) + EPSILON)) * LR)
 *       $at += 16; br_if loop ($at < $bytes)
 *     end)
 */
function simdPass(memory: WebAssembly.Memory): SimdPass {
  const [w, m, v, g, bytes] = [0, 1, 2, 3, 4]; // parameters, then 8 float32 constants (5-12)
  const [at, first, second, grad] = [13, 14, 15, 16]; // locals, then the 8 splats (17-24)
  const splat = (constant: number) => 17 + constant;
  const [BETA1, KEEP1, BETA2, KEEP2, CORRECTION1, CORRECTION2, LR, EPSILON] = [0, 1, 2, 3, 4, 5, 6, 7].map(splat);
  const get = (local: number) => [0x20, local];
  const set = (local: number) => [0x21, local];
  const simd = (code: number) => code < 0x80 ? [0xfd, code] : [0xfd, code & 0x7f | 0x80, code >> 7];
  const address = (base: number) => [...get(base), ...get(at), 0x6a]; // i32.add
  const memarg = [2, 0]; // 4-byte alignment promised, no offset
  const load = (base: number) => [...address(base), ...simd(0x00), ...memarg];
  const store = simd(0x0b).concat(memarg);
  const [add, sub, mul, div, sqrt] = [0xe4, 0xe5, 0xe6, 0xe7, 0xe3].map(simd);
  // deno-fmt-ignore: one line per step of the text form above
  const body = [
    ...[0, 1, 2, 3, 4, 5, 6, 7].flatMap((c) => [...get(5 + c), ...simd(0x13), ...set(splat(c))]), // f32x4.splat
    0x03, 0x40, // loop
    ...load(g), ...set(grad),
    ...load(m), ...get(BETA1), ...mul, ...get(grad), ...get(KEEP1), ...mul, ...add, ...set(first),
    ...load(v), ...get(BETA2), ...mul, ...get(grad), ...get(grad), ...mul, ...get(KEEP2), ...mul, ...add, ...set(second),
    ...address(m), ...get(first), ...store,
    ...address(v), ...get(second), ...store,
    ...address(w), ...load(w),
    ...get(first), ...get(CORRECTION1), ...div,
    ...get(second), ...get(CORRECTION2), ...div, ...sqrt, ...get(EPSILON), ...add,
    ...div, ...get(LR), ...mul, ...sub, ...store,
    ...get(at), 0x41, 16, 0x6a, 0x22, at, ...get(bytes), 0x49, 0x0d, 0, // at += 16; br_if 0 (at <u bytes)
    0x0b, // end loop
    0x0b, // end function
  ];
  const code = [2, 1, 0x7f, 11, 0x7b, ...body]; // locals: 1 i32, 11 v128
  const section = (id: number, content: number[]) => [id, ...leb128(content.length), ...content];
  const name = (text: string) => [text.length, ...new TextEncoder().encode(text)];
  // deno-fmt-ignore: one line per section
  const bytesOfModule = new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 1, 0, 0, 0, // "\0asm", version 1
    ...section(1, [1, 0x60, 13, ...Array(5).fill(0x7f), ...Array(8).fill(0x7d), 0]), // (i32 x5, f32 x8) -> ()
    ...section(2, [1, ...name("env"), ...name("memory"), 2, 0, 0]), // imports tfjs's memory, min 0 pages
    ...section(3, [1, 0]),
    ...section(7, [1, ...name("adam"), 0, 0]),
    ...section(10, [1, ...leb128(code.length), ...code]),
  ]);
  const instance = new WebAssembly.Instance(new WebAssembly.Module(bytesOfModule), { env: { memory } });
  return instance.exports.adam as SimdPass;
}

/** An unsigned LEB128 number, as WebAssembly writes sizes. */
function leb128(value: number): number[] {
  const out: number[] = [];
  do {
    out.push(value & 0x7f | (value >= 0x80 ? 0x80 : 0));
    value >>>= 7;
  } while (value);
  return out;
}
