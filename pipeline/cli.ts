/**
 * The engine's command line: parse the options (one table, commands/options.ts), hand the
 * command to its module under commands/ (or experiments/), and turn what it throws into one
 * line and an exit code.
 */
import { parseArgs } from "node:util";
import { EXIT_BUSY, EXIT_USER_ERROR, UserError } from "./core/errors.ts";
import { EnvironmentFault } from "./core/faults.ts";
import { renderDag, stageByName } from "./core/dag.ts";
import { envName, useProjectNames } from "./core/env.ts";
import { loadParams } from "./core/params.ts";
import { StaleUpstream } from "./core/run_pipeline.ts";
import { checkParams, checkSchemaCoversDag } from "./core/schema.ts";
import type { Preflight, Project } from "./core/types.ts";
import { chooseExecutor } from "./executors/choose.ts";
import { BusyError } from "./storage/runlock.ts";
import { LeaseLost } from "./storage/lease.ts";
import { RemoteCache } from "./storage/remote.ts";
import { Workspace } from "./storage/workspace.ts";
import { compareCommand } from "./commands/compare.ts";
import { gcCommand, keepCommits } from "./commands/gc.ts";
import { SHARED_OPTIONS } from "./commands/options.ts";
import { paramsCommand } from "./commands/params.ts";
import { pullCommand, pushCommand } from "./commands/push_pull.ts";
import { runCommand } from "./commands/run.ts";
import { statusCommand } from "./commands/status.ts";
import { verifyCommand } from "./commands/verify.ts";
import { experimentsCommand } from "./experiments/command.ts";
import { terminal, type Verbosity } from "./ui/terminal.ts";
import { staleUpstreamLine } from "./ui/words.ts";

const usage = () =>
  `usage: main.ts COMMAND [options]
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
environment: ${envName("CACHE")} (a cache shared by hosts), ${envName("REMOTE")} (http URL of a remote cache) with
  ${envName("REMOTE_TOKEN")} or ${envName("REMOTE_BASIC")}, ${envName("HOST_ID")}, ${envName("LEASE_S")}`;

export async function main(project: Project, argv: string[]): Promise<number> {
  useProjectNames(project);
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
        ...SHARED_OPTIONS,
        from: { type: "string" },
        only: { type: "string" },
        until: { type: "string" },
        "dry-run": { type: "boolean" },
        cache: { type: "boolean" },
        "keep-commits": { type: "string" },
      },
    });
    const [command = "run", ...rest] = positionals;
    if (values.help) {
      console.log(usage());
      return 0;
    }
    for (const name of [values.from, values.only, values.until]) if (name) stageByName(project.dag, name);
    const executor = await chooseExecutor(project.root, project.dag, values.executor ?? [], values["slurm-config"]);
    const { params, source, defaults, origin } = await loadParams(project.root, values.params, values.set ?? []);
    if (project.schema) {
      checkSchemaCoversDag(project.schema, project.dag, defaults);
      checkParams(project.schema, params, origin);
    }
    if (command === "params") return paramsCommand(project.schema, defaults, project.dag);
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
      console.error(staleUpstreamLine(error.stage, error.reasons));
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
