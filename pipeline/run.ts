/**
 * A real run: plan, execute what the plan says must run (each stage as soon as its inputs are
 * known, so independent stages run concurrently), plan again as stages finish, then write the
 * lock, the run summary and the latest links.
 */
import { join } from "node:path";
import { stageByName } from "./dag.ts";
import { removeIfExists, writeFileAtomic } from "./fsutil.ts";
import { executeStage, type Executor, StageFailed } from "./execute.ts";
import { type LockStage, writeLock } from "./lock.ts";
import type { Decision, Plan, Reason, Selection } from "./plan.ts";
import type { Workspace } from "./workspace.ts";

/** What a run reports as it goes; the CLI puts it into words. */
export type RunEvent =
  | { kind: "cached"; stage: string; key: string }
  | { kind: "start"; stage: string; key: string; reasons: Reason[]; resumed: boolean }
  | { kind: "ran"; stage: string; key: string; wallSeconds: number; files: number }
  | { kind: "failed"; stage: string; wallSeconds: number; exitCode: number };

export interface RunOptions {
  selection: Selection;
  executor: Executor;
  report: (event: RunEvent) => void;
}

/** A stage outside the selection (--only) that the selection reads is not up to date. */
export class StaleUpstream extends Error {
  constructor(readonly stage: string, readonly reasons: Reason[]) {
    super(`stage ${stage} is not up to date`);
  }
}

/** One selected stage at the end of a run. */
export interface StageOutcome {
  stage: string;
  action: "cached" | "ran";
  record: LockStage;
  reasons: Reason[];
  /** this run's wall time, or the cached entry's */
  wallSeconds?: number;
}

/** Bring the selected stages up to date. Returns one outcome per selected stage, in DAG order. */
export async function runPipeline(workspace: Workspace, options: RunOptions): Promise<StageOutcome[]> {
  const lock = await workspace.readLock();
  const facts = await workspace.facts();
  const ran = new Map<string, LockStage>();
  const reasons = new Map<string, Reason[]>();
  const wallSeconds = new Map<string, number>();
  const running = new Map<string, Promise<void>>();
  const reported = new Set<string>();
  const abort = new AbortController();
  let failure: unknown = null;
  let current: Plan;

  const start = (decision: Extract<Decision, { action: "run" }>, inputs: Record<string, string>) => {
    const stage = stageByName(workspace.dag, decision.stage);
    reasons.set(stage.name, decision.reasons);
    const context = {
      root: workspace.root,
      outputsDir: workspace.outputsDir,
      cache: workspace.cache,
      executor: options.executor,
      signal: abort.signal,
      started: (resumed: boolean) =>
        options.report({ kind: "start", stage: stage.name, key: decision.key, reasons: decision.reasons, resumed }),
    };
    const job = executeStage(context, { stage, key: decision.key, identity: decision.identity }, inputs).then(
      (result) => {
        ran.set(stage.name, result.record);
        wallSeconds.set(stage.name, result.wallSeconds);
        const files = result.record.files;
        options.report({ kind: "ran", stage: stage.name, key: decision.key, wallSeconds: result.wallSeconds, files });
      },
      (error) => {
        // The first failure ends the run: stages still running are cancelled (their partial dirs stay).
        failure ??= error;
        abort.abort();
        if (error instanceof StageFailed) {
          const { wallSeconds, exitCode } = error;
          options.report({ kind: "failed", stage: stage.name, wallSeconds, exitCode });
        }
      },
    ).finally(() => running.delete(stage.name));
    running.set(stage.name, job);
  };

  try {
    while (true) {
      current = await workspace.plan({ facts, lock, selection: options.selection, ran });
      for (const decision of current.decisions) {
        if (decision.action === "cached" && !reported.has(decision.stage)) {
          reported.add(decision.stage);
          options.report({ kind: "cached", stage: decision.stage, key: decision.record.key });
        }
        if (decision.action !== "run" || running.has(decision.stage) || failure) continue;
        if (decision.outside) {
          failure ??= new StaleUpstream(decision.stage, decision.reasons);
          abort.abort();
          break;
        }
        start(decision, inputDirs(workspace, current, decision.stage));
      }
      if (!running.size || failure) {
        await Promise.allSettled(running.values());
        break;
      }
      await Promise.race(running.values());
    }
  } finally {
    await workspace.statCache.save();
  }
  if (failure) throw failure;

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
    });
  }
  await writeLock(workspace.lockPath, workspace.dag, workspace.paramsFile, records);
  await publishLatest(workspace, outcomes);
  return outcomes;
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

/**
 * outputs/latest/<stage> -> the artifact the run used; declared files copied beside them; and
 * summary.json, this run's record (what ran and why, wall times): the volatile facts the lock
 * leaves out.
 */
async function publishLatest(workspace: Workspace, outcomes: StageOutcome[]): Promise<void> {
  const latest = join(workspace.outputsDir, "latest");
  await Deno.mkdir(latest, { recursive: true });
  for (const outcome of outcomes) {
    const target = workspace.cache.outDir(outcome.record.key);
    const link = join(latest, outcome.stage);
    const temp = `${link}.tmp-${Deno.pid}`;
    await removeIfExists(temp);
    await Deno.symlink(target, temp);
    await Deno.rename(temp, link);
    for (const file of stageByName(workspace.dag, outcome.stage).publish ?? []) {
      await writeFileAtomic(join(latest, file), await Deno.readFile(join(target, file)));
    }
  }
  const summary = {
    finished_at: new Date().toISOString(),
    params_file: workspace.paramsFile,
    stages: Object.fromEntries(outcomes.map((outcome) => [outcome.stage, {
      action: outcome.action,
      key: outcome.record.key,
      output: outcome.record.output,
      wall_s: outcome.wallSeconds ?? null,
      reasons: outcome.reasons,
    }])),
  };
  await writeFileAtomic(join(latest, "summary.json"), JSON.stringify(summary, null, 2) + "\n");
}
