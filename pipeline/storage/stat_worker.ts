/// <reference lib="deno.worker" />
/**
 * A worker thread of statFolderFiles (storage/file_stat.ts): claims chunks of the folder's files
 * and stats them into the shared array, then says so. A file it could not stat keeps its NaN size
 * and is stat'ed again by the calling thread.
 */
import { statChunks, type StatShare } from "./file_stat.ts";

self.onmessage = ({ data }: MessageEvent<StatShare>) => {
  statChunks(data);
  self.postMessage(null);
};
