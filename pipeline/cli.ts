import { parseArgs } from "node:util";
import { join } from "node:path";
import { EXIT_USER_ERROR, UserError } from "./errors.ts";
import { type FlatParams, overlayParams, parseSetArgument, readParamsFile } from "./params.ts";
import { renderDag, stageByName } from "./dag.ts";
import { acquireRunLock, BusyError } from "./runlock.ts";
import { type RunEvent, runPipeline, StaleUpstream } from "./run.ts";
import { StageFailed } from "./execute.ts";
import { localExecutor } from "./executors/local.ts";
import type { Reason, Selection } from "./plan.ts";
import { Workspace } from "./workspace.ts";
import { verifyCommand } from "./verify.ts";
import { compareCommand } from "./compare.ts";
import { gcCommand } from "./gc.ts";
import { checkParams, checkSchemaCoversDag, describeParams, type ParamSchema } from "./schema.ts";
import type { StageDecl } from "./types.ts";

export interface Project {
  root: string;
  dag: StageDecl[];
  /** every param's type, range or choices and meaning; checked before any stage runs */
  schema?: ParamSchema;
}

const USAGE = `usage: main.ts COMMAND [options]
  run      [--from S] [--only S] [--until S] [--dry-run]   bring stages up to date
  status                                                   fresh/stale per stage and why
  dag                                                      the DAG as text and Mermaid
  verify   [STAGE...] [--cache]                            recompute and compare with the lock
  compare  [REV...] [--json]                               params and metrics across git revisions
  gc       [--dry-run] [--keep-commits N]                  drop cache entries no recent lock uses
  params                                                   every param: default, what it accepts, meaning
common: --params FILE (default params.json), --set key=value (repeatable)`;

/**
 * Load params: the defaults in params.json, then --params FILE over them, then each --set.
 * `origin` says where each key's value was last set, for error messages.
 */
export async function loadParams(root: string, paramsFile: string | undefined, sets: string[]) {
  const defaults = await readParamsFile(join(root, "params.json"), "params.json");
  let params: FlatParams = defaults;
  let source = "params.json";
  const origin: Record<string, string> = {};
  if (paramsFile && paramsFile !== "params.json") {
    const overlay = await readParamsFile(join(root, paramsFile), paramsFile);
    params = overlayParams(params, overlay, paramsFile);
    for (const key of Object.keys(overlay)) origin[key] = paramsFile;
    source = paramsFile;
  }
  for (const argument of sets) {
    const [key, value] = parseSetArgument(argument);
    params = overlayParams(params, { [key]: value }, `--set ${argument}`);
    origin[key] = `--set ${argument}`;
  }
  return { params, source, defaults, origin };
}

export async function main(project: Project, argv: string[]): Promise<number> {
  const log = (line: string) => console.error(line);
  try {
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
        help: { type: "boolean", short: "h" },
      },
    });
    const [command = "run", ...rest] = positionals;
    if (values.help) {
      console.log(USAGE);
      return 0;
    }
    for (const name of [values.from, values.only, values.until]) if (name) stageByName(project.dag, name);
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
    const workspace = await Workspace.open({ root: project.root, dag: project.dag, params, paramsFile: source });
    switch (command) {
      case "run":
        return await runCommand(
          workspace,
          { from: values.from, only: values.only, until: values.until },
          Boolean(values["dry-run"]),
          log,
        );
      case "status":
        return await statusCommand(workspace);
      case "dag":
        console.log(renderDag(project.dag));
        return 0;
      case "verify":
        return await verifyCommand(workspace, rest, Boolean(values.cache), log, words);
      case "compare":
        return await compareCommand(workspace, rest, Boolean(values.json));
      case "gc":
        return await gcCommand(workspace, Boolean(values["dry-run"]), Number(values["keep-commits"] ?? 20), log);
      default:
        throw new UserError(`unknown command '${command}'; commands: run, status, dag, verify, compare, gc, params`);
    }
  } catch (error) {
    if (error instanceof UserError) {
      console.error(`error: ${error.message}`);
      return EXIT_USER_ERROR;
    }
    if (error instanceof BusyError) {
      console.error(`busy: ${error.message}`);
      return error.exitCode;
    }
    if (error instanceof StaleUpstream) {
      console.error(
        `error: stage ${error.stage} is not up to date (${
          error.reasons.map(describeReason).join("; ")
        }); run \`deno task pipeline --until ${error.stage}\` first`,
      );
      return EXIT_USER_ERROR;
    }
    if (error instanceof StageFailed) {
      console.error(`pipeline stopped: stage ${error.stage} failed (its partial output is not in the cache)`);
      return error.exitCode;
    }
    if (error instanceof TypeError && /option|argument/i.test(error.message)) {
      console.error(`error: ${error.message.split("\n")[0]}; see --help`);
      return EXIT_USER_ERROR;
    }
    throw error;
  }
}

async function runCommand(workspace: Workspace, selection: Selection, dryRun: boolean, log: (line: string) => void) {
  const started = performance.now();
  if (dryRun) {
    const plan = await workspace.plan({ facts: await workspace.facts(), lock: await workspace.readLock(), selection });
    await workspace.statCache.save();
    for (const decision of plan.decisions) {
      if (decision.action === "cached") {
        log(`✓ ${decision.stage.padEnd(9)} cached   ${decision.record.key.slice(0, 12)}`);
      } else if (decision.action !== "ran") log(`• ${decision.stage.padEnd(9)} would run: ${words(decision.reasons)}`);
    }
    return 0;
  }
  const lock = await acquireRunLock(workspace.outputsDir, `pipeline ${Deno.args.join(" ")}`.trim(), log);
  try {
    await workspace.cache.sweepTrash();
    const outcomes = await runPipeline(workspace, {
      selection,
      executor: localExecutor,
      report: (event) => log(eventLine(event)),
    });
    const ran = outcomes.filter((outcome) => outcome.action === "ran").length;
    const seconds = ((performance.now() - started) / 1000).toFixed(2);
    log(
      `done in ${seconds}s: ${ran} ran, ${
        outcomes.length - ran
      } cached; lock: pipeline.lock.json, timings: outputs/latest/summary.json`,
    );
    return 0;
  } finally {
    await lock.release();
  }
}

function eventLine(event: RunEvent): string {
  const name = event.stage.padEnd(9);
  switch (event.kind) {
    case "cached":
      return `✓ ${name} cached   ${event.key.slice(0, 12)}`;
    case "start":
      return `▶ ${name} running  ${event.key.slice(0, 12)}  (${words(event.reasons)})${
        event.resumed ? " [resuming]" : ""
      }`;
    case "ran":
      return `✓ ${name} ran in ${event.wallSeconds}s  -> ${event.key.slice(0, 12)} (${event.files} files)`;
    case "failed":
      return `✗ ${name} failed after ${event.wallSeconds}s (exit ${event.exitCode})`;
  }
}

/** Each stage fresh or stale and why; a fresh one with the wall time its cache entry took to make. */
async function statusCommand(workspace: Workspace): Promise<number> {
  const plan = await workspace.plan({
    facts: await workspace.facts(),
    lock: await workspace.readLock(),
    selection: {},
  });
  await workspace.statCache.save();
  const width = Math.max(...plan.decisions.map((decision) => decision.stage.length));
  for (const decision of plan.decisions) {
    const name = decision.stage.padEnd(width);
    if (decision.action === "cached") {
      const made = decision.run ? `  made in ${decision.run.wall_s}s` : "";
      console.log(`${name}  fresh  ${decision.record.key.slice(0, 12)}${made}`);
    } else if (decision.action !== "ran") {
      const key = decision.action === "run" ? decision.key.slice(0, 12) : "?".repeat(12);
      console.log(`${name}  stale  ${key}  ${words(decision.reasons)}`);
    }
  }
  return 0;
}

function words(reasons: Reason[]): string {
  return reasons.map(describeReason).join("; ");
}

/** A reason in words: the one place reasons become text. */
export function describeReason(reason: Reason): string {
  switch (reason.kind) {
    case "new":
      return "never run (no entry in pipeline.lock.json)";
    case "param":
      return `param ${reason.key}: ${JSON.stringify(reason.before) ?? "(unset)"} -> ${
        JSON.stringify(reason.after) ?? "(unset)"
      }`;
    case "code":
      return reason.change === "added"
        ? `code ${reason.file} added`
        : reason.change === "removed"
        ? `code ${reason.file} no longer imported`
        : `code ${reason.file} changed`;
    case "library":
      return `library ${reason.name}: ${reason.before ?? "-"} -> ${reason.after ?? "-"}`;
    case "data":
      return `data named by ${reason.key} changed`;
    case "runtime":
      return `${reason.name}: ${reason.before ?? "-"} -> ${reason.after ?? "-"}`;
    case "input":
      return reason.change === "remade" ? `input ${reason.stage} will be re-made` : `input ${reason.stage} changed`;
    case "missing":
      return "artifact not in cache";
    case "damaged":
      return `cache entry damaged (${reason.detail}): recomputing`;
    case "forced":
      return "forced (--from)";
  }
}
