/**
 * `run`: bring the selected stages up to date under the run lock, saying each stage's line as it
 * goes and one line at the end; `--dry-run`: what it would do, writing nothing.
 */
import { join } from "node:path";
import {
  EXIT_ENVIRONMENT,
  EXIT_FAILED,
  EXIT_HEAP_LIMIT,
  EXIT_KILLED,
  EXIT_OUT_OF_MEMORY,
  EXIT_USER_ERROR,
} from "../core/errors.ts";
import { EnvironmentFault, faultsAsLines } from "../core/faults.ts";
import { stageByName } from "../core/dag.ts";
import { type Executor, StageFailed } from "../core/execute.ts";
import { Interrupts } from "../core/interrupts.ts";
import type { Selection } from "../core/plan.ts";
import { Interrupted, notices, runPipeline, type StoppedStage } from "../core/run_pipeline.ts";
import { STAGE_V8_FLAGS } from "../core/stage_runner.ts";
import type { Preflight } from "../core/types.ts";
import { acquireRunLock } from "../storage/runlock.ts";
import type { Workspace } from "../storage/workspace.ts";
import { terminal } from "../ui/terminal.ts";
import { dryRunSummary, timingLine, TIMINGS_HEADING, words } from "../ui/words.ts";
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
      if (action === "cached") {
        log(`✓ ${stage.padEnd(9)} ${paint("cached", "good")}   ${key!.slice(0, 12)}`);
      } else if (action === "pull") {
        log(`⇣ ${stage.padEnd(9)} ${paint("would pull", "todo")} ${key!.slice(0, 12)} from the remote cache`);
      } else {
        log(
          `• ${stage.padEnd(9)} ${paint("would run", "todo")}: ${words(reasons, terminal.verbose)}${
            differsNote(checks, stage)
          }`,
        );
      }
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
    log(
      `done in ${seconds}s: ${ran} ran, ${
        outcomes.length - ran
      } cached; lock: pipeline.lock.json, timings: outputs/latest/summary.json`,
    );
    return 0;
  } catch (error) {
    if (error instanceof Interrupted) {
      log(interruptedLine(error.stopped));
      return interrupts.exitCode;
    }
    if (error instanceof StageFailed) {
      const line = stageFailedLine(workspace, error);
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

/** `interrupted: train's progress kept (epoch 4 of 9); run again to resume` */
function interruptedLine(stopped: StoppedStage[]): string {
  const parts = stopped.map(({ stage, kept, resumePoint }) =>
    kept
      ? `${stage}'s progress kept${resumePoint ? ` (${resumePoint})` : ""}`
      : `${stage} stopped (its partial output removed)`
  );
  parts.push(stopped.some((stage) => stage.kept) ? "run again to resume" : "run again to continue");
  return `interrupted: ${parts.join("; ")}`;
}

/**
 * Why a stage failed, in one line. The runner has said it already for bad input, a full disk or
 * a refused permission, and for a crash (with its log); a stage out of memory or killed cannot
 * speak, so the engine says it, with the params that drive the stage's memory.
 */
function stageFailedLine(workspace: Workspace, error: StageFailed): string | null {
  const { stage, exitCode } = error;
  if (exitCode === EXIT_USER_ERROR || exitCode === EXIT_ENVIRONMENT) return null;
  const drivers = (stageByName(workspace.dag, stage).memory ?? [])
    .map((key) => `${key}=${JSON.stringify(workspace.params[key])}`);
  const lower = drivers.length ? `; its memory grows with ${drivers.join(", ")}: lower one` : "";
  switch (exitCode) {
    case EXIT_HEAP_LIMIT:
      return `error: stage ${stage} ran out of memory: it reached the JavaScript heap limit${lower}, or raise the ` +
        `limit (${STAGE_V8_FLAGS}=--max-old-space-size=MiB)`;
    case EXIT_OUT_OF_MEMORY:
      return `error: stage ${stage} ran out of memory: an allocation failed${lower}`;
    case EXIT_KILLED:
      return `error: stage ${stage} was killed (SIGKILL) from outside the pipeline, most likely by the kernel's ` +
        `out-of-memory killer${lower}`;
  }
  if (exitCode > 128) return `error: stage ${stage} died of signal ${exitCode - 128}`;
  return `pipeline stopped: stage ${stage} failed (its partial output is not in the cache)`;
}
