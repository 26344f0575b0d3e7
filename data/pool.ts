/**
 * A fixed pool of module Web Workers running data/worker.ts, one per core by default. Tasks are
 * handed out as workers free up; results come back as promises, so callers keep their own order.
 */
import type { WorkerRequest, WorkerResponse } from "./worker.ts";

type Pending = { resolve: (value: WorkerResponse) => void; reject: (error: Error) => void };

export class WorkerPool {
  private readonly workers: Worker[] = [];
  private readonly idle: Worker[] = [];
  private readonly queue: { request: WorkerRequest; transfer: Transferable[]; pending: Pending }[] = [];
  private readonly busy = new Map<Worker, Pending>();

  constructor(size = navigator.hardwareConcurrency || 2) {
    for (let i = 0; i < size; i++) {
      const worker = new Worker(new URL("./worker.ts", import.meta.url).href, { type: "module" });
      worker.onmessage = (event: MessageEvent<WorkerResponse>) => this.settle(worker, event.data);
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

  run(request: WorkerRequest, transfer: Transferable[] = []): Promise<WorkerResponse> {
    return new Promise((resolve, reject) => {
      this.queue.push({ request, transfer, pending: { resolve, reject } });
      this.dispatch();
    });
  }

  private dispatch(): void {
    while (this.idle.length && this.queue.length) {
      const worker = this.idle.pop()!;
      const { request, transfer, pending } = this.queue.shift()!;
      this.busy.set(worker, pending);
      worker.postMessage(request, transfer);
    }
  }

  private settle(worker: Worker, response: WorkerResponse): void {
    const pending = this.busy.get(worker)!;
    this.busy.delete(worker);
    this.idle.push(worker);
    pending.resolve(response);
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
 * Map `items` through the pool keeping at most `window` tasks in flight, handing results to
 * `consume` in input order: memory stays bounded however many items there are.
 */
export async function orderedMap<T>(
  pool: WorkerPool,
  items: Iterable<T>,
  toRequest: (item: T) => Promise<{ request: WorkerRequest; transfer?: Transferable[] }>,
  consume: (response: WorkerResponse, item: T) => Promise<void>,
  window = pool.size * 8,
): Promise<void> {
  const inFlight: { item: T; result: Promise<WorkerResponse> }[] = [];
  for (const item of items) {
    const { request, transfer } = await toRequest(item);
    inFlight.push({ item, result: pool.run(request, transfer) });
    if (inFlight.length >= window) {
      const next = inFlight.shift()!;
      await consume(await next.result, next.item);
    }
  }
  for (const next of inFlight) await consume(await next.result, next.item);
}
