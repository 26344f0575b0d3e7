/**
 * Named tensors <-> bytes: float32 little-endian values back to back, described by a table of
 * {name, shape, offset, length}. Pure (no files), used for checkpoints and the final generator.
 */
import * as tf from "./tf.ts";

export interface TensorEntry {
  name: string;
  shape: number[];
  /** offset and length in float32 elements */
  offset: number;
  length: number;
}

export async function serializeTensors(
  named: [string, tf.Tensor][],
): Promise<{ entries: TensorEntry[]; bytes: Uint8Array }> {
  const entries: TensorEntry[] = [];
  let offset = 0;
  for (const [name, tensor] of named) {
    entries.push({ name, shape: tensor.shape, offset, length: tensor.size });
    offset += tensor.size;
  }
  const values = new Float32Array(offset);
  for (let i = 0; i < named.length; i++) values.set(await named[i][1].data() as Float32Array, entries[i].offset);
  return { entries, bytes: new Uint8Array(values.buffer) };
}

/** Assign stored values to variables by name; every variable must be present with its shape. */
export function assignTensors(variables: [string, tf.Variable][], entries: TensorEntry[], bytes: Uint8Array): void {
  const values = new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
  const byName = new Map(entries.map((entry) => [entry.name, entry]));
  for (const [name, variable] of variables) {
    const entry = byName.get(name);
    if (!entry) throw new Error(`stored tensors lack ${name}`);
    if (entry.shape.join("x") !== variable.shape.join("x")) {
      throw new Error(`stored ${name} has shape ${entry.shape}, the model has ${variable.shape}`);
    }
    tf.tidy(() => variable.assign(tf.tensor(values.subarray(entry.offset, entry.offset + entry.length), entry.shape)));
  }
}

/** Images in [-1, 1] (NHWC float) -> uint8 RGB, rounding to nearest. */
export async function toUint8Images(images: tf.Tensor4D): Promise<Uint8Array> {
  const values = await images.data();
  const out = new Uint8Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = Math.round(Math.min(1, Math.max(-1, values[i])) * 127.5 + 127.5);
  return out;
}

/** uint8 RGB images -> float32 in [-1, 1], the scale the networks see. */
export function fromUint8Images(pixels: Uint8Array, count: number, size: number): tf.Tensor4D {
  const values = new Float32Array(pixels.length);
  for (let i = 0; i < pixels.length; i++) values[i] = pixels[i] / 127.5 - 1;
  return tf.tensor4d(values, [count, size, size, 3]);
}
