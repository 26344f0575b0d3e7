/**
 * A real run: plan, execute what the plan says must run (each stage as soon as its inputs are
 * known, so independent stages run concurrently), plan again as stages finish, then write the
 * lock, the run summary and the latest links.
 */
import { join } from "node:path";
import { stageByName } from "./dag.ts";
import { exists, treeBytes } from "../storage/fsutil.ts";
import { publishLatest } from "../storage/publish.ts";
import { executeStage, type Executor, readResumePoint, StageFailed } from "./execute.ts";
import { faultsAsLines, freeBytes } from "./faults.ts";
import type { LeaseHolder } from "../storage/lease.ts";
import { type LockStage, writeLock } from "./lock.ts";
import type { Decision, Plan, Reason, Selection } from "./plan.ts";
import type { StageFacts } from "./key.ts";
import { pullEntry } from "../storage/transfer.ts";
import { RemoteError } from "../storage/remote.ts";
import type { Workspace } from "../storage/workspace.ts";
import type { Preflight, Progress } from "./types.ts";
import type { RunEvent, StageOutcome, StoppedStage } from "./events.ts";

export interface RunOptions {
  selection: Selection;
  executor: Executor;
  report: (event: RunEvent) => void;
  /** aborted on Ctrl-C or SIGTERM: running stages are stopped and the run ends with Interrupted */
  interrupt?: AbortSignal;
  /** the stages' facts when the caller gathered them already (before taking the run lock) */
  facts?: Record<string, StageFacts>;
  /**
   * "project" (default): the run writes pipeline.lock.json and outputs/latest. "caller": it
   * writes neither and only returns its outcomes; an experiment keeps them in its own record, so
   * experiments running at once never race for the project's lock and links.
   */
  record?: "project" | "caller";
  /** aborted when the run must stop (it lost its run lock): the reason is the run's error */
  signal?: AbortSignal;
  /**
   * Where concurrent runs in this process (experiments) meet on a key: it calls `execute` for the
   * first run of a key and hands the others that run's result, so two runs never build the same
   * partial dir; `signal` is the asking run's own cancellation.
   */
  share?: ShareStage;
  /**
   * Jobs (by key) that an earlier, killed run submitted to a batch system: the executor attaches
   * to one still going instead of running its stage again
   */
  previousJobs?: ReadonlyMap<string, string>;
  /** a stage's job was submitted to a batch system under `id` (to record it for `previousJobs`) */
  submitted?(stage: string, key: string, id: string): void;
  /** what the project found missing here: each said before the first stage line when one of its stages will run */
  preflight?: Preflight[];
}

export type StageResult = Awaited<ReturnType<typeof executeStage>>;
export type ShareStage = (
  key: string,
  signal: AbortSignal,
  execute: () => Promise<StageResult>,
) => Promise<StageResult>;

/** The run was stopped by a signal; every running stage was stopped and settled. */
export class Interrupted extends Error {
  constructor(readonly stopped: StoppedStage[]) {
    super("interrupted");
  }
}

/** A stage outside the selection (--only) that the selection reads is not up to date. */
export class StaleUpstream extends Error {
  constructor(readonly stage: string, readonly reasons: Reason[]) {
    super(`stage ${stage} is not up to date`);
  }
}

/** Bring the selected stages up to date. Returns one outcome per selected stage, in DAG order. */
export async function runPipeline(workspace: Workspace, options: RunOptions): Promise<StageOutcome[]> {
  const lock = await workspace.readLock();
  const facts = options.facts ?? await workspace.facts();
  for (const check of workspace.externalChecks()) {
    const { key: param, files, rehashed, seconds } = check;
    options.report({ kind: "checked", param, files, rehashed, seconds });
  }
  const ran = new Map<string, LockStage>();
  const reasons = new Map<string, Reason[]>();
  const wallSeconds = new Map<string, number>();
  const peakRss = new Map<string, number | null>();
  const running = new Map<string, Promise<void>>();
  const reported = new Set<string>();
  /** stages started and not (yet) finished, with their keys */
  const unfinished = new Map<string, string>();
  const abort = new AbortController();
  const interrupt = options.interrupt;
  const onInterrupt = () => abort.abort();
  interrupt?.addEventListener("abort", onInterrupt, { once: true });
  let failure: unknown = null;
  let current: Plan;
  let noticed = false;
  /**
   * stages whose job this run started (with `share`, another run may be running one it waits
   * for; with a shared cache, another process may hold the key's claim)
   */
  const startedHere = new Set<string>();
  const stop = (error: unknown) => {
    failure ??= error;
    abort.abort();
  };
  const onLost = () => stop(options.signal!.reason);
  options.signal?.addEventListener("abort", onLost, { once: true });
  const claimEvents = (stage: string, key: string) => ({
    command: `pipeline ${stage} in ${workspace.root}`,
    waiting: (holder: LeaseHolder) => options.report({ kind: "waiting", stage, key, holder }),
    tookOver: (why: string) => options.report({ kind: "took-over", stage, key, why }),
  });
  /** The key is in the cache now (made by another process, or pulled): the next plan finds it. */
  const madeElsewhere = (stage: string, key: string, event: RunEvent) => {
    unfinished.delete(stage);
    workspace.forget(key);
    reported.add(stage);
    options.report(event);
  };

  const start = async (decision: Extract<Decision, { action: "run" }>, inputs: Record<string, string>) => {
    const stage = stageByName(workspace.dag, decision.stage);
    reasons.set(stage.name, decision.reasons);
    unfinished.set(stage.name, decision.key);
    await warnIfLowSpace(workspace, stage.name, lock?.stages[stage.name]?.bytes, decision.key, options.report);
    const context = {
      root: workspace.root,
      outputsDir: workspace.outputsDir,
      cache: workspace.cache,
      executor: options.executor,
      signal: abort.signal,
      output: {
        line: (text: string) => options.report({ kind: "output", stage: stage.name, text }),
        progress: (progress: Progress) => options.report({ kind: "progress", stage: stage.name, progress }),
      },
      started: (resumed: boolean) => {
        startedHere.add(stage.name);
        options.report({ kind: "start", stage: stage.name, key: decision.key, reasons: decision.reasons, resumed });
      },
      ...claimEvents(stage.name, decision.key),
      previousJob: options.previousJobs?.get(decision.key),
      submitted: (id: string) => options.submitted?.(stage.name, decision.key, id),
    };
    const forced = decision.reasons.some((reason) => reason.kind === "forced");
    const external = workspace.externalData(stage.name);
    const planned = { stage, key: decision.key, identity: decision.identity, forced, external };
    const execute = () => executeStage(context, planned, inputs);
    const job = (options.share ? options.share(decision.key, abort.signal, execute) : execute()).then(
      (result) => {
        if (result.reused) {
          return madeElsewhere(stage.name, decision.key, { kind: "reused", stage: stage.name, key: decision.key });
        }
        unfinished.delete(stage.name);
        ran.set(stage.name, result.record);
        wallSeconds.set(stage.name, result.wallSeconds);
        peakRss.set(stage.name, result.peakRssMb ?? null);
        const files = result.record.files;
        options.report({ kind: "ran", stage: stage.name, key: decision.key, wallSeconds: result.wallSeconds, files });
      },
      (error) => {
        // A stage failing after the run was stopped was cancelled: not a failure of its own.
        if (abort.signal.aborted) return;
        // The first failure ends the run: stages still running are cancelled.
        stop(error);
        if (error instanceof StageFailed) {
          const { wallSeconds, exitCode } = error;
          options.report({ kind: "failed", stage: stage.name, wallSeconds, exitCode });
        }
      },
    ).finally(() => running.delete(stage.name));
    running.set(stage.name, job);
  };

  const pull = (decision: Extract<Decision, { action: "pull" }>) => {
    const { stage, record: { key } } = decision;
    const hooks = { ...claimEvents(stage, key), signal: abort.signal };
    const job = pullEntry(workspace.cache, workspace.remote!, key, stage, hooks).then(
      ({ manifest }) => madeElsewhere(stage, key, { kind: "pulled", stage, key, files: manifest.files.length }),
      (error) => {
        if (abort.signal.aborted) return;
        if (!(error instanceof RemoteError)) return stop(error);
        // The remote's copy is bad (or the remote went away): the next plan builds the stage here.
        workspace.refuseRemote(key);
        options.report({ kind: "remote-refused", stage, key, why: error.message });
      },
    ).finally(() => running.delete(stage));
    running.set(stage, job);
  };

  try {
    while (true) {
      current = await workspace.plan({ facts, lock, selection: options.selection, ran });
      if (!noticed) {
        for (const line of notices(current, options.preflight ?? [])) options.report({ kind: "notice", line });
        options.report({ kind: "planned", stages: current.included });
      }
      noticed = true;
      for (const decision of current.decisions) {
        if (decision.action === "cached" && !reported.has(decision.stage)) {
          reported.add(decision.stage);
          options.report({ kind: "cached", stage: decision.stage, key: decision.record.key });
        }
        if (running.has(decision.stage) || abort.signal.aborted) continue;
        if (decision.action === "pull") pull(decision);
        if (decision.action !== "run") continue;
        if (decision.outside) {
          stop(new StaleUpstream(decision.stage, decision.reasons));
          break;
        }
        const reasons = await workspace.namingChangedFiles(decision.stage, decision.reasons, lock);
        await start({ ...decision, reasons }, inputDirs(workspace, current, decision.stage));
      }
      if (!running.size || abort.signal.aborted) {
        await Promise.allSettled(running.values());
        break;
      }
      await Promise.race(running.values());
    }
  } catch (error) {
    // Planning itself failed: stop what runs, and let the error through (the stat cache must not hide it).
    abort.abort();
    await Promise.allSettled(running.values());
    await workspace.statCache.saveIfPossible();
    throw error;
  } finally {
    interrupt?.removeEventListener("abort", onInterrupt);
    options.signal?.removeEventListener("abort", onLost);
  }
  if (abort.signal.aborted) {
    await workspace.statCache.saveIfPossible(); // never hide why the run stopped
    // A stage this run only waited for (a shared stage, a claim another process holds) is the
    // partial output of the run executing it.
    for (const name of unfinished.keys()) if (!startedHere.has(name)) unfinished.delete(name);
    const stopped = await settleUnfinished(workspace, unfinished);
    for (const { stage, kept, resumePoint } of stopped) {
      if (kept && !interrupt?.aborted) options.report({ kind: "kept", stage, resumePoint });
    }
    if (interrupt?.aborted && !failure) throw new Interrupted(stopped);
    throw failure;
  }
  await workspace.statCache.save();

  const outcomes: StageOutcome[] = [];
  const records = new Map<string, LockStage>();
  for (const decision of current!.decisions) {
    if (decision.action !== "cached" && decision.action !== "ran") continue;
    records.set(decision.stage, decision.record);
    if (!current!.included.includes(decision.stage)) continue;
    outcomes.push({
      stage: decision.stage,
      action: decision.action,
      record: decision.record,
      reasons: reasons.get(decision.stage) ?? [],
      wallSeconds: decision.action === "ran" ? wallSeconds.get(decision.stage) : decision.run?.wall_s,
      peakRssMb: decision.action === "ran" ? peakRss.get(decision.stage) : decision.run?.peak_rss_mb,
    });
  }
  if ((options.record ?? "project") === "project") {
    const reproductions = await writeLock(workspace.lockPath, workspace.dag, workspace.paramsFile, records);
    // Only what ran here is news: a cached entry made here before was reported when it was made.
    for (const { stage, differences } of reproductions) {
      if (ran.has(stage)) options.report({ kind: "reproduced", stage, differences });
    }
    const latest = join(workspace.outputsDir, "latest");
    await faultsAsLines("updating outputs/latest", latest, () => publishLatest(workspace, latest, outcomes));
  }
  return outcomes;
}

/** The preflight notices that concern a stage the plan will run (included, and not cached). */
export function notices(plan: Plan, preflight: Preflight[]): string[] {
  const running = plan.decisions.filter((decision) =>
    plan.included.includes(decision.stage) && (decision.action === "run" || decision.action === "wait")
  ).map((decision) => decision.stage);
  return preflight.filter((check) => check.stages.some((stage) => running.includes(stage))).map((check) =>
    check.notice
  );
}

/**
 * Each stage stopped unfinished: a resumable stage's partial output is kept for the next run to
 * continue, any other's removed (executeStage settled it while it held the key's claim).
 */
async function settleUnfinished(workspace: Workspace, unfinished: Map<string, string>): Promise<StoppedStage[]> {
  const stopped: StoppedStage[] = [];
  for (const [name, key] of unfinished) {
    // executeStage kept it or not: a resumable stage that refused its input keeps nothing.
    const kept = Boolean(stageByName(workspace.dag, name).resumable) && await exists(workspace.cache.partialDir(key));
    stopped.push({ stage: name, kept, resumePoint: kept ? await readResumePoint(workspace.cache, key) : null });
  }
  return stopped;
}

/**
 * The cheap pre-check: what the stage wrote last time (its lock entry), less what its kept
 * partial output already holds, against the space free in the cache. Only warns: params may
 * have changed what it writes.
 */
async function warnIfLowSpace(
  workspace: Workspace,
  stage: string,
  lastBytes: number | undefined,
  key: string,
  report: (event: RunEvent) => void,
): Promise<void> {
  if (!lastBytes) return;
  const needed = lastBytes - await treeBytes(workspace.cache.partialDir(key));
  const free = freeBytes(workspace.cache.dir);
  if (free !== null && free < needed) report({ kind: "low-space", stage, needed, free, dir: workspace.cache.dir });
}

/** Output dirs of a stage's inputs (all known: the plan only says "run" then). */
function inputDirs(workspace: Workspace, plan: Plan, name: string): Record<string, string> {
  const dirs: Record<string, string> = {};
  for (const dep of stageByName(workspace.dag, name).deps) {
    const decision = plan.decisions.find((candidate) => candidate.stage === dep)!;
    if ("record" in decision) dirs[dep] = workspace.cache.outDir(decision.record.key);
  }
  return dirs;
}
