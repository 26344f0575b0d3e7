/**
 * Child-process entry that runs one stage: `deno run -A pipeline/core/stage_runner.ts JOB.json`.
 * Each stage runs in its own process so that independent stages truly run in parallel, a
 * stage's memory and tensor backend die with it, and a crash cannot corrupt the engine.
 * With `--detached` (a batch job on a cluster node) it does not watch the engine through stdin.
 */
import { join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { EXIT_ENVIRONMENT, EXIT_FAILED, EXIT_OUT_OF_MEMORY, EXIT_USER_ERROR, UserError } from "./errors.ts";
import { EnvironmentFault, environmentFault } from "./faults.ts";
import { writeFileAtomic } from "../storage/fsutil.ts";
import type { FlatParams, ParamValue } from "./params.ts";
import type { Progress, StageContext, StageRun } from "./types.ts";

/** What the runner reports besides the environment: volatile measurements and written files' hashes. */
export interface RunnerReport {
  /** files of outDir the stage hashed as it wrote them: path relative to outDir -> sha256, size */
  written: Record<string, { sha256: string; size: number }>;
  /** the process's peak resident memory (Linux: VmHWM), or null where unknown */
  peak_rss_mb: number | null;
}

export interface StageJob {
  name: string;
  root: string;
  module: string;
  params: FlatParams;
  inputs: Record<string, string>;
  inputHashes: Record<string, string>;
  outDir: string;
  resumed: boolean;
  /** where the runner writes the environment facts the stage recorded */
  environmentFile: string;
  /** the listings of the local data its params name (ExternalData by param), if any */
  externalFile?: string;
  /** where the runner writes its RunnerReport */
  reportFile: string;
  /** full error text (with stack) for a crash, so the terminal gets one line */
  logFile: string;
  /** where a resumable stage's last resume point (StageContext.resumePoint) is kept */
  resumePointFile: string;
  /** where a failing stage leaves its one-line error, for whoever records the failure (experiments) */
  errorFile: string;
  /** a stage that declares `live`: the folder of its live page (StageContext.liveDir) */
  liveDir?: string;
}

/**
 * A progress event on the runner's stderr: this mark, the JSON of a Progress, a newline. The
 * engine draws it; a line without the mark is the stage's own text, shown as it is.
 */
const PROGRESS_MARK = "\x1e";

/** The Progress a line of the runner's stderr carries, or null for a line of text. */
export function progressEvent(line: string): Progress | null {
  if (!line.startsWith(PROGRESS_MARK)) return null;
  try {
    return JSON.parse(line.slice(PROGRESS_MARK.length));
  } catch {
    return null;
  }
}

/**
 * The least time between two progress events: a few a second reach a terminal; a cluster job's
 * events land in its log file, which the engine reads every few seconds anyway.
 */
const PROGRESS_EVERY_MS = { attached: 200, detached: 2_000 };

/** A JS allocation the runtime refused (the V8 heap limit itself ends the process instead). */
const ALLOCATION_FAILED = /allocation failed|out of memory|Maximum memory size exceeded|could not allocate/i;

/**
 * Test hook (and a way to raise a stage's heap limit): V8 flags for every stage process, e.g.
 * `PIPELINE_STAGE_V8_FLAGS=--max-old-space-size=64`.
 */
export const STAGE_V8_FLAGS = "PIPELINE_STAGE_V8_FLAGS";

const RUNNER = fileURLToPath(import.meta.url);

/**
 * Deno's arguments that run the job in `jobFile` (the executable is Deno itself). `detached`: the
 * runner is not the engine's child (a cluster job), so it must not exit when its stdin is closed.
 */
export function runnerArgs(root: string, jobFile: string, detached: boolean): string[] {
  const v8Flags = Deno.env.get(STAGE_V8_FLAGS);
  return [
    "run",
    "-A",
    ...configArgs(root),
    ...(v8Flags ? [`--v8-flags=${v8Flags}`] : []),
    RUNNER,
    jobFile,
    ...(detached ? ["--detached"] : []),
  ];
}

function configArgs(root: string): string[] {
  try {
    Deno.statSync(join(root, "deno.json"));
    return ["--config", join(root, "deno.json")];
  } catch {
    return [];
  }
}

function makeContext(
  job: StageJob,
  environment: Record<string, string | number | boolean>,
  written: Record<string, { sha256: string; size: number }>,
  detached: boolean,
): StageContext {
  const encoder = new TextEncoder();
  const every = detached ? PROGRESS_EVERY_MS.detached : PROGRESS_EVERY_MS.attached;
  let lastProgress = 0;
  return {
    name: job.name,
    root: job.root,
    params: job.params,
    param<T extends ParamValue>(key: string): T {
      if (!(key in job.params)) {
        throw new Error(`stage ${job.name} reads param '${key}' but does not declare it in the DAG`);
      }
      return job.params[key] as T;
    },
    inputs: job.inputs,
    inputHashes: job.inputHashes,
    outDir: job.outDir,
    resumed: job.resumed,
    recordEnvironment(key, value) {
      environment[key] = value;
    },
    async resumePoint(description) {
      await writeFileAtomic(job.resumePointFile, description);
    },
    async external(key) {
      const data = job.externalFile ? JSON.parse(await Deno.readTextFile(job.externalFile))[key] : undefined;
      if (!data) throw new Error(`stage ${job.name} asks for the data of '${key}', which it does not declare external`);
      return data;
    },
    recordWritten(path, sha256, size) {
      written[path] = { sha256, size };
    },
    log(line) {
      console.error(`  ${job.name}: ${line}`);
    },
    progress(update) {
      if (Date.now() - lastProgress < every) return;
      lastProgress = Date.now();
      Deno.stderr.writeSync(encoder.encode(`${PROGRESS_MARK}${JSON.stringify(update)}\n`));
    },
    ...(job.liveDir ? { liveDir: job.liveDir } : {}),
  };
}

/** Peak resident memory of this process (workers included), from /proc; null elsewhere. */
function peakRssMb(): number | null {
  try {
    const match = Deno.readTextFileSync("/proc/self/status").match(/^VmHWM:\s+(\d+) kB/m);
    return match ? Math.round(Number(match[1]) / 1024) : null;
  } catch {
    return null;
  }
}

/** Exit when the engine dies (its end of our stdin closes), so a SIGKILLed run leaves no orphan. */
async function exitWithParent() {
  try {
    for await (const _ of Deno.stdin.readable) { /* the engine never writes; EOF means it died */ }
  } catch { /* closed */ }
  Deno.exit(137);
}

if (import.meta.main) {
  const job: StageJob = JSON.parse(await Deno.readTextFile(Deno.args[0]));
  const detached = Deno.args.includes("--detached");
  if (!detached) exitWithParent();
  const environment: Record<string, string | number | boolean> = {};
  const written: Record<string, { sha256: string; size: number }> = {};
  try {
    const module = await import(pathToFileURL(resolve(job.root, job.module)).href);
    const run = module.run as StageRun;
    if (typeof run !== "function") throw new Error(`${job.module} does not export run(ctx)`);
    await run(makeContext(job, environment, written, detached));
    const report: RunnerReport = { written, peak_rss_mb: peakRssMb() };
    await writeFileAtomic(job.reportFile, JSON.stringify(report));
    await writeFileAtomic(job.environmentFile, JSON.stringify(environment));
    Deno.exit(0);
  } catch (error) {
    Deno.exit(await explainFailure(job, error));
  }
}

/**
 * One line for a stage's failure, and the exit code that tells the engine what kind it was: the
 * engine names the memory params of a stage out of memory, the runner everything it can see.
 */
async function explainFailure(job: StageJob, error: unknown): Promise<number> {
  const say = async (line: string) => {
    console.error(`error: ${line}`);
    await Deno.writeTextFile(job.errorFile, line).catch(() => {});
  };
  if (error instanceof UserError) {
    await say(`${job.name}: ${error.message}`);
    return EXIT_USER_ERROR;
  }
  const fault = environmentFault(error, `in stage ${job.name}`, job.outDir);
  if (fault instanceof EnvironmentFault) {
    await say(`${job.name}: ${fault.message}`);
    return EXIT_ENVIRONMENT;
  }
  const message = error instanceof Error ? error.message : String(error);
  if (error instanceof RangeError && ALLOCATION_FAILED.test(message)) return EXIT_OUT_OF_MEMORY;
  const text = error instanceof Error ? error.stack ?? error.message : String(error);
  let details = `details: ${job.logFile}`;
  try {
    await Deno.mkdir(join(job.logFile, ".."), { recursive: true });
    await writeFileAtomic(job.logFile, text + "\n");
  } catch (logError) {
    details = `its details could not be written to ${job.logFile}: ${(logError as Error).message}`;
  }
  await say(`${job.name} failed: ${message.split("\n")[0]} (${details})`);
  return EXIT_FAILED;
}
