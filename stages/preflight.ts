/**
 * What this machine lacks, said before any stage runs (the engine's Project.preflight): without
 * oneDNN's libdnnl.so.2 the native backend cannot start, so train (unless a GPU backend starts) and
 * evaluate run on one-core wasm, several times slower, and where the lock's outputs were made on
 * the native backend, this machine's cannot be the same bytes. Only a library probe (dlopen, then
 * close): no tensor code is loaded, so `status` stays quick.
 */
import type { FlatParams } from "../pipeline/params.ts";
import type { Environment, Preflight } from "../pipeline/types.ts";
import { DnnlUnavailable, locateDnnl } from "../models/backends/dnnl.ts";

/** The stages that can run on the native backend, and the param that picks their backend. */
const BACKEND_PARAMS: Record<string, string> = { train: "train.backend", evaluate: "eval.backend" };

/**
 * Measured on the default params (3,000 synthetic faces, 32 px) on a 2-core machine: a train epoch
 * took about 5 s with oneDNN on both cores and about 20 s on wasm (see README, "Set up on a fresh
 * machine").
 */
const WASM_SLOWDOWN = "about 4x slower on 2 cores";

export function preflight(params: FlatParams, locked: Record<string, Environment>): Preflight[] {
  const stages = Object.keys(BACKEND_PARAMS).filter((stage) =>
    ["auto", "native"].includes(String(params[BACKEND_PARAMS[stage]]))
  );
  if (!stages.length) return [];
  try {
    locateDnnl();
    return [];
  } catch (error) {
    if (!(error instanceof DnnlUnavailable)) throw error;
    const differs: Record<string, string> = {};
    for (const stage of stages) {
      if (locked[stage]?.backend === "native") {
        differs[stage] = "the lock's was made on the native backend (oneDNN), which cannot start here";
      }
    }
    return [{
      stages,
      notice: `note: ${stages.join(" and ")} will run on one-core wasm (${WASM_SLOWDOWN}) instead of the ` +
        `native backend: ${error.message}`,
      differs,
    }];
  }
}
