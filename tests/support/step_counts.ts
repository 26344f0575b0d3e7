/**
 * WebGPU calls per training step (uploads, readbacks, submits, dispatches), counted the way the
 * train stage runs: a fresh real batch uploaded every step, losses read every LOSS_READ_EVERY steps.
 * Used by `deno task bench` (the seeds' network) and the webgpu tests (a shrunk one).
 */
import { Gan, type GanConfig, LOSS_READ_EVERY } from "../../models/gan.ts";
import { fromUint8Images } from "../../models/serialize.ts";
import { countWebgpuCalls, type WebgpuCounts, webgpuCounts } from "../../models/backends/webgpu_counts.ts";

/** Goals of issue 13: the real batch and the two z batches; dispatches half of the 953 before it. */
export const GOALS = { uploads: 3, readbacks: 0.1, dispatches: 476 };

/** Per-step averages over 2 x LOSS_READ_EVERY steps after a warm-up step; webgpu must be the backend. */
export async function countSteps(config: GanConfig, batch: number): Promise<WebgpuCounts> {
  countWebgpuCalls();
  const gan = new Gan(config);
  const size = config.model.imageSize;
  const pixels = Uint8Array.from({ length: batch * size * size * 3 }, (_, i) => (i * 37) % 256);
  const step = () => {
    const real = fromUint8Images(pixels, batch, size);
    gan.queueStep(real);
    real.dispose();
  };
  step();
  await gan.readLosses(); // warm-up: shaders compiled, buffers in the pool
  const before = webgpuCounts();
  const steps = 2 * LOSS_READ_EVERY;
  for (let i = 0; i < steps; i++) {
    step();
    if (gan.pendingSteps >= LOSS_READ_EVERY) await gan.readLosses();
  }
  await gan.readLosses();
  const after = webgpuCounts();
  gan.dispose();
  const per = {} as WebgpuCounts;
  for (const key of Object.keys(after) as (keyof WebgpuCounts)[]) per[key] = (after[key] - before[key]) / steps;
  return per;
}
