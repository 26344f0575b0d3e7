/**
 * The tfjs-wasm heap as the native backend's kernels see it: where a tensor's bytes are, as a
 * pointer for oneDNN or a float32 view for JavaScript, taken anew at every call (the heap may have
 * grown, and so moved, since the last one).
 */
import * as tf from "../tf.ts";
import { VECTOR_BYTES } from "./dnnl.ts";

type TensorInfo = tf.TensorInfo;

/** The parts of tfjs-wasm's backend class the native kernels use. */
export interface WasmBackend {
  wasm: {
    HEAPU8: Uint8Array;
    asm: { memory: WebAssembly.Memory; malloc(bytes: number): number; free(offset: number): void };
    _malloc(bytes: number): number;
    _free(offset: number): void;
  };
  dataIdMap: { get(dataId: object): { memoryOffset: number; refCount: number } };
  makeOutput(shape: number[], dtype: "float32"): TensorInfo;
  incRef(dataId: object): void;
}

/** The wasm modules whose allocations `alignTensors` already wraps. */
const aligning = new WeakSet<object>();

/**
 * From now on, every tensor tfjs-wasm allocates starts on a 64-byte boundary of the heap (dnnl.ts'
 * VECTOR_BYTES). Its malloc gives 8 bytes, so each of oneDNN's vector loads and stores touched two
 * cache lines: the backward convolutions of the 64 px step took 20-30% longer, the whole step ~7%
 * (1,290-1,340 ms against 1,215). Installed once per process and never removed: a block it
 * handed out must be freed through it; one allocated before is freed as it was.
 */
export function alignTensors(backend: WasmBackend): void {
  const { wasm } = backend;
  if (aligning.has(wasm)) return;
  aligning.add(wasm);
  // The module's own exports: its `_malloc` and `_free` are stubs that replace themselves with these
  // on their first call, which would drop the wrappers below.
  const { malloc, free } = wasm.asm;
  const starts = new Map<number, number>(); // aligned offset -> the block malloc gave
  wasm._malloc = (bytes: number) => {
    const start = malloc(bytes + VECTOR_BYTES - 1) >>> 0; // tfjs' own `>>> 0`: offsets above 2 GB
    if (start === 0) return 0; // out of memory: tfjs reports it
    const aligned = Math.ceil(start / VECTOR_BYTES) * VECTOR_BYTES;
    if (aligned !== start) starts.set(aligned, start);
    return aligned;
  };
  wasm._free = (offset: number) => {
    const start = starts.get(offset);
    starts.delete(offset);
    free(start ?? offset);
  };
}

/** Where a float32 tensor's bytes are in the wasm heap (checked against the heap's size). */
function place(backend: WasmBackend, tensor: TensorInfo) {
  const offset = backend.dataIdMap.get(tensor.dataId).memoryOffset;
  const bytes = tf.util.sizeFromShape(tensor.shape) * 4;
  if (tensor.dtype !== "float32") throw new Error(`native kernels take float32 tensors, got ${tensor.dtype}`);
  if (offset + bytes > backend.wasm.HEAPU8.byteLength) throw new Error("native kernel: tensor outside the wasm heap");
  return { offset, bytes };
}

/** Where a float32 tensor's bytes start in the wasm heap, for code that runs in the heap itself. */
export function heapOffset(backend: WasmBackend, tensor: TensorInfo): number {
  return place(backend, tensor).offset;
}

/** A pointer to a tensor's bytes, taken now: the heap may have grown (and moved) since the last call. */
export function region(backend: WasmBackend, tensor: TensorInfo) {
  const { offset, bytes } = place(backend, tensor);
  return { pointer: Deno.UnsafePointer.offset(Deno.UnsafePointer.of(backend.wasm.HEAPU8)!, offset), bytes };
}

/** A float32 view of a tensor in the wasm heap, for this call only. */
export function floats(backend: WasmBackend, tensor: TensorInfo): Float32Array {
  const { offset, bytes } = place(backend, tensor);
  return new Float32Array(backend.wasm.HEAPU8.buffer, offset, bytes / 4);
}

/**
 * A float32 tensor's values copied into `into`: straight from the heap where the backend in use
 * keeps tensors there (wasm, native), else through dataSync(), which makes a fresh array (on a VM,
 * its page faults can cost more than computing a large tensor).
 */
export function readInto(tensor: tf.Tensor, into: Float32Array): void {
  const backend = tf.backend() as unknown as Partial<WasmBackend>;
  const heap = backend.wasm?.HEAPU8 && backend.dataIdMap;
  into.set(heap ? floats(backend as WasmBackend, tensor) : tensor.dataSync() as Float32Array);
}

/**
 * Writes into a tensor's existing data (Adam updates weights in place; everything else writes new
 * outputs): a count per data id, so that what was computed from a tensor's values can be kept
 * until they change.
 */
const inPlaceWrites = new WeakMap<object, number>();

export function markWritten(tensor: TensorInfo): void {
  inPlaceWrites.set(tensor.dataId, (inPlaceWrites.get(tensor.dataId) ?? 0) + 1);
}

export function writesTo(tensor: TensorInfo): number {
  return inPlaceWrites.get(tensor.dataId) ?? 0;
}

/** A pointer to a buffer outside the heap (scratch space, small per-channel parameters). */
export function bufferRegion(buffer: Uint8Array | Float32Array) {
  return { pointer: Deno.UnsafePointer.of(buffer), bytes: buffer.byteLength };
}
