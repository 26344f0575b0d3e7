/**
 * Training checkpoints (docs/file-formats.md, "Checkpoint format"): `checkpoints/epoch-NNNN/state.bin`, every
 * tensor of the training state back to back (float32 little-endian), and `checkpoint.json`: the
 * format, the epoch, the counters (global step, Adam step counts, the RNG state) and the tensor
 * table. A checkpoint dir is written under a temporary name and renamed. Written and read by train.
 */
import { join } from "node:path";
import { sha256 } from "../pipeline/core/hash.ts";
import { removeIfExists, writeFileAtomic } from "../pipeline/storage/fsutil.ts";
import type { Gan } from "../models/gan.ts";
import type { RngState } from "../models/rng.ts";
import { assignTensors, serializeTensors, type TensorEntry } from "../models/serialize.ts";
import { epochName } from "./training_log.ts";

interface CheckpointFile {
  format: "facegan-checkpoint-1";
  epoch: number;
  counters: { step: number; adamSteps: [number, number]; rng: RngState };
  weights_sha256: string;
  tensors: TensorEntry[];
}

export async function writeCheckpoint(dir: string, epoch: number, gan: Gan): Promise<void> {
  const { entries, bytes } = await serializeTensors(gan.stateTensors());
  const checkpoint: CheckpointFile = {
    format: "facegan-checkpoint-1",
    epoch,
    counters: gan.counters(),
    weights_sha256: sha256(bytes),
    tensors: entries,
  };
  const final = join(dir, epochName(epoch));
  const temp = join(dir, `.${epochName(epoch)}.tmp`);
  await removeIfExists(temp);
  await writeFileAtomic(join(temp, "state.bin"), bytes);
  await writeFileAtomic(join(temp, "checkpoint.json"), JSON.stringify(checkpoint, null, 1));
  await Deno.rename(temp, final);
}

/** Keep the newest `keep` checkpoints (0 = all): resuming needs only the last. */
export async function pruneCheckpoints(dir: string, epoch: number, keep: number): Promise<void> {
  if (keep > 0 && epoch - keep >= 1) await removeIfExists(join(dir, epochName(epoch - keep)));
}

/** The newest checkpoint whose weights match their recorded hash, loaded into `gan`; its epoch (0: none). */
export async function resumeFrom(dir: string, gan: Gan, log: (line: string) => void): Promise<number> {
  const names: string[] = [];
  try {
    for await (const entry of Deno.readDir(dir)) {
      if (entry.name.startsWith(".")) await removeIfExists(join(dir, entry.name)); // half-written
      else if (/^epoch-\d{4}$/.test(entry.name)) names.push(entry.name);
    }
  } catch {
    return 0;
  }
  for (const name of names.sort().reverse()) {
    try {
      const checkpoint: CheckpointFile = JSON.parse(await Deno.readTextFile(join(dir, name, "checkpoint.json")));
      const bytes = await Deno.readFile(join(dir, name, "state.bin"));
      if (sha256(bytes) !== checkpoint.weights_sha256) throw new Error("weights do not match their hash");
      assignTensors(gan.stateTensors(), checkpoint.tensors, bytes);
      gan.restoreCounters(checkpoint.counters);
      log(`resuming after epoch ${checkpoint.epoch} (step ${checkpoint.counters.step})`);
      return checkpoint.epoch;
    } catch (error) {
      // Removed (renamed aside first: a dot name is swept as half-written), else re-writing this
      // epoch would find it in the way and every later run would stop there.
      const aside = join(dir, `.${name}.unusable`);
      await Deno.rename(join(dir, name), aside);
      await removeIfExists(aside);
      log(`checkpoint ${name} unusable (${(error as Error).message}): removed; trying an older one`);
    }
  }
  return 0;
}
