/**
 * Counting what a WebGPU device is asked to do, by wrapping the WebGPU prototypes (no GPU timing,
 * so the counts are the same on a software adapter as on a real GPU): how progress on per-step
 * overhead is tracked on machines without one.
 * - uploads: CPU->GPU tensor data, i.e. buffers written through a mapped range and unmapped (how
 *   tfjs-webgpu uploads a tensor made from JS values). The small uniform block tfjs writes with
 *   `queue.writeBuffer` for every dispatch is counted apart (`uniformWrites`), not as an upload.
 * - readbacks: `mapAsync` for reading (every `data()` of a tensor on the device).
 * - submits: `queue.submit`; dispatches: `dispatchWorkgroups`.
 */

export interface WebgpuCounts {
  uploads: number;
  uniformWrites: number;
  readbacks: number;
  submits: number;
  dispatches: number;
}

const counts: WebgpuCounts = { uploads: 0, uniformWrites: 0, readbacks: 0, submits: 0, dispatches: 0 };
let installed = false;

/** Wrap `method` of `proto` so that each call first runs `count(this, args)`. */
function observe<T extends object>(
  proto: T,
  method: keyof T & string,
  count: (self: T, args: unknown[]) => void,
): void {
  const original = proto[method] as (...args: unknown[]) => unknown;
  Object.defineProperty(proto, method, {
    configurable: true,
    writable: true,
    value: function (this: T, ...args: unknown[]) {
      count(this, args);
      return original.apply(this, args);
    },
  });
}

/** Start counting (once per process; harmless where WebGPU is missing). */
export function countWebgpuCalls(): void {
  if (installed || typeof GPUQueue === "undefined") return;
  installed = true;
  observe(GPUBuffer.prototype, "unmap", (buffer) => {
    // A buffer mapped for reading is unmapped after a readback; every other unmap ends a CPU write.
    if (!(buffer.usage & GPUBufferUsage.MAP_READ) && buffer.mapState === "mapped") counts.uploads++;
  });
  observe(GPUBuffer.prototype, "mapAsync", (_, [mode]) => {
    if ((mode as number) & GPUMapMode.READ) counts.readbacks++;
  });
  observe(GPUQueue.prototype, "writeBuffer", () => counts.uniformWrites++);
  observe(GPUQueue.prototype, "submit", () => counts.submits++);
  observe(GPUComputePassEncoder.prototype, "dispatchWorkgroups", () => counts.dispatches++);
}

/** The counts so far (a copy): subtract two snapshots to count a stretch of work. */
export function webgpuCounts(): WebgpuCounts {
  return { ...counts };
}

/** The line `deno task bench` prints, from per-step averages. */
export function perStepLine(per: WebgpuCounts): string {
  const round = (value: number) => Number(value.toFixed(2));
  return `webgpu per step: uploads ${round(per.uploads)}, readbacks ${round(per.readbacks)}, submits ${
    round(per.submits)
  }, dispatches ${round(per.dispatches)}`;
}
