/**
 * Execution of one planned stage: claim its key, prepare its partial dir and job.json, hand the
 * job to an executor (where it runs: today a local child process), then record the run and
 * promote the partial dir into the cache. Where a stage runs never changes its key.
 */
import { join } from "node:path";
import { faultsAsLines } from "./faults.ts";
import { EXIT_USER_ERROR } from "./errors.ts";
import { removeIfExists, removeTempFiles, writeFileAtomic } from "../storage/fsutil.ts";
import { type Cache, entryOutput, type RunInfo } from "../storage/cache.ts";
import type { LeaseHolder } from "../storage/lease.ts";
import type { LockStage, StageIdentity } from "./lock.ts";
import type { RunnerReport, StageJob } from "./stage_runner.ts";
import type { Progress, StageDecl } from "./types.ts";
import type { ExternalData } from "../storage/external.ts";
import { openLiveDir } from "../ui/live.ts";

/** Where a running job's output goes: its lines of text, and its progress events. */
export interface StageOutput {
  line(text: string): void;
  progress(update: Progress): void;
}

/**
 * Runs a stage's job somewhere and reports its exit code. The job reads its inputs and writes
 * into `job.outDir` and `job.environmentFile`, both inside the stage's partial dir, which is
 * where `jobFile` lies too; aborting `signal` stops the job. What the job prints goes to `output`.
 * An executor that hands jobs to a batch system (Slurm) tells `submitted` the job's id, so a
 * caller can record it, and can `attach` to such a job later, from another process.
 */
export interface Executor {
  run(
    job: StageJob,
    jobFile: string,
    signal: AbortSignal,
    output: StageOutput,
    submitted?: (id: string) => void,
  ): Promise<number>;
  /**
   * The job `id` an earlier run submitted for this same key (that run was killed): a wait for its
   * end (its exit code) while it is still going or ended complete, or null when it ended
   * otherwise or is unknown, and the stage must run anew.
   */
  attach?(
    id: string,
    job: StageJob,
    jobFile: string,
    output: StageOutput,
  ): Promise<((signal: AbortSignal) => Promise<number>) | null>;
}

/** A stage the plan decided to run, with its key known. */
export interface PlannedStage {
  stage: StageDecl;
  key: string;
  identity: StageIdentity;
  /** run it even if another process makes the key while this one waits for its claim (--from) */
  forced?: boolean;
  /** the local data its params name, as hashed into its key (handed to the job, kept with the entry) */
  external?: Record<string, ExternalData>;
}

export interface ExecuteContext {
  root: string;
  outputsDir: string;
  cache: Cache;
  executor: Executor;
  signal: AbortSignal;
  /** where the job's lines and progress go */
  output: StageOutput;
  /** called when the job starts (`resumed`: it continues a killed attempt's partial output) */
  started(resumed: boolean): void;
  /** another process (on any host sharing the cache) is building the key: told once, with who */
  waiting?(holder: LeaseHolder): void;
  /** a dead holder's claim on the key was taken over, and why it was judged dead */
  tookOver?(why: string): void;
  /** written into the key's claim: who builds it */
  command?: string;
  /** the id of a job an earlier, killed run submitted for this key: attached to, not run again, while it goes */
  previousJob?: string;
  /** the executor submitted the stage's job under this id (a batch system's) */
  submitted?(id: string): void;
}

/** A stage's job ended with a non-zero exit code (errors.ts says what the runner's codes mean). */
export class StageFailed extends Error {
  constructor(
    readonly stage: string,
    readonly exitCode: number,
    readonly wallSeconds: number,
    /** the stage's own one-line error, when it left one */
    readonly detail?: string,
  ) {
    super(`stage ${stage} failed${detail ? `: ${detail}` : ""}`);
  }
}

const RESUME_POINT_FILE = "resume_point.txt";

/** What a resumable stage's kept partial output would resume from ("epoch 4 of 9"), if it said. */
export async function readResumePoint(cache: Cache, key: string): Promise<string | null> {
  return await Deno.readTextFile(join(cache.partialDir(key), RESUME_POINT_FILE)).catch(() => null);
}

/**
 * Run a planned stage; its artifact ends in the cache under its key. Returns its lock entry and
 * wall time; `reused` when another process made the key while this one waited for its claim.
 * A run that stops unfinished settles its partial dir (kept for a resumable stage, less its temp
 * files; else removed) while it still holds the claim: after, the dir may be another host's.
 */
export async function executeStage(
  context: ExecuteContext,
  planned: PlannedStage,
  inputs: Record<string, string>,
): Promise<{ record: LockStage; wallSeconds: number; reused?: boolean; peakRssMb?: number | null }> {
  const { stage, key, identity } = planned;
  const { lease, tookOver } = await context.cache.claim(
    key,
    context.command ?? stage.name,
    (holder) => context.waiting?.(holder),
    context.signal,
  );
  try {
    if (tookOver) context.tookOver?.(tookOver);
    const made = planned.forced ? null : await context.cache.state(key);
    if (made?.state === "ok") return { record: { key, ...identity, ...made.output }, wallSeconds: 0, reused: true };
    try {
      return await runClaimed(context, planned, inputs, lease.lost);
    } catch (error) {
      // A stage that refused its input (exit 2) before saying where it would resume has no progress to keep.
      const refused = error instanceof StageFailed && error.exitCode === EXIT_USER_ERROR &&
        await readResumePoint(context.cache, key) === null;
      await context.cache.settlePartial(key, Boolean(stage.resumable) && !refused).catch(() => {});
      throw error;
    }
  } finally {
    await lease.release();
  }
}

async function runClaimed(
  context: ExecuteContext,
  planned: PlannedStage,
  inputs: Record<string, string>,
  claimLost: AbortSignal,
): Promise<{ record: LockStage; wallSeconds: number; peakRssMb: number | null }> {
  const { stage, key, identity, external } = planned;
  const partial = context.cache.partialDir(key);
  const outDir = join(partial, "out");
  const resumed = Boolean(stage.resumable) && await context.cache.hasProgress(key);
  const externalFile = context.cache.externalFile(key);
  const liveDir = stage.live ? await openLiveDir(context.outputsDir, stage.name, key) : undefined;
  const job: StageJob = {
    name: stage.name,
    root: context.root,
    module: stage.module,
    params: identity.params,
    inputs,
    inputHashes: identity.inputs,
    outDir,
    resumed,
    environmentFile: join(partial, "environment.json"),
    errorFile: join(partial, "error.txt"),
    ...(external ? { externalFile } : {}),
    reportFile: context.cache.reportFile(key),
    logFile: join(context.outputsDir, "logs", `${stage.name}-${key.slice(0, 12)}.log`),
    resumePointFile: join(partial, RESUME_POINT_FILE),
    ...(liveDir ? { liveDir } : {}),
  };
  const jobFile = join(partial, "job.json");
  // A job a killed run left going writes into the partial dir: wait for it instead of clearing the dir.
  const attached = context.previousJob && context.executor.attach
    ? await context.executor.attach(context.previousJob, job, jobFile, context.output)
    : null;
  if (!attached) {
    await faultsAsLines(`preparing stage ${stage.name}`, partial, async () => {
      if (!resumed) await removeIfExists(partial);
      else await removeTempFiles(partial); // of writes a killed attempt cut short
      await Deno.mkdir(outDir, { recursive: true });
      if (external) await writeFileAtomic(externalFile, JSON.stringify(external));
    });
    await faultsAsLines(
      `preparing stage ${stage.name}`,
      jobFile,
      () => writeFileAtomic(jobFile, JSON.stringify(job, null, 1)),
    );
  }
  context.started(resumed || Boolean(attached));
  const ranAt = new Date().toISOString();
  const started = performance.now();
  // A claim taken over by another host (this one stalled past its lease) stops the job: two
  // hosts must never write one partial dir.
  const signal = AbortSignal.any([context.signal, claimLost]);
  const code = attached
    ? await attached(signal)
    : await context.executor.run(job, jobFile, signal, context.output, context.submitted);
  const wallSeconds = Math.round((performance.now() - started) / 10) / 100;
  claimLost.throwIfAborted();
  if (code !== 0) {
    const detail = await Deno.readTextFile(job.errorFile).catch(() => undefined);
    await removeIfExists(job.errorFile).catch(() => {});
    throw new StageFailed(stage.name, code, wallSeconds, detail);
  }

  const environment = { ...identity.runtime, ...JSON.parse(await Deno.readTextFile(job.environmentFile)) };
  const metrics = stage.metrics ? JSON.parse(await Deno.readTextFile(join(outDir, stage.metrics))) : undefined;
  const report: RunnerReport = JSON.parse(await Deno.readTextFile(job.reportFile));
  const peak = report.peak_rss_mb;
  const run: RunInfo = {
    wall_s: wallSeconds,
    ran_at: ranAt,
    environment,
    ...(peak !== null ? { peak_rss_mb: peak } : {}),
    metrics,
  };
  const manifest = await faultsAsLines(`storing stage ${stage.name}'s output in the cache`, partial, async () => {
    await Deno.remove(job.environmentFile);
    await Deno.remove(job.reportFile);
    await Deno.remove(jobFile);
    await removeIfExists(job.resumePointFile);
    await context.cache.writeRunInfo(key, run);
    claimLost.throwIfAborted();
    return await context.cache.promote(key, report.written);
  });
  return { record: { key, ...identity, ...entryOutput(manifest, run) }, wallSeconds, peakRssMb: peak };
}
