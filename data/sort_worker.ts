/// <reference lib="deno.worker" />
/**
 * A thread of SortWorkers (sort_workers.ts): sorts its share of the runs of a shared buffer in
 * place and, when given a reference and an output, measures each of those runs against it.
 */
import { runDistances, sortRuns } from "../models/radix_sort.ts";

export interface SortRequest {
  id: number;
  values: SharedArrayBuffer;
  /** values per run */
  length: number;
  /** runs `from` (inclusive) to `to` (exclusive) are this thread's */
  from: number;
  to: number;
  /** with `out`: the sorted reference runs to measure against, and a float64 per run for the sums */
  reference?: SharedArrayBuffer;
  out?: SharedArrayBuffer;
}

self.onmessage = ({ data }: MessageEvent<SortRequest>) => {
  const values = new Float32Array(data.values);
  sortRuns(values, data.length, data.from, data.to);
  if (data.reference && data.out) {
    runDistances(values, new Float32Array(data.reference), data.length, data.from, data.to, new Float64Array(data.out));
  }
  self.postMessage(data.id);
};
