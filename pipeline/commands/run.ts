/**
 * `run`: bring the selected stages up to date under the run lock, saying each stage's line as it
 * goes and one line at the end; `--dry-run`: what it would do, writing nothing.
 */
import { join } from "node:path";
import { EXIT_FAILED, EXIT_USER_ERROR } from "../core/errors.ts";
import { EnvironmentFault, faultsAsLines } from "../core/faults.ts";
import { stageByName } from "../core/dag.ts";
import { type Executor, StageFailed } from "../core/execute.ts";
import { Interrupts } from "../core/interrupts.ts";
import type { Selection } from "../core/plan.ts";
import { Interrupted, notices, runPipeline } from "../core/run_pipeline.ts";
import type { Preflight } from "../core/types.ts";
import { acquireRunLock } from "../storage/runlock.ts";
import type { Workspace } from "../storage/workspace.ts";
import { terminal } from "../ui/terminal.ts";
import {
  doneLine,
  dryRunLine,
  dryRunSummary,
  interruptedLine,
  stageFailedLine,
  timingLine,
  TIMINGS_HEADING,
  words,
} from "../ui/words.ts";
import { checkLines, differsNote, stageReports } from "./status.ts";

export async function runCommand(
  workspace: Workspace,
  selection: Selection,
  dryRun: boolean,
  executor: Executor,
  checks: Preflight[],
  log: (line: string) => void,
  asJson: boolean,
) {
  const started = performance.now();
  if (dryRun) {
    const lock = await workspace.readLock();
    const plan = await workspace.plan({ facts: await workspace.facts(), lock, selection });
    await workspace.statCache.saveIfPossible();
    const stages = await stageReports(workspace, plan, lock);
    if (asJson) {
      const json = { notices: notices(plan, checks), checks: workspace.externalChecks(), stages };
      console.log(JSON.stringify(json, null, 2));
      return 0;
    }
    const paint = terminal.paint;
    for (const line of notices(plan, checks)) log(line);
    for (const check of checkLines(workspace)) log(check);
    for (const { stage, action, key, reasons } of stages) {
      log(dryRunLine(stage, action, key, `${words(reasons, terminal.verbose)}${differsNote(checks, stage)}`, paint));
    }
    log(
      dryRunSummary(stages.filter((s) => s.action === "run" || s.action === "wait").map((s) => s.stage), stages.length),
    );
    return 0;
  }
  // Code and data are hashed before anything is written: unreadable data stops the run here.
  const facts = await workspace.facts();
  await checkOutputsLink(workspace.outputsDir);
  const lock = await faultsAsLines(
    "taking the run lock",
    join(workspace.outputsDir, "run.lock"),
    () => acquireRunLock(workspace.outputsDir, `pipeline ${Deno.args.join(" ")}`.trim(), log),
  );
  // Ctrl-C or SIGTERM: stop the running stages and settle their partial output.
  using interrupts = new Interrupts(() => lock.releaseSync());
  try {
    await workspace.cache.sweepTrash();
    const outcomes = await runPipeline(workspace, {
      selection,
      executor,
      report: (event) => terminal.event(event),
      interrupt: interrupts.signal,
      facts,
      signal: lock.lost,
      preflight: checks,
    });
    const ran = outcomes.filter((outcome) => outcome.action === "ran").length;
    terminal.detail(TIMINGS_HEADING);
    for (const { stage, action, wallSeconds, peakRssMb } of outcomes) {
      terminal.detail(timingLine(stage, action, wallSeconds, peakRssMb));
    }
    const seconds = ((performance.now() - started) / 1000).toFixed(2);
    log(doneLine(seconds, ran, outcomes.length - ran));
    return 0;
  } catch (error) {
    if (error instanceof Interrupted) {
      log(interruptedLine(error.stopped));
      return interrupts.exitCode;
    }
    if (error instanceof StageFailed) {
      const drivers = (stageByName(workspace.dag, error.stage).memory ?? [])
        .map((key) => `${key}=${JSON.stringify(workspace.params[key])}`);
      const line = stageFailedLine(error.stage, error.exitCode, drivers);
      if (line) log(line);
      return error.exitCode === EXIT_USER_ERROR ? EXIT_USER_ERROR : EXIT_FAILED;
    }
    throw error;
  } finally {
    await lock.release();
  }
}

/** outputs/ a link to a folder that is gone (a disk not mounted): one line, before anything is written. */
async function checkOutputsLink(outputsDir: string): Promise<void> {
  const info = await Deno.lstat(outputsDir).catch(() => null);
  if (!info?.isSymlink || await Deno.stat(outputsDir).catch(() => null)) return;
  const target = await Deno.readLink(outputsDir);
  throw new EnvironmentFault(
    `outputs/ is a link to ${target}, which does not exist (a disk not mounted?); mount it, or remove the link ` +
      "to use a local outputs/",
    EXIT_USER_ERROR,
  );
}
