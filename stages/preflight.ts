/**
 * What this machine lacks, said before any stage runs (the engine's Project.preflight): without
 * oneDNN's libdnnl.so.2 the native backend cannot start, so train (unless a GPU backend starts) and
 * evaluate run on one-core wasm, several times slower, and where the lock's outputs were made on
 * the native backend, this machine's cannot be the same bytes. Only a library probe (dlopen, then
 * close): no tensor code is loaded, so `status` stays quick.
 */
import type { FlatParams } from "../pipeline/core/params.ts";
import type { Environment, Preflight } from "../pipeline/core/types.ts";
import { DnnlUnavailable, locateDnnl } from "../models/backends/dnnl.ts";

/** The stages that can run on the native backend, and the param that picks their backend. */
const BACKEND_PARAMS: Record<string, string> = { train: "train.backend", evaluate: "eval.backend" };

/**
 * The default params' train on 2 cores: 3 epochs in 14.8 s with oneDNN (lightly loaded), 611 s for
 * 30 on wasm (the issue's quiet machine); 2 epochs, the two taking turns on a loaded machine:
 * 29.4 and 33.9 s against 119.3 and 115.1 s (docs/backends.md, "A plain machine, and what libdnnl2 adds").
 */
const WASM_SLOWDOWN = "about 4x slower on 2 cores";

export function preflight(params: FlatParams, locked: Record<string, Environment>): Preflight[] {
  // A stage told to use `native` fails with its own line instead; only `auto` falls back.
  const stages = Object.keys(BACKEND_PARAMS).filter((stage) => params[BACKEND_PARAMS[stage]] === "auto");
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
