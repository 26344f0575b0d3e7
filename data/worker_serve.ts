/// <reference lib="deno.worker" />
/**
 * The protocol between a WorkerPool and its workers: a batch of requests in, one response per
 * request back, pixel buffers transferred (not copied). Each job has its own worker module
 * (decode_worker.ts, synthetic_worker.ts), so a stage's key holds only the code
 * of the job it runs.
 */

export type WorkerResponse =
  | { ok: true; pixels: Uint8Array; width: number; height: number; sourceWidth: number; sourceHeight: number }
  /** `fatal`: the whole job must stop (e.g. input changed under it), not just skip this item */
  | { ok: false; error: string; fatal?: boolean };

/** Answer every batch the pool sends with `handle` applied to each request, in order. */
export function serve<Request>(handle: (request: Request) => Promise<WorkerResponse> | WorkerResponse): void {
  self.onmessage = async (event: MessageEvent<Request[]>) => {
    const responses: WorkerResponse[] = [];
    for (const request of event.data) responses.push(await handle(request));
    const transfer = responses.flatMap((response) => response.ok ? [response.pixels.buffer as ArrayBuffer] : []);
    self.postMessage(responses, { transfer });
  };
}
