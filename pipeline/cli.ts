import { parseArgs } from "node:util";
import { join } from "node:path";
import { EXIT_USER_ERROR, UserError } from "./errors.ts";
import { type FlatParams, overlayParams, parseSetArgument, readParamsFile } from "./params.ts";
import { renderDag, stageByName } from "./dag.ts";
import { acquireRunLock, BusyError } from "./runlock.ts";
import { runPipeline, type Selection, StageFailed } from "./run.ts";
import { Workspace } from "./workspace.ts";
import { verifyCommand } from "./verify.ts";
import { compareCommand } from "./compare.ts";
import { gcCommand } from "./gc.ts";
import type { StageDecl } from "./types.ts";

export interface Project {
  root: string;
  dag: StageDecl[];
}

const USAGE = `usage: main.ts COMMAND [options]
  run      [--from S] [--only S] [--until S] [--dry-run]   bring stages up to date
  status                                                   fresh/stale per stage and why
  dag                                                      the DAG as text and Mermaid
  verify   [STAGE...] [--cache]                            recompute and compare with the lock
  compare  [REV...] [--json]                               params and metrics across git revisions
  gc       [--dry-run] [--keep-commits N]                  drop cache entries no recent lock uses
common: --params FILE (default params.json), --set key=value (repeatable)`;

/** Load params: the defaults in params.json, then --params FILE over them, then each --set. */
export async function loadParams(root: string, paramsFile: string | undefined, sets: string[]) {
  const defaultsPath = join(root, "params.json");
  let params: FlatParams = await readParamsFile(defaultsPath, "params.json");
  let source = "params.json";
  if (paramsFile && paramsFile !== "params.json") {
    params = overlayParams(params, await readParamsFile(join(root, paramsFile), paramsFile), paramsFile);
    source = paramsFile;
  }
  for (const argument of sets) {
    const [key, value] = parseSetArgument(argument);
    params = overlayParams(params, { [key]: value }, `--set ${argument}`);
  }
  return { params, source };
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
    const { params, source } = await loadParams(project.root, values.params, values.set ?? []);
    const workspace = await Workspace.open({ root: project.root, dag: project.dag, params, paramsFile: source });
    switch (command) {
      case "run":
        return await runCommand(
          workspace,
          {
            from: values.from,
            only: values.only,
            until: values.until,
          },
          Boolean(values["dry-run"]),
          log,
        );
      case "status":
        return await statusCommand(workspace);
      case "dag":
        console.log(renderDag(project.dag));
        return 0;
      case "verify":
        return await verifyCommand(workspace, rest, Boolean(values.cache), log);
      case "compare":
        return await compareCommand(workspace, rest, Boolean(values.json));
      case "gc":
        return await gcCommand(workspace, Boolean(values["dry-run"]), Number(values["keep-commits"] ?? 20), log);
      default:
        throw new UserError(`unknown command '${command}'; commands: run, status, dag, verify, compare, gc`);
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
    await runPipeline(workspace, { selection, dryRun, log });
    return 0;
  }
  const lock = await acquireRunLock(workspace.outputsDir, `pipeline ${Deno.args.join(" ")}`.trim(), log);
  try {
    await workspace.cache.sweepTrash();
    const outcomes = await runPipeline(workspace, { selection, log });
    const ran = outcomes.filter((outcome) => outcome.action === "ran").length;
    const seconds = ((performance.now() - started) / 1000).toFixed(2);
    log(`done in ${seconds}s: ${ran} ran, ${outcomes.length - ran} cached; lock: pipeline.lock.json`);
    return 0;
  } finally {
    await lock.release();
  }
}

async function statusCommand(workspace: Workspace): Promise<number> {
  const outcomes = await runPipeline(workspace, { selection: {}, dryRun: true, log: () => {} });
  const width = Math.max(...outcomes.map((outcome) => outcome.name.length));
  for (const outcome of outcomes) {
    const state = outcome.action === "cached" ? "fresh" : "stale";
    const key = outcome.record?.key.slice(0, 12) ?? "?".repeat(12);
    const why = outcome.reasons.length ? `  ${outcome.reasons.join("; ")}` : "";
    console.log(`${outcome.name.padEnd(width)}  ${state}  ${key}${why}`);
  }
  return 0;
}
