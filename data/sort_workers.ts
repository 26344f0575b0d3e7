/**
 * Worker threads that sort runs of float32 values for the sliced Wasserstein distance (a
 * RunSorter): the values are copied into shared memory, each thread sorts its share of the runs
 * there in place, and they are copied back. Sorting is exact, so the result is the same as on one
 * thread. Shared buffers are kept for reuse: a fresh 16 MB one costs about 40 ms to allocate and
 * touch here, as much as the sort itself.
 */
import type { RunSorter } from "../models/radix_sort.ts";
import type { SortRequest } from "./sort_worker.ts";

type Pending = { resolve: () => void; reject: (error: Error) => void };

export class SortWorkers {
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

  readonly sort: RunSorter = async (values, length) => {
    const index = this.spare.findIndex((buffer) => buffer.byteLength === values.byteLength);
    const buffer = index >= 0 ? this.spare.splice(index, 1)[0] : new SharedArrayBuffer(values.byteLength);
    const shared = new Float32Array(buffer);
    shared.set(values);
    const runs = values.length / length;
    const share = Math.ceil(runs / this.workers.length);
    await Promise.all(this.workers.map((worker, i) =>
      new Promise<void>((resolve, reject) => {
        const id = this.nextId++;
        this.pending.set(id, { resolve, reject });
        const request: SortRequest = {
          id,
          buffer,
          length,
          from: Math.min(runs, i * share),
          to: Math.min(runs, (i + 1) * share),
        };
        worker.postMessage(request);
      })
    ));
    values.set(shared);
    this.spare.push(buffer);
    return values;
  };

  close(): void {
    for (const worker of this.workers) worker.terminate();
  }
}
