/**
 * Worker threads that sort runs of float32 values for the sliced Wasserstein distance, and measure
 * them against a reference's sorted runs (a RunSorter). The values live in shared buffers that this
 * hands out, so the caller fills them and each thread sorts its share of the runs in place, with no
 * copy either way. Sorting is exact and each run's sum is taken in order, so the results are the
 * same as on one thread. Buffers are reused: on this VM a fresh 16 MB one costs about 40 ms of page
 * faults, as much as its sort.
 */
import type { RunSorter } from "../models/radix_sort.ts";
import type { SortRequest } from "./sort_worker.ts";

type Pending = { resolve: () => void; reject: (error: Error) => void };

export class SortWorkers implements RunSorter {
  private readonly workers: Worker[] = [];
  private readonly pending = new Map<number, Pending>();
  private nextId = 0;
  private readonly spare: SharedArrayBuffer[] = [];

  constructor(size = navigator.hardwareConcurrency || 2) {
    for (let i = 0; i < size; i++) {
      const worker = new Worker(new URL("./sort_worker.ts", import.meta.url).href, { type: "module" });
      worker.onmessage = ({ data: id }: MessageEvent<number>) => {
        this.pending.get(id)?.resolve();
        this.pending.delete(id);
      };
      worker.onerror = (event) => {
        event.preventDefault();
        for (const { reject } of this.pending.values()) reject(new Error(`sort worker crashed: ${event.message}`));
        this.pending.clear();
      };
      this.workers.push(worker);
    }
  }

  buffer(size: number): Float32Array {
    const index = this.spare.findIndex((buffer) => buffer.byteLength === size * 4);
    return new Float32Array(index >= 0 ? this.spare.splice(index, 1)[0] : new SharedArrayBuffer(size * 4));
  }

  async sort(values: Float32Array, length: number): Promise<Float32Array> {
    await this.run(shared(values), length, {});
    return values;
  }

  async distances(values: Float32Array, reference: Float32Array, length: number): Promise<Float64Array> {
    const buffer = shared(values);
    const out = new SharedArrayBuffer(values.length / length * 8);
    await this.run(buffer, length, { reference: shared(reference), out });
    this.spare.push(buffer);
    return new Float64Array(out);
  }

  /** Each thread's share of the runs. */
  private async run(values: SharedArrayBuffer, length: number, measure: Pick<SortRequest, "reference" | "out">) {
    const runs = values.byteLength / 4 / length;
    const share = Math.ceil(runs / this.workers.length);
    await Promise.all(this.workers.map((worker, i) =>
      new Promise<void>((resolve, reject) => {
        const id = this.nextId++;
        this.pending.set(id, { resolve, reject });
        const request: SortRequest = {
          id,
          values,
          length,
          from: Math.min(runs, i * share),
          to: Math.min(runs, (i + 1) * share),
          ...measure,
        };
        worker.postMessage(request);
      })
    ));
  }

  close(): void {
    for (const worker of this.workers) worker.terminate();
  }
}

/** The whole shared buffer behind `values`, which must be one buffer() handed out. */
function shared(values: Float32Array): SharedArrayBuffer {
  const whole = values.byteOffset === 0 && values.byteLength === values.buffer.byteLength;
  if (whole && values.buffer instanceof SharedArrayBuffer) return values.buffer;
  throw new Error("SortWorkers: sort or measure only the buffers it hands out (buffer())");
}
