/**
 * A fixed pool of module Web Workers running one job's worker module (given by the caller, so
 * the code hash of the caller's stage names it), one per core by default. Tasks go out in
 * batches (a message costs about as much as decoding a small JPEG) as workers free up; results
 * come back as promises, so callers keep their own order.
 */
import type { WorkerResponse } from "./worker_serve.ts";

type Pending = { resolve: (value: WorkerResponse[]) => void; reject: (error: Error) => void };

export class WorkerPool<WorkerRequest> {
  private readonly workers: Worker[] = [];
  private readonly idle: Worker[] = [];
  private readonly queue: { requests: WorkerRequest[]; transfer: Transferable[]; pending: Pending }[] = [];
  private readonly busy = new Map<Worker, Pending>();

  /** `module`: the worker module, e.g. `new URL("./decode_worker.ts", import.meta.url)` */
  constructor(module: URL, size = navigator.hardwareConcurrency || 2) {
    for (let i = 0; i < size; i++) {
      const worker = new Worker(module.href, { type: "module" });
      worker.onmessage = (event: MessageEvent<WorkerResponse[]>) => this.settle(worker, event.data);
      worker.onerror = (event) => {
        event.preventDefault();
        this.fail(worker, new Error(`data worker crashed: ${event.message}`));
      };
      this.workers.push(worker);
      this.idle.push(worker);
    }
  }

  get size(): number {
    return this.workers.length;
  }

  /** Run a batch of requests on one worker; the responses come back in the same order. */
  run(requests: WorkerRequest[], transfer: Transferable[] = []): Promise<WorkerResponse[]> {
    return new Promise((resolve, reject) => {
      this.queue.push({ requests, transfer, pending: { resolve, reject } });
      this.dispatch();
    });
  }

  private dispatch(): void {
    while (this.idle.length && this.queue.length) {
      const worker = this.idle.pop()!;
      const { requests, transfer, pending } = this.queue.shift()!;
      this.busy.set(worker, pending);
      worker.postMessage(requests, transfer);
    }
  }

  private settle(worker: Worker, responses: WorkerResponse[]): void {
    const pending = this.busy.get(worker)!;
    this.busy.delete(worker);
    this.idle.push(worker);
    pending.resolve(responses);
    this.dispatch();
  }

  private fail(worker: Worker, error: Error): void {
    this.busy.get(worker)?.reject(error);
    this.busy.delete(worker);
  }

  close(): void {
    for (const worker of this.workers) worker.terminate();
  }
}

/**
 * Map `items` through the pool in batches of `batchSize`, keeping at most two batches per worker
 * in flight, handing results to `consume` in input order: memory stays bounded however many
 * items there are.
 */
export async function orderedMap<T, WorkerRequest>(
  pool: WorkerPool<WorkerRequest>,
  items: Iterable<T> | AsyncIterable<T>,
  toRequest: (item: T) => Promise<{ request: WorkerRequest; transfer?: Transferable[] }>,
  consume: (response: WorkerResponse, item: T) => Promise<void>,
  batchSize = 16,
): Promise<void> {
  const inFlight: { items: T[]; responses: Promise<WorkerResponse[]> }[] = [];
  let batch: { item: T; request: WorkerRequest; transfer: Transferable[] }[] = [];
  const send = () => {
    const requests = batch.map(({ request }) => request);
    const transfer = batch.flatMap(({ transfer }) => transfer);
    inFlight.push({ items: batch.map(({ item }) => item), responses: pool.run(requests, transfer) });
    batch = [];
  };
  const consumeOldest = async () => {
    const { items, responses } = inFlight.shift()!;
    const results = await responses;
    for (let i = 0; i < items.length; i++) await consume(results[i], items[i]);
  };
  for await (const item of items) {
    const { request, transfer = [] } = await toRequest(item);
    batch.push({ item, request, transfer });
    if (batch.length < batchSize) continue;
    send();
    if (inFlight.length >= pool.size * 2) await consumeOldest();
  }
  if (batch.length) send();
  while (inFlight.length) await consumeOldest();
}
