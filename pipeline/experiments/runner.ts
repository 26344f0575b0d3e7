/**
 * Runs queued experiments, `jobs` at a time, in this one process (which holds the project's run
 * lock): each experiment is a normal run of the DAG over its own params, sharing the cache. Runs
 * of the same key meet in `shareStages` (the first runs it, the others take its result), runs of
 * different keys go on at once, each stage in its own process. An experiment writes only its own
 * record, never pipeline.lock.json or outputs/latest, so experiments never race for them.
 */
import { git } from "../core/git.ts";
import { type Executor, StageFailed } from "../core/execute.ts";
import type { RunEvent } from "../core/events.ts";
import { Interrupted, runPipeline, type ShareStage, type StageResult } from "../core/run_pipeline.ts";
import { terminal } from "../ui/terminal.ts";
import { sharedLine } from "../ui/words.ts";
import { Workspace } from "../storage/workspace.ts";
import type { MetricsFile, StageDecl } from "../core/types.ts";
import { type ExperimentRecord, readRecord, type StageRunRecord, writeRecord } from "./records.ts";

export interface RunnerOptions {
  root: string;
  dag: StageDecl[];
  jobs: number;
  /** where each stage runs (here, or as a Slurm job) */
  executor: Executor;
  /** by key, the jobs a killed runner submitted for the experiments left to run: attached to, not resubmitted */
  previousJobs: ReadonlyMap<string, string>;
  /** the next experiment to run, or null when there is none left */
  next(): Promise<ExperimentRecord | null>;
  log(line: string): void;
  /** aborted on Ctrl-C or SIGTERM: the running experiments stop and are queued again */
  interrupt?: AbortSignal;
}

type Outcome = "done" | "failed" | "interrupted";

/** Run experiments until `next` has none; returns how many ended done, failed and interrupted. */
export async function runExperiments(options: RunnerOptions): Promise<Record<Outcome, number>> {
  const share = shareStages();
  const counts = { done: 0, failed: 0, interrupted: 0 };
  const worker = async () => {
    for (let record = await options.next(); record; record = await options.next()) {
      const status = await runExperiment(options, record, share);
      counts[status]++;
    }
  };
  await Promise.all(Array.from({ length: options.jobs }, worker));
  return counts;
}

async function runExperiment(
  options: RunnerOptions,
  queued: ExperimentRecord,
  share: ShareStage,
): Promise<Outcome> {
  const { root, log } = options;
  const started = performance.now();
  const runs: Record<string, StageRunRecord> = {};
  let record: ExperimentRecord = {
    ...queued,
    status: "running",
    started_at: new Date().toISOString(),
    attempts: (queued.attempts ?? 0) + 1,
    ...await commitOf(root),
    runs,
  };
  delete record.error;
  await writeRecord(root, record);
  // Writes are chained, so a later state never lands before an earlier one; a record removed
  // (`exp rm`) while it runs stays removed (its work stays in the cache).
  let saved = Promise.resolve();
  const save = () =>
    saved = saved.catch(() => {}).then(async () => {
      if (await readRecord(root, record.name)) await writeRecord(root, record);
    });
  const submitted = (stage: string, key: string, id: string) => {
    record.jobs = [...record.jobs ?? [], { stage, key, id, submitted_at: new Date().toISOString() }];
    // Written at once, so a runner killed now leaves the id; a write that fails here is retried
    // by the last one, which reports its failure.
    save().catch(() => {});
  };
  log(`[${record.name}] started${record.attempts! > 1 ? ` (attempt ${record.attempts}: resuming)` : ""}`);
  const report = (event: RunEvent) => {
    const now = new Date().toISOString();
    if (event.kind === "cached") runs[event.stage] = { action: "cached" };
    if (event.kind === "start") runs[event.stage] = { action: "ran", started_at: now };
    if (event.kind === "ran" && runs[event.stage]?.action !== "ran") {
      // A "ran" without a "start" of its own: another experiment ran the same key meanwhile.
      runs[event.stage] = { action: "shared", finished_at: now };
      return terminal.event(event, record.name, sharedLine(event.stage));
    }
    if (event.kind === "ran") runs[event.stage] = { ...runs[event.stage], finished_at: now, wall_s: event.wallSeconds };
    // The upstream stages a sweep shares are cached in every experiment: counted, not listed.
    terminal.event(event, record.name, event.kind === "cached" ? null : undefined);
  };
  try {
    const workspace = await Workspace.open({
      root,
      dag: options.dag,
      params: record.params,
      paramsFile: record.params_file,
    });
    const outcomes = await runPipeline(workspace, {
      selection: {},
      executor: options.executor,
      report,
      record: "caller",
      share,
      previousJobs: options.previousJobs,
      submitted,
      interrupt: options.interrupt,
    });
    const stages = Object.fromEntries(outcomes.map((outcome) => [outcome.stage, outcome.record]));
    record = { ...record, status: "done", stages, metrics: mergedMetrics(outcomes.map((o) => o.record.metrics)) };
  } catch (error) {
    if (error instanceof Interrupted) {
      // Back in the queue: `exp start` runs it again, resuming from the cache and its kept progress.
      record = { ...record, status: "queued" };
      await save();
      log(`[${record.name}] interrupted: queued again`);
      return "interrupted";
    }
    record = { ...record, status: "failed", error: describeFailure(error) };
  }
  record.finished_at = new Date().toISOString();
  record.wall_s = Math.round((performance.now() - started) / 10) / 100;
  await save();
  const ran = Object.values(runs).filter((run) => run.action === "ran").length;
  log(
    record.status === "done"
      ? `[${record.name}] done in ${record.wall_s}s (${ran} stages ran, ${
        Object.keys(runs).length - ran
      } cached or shared)`
      : `[${record.name}] FAILED after ${record.wall_s}s: ${record.error}`,
  );
  return record.status as Outcome;
}

function describeFailure(error: unknown): string {
  if (error instanceof StageFailed) {
    return `stage ${error.stage} failed (exit ${error.exitCode})${error.detail ? `: ${error.detail}` : ""}`;
  }
  return error instanceof Error ? error.message.split("\n")[0] : String(error);
}

/** The commit the experiment runs on, and whether tracked files differ from it (null: not a git checkout). */
async function commitOf(root: string): Promise<{ commit: string | null; dirty: boolean }> {
  const commit = (await git(root, ["rev-parse", "HEAD"]))?.trim() || null;
  const changes = commit ? await git(root, ["status", "--porcelain", "--untracked-files=no"]) : null;
  return { commit, dirty: Boolean(changes?.trim()) };
}

/** The stages' metrics files as one: values, floor, floor_n and better of every metric. */
function mergedMetrics(files: unknown[]): MetricsFile | undefined {
  const merged: MetricsFile = { values: {}, floor: {}, floor_n: {}, better: {} };
  let any = false;
  for (const file of files as (MetricsFile | undefined)[]) {
    if (!file?.values) continue;
    any = true;
    Object.assign(merged.values, file.values);
    Object.assign(merged.floor!, file.floor ?? {});
    Object.assign(merged.floor_n!, file.floor_n ?? {});
    Object.assign(merged.better!, file.better ?? {});
  }
  return any ? merged : undefined;
}

/**
 * Where concurrent experiments meet on a key. The first to ask runs it; the others wait for its
 * result. A success is kept for the runner's life (a later experiment gets it at once); a failure
 * is dropped, and when the run failed only because its own experiment was cancelled (another of
 * its stages failed), a waiter still going runs it itself.
 */
function shareStages(): ShareStage {
  const runs = new Map<string, { result: Promise<StageResult>; cancelled: boolean }>();
  return async (key, signal, execute) => {
    while (true) {
      const existing = runs.get(key);
      if (!existing) {
        const entry = { result: execute(), cancelled: false };
        runs.set(key, entry);
        // Registered first, so it runs before any waiter sees the failure.
        entry.result.catch(() => {
          entry.cancelled = signal.aborted;
          runs.delete(key);
        });
        return await entry.result;
      }
      try {
        return await existing.result;
      } catch (error) {
        if (!(existing.cancelled && !signal.aborted)) throw error;
      }
    }
  };
}
