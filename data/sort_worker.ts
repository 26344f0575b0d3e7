/// <reference lib="deno.worker" />
/** A thread of SortWorkers (sort_workers.ts): sorts its share of the runs of a shared buffer in place. */
import { sortRuns } from "../models/radix_sort.ts";

export interface SortRequest {
  id: number;
  buffer: SharedArrayBuffer;
  /** values per run */
  length: number;
  /** runs `from` (inclusive) to `to` (exclusive) are this thread's */
  from: number;
  to: number;
}

self.onmessage = ({ data }: MessageEvent<SortRequest>) => {
  sortRuns(new Float32Array(data.buffer), data.length, data.from, data.to);
  self.postMessage(data.id);
};
