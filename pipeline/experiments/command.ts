/**
 * `exp`: sweeps of params overlays run through the normal DAG. run (queue and run, or --queue
 * only), start (run the queue), show (leaderboard, experiments.html), apply (an experiment's
 * params into a params file), rm. Every experiment is checked against the params schema before
 * any is queued.
 */
import { parseArgs } from "node:util";
import { isAbsolute, join, relative, resolve } from "node:path";
import { UserError } from "../core/errors.ts";
import { SHARED_OPTIONS } from "../commands/options.ts";
import { writeFileAtomic } from "../storage/fsutil.ts";
import { acquireRunLock } from "../storage/runlock.ts";
import { Interrupts } from "../core/interrupts.ts";
import { type FlatParams, loadParams, overlayParams, readParamsFile } from "../core/params.ts";
import { checkParams, checkSchemaCoversDag } from "../core/schema.ts";
import { outputsDir, Workspace } from "../storage/workspace.ts";
import type { Project } from "../core/types.ts";
import { type Axis, gridOverlays, parseAxis, randomOverlays } from "./spec.ts";
import {
  checkName,
  type ExperimentRecord,
  lastJobs,
  listRecords,
  queueRecords,
  readRecord,
  removeRecord,
  requireRecord,
} from "./records.ts";
import { runExperiments } from "./runner.ts";
import { chooseExecutor, type ChosenExecutor } from "../executors/choose.ts";
import { experimentsPage, formatLeaderboard, leaderboard } from "./show.ts";

const EXP_USAGE = `usage: main.ts exp COMMAND [options]
  run    --set key=v1,v2,... [--set ...] [--params FILE] [--grid | --random N --seed S]
         [--seeds K] [--name PREFIX] [-j N] [--queue] [--executor [STAGE=]local|slurm] [--slurm-config FILE]
         queue experiments and run them (--queue: only queue); values: a list (v1,v2), or with
         --random a range (lo..hi, log:lo..hi); --seeds K: each config with K seeds (the base
         seed and the next K-1); --executor: where stages run, as for \`run\`
  start  [-j N] [--executor ...] [--slurm-config FILE]
         run the queue (also what a killed runner left; attaches to its Slurm jobs still going)
  show   [--sort METRIC] [--json]             the leaderboard; writes outputs/experiments.html
  apply  NAME [--to FILE]                     write NAME's params into FILE (default params.json)
  rm     NAME...                              remove experiment records`;

export async function experimentsCommand(project: Project, argv: string[], log: (line: string) => void) {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      ...SHARED_OPTIONS,
      grid: { type: "boolean" },
      random: { type: "string" },
      seed: { type: "string" },
      name: { type: "string" },
      jobs: { type: "string", short: "j" },
      queue: { type: "boolean" },
      seeds: { type: "string" },
      sort: { type: "string" },
      to: { type: "string" },
    },
  });
  const [command, ...names] = positionals;
  if (values.help) {
    console.log(EXP_USAGE);
    return 0;
  }
  if (!command) throw new UserError("exp needs a command: run, start, show, apply or rm (see exp --help)");
  const jobs = values.jobs === undefined ? undefined : wholeNumber("-j", values.jobs);
  switch (command) {
    case "run":
      return await runCommand(project, values, jobs, log);
    case "start":
      return await startCommand(project, jobs, await executorOf(project, values), log);
    case "show":
      return await showCommand(project, values.sort, Boolean(values.json), log);
    case "apply":
      return await applyCommand(project, names, values.to ?? "params.json", log);
    case "rm":
      return await rmCommand(project, names, log);
    default:
      throw new UserError(`unknown exp command '${command}'; commands: run, start, show, apply, rm`);
  }
}

function wholeNumber(option: string, text: string): number {
  const value = Number(text);
  if (!/^\d+$/.test(text) || value < 1) throw new UserError(`${option} must be a whole number >= 1, got ${text}`);
  return value;
}

/** The executor `--executor` and `--slurm-config` ask for (the same parsing as `run`'s). */
function executorOf(project: Project, values: { executor?: string[]; "slurm-config"?: string }) {
  return chooseExecutor(project.root, project.dag, values.executor ?? [], values["slurm-config"]);
}

interface RunValues {
  params?: string;
  set?: string[];
  grid?: boolean;
  random?: string;
  seed?: string;
  name?: string;
  queue?: boolean;
  seeds?: string;
  executor?: string[];
  "slurm-config"?: string;
}

/** Expand, check every experiment's params, queue them; unless --queue, run them. */
async function runCommand(project: Project, values: RunValues, jobs: number | undefined, log: (line: string) => void) {
  if (!values.set?.length && values.seeds === undefined) {
    throw new UserError("exp run needs at least one --set key=v1,v2,... (or --seeds K)");
  }
  if (values.grid && values.random !== undefined) throw new UserError("--grid and --random exclude each other");
  if (values.seed !== undefined && values.random === undefined) throw new UserError("--seed goes with --random N");
  if (values.queue && (values.executor || values["slurm-config"])) {
    throw new UserError("--queue only records experiments: give --executor and --slurm-config to `exp start`");
  }
  const prefix = values.name ?? "exp";
  checkName(prefix, "--name");
  const base = await loadParams(project.root, values.params, []);
  if (project.schema) checkSchemaCoversDag(project.schema, project.dag, base.defaults);
  const numeric = (key: string) =>
    project.schema?.[key]
      ? ["number", "integer"].includes(project.schema[key].type)
      : typeof base.params[key] === "number";
  const axes = (values.set ?? []).map((argument) => parseAxis(argument, numeric));
  let overlays = values.random === undefined ? gridOverlays(axes) : randomOverlays(
    axes,
    wholeNumber("--random", values.random),
    values.seed === undefined ? 0 : wholeNumberOrZero("--seed", values.seed),
    (key) => project.schema?.[key]?.type === "integer",
  );
  const seeds = values.seeds === undefined ? null : seedValues(project, base.params, axes, values.seeds);
  if (seeds) overlays = overlays.flatMap((overlay) => seeds.values.map((seed) => ({ ...overlay, [seeds.key]: seed })));
  const experiments = overlays.map((overlay) => ({
    overlay,
    params: checked(project, base, axes, overlay, `--seeds ${values.seeds}`),
  }));
  const executor = values.queue ? null : await executorOf(project, values);
  if (seeds) {
    log(
      `seeds: ${seeds.key} = ${seeds.values.join(", ")} for each of ${overlays.length / seeds.values.length} ` +
        `config(s) (the params' value and the ones after it: the same every time)`,
    );
  }

  // Take the run lock before queueing: a busy project queues nothing.
  const runLock = values.queue ? null : await acquireRunLock(outputsDir(project.root), "exp run", log);
  using interrupts = runLock && new Interrupts(() => runLock.releaseSync());
  try {
    const queuedAt = new Date().toISOString();
    const records = await queueRecords(
      project.root,
      prefix,
      experiments.map(({ overlay, params }) => ({
        version: 1,
        status: "queued",
        params_file: base.source,
        overlay,
        params,
        queued_at: queuedAt,
      })),
    );
    for (const record of records) log(`queued ${record.name}: ${describeOverlay(record.overlay)}`);
    if (values.queue) {
      log(`${records.length} queued; run them with \`deno task exp start\``);
      return 0;
    }
    const names = records.map((record) => record.name);
    return await runQueue(project, names, jobs, executor!, log, interrupts!);
  } finally {
    await runLock?.release();
  }
}

function wholeNumberOrZero(option: string, text: string): number {
  return text === "0" ? 0 : wholeNumber(option, text);
}

/**
 * `--seeds K`: K values of the project's seed param, the base params' value and the next K-1 (no
 * draw: the same command always gives the same seeds, and the first is a plain run's).
 */
function seedValues(
  project: Project,
  params: FlatParams,
  axes: Axis[],
  text: string,
): { key: string; values: number[] } {
  const count = wholeNumber("--seeds", text);
  const key = project.experiments?.seed;
  if (!key) throw new UserError("--seeds: this project declares no seed param to repeat experiments with");
  if (axes.some((axis) => axis.key === key)) {
    throw new UserError(
      `--seeds ${text} sets ${key} itself: drop --set ${key}=... (or drop --seeds and list the seeds in --set)`,
    );
  }
  const first = Number(params[key] ?? 0);
  return { key, values: Array.from({ length: count }, (_, i) => first + i) };
}

/** An experiment's params, checked as a plain run with these --set values (and seed) would be. */
function checked(
  project: Project,
  base: { params: FlatParams; origin: Record<string, string> },
  axes: Axis[],
  overlay: FlatParams,
  seedsSource: string,
): FlatParams {
  let params = base.params;
  const origin = { ...base.origin };
  for (const [key, value] of Object.entries(overlay)) {
    const axis = axes.find((candidate) => candidate.key === key);
    const source = axis ? `--set ${axis.argument}` : seedsSource;
    params = overlayParams(params, { [key]: value }, source);
    origin[key] = axis?.kind === "range" ? `${source} (drew ${JSON.stringify(value)})` : source;
  }
  if (project.schema) checkParams(project.schema, params, origin);
  return params;
}

function describeOverlay(overlay: FlatParams): string {
  return Object.entries(overlay).map(([key, value]) => `${key}=${JSON.stringify(value)}`).join(" ");
}

async function startCommand(
  project: Project,
  jobs: number | undefined,
  executor: ChosenExecutor,
  log: (line: string) => void,
) {
  const runLock = await acquireRunLock(outputsDir(project.root), "exp start", log);
  using interrupts = new Interrupts(() => runLock.releaseSync());
  try {
    // Holding the run lock, no other runner is alive: "running" records are what a killed one left.
    const pending = (await listRecords(project.root)).filter((r) => r.status === "queued" || r.status === "running");
    if (!pending.length) {
      log("the queue is empty: queue experiments with `deno task exp run --queue --set key=v1,v2`");
      return 0;
    }
    return await runQueue(project, pending.map((record) => record.name), jobs, executor, log, interrupts);
  } finally {
    await runLock.release();
  }
}

/**
 * Run the named experiments (skipping any removed or finished meanwhile), `jobs` at a time. The
 * default: as many as the cores allow, or all of them when every stage runs on the cluster. Ctrl-C
 * (`interrupts`) stops them, each queued again with its progress kept, for `exp start`.
 */
async function runQueue(
  project: Project,
  names: string[],
  jobs: number | undefined,
  executor: ChosenExecutor,
  log: (line: string) => void,
  interrupts: Interrupts,
) {
  const records = (await Promise.all(names.map((name) => readRecord(project.root, name))))
    .filter((record): record is ExperimentRecord => record !== null);
  const cores = navigator.hardwareConcurrency || 1;
  const perRun = Math.max(1, ...records.map((record) => project.experiments?.coresPerRun?.(record.params) ?? 1));
  const remote = !project.dag.some((stage) => executor.runsHere(stage.name));
  const slots = jobs ?? (remote ? records.length : Math.max(1, Math.floor(cores / perRun)));
  const parallel = Math.min(slots, records.length);
  const why = remote ? "every stage on the cluster" : `${cores} cores, ${perRun} per experiment`;
  log(
    `running ${records.length} experiment(s), ${parallel} at a time${
      jobs === undefined ? ` (default -j ${slots}: ${why})` : ""
    }`,
  );
  const workspace = await Workspace.open({ root: project.root, dag: project.dag, params: {}, paramsFile: "" });
  await workspace.cache.sweepTrash();
  const queue = [...names];
  const counts = await runExperiments({
    root: project.root,
    dag: project.dag,
    jobs: parallel,
    executor,
    previousJobs: lastJobs(records),
    log,
    interrupt: interrupts.signal,
    async next() {
      while (queue.length && !interrupts.signal.aborted) {
        const record = await readRecord(project.root, queue.shift()!);
        if (record && (record.status === "queued" || record.status === "running")) return record;
      }
      return null;
    },
  });
  if (interrupts.signal.aborted) {
    log(
      `interrupted: ${counts.interrupted} experiment(s) stopped and queued again, their progress kept ` +
        `(${counts.done} done, ${counts.failed} failed); \`deno task exp start\` resumes them`,
    );
    return interrupts.exitCode;
  }
  log(`${counts.done} done, ${counts.failed} failed; see \`deno task exp show\``);
  return counts.failed ? 1 : 0;
}

async function showCommand(project: Project, sort: string | undefined, asJson: boolean, log: (line: string) => void) {
  const records = await listRecords(project.root);
  const board = leaderboard(records, sort, project.experiments?.seed);
  console.log(asJson ? JSON.stringify(board, null, 2) : formatLeaderboard(board));
  const workspace = await Workspace.open({ root: project.root, dag: project.dag, params: {}, paramsFile: "" });
  const pagePath = join(workspace.outputsDir, "experiments.html");
  const page = await experimentsPage(board, records, {
    root: project.root,
    dag: workspace.dag,
    cache: workspace.cache,
    pageDir: workspace.outputsDir,
    figures: project.experiments?.figures,
  });
  await writeFileAtomic(pagePath, page.html);
  if (!asJson) {
    for (const line of page.missing) log(`missing: ${line}`);
    log(`wrote ${workspace.relative(pagePath)}`);
  }
  return 0;
}

/**
 * Write an experiment's params into a params file: into params.json (the defaults) every param;
 * into another file only those that differ from params.json, like the profiles in params/.
 */
async function applyCommand(project: Project, names: string[], target: string, log: (line: string) => void) {
  if (names.length !== 1) throw new UserError("exp apply takes one experiment name, e.g. exp apply exp-3");
  const record = await requireRecord(project.root, names[0]);
  if (record.status !== "done") {
    log(`note: ${record.name} is ${record.status}: its params are written, its artifacts may not be in the cache`);
  }
  const defaults = await readParamsFile(join(project.root, "params.json"), "params.json");
  overlayParams(defaults, record.params, `experiments/${record.name}.json`);
  // Where --params would look: an absolute path where it says, a relative one from the project
  // root (`../x.json` too: the user named it). The line names the file actually written.
  const path = resolve(project.root, target);
  const shown = isAbsolute(target) || relative(project.root, path).startsWith("..")
    ? path
    : relative(project.root, path);
  const isDefaults = shown === "params.json";
  const written: FlatParams = {};
  for (const key of Object.keys(defaults)) {
    if (isDefaults || JSON.stringify(record.params[key]) !== JSON.stringify(defaults[key])) {
      written[key] = record.params[key];
    }
  }
  await writeFileAtomic(path, JSON.stringify(nest(written), null, 2) + "\n");
  const how = isDefaults ? "deno task pipeline" : `deno task pipeline --params ${shown}`;
  log(`wrote ${record.name}'s params into ${shown}; \`${how}\` restores its artifacts from the cache`);
  return 0;
}

/** {"train.lr": 1} -> {"train": {"lr": 1}}, the shape of params files. */
function nest(flat: FlatParams): Record<string, unknown> {
  const nested: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(flat)) {
    const parts = key.split(".");
    let node = nested;
    for (const part of parts.slice(0, -1)) node = (node[part] ??= {}) as Record<string, unknown>;
    node[parts.at(-1)!] = value;
  }
  return nested;
}

async function rmCommand(project: Project, names: string[], log: (line: string) => void) {
  if (!names.length) throw new UserError("exp rm takes one or more experiment names");
  for (const name of names) await requireRecord(project.root, name);
  for (const name of names) {
    await removeRecord(project.root, name);
    log(`removed ${name} (its artifacts stay in the cache until \`deno task gc\`)`);
  }
  return 0;
}
