import { parseArgs } from "node:util";
import { join } from "node:path";
import {
  EXIT_BUSY,
  EXIT_ENVIRONMENT,
  EXIT_FAILED,
  EXIT_HEAP_LIMIT,
  EXIT_KILLED,
  EXIT_OUT_OF_MEMORY,
  EXIT_USER_ERROR,
  UserError,
} from "./core/errors.ts";
import { EnvironmentFault, faultsAsLines } from "./core/faults.ts";
import { renderDag, stageByName } from "./core/dag.ts";
import { acquireRunLock, BusyError } from "./storage/runlock.ts";
import { Interrupts } from "./core/interrupts.ts";
import { LeaseLost } from "./storage/lease.ts";
import { RemoteCache } from "./storage/remote.ts";
import { pullCommand, pushCommand } from "./commands/push_pull.ts";
import { Interrupted, notices, runPipeline, StaleUpstream, type StoppedStage } from "./core/run_pipeline.ts";
import { type Executor, StageFailed } from "./core/execute.ts";
import { chooseExecutor } from "./executors/choose.ts";
import { STAGE_V8_FLAGS } from "./core/stage_runner.ts";
import type { Decision, Plan, Reason, Selection } from "./core/plan.ts";
import { CACHE_ENV, Workspace } from "./storage/workspace.ts";
import { verifyCommand } from "./commands/verify.ts";
import { compareCommand } from "./commands/compare.ts";
import { gcCommand } from "./commands/gc.ts";
import { checkParams, checkSchemaCoversDag, describeParams } from "./core/schema.ts";
import type { Preflight, Project } from "./core/types.ts";
import {
  checkLine,
  describeReason,
  dryRunSummary,
  liveViewLine,
  type Paint,
  paintFor,
  statusSummary,
  timingLine,
  TIMINGS_HEADING,
  words,
} from "./ui/words.ts";
import { terminal, type Verbosity } from "./ui/terminal.ts";
import { liveViewOfRun } from "./ui/live.ts";
import type { LockFile } from "./core/lock.ts";
import { loadParams } from "./core/params.ts";
import { experimentsCommand } from "./experiments/command.ts";

const USAGE = `usage: main.ts COMMAND [options]
  run      [--from S] [--only S] [--until S] [--dry-run [--json]]   bring stages up to date
           [--executor [STAGE=]local|slurm] [--slurm-config FILE]   where stages run (default local;
           repeatable or a comma list; Slurm's sbatch options from FILE, default slurm.json)
  status   [--json]                                        fresh/stale per stage and why (--json: as JSON)
  dag                                                      the DAG as text and Mermaid
  verify   [STAGE...] [--cache] [--executor ...]           recompute (here or on Slurm) and compare with the lock
  compare  [REV...] [--json]                               params and metrics across git revisions
  gc       [--dry-run] [--keep-commits N]                  drop cache entries no recent lock uses
  params                                                   every param: default, what it accepts, meaning
  exp      run|start|show|apply|rm ...                     experiments: sweeps, a queue, a leaderboard (exp --help)
  push     [STAGE...]                                      send cache entries to the remote cache
  pull     [STAGE...]                                      fetch cache entries from the remote cache
common: --params FILE (default params.json), --set key=value (repeatable),
  -q/--quiet (errors and the final line only), -v/--verbose (reasons and timings in full)
environment: FACEGAN_CACHE (a cache shared by hosts), FACEGAN_REMOTE (http URL of a remote cache) with
  FACEGAN_REMOTE_TOKEN or FACEGAN_REMOTE_BASIC, FACEGAN_HOST_ID, FACEGAN_LEASE_S`;

export async function main(project: Project, argv: string[]): Promise<number> {
  terminal.verbosity = takeVerbosity(argv);
  try {
    return await command(project, argv.filter((arg) => !VERBOSITY_FLAGS.includes(arg)));
  } finally {
    terminal.finish();
  }
}

const VERBOSITY_FLAGS = ["-q", "--quiet", "-v", "--verbose"];

/** -q or -v, anywhere on the command line and for every command (the last one given wins). */
function takeVerbosity(argv: string[]): Verbosity {
  const given = argv.filter((arg) => VERBOSITY_FLAGS.includes(arg)).at(-1);
  return given === undefined ? "normal" : given.startsWith("-q") || given === "--quiet" ? "quiet" : "verbose";
}

async function command(project: Project, argv: string[]): Promise<number> {
  const log = (line: string) => terminal.say(line);
  try {
    if (argv[0] === "exp") return await experimentsCommand(project, argv.slice(1), log);
    const { values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        params: { type: "string" },
        set: { type: "string", multiple: true },
        from: { type: "string" },
        only: { type: "string" },
        until: { type: "string" },
        "dry-run": { type: "boolean" },
        cache: { type: "boolean" },
        json: { type: "boolean" },
        "keep-commits": { type: "string" },
        executor: { type: "string", multiple: true },
        "slurm-config": { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    });
    const [command = "run", ...rest] = positionals;
    if (values.help) {
      console.log(USAGE);
      return 0;
    }
    for (const name of [values.from, values.only, values.until]) if (name) stageByName(project.dag, name);
    const executor = await chooseExecutor(project.root, project.dag, values.executor ?? [], values["slurm-config"]);
    const { params, source, defaults, origin } = await loadParams(project.root, values.params, values.set ?? []);
    if (project.schema) {
      checkSchemaCoversDag(project.schema, project.dag, defaults);
      checkParams(project.schema, params, origin);
    }
    if (command === "params") {
      if (!project.schema) throw new UserError("this project declares no params schema");
      console.log(describeParams(project.schema, defaults, project.dag));
      return 0;
    }
    const workspace = await Workspace.open({
      root: project.root,
      dag: project.dag,
      params,
      paramsFile: source,
      remote: RemoteCache.fromEnv(log),
    });
    switch (command) {
      case "run":
        return await runCommand(
          workspace,
          { from: values.from, only: values.only, until: values.until },
          Boolean(values["dry-run"]),
          executor,
          await preflight(project, workspace),
          log,
          Boolean(values.json),
        );
      case "status":
        return await statusCommand(workspace, await preflight(project, workspace), Boolean(values.json));
      case "dag":
        console.log(renderDag(project.dag));
        return 0;
      case "verify":
        return await verifyCommand(workspace, rest, Boolean(values.cache), executor, log);
      case "compare":
        return await compareCommand(workspace, rest, Boolean(values.json));
      case "gc":
        if (Deno.env.get(CACHE_ENV)) {
          throw new UserError(
            `gc knows only this clone's locks, so in a cache shared through ${CACHE_ENV} it would remove ` +
              `entries other clones use; unset ${CACHE_ENV} to collect this clone's own outputs/cache`,
          );
        }
        return await gcCommand(workspace, Boolean(values["dry-run"]), keepCommits(values["keep-commits"]), log);
      case "push":
        return await pushCommand(workspace, rest, log);
      case "pull":
        return await pullCommand(workspace, rest, log);
      default:
        throw new UserError(
          `unknown command '${command}'; commands: run, status, dag, verify, compare, gc, params, exp, push, pull`,
        );
    }
  } catch (error) {
    terminal.abandon(); // the error is the final line
    if (error instanceof UserError) {
      console.error(`error: ${error.message}`);
      return EXIT_USER_ERROR;
    }
    if (error instanceof EnvironmentFault) {
      console.error(`error: ${error.message}`);
      return error.exitCode;
    }
    if (error instanceof BusyError) {
      console.error(`busy: ${error.message}`);
      return error.exitCode;
    }
    if (error instanceof LeaseLost) {
      console.error(`stopped: ${error.message}; another process now holds it`);
      return EXIT_BUSY;
    }
    if (error instanceof StaleUpstream) {
      console.error(
        `error: stage ${error.stage} is not up to date (${
          words(error.reasons)
        }); run \`deno task pipeline --until ${error.stage}\` first`,
      );
      return EXIT_USER_ERROR;
    }
    if (error instanceof TypeError && /option|argument/i.test(error.message)) {
      console.error(`error: ${error.message.split("\n")[0]}; see --help`);
      return EXIT_USER_ERROR;
    }
    throw error;
  }
}

/** The project's checks of this machine (Project.preflight), against the environments the lock recorded. */
async function preflight(project: Project, workspace: Workspace): Promise<Preflight[]> {
  if (!project.preflight) return [];
  const stages = (await workspace.readLock())?.stages ?? {};
  const locked = Object.fromEntries(Object.entries(stages).map(([name, stage]) => [name, stage.environment ?? {}]));
  return project.preflight(workspace.params, locked);
}

/** "; its output will differ from the lock's: WHY" where a preflight check says so for this stage. */
function differsNote(preflight: Preflight[], stage: string): string {
  const why = preflight.map((check) => check.differs[stage]).find(Boolean);
  return why ? `; its output will differ from the lock's: ${why}` : "";
}

async function runCommand(
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

/** `gc --keep-commits N`: a whole number (default 20); anything else would keep the wrong commits' entries. */
function keepCommits(text = "20"): number {
  if (!/^\d+$/.test(text)) {
    throw new UserError(
      `--keep-commits ${text}: expected a whole number >= 0 (how many recent commits' locks keep their entries), ` +
        "e.g. --keep-commits 20",
    );
  }
  return Number(text);
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

function checkLines(workspace: Workspace): string[] {
  return workspace.externalChecks().map(({ key, files, rehashed, seconds }) =>
    checkLine(key, files, rehashed, seconds)
  );
}

/** A stage as `status --json` and `--dry-run --json` give it; `reasons` with their words. */
interface StageReport {
  stage: string;
  decision: "fresh" | "stale" | "remote";
  action: Decision["action"];
  key: string | null;
  reasons: (Reason & { text: string })[];
  /** a fresh (or remote) stage: what making its cache entry took */
  timings: { wall_s: number; peak_rss_mb: number | null; ran_at: string } | null;
}

async function stageReports(workspace: Workspace, plan: Plan, lock: LockFile | null): Promise<StageReport[]> {
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
async function statusCommand(workspace: Workspace, checks: Preflight[], asJson: boolean): Promise<number> {
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
    const shortKey = key?.slice(0, 12) ?? "?".repeat(12);
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
