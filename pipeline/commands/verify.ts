import { join } from "node:path";
import { terminal } from "../ui/terminal.ts";
import { removeIfExists } from "../storage/fsutil.ts";
import { stageByName } from "../core/dag.ts";
import { UserError } from "../core/errors.ts";
import { executeStage, type Executor } from "../core/execute.ts";
import { Interrupts } from "../core/interrupts.ts";
import { hostFileName, isAlive } from "../storage/lease.ts";
import { stageIdentity, stageKey } from "../core/key.ts";
import type { LockStage } from "../core/lock.ts";
import { changes } from "../core/plan.ts";
import { verifyLine, words } from "../ui/words.ts";
import { Workspace } from "../storage/workspace.ts";

/**
 * `verify --cache`: re-hash every stored artifact. `verify [STAGE...]`: recompute each stage
 * from the inputs the lock names, into a scratch cache (the real one is only read), and compare
 * its output hash with the lock, the recomputation run by `executor` (e.g. on the cluster; the
 * comparison is made here). Exit 1 on any difference.
 */
export async function verifyCommand(
  workspace: Workspace,
  names: string[],
  rehashCache: boolean,
  executor: Executor,
  log: (line: string) => void,
): Promise<number> {
  return rehashCache ? await verifyCache(workspace, log) : await verifyStages(workspace, names, executor, log);
}

async function verifyCache(workspace: Workspace, log: (line: string) => void): Promise<number> {
  using interrupts = new Interrupts();
  const keys = (await workspace.cache.entries()).filter((entry) => !entry.partial).map((entry) => entry.key);
  let corrupt = 0;
  for (const [done, key] of keys.entries()) {
    if (interrupts.signal.aborted) {
      await workspace.statCache.save();
      log(`interrupted: verify --cache stopped after ${done} of ${keys.length} entries (${corrupt} corrupt so far)`);
      return interrupts.exitCode;
    }
    const { problems } = await workspace.cache.check(key, true);
    if (problems.length) {
      corrupt++;
      console.log(`CORRUPT  ${key}  ${problems.join(", ")}`);
    }
  }
  await workspace.statCache.save();
  console.log(
    `${keys.length} cache entries re-hashed, ${corrupt} corrupt${corrupt ? " (the next run recomputes them)" : ""}`,
  );
  return corrupt ? 1 : 0;
}

async function verifyStages(
  workspace: Workspace,
  names: string[],
  executor: Executor,
  log: (line: string) => void,
): Promise<number> {
  const lock = await workspace.readLock();
  if (!lock) throw new UserError("no pipeline.lock.json: run `deno task pipeline` first, then verify");
  for (const name of names) stageByName(workspace.dag, name);
  const stages = workspace.dag.filter((stage) => !names.length || names.includes(stage.name));
  const scratchDir = join(workspace.outputsDir, `${scratchPrefix()}${Deno.pid}`);
  // Ctrl-C stops the stage being recomputed; the scratch cache goes either way (a second one: at once).
  using interrupts = new Interrupts(() => {
    try {
      Deno.removeSync(scratchDir, { recursive: true });
    } catch { /* not made yet */ }
  });
  let differs = 0;
  try {
    for (const stage of stages) {
      if (interrupts.signal.aborted) break;
      const recorded = lock.stages[stage.name];
      if (!recorded?.output) {
        console.log(verifyLine(stage.name, { kind: "not-checked", why: "no output recorded in pipeline.lock.json" }));
        continue;
      }
      // Recompute with the params the lock recorded, so a changed params.json cannot mask the check.
      const scratch = await Workspace.open({
        root: workspace.root,
        dag: workspace.dag,
        params: { ...workspace.params, ...recorded.params },
        paramsFile: workspace.paramsFile,
        cacheDir: scratchDir,
      });
      const identity = stageIdentity((await scratch.facts())[stage.name], recorded.inputs);
      const key = stageKey(stage.name, identity);
      if (key !== recorded.key) {
        const why = words(changes(recorded, identity), terminal.verbose) || "key differs";
        console.log(
          verifyLine(stage.name, { kind: "not-checked", why: `the lock is stale (${why}); run the pipeline first` }),
        );
        continue;
      }
      const inputDirs = await inputsFromCache(workspace, lock.stages, stage.deps);
      if (typeof inputDirs === "string") {
        console.log(verifyLine(stage.name, { kind: "not-checked", why: inputDirs }));
        continue;
      }
      log(`verifying ${stage.name}: recomputing into ${workspace.relative(scratchDir)}`);
      const context = {
        root: workspace.root,
        outputsDir: workspace.outputsDir,
        cache: scratch.cache,
        executor,
        signal: interrupts.signal,
        output: terminal.stageOutput(stage.name),
        started: () => {},
      };
      const external = scratch.externalData(stage.name);
      const ran = await executeStage(context, { stage, key, identity, external }, inputDirs).catch((error) => {
        if (interrupts.signal.aborted) return null;
        throw error;
      }).finally(() => terminal.stageEnded(stage.name));
      if (!ran) break;
      const { record } = ran;
      if (record.output === recorded.output) {
        console.log(verifyLine(stage.name, { kind: "reproducible", output: recorded.output }));
      } else {
        differs++;
        const files = await differingFiles(workspace, scratch, recorded.key);
        const environment = environmentDifferences(recorded, record);
        console.log(verifyLine(stage.name, { kind: "differs", files, environment: environment || null }));
      }
    }
  } finally {
    await removeIfExists(scratchDir);
  }
  if (interrupts.signal.aborted) {
    log(
      `interrupted: verify stopped; the cache and the lock are untouched, its scratch ${
        workspace.relative(scratchDir)
      } removed`,
    );
    return interrupts.exitCode;
  }
  return differs ? 1 : 0;
}

/** verify's scratch caches on this host: `outputs/verify-<host>-<pid>`, removed when verify ends (Ctrl-C too). */
function scratchPrefix(): string {
  return `verify-${hostFileName()}-`;
}

/** The scratch caches of verify runs on this host that were killed (SIGKILL, a crash): gc removes them. */
export async function orphanedScratches(outputsDir: string): Promise<string[]> {
  const found: string[] = [];
  try {
    for await (const entry of Deno.readDir(outputsDir)) {
      const pid = entry.name.startsWith(scratchPrefix()) ? Number(entry.name.slice(scratchPrefix().length)) : NaN;
      if (entry.isDirectory && Number.isInteger(pid) && !isAlive(pid)) found.push(join(outputsDir, entry.name));
    }
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  return found;
}

/** Output dirs of the deps as the lock names them, or why they are not available. */
async function inputsFromCache(workspace: Workspace, locked: Record<string, LockStage>, deps: string[]) {
  const dirs: Record<string, string> = {};
  for (const dep of deps) {
    const record = locked[dep];
    const { manifest } = record ? await workspace.cache.check(record.key) : { manifest: null };
    if (!manifest || manifest.output !== record.output) {
      return `input ${dep} is not in the cache (run \`deno task pipeline --until ${dep}\` first)`;
    }
    dirs[dep] = workspace.cache.outDir(record.key);
  }
  return dirs;
}

async function differingFiles(real: Workspace, scratch: Workspace, key: string): Promise<string> {
  const [before, after] = [await real.cache.readManifest(key), await scratch.cache.readManifest(key)];
  if (!before || !after) return "(the recorded artifact is not in the cache to compare file by file)";
  const recorded = new Map(before.files.map((file) => [file.path, file.sha256]));
  const now = new Map(after.files.map((file) => [file.path, file.sha256]));
  const changed = [...new Set([...recorded.keys(), ...now.keys()])]
    .filter((path) => recorded.get(path) !== now.get(path))
    .map((path) => !recorded.has(path) ? `+${path}` : !now.has(path) ? `-${path}` : path);
  const shown = changed.slice(0, 8).join(", ");
  return `${changed.length} file(s): ${shown}${changed.length > 8 ? ", ..." : ""}`;
}

function environmentDifferences(recorded: LockStage, now: LockStage): string {
  const before = recorded.environment ?? {};
  const after = now.environment ?? {};
  const differences = [...new Set([...Object.keys(before), ...Object.keys(after)])]
    .filter((name) => before[name] !== after[name])
    .map((name) => `${name} ${before[name] ?? "-"} -> ${after[name] ?? "-"}`);
  return differences.length
    ? `recorded with a different environment (${differences.join(", ")}): bytes may legitimately differ`
    : "";
}
