/**
 * `status`: each stage fresh, stale or on the remote, and why; also the stage reports `run
 * --dry-run` shares.
 */
import type { Preflight } from "../core/types.ts";
import type { Decision, Plan, Reason } from "../core/plan.ts";
import type { LockFile } from "../core/lock.ts";
import type { Workspace } from "../storage/workspace.ts";
import { notices } from "../core/run_pipeline.ts";
import { liveViewOfRun } from "../ui/live.ts";
import { terminal } from "../ui/terminal.ts";
import {
  checkLine,
  describeReason,
  liveViewLine,
  type Paint,
  paintFor,
  shortHash,
  statusSummary,
  words,
} from "../ui/words.ts";

/** "; its output will differ from the lock's: WHY" where a preflight check says so for this stage. */
export function differsNote(preflight: Preflight[], stage: string): string {
  const why = preflight.map((check) => check.differs[stage]).find(Boolean);
  return why ? `; its output will differ from the lock's: ${why}` : "";
}

export function checkLines(workspace: Workspace): string[] {
  return workspace.externalChecks().map(({ key, files, rehashed, seconds }) =>
    checkLine(key, files, rehashed, seconds)
  );
}

/** A stage as `status --json` and `--dry-run --json` give it; `reasons` with their words. */
export interface StageReport {
  stage: string;
  decision: "fresh" | "stale" | "remote";
  action: Decision["action"];
  key: string | null;
  reasons: (Reason & { text: string })[];
  /** a fresh (or remote) stage: what making its cache entry took */
  timings: { wall_s: number; peak_rss_mb: number | null; ran_at: string } | null;
}

export async function stageReports(workspace: Workspace, plan: Plan, lock: LockFile | null): Promise<StageReport[]> {
  const reports: StageReport[] = [];
  for (const decision of plan.decisions) {
    if (decision.action === "ran") continue;
    const made = decision.action === "cached" || decision.action === "pull";
    const reasons = made ? [] : await workspace.namingChangedFiles(decision.stage, decision.reasons, lock);
    const run = made ? decision.run : null;
    reports.push({
      stage: decision.stage,
      decision: decision.action === "cached" ? "fresh" : decision.action === "pull" ? "remote" : "stale",
      action: decision.action,
      key: made ? decision.record.key : decision.action === "run" ? decision.key : null,
      reasons: reasons.map((reason) => ({ ...reason, text: describeReason(reason, true) })),
      timings: run ? { wall_s: run.wall_s, peak_rss_mb: run.peak_rss_mb ?? null, ran_at: run.ran_at } : null,
    });
  }
  return reports;
}

/**
 * Each stage fresh or stale and why; a fresh one with the wall time its cache entry took to make
 * (-v: with its peak memory and when); while a run goes on, its live view.
 */
export async function statusCommand(workspace: Workspace, checks: Preflight[], asJson: boolean): Promise<number> {
  const lock = await workspace.readLock();
  const plan = await workspace.plan({ facts: await workspace.facts(), lock, selection: {} });
  await workspace.statCache.saveIfPossible();
  const stages = await stageReports(workspace, plan, lock);
  const live = await liveViewOfRun(workspace.outputsDir);
  const liveView = live ? workspace.relative(live) : null;
  if (asJson) {
    const json = { notices: notices(plan, checks), checks: workspace.externalChecks(), stages, live_view: liveView };
    console.log(JSON.stringify(json, null, 2));
    return 0;
  }
  const paint: Paint = paintFor(Deno.stdout);
  const quiet = terminal.verbosity === "quiet";
  const say = (line: string) => quiet || console.log(line);
  for (const line of notices(plan, checks)) say(line);
  for (const check of checkLines(workspace)) say(check);
  const width = Math.max(...stages.map((report) => report.stage.length));
  for (const { stage, decision, key, reasons, timings } of stages) {
    const name = stage.padEnd(width);
    const shortKey = key ? shortHash(key) : "?".repeat(12);
    if (decision === "fresh") {
      const made = timings ? `  made in ${timings.wall_s}s` : "";
      const more = timings && terminal.verbose
        ? `${timings.peak_rss_mb ? `, peak memory ${timings.peak_rss_mb} MiB` : ""}, on ${timings.ran_at}`
        : "";
      say(`${name}  ${paint("fresh", "good")}  ${shortKey}${made}${more}`);
    } else if (decision === "remote") {
      say(`${name}  ${paint("remote", "todo")} ${shortKey}  on the remote cache: the next run pulls it`);
    } else {
      say(
        `${name}  ${paint("stale", "todo")}  ${shortKey}  ${words(reasons, terminal.verbose)}${
          differsNote(checks, stage)
        }`,
      );
    }
  }
  if (liveView) say(liveViewLine(liveView));
  const named = (decision: StageReport["decision"]) =>
    stages.filter((s) => s.decision === decision).map((s) => s.stage);
  console.log(statusSummary(named("fresh"), named("stale"), named("remote"), paint));
  return 0;
}
