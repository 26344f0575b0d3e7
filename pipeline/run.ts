import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { ancestors, descendants, stageByName } from "./dag.ts";
import { EXIT_USER_ERROR, UserError } from "./errors.ts";
import { exists, removeIfExists, writeFileAtomic } from "./fsutil.ts";
import type { StageJob } from "./stage_runner.ts";
import type { LockStage, StageDecl } from "./types.ts";
import { explainChange, platformEnvironment, type ResolvedStage, type Workspace } from "./workspace.ts";

export interface Selection {
  /** force these stages and everything downstream of them */
  from?: string;
  /** run only this stage (its inputs must be cached) */
  only?: string;
  /** stop after this stage */
  until?: string;
}

export interface RunOptions {
  selection: Selection;
  dryRun?: boolean;
  log: (line: string) => void;
}

export interface StageOutcome {
  name: string;
  action: "cached" | "ran" | "would run" | "failed" | "skipped";
  record?: LockStage;
  reasons: string[];
}

const RUNNER = fileURLToPath(new URL("./stage_runner.ts", import.meta.url));

/** Which stages a selection touches, and which of them must run even when cached. */
export function selectStages(dag: StageDecl[], selection: Selection): { included: Set<string>; forced: Set<string> } {
  let included = new Set(dag.map((stage) => stage.name));
  const forced = new Set<string>();
  if (selection.until) {
    included = new Set([selection.until, ...ancestors(dag, selection.until)]);
  }
  if (selection.only) {
    stageByName(dag, selection.only);
    included = new Set([selection.only]);
  }
  if (selection.from) {
    for (const name of [selection.from, ...descendants(dag, selection.from)]) {
      if (included.has(name)) forced.add(name);
    }
  }
  return { included, forced };
}

/**
 * Bring the selected stages up to date: each stage starts as soon as its inputs are known, so
 * independent stages run concurrently; a stage whose key is cached (and whose entry checks out)
 * is restored, not run. Returns one outcome per included stage, in DAG order.
 */
export async function runPipeline(workspace: Workspace, options: RunOptions): Promise<StageOutcome[]> {
  const { included, forced } = selectStages(workspace.dag, options.selection);
  const lock = await workspace.readLock();
  const outcomes = new Map<string, StageOutcome>();
  const done = new Map<string, Promise<StageOutcome>>();

  const process = async (stage: StageDecl): Promise<StageOutcome> => {
    const upstream = await Promise.all(stage.deps.map((dep) => done.get(dep) ?? resolveOutside(dep)));
    const missing = upstream.filter((outcome) => !outcome.record?.output);
    if (missing.length) {
      const reasons = [
        ...await ownChanges(workspace, stage, lock?.stages[stage.name]),
        ...missing.map((outcome) =>
          outcome.action === "would run"
            ? `input ${outcome.name} will be re-made`
            : `input ${outcome.name} not available`
        ),
      ];
      const action = options.dryRun && missing.every((o) => o.action === "would run") ? "would run" : "skipped";
      return { name: stage.name, action, reasons };
    }
    const inputs = Object.fromEntries(upstream.map((outcome) => [outcome.name, outcome.record!.output!]));
    const resolved = await workspace.resolve(stage, inputs);
    const reasons = staleReasons(resolved, lock?.stages[stage.name]);
    if (resolved.manifest && !forced.has(stage.name)) {
      options.log(`✓ ${stage.name.padEnd(9)} cached   ${resolved.record.key.slice(0, 12)}`);
      return { name: stage.name, action: "cached", record: resolved.record, reasons: [] };
    }
    if (forced.has(stage.name)) reasons.unshift("forced (--from)");
    if (options.dryRun) {
      options.log(`• ${stage.name.padEnd(9)} would run: ${reasons.join("; ")}`);
      return { name: stage.name, action: "would run", record: resolved.record, reasons };
    }
    if (!included.has(stage.name)) {
      throw new UserError(
        `stage ${stage.name} is not up to date (${
          reasons.join("; ")
        }); run \`deno task pipeline --until ${stage.name}\` first`,
      );
    }
    return await executeStage(workspace, resolved, upstreamDirs(upstream), reasons, options.log);
  };

  // Stages outside the selection that a selected stage reads (--only): resolved, never run.
  const resolveOutside = (name: string): Promise<StageOutcome> => {
    if (!done.has(name)) done.set(name, process(stageByName(workspace.dag, name)));
    return done.get(name)!;
  };
  const upstreamDirs = (upstream: StageOutcome[]) =>
    Object.fromEntries(upstream.map((outcome) => [outcome.name, workspace.cache.outDir(outcome.record!.key)]));

  for (const stage of workspace.dag) {
    if (included.has(stage.name)) done.set(stage.name, process(stage));
  }
  let firstError: unknown = null;
  for (const [name, promise] of done) {
    try {
      outcomes.set(name, await promise);
    } catch (error) {
      firstError ??= error;
      outcomes.set(name, { name, action: "failed", reasons: [String(error)] });
    }
  }
  await workspace.statCache.save();
  if (firstError) throw firstError;

  const ordered = workspace.dag.filter((stage) => included.has(stage.name)).map((stage) => outcomes.get(stage.name)!);
  if (!options.dryRun) {
    const records = new Map<string, LockStage>();
    for (const outcome of outcomes.values()) if (outcome.record?.output) records.set(outcome.name, outcome.record);
    await workspace.writeLock(records);
    await publishLatest(workspace, ordered);
  }
  return ordered;
}

/** Why a resolved stage cannot be restored from the cache, in words. */
export function staleReasons(resolved: ResolvedStage, previous: LockStage | undefined): string[] {
  if (resolved.manifest) return [];
  const changes = explainChange(previous, resolved.record);
  if (changes.length) return changes;
  const problem = resolved.problems.join(", ");
  return problem === "not in cache"
    ? ["artifact not in cache (the lock's key matches: restored by running it)"]
    : [`cache entry damaged (${problem}): recomputing`];
}

/** A stage's own param and code changes, judged against the lock while its inputs are unknown. */
async function ownChanges(workspace: Workspace, stage: StageDecl, previous: LockStage | undefined) {
  if (!previous) return [];
  const current = await workspace.fingerprint(stage, previous.inputs);
  return explainChange(previous, current).filter((reason) => !reason.startsWith("input "));
}

export class StageFailed extends Error {
  constructor(readonly stage: string, readonly exitCode: number) {
    super(`stage ${stage} failed`);
  }
}

export async function executeStage(
  workspace: Workspace,
  resolved: ResolvedStage,
  inputs: Record<string, string>,
  reasons: string[],
  log: (line: string) => void,
): Promise<StageOutcome> {
  const { stage, record } = resolved;
  const partial = workspace.cache.partialDir(record.key);
  const outDir = join(partial, "out");
  const resumed = Boolean(stage.resumable) && await exists(outDir);
  if (!resumed) await removeIfExists(partial);
  await Deno.mkdir(outDir, { recursive: true });
  log(
    `▶ ${stage.name.padEnd(9)} running  ${record.key.slice(0, 12)}  (${reasons.join("; ")})${
      resumed ? " [resuming]" : ""
    }`,
  );

  const job: StageJob = {
    name: stage.name,
    root: workspace.root,
    module: stage.module,
    params: record.params,
    inputs,
    inputHashes: record.inputs,
    outDir,
    resumed,
    environmentFile: join(partial, "environment.json"),
    logFile: join(workspace.outputsDir, "logs", `${stage.name}-${record.key.slice(0, 12)}.log`),
  };
  await writeFileAtomic(join(partial, "job.json"), JSON.stringify(job, null, 1));
  const started = performance.now();
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", ...configArgs(workspace.root), RUNNER, join(partial, "job.json")],
    cwd: workspace.root,
    stdin: "piped",
    stdout: "inherit",
    stderr: "inherit",
  }).spawn();
  const status = await child.status;
  const wallSeconds = Math.round((performance.now() - started) / 10) / 100;
  if (!status.success) {
    log(`✗ ${stage.name.padEnd(9)} failed after ${wallSeconds}s (exit ${status.code})`);
    throw new StageFailed(stage.name, status.code === EXIT_USER_ERROR ? EXIT_USER_ERROR : 1);
  }

  const environment = {
    ...platformEnvironment(),
    ...JSON.parse(await Deno.readTextFile(job.environmentFile)),
  };
  const metrics = stage.metrics ? JSON.parse(await Deno.readTextFile(join(outDir, stage.metrics))) : undefined;
  await Deno.remove(job.environmentFile);
  await Deno.remove(join(partial, "job.json"));
  await writeFileAtomic(join(partial, "run.json"), JSON.stringify({ wall_s: wallSeconds, environment, metrics }));
  const manifest = await workspace.cache.promote(record.key);
  await workspace.completeRecord(record, manifest);
  log(
    `✓ ${stage.name.padEnd(9)} ran in ${wallSeconds}s  -> ${record.key.slice(0, 12)} (${manifest.files.length} files)`,
  );
  return { name: stage.name, action: "ran", record, reasons };
}

function configArgs(root: string): string[] {
  try {
    Deno.statSync(join(root, "deno.json"));
    return ["--config", join(root, "deno.json")];
  } catch {
    return [];
  }
}

/** outputs/latest/<stage> -> the artifact the run used; declared files copied beside them. */
async function publishLatest(workspace: Workspace, outcomes: StageOutcome[]): Promise<void> {
  const latest = join(workspace.outputsDir, "latest");
  await Deno.mkdir(latest, { recursive: true });
  for (const outcome of outcomes) {
    if (!outcome.record?.output) continue;
    const target = workspace.cache.outDir(outcome.record.key);
    const link = join(latest, outcome.name);
    const temp = `${link}.tmp-${Deno.pid}`;
    await removeIfExists(temp);
    await Deno.symlink(target, temp);
    await Deno.rename(temp, link);
    const stage = stageByName(workspace.dag, outcome.name);
    for (const file of stage.publish ?? []) {
      await writeFileAtomic(join(latest, file), await Deno.readFile(join(target, file)));
    }
  }
}
