/**
 * The Slurm executor: a stage's job (the same job.json and pipeline/core/stage_runner.ts as a local
 * run) runs as a batch job on a cluster node. This module only submits it (`sbatch --parsable`,
 * tried again with backoff when sbatch itself fails), watches it (`scontrol show job ID -o`: no
 * accounting database needed), copies its log into the run's output, says in one line how a job
 * that did not complete ended, and `scancel`s it when the run is cancelled; or, for a job a killed
 * run submitted (its id recorded by the caller), attaches to it while it goes. The nodes must see
 * the project and the cache at the same paths (a shared filesystem); a job that cannot is told
 * apart from a stage that failed.
 */
import { basename, dirname, join } from "node:path";
import { EXIT_FAILED, EXIT_OUT_OF_MEMORY, EXIT_USER_ERROR } from "../core/errors.ts";
import type { Executor, StageOutput } from "../core/execute.ts";
import { exists } from "../storage/fsutil.ts";
import { progressEvent, runnerArgs, STAGE_V8_FLAGS, type StageJob } from "../core/stage_runner.ts";
import { sbatchArgs, type SlurmConfig } from "./slurm_config.ts";

/** The job script's exit code when the node cannot see the job file (sysexits' EX_NOINPUT). */
const EXIT_NOT_SHARED = 66;
/** V8 ends a process at its heap limit with a trap: the job ends by this signal. */
const SIGTRAP = 5;
/** sbatch errors that trying again cannot mend: the request itself is wrong. */
const REQUEST_FAULT = /invalid|not available|violates|unrecognized|not recognized|unknown/i;
/** How long to keep trying to read a job's state while scontrol fails (the controller busy or down). */
const STATE_PATIENCE_MS = 120_000;
/** Slurm's own notice of a job's end in its log (`*** JOB 7 ON node1 CANCELLED AT ... ***`): said in our line. */
const END_NOTICE = /^slurmstepd[^:]*: error: \*\*\* JOB \d+ .*\*\*\*\s*$/;
/** How long a cancelled job may take to end (Slurm's KillWait is 30 s by default). */
const CANCEL_PATIENCE_MS = 90_000;

/** How a job ended, from `scontrol show job ID -o`. */
export interface JobEnd {
  id: string;
  /** the job's name (JobName) */
  name: string;
  state: string;
  reason: string;
  /** ExitCode=code:signal */
  exitCode: number;
  exitSignal: number;
  node: string;
  timeLimit: string;
}

const RUNNING_STATES = new Set([
  "PENDING",
  "CONFIGURING",
  "RUNNING",
  "COMPLETING",
  "SUSPENDED",
  "REQUEUED",
  "RESIZING",
]);

/** A Slurm command is missing on this host. */
class SlurmMissing extends Error {}

export function slurmExecutor(config: SlurmConfig, configLabel: string): Executor {
  return {
    async run(job, jobFile, signal, output, submitted) {
      try {
        return await runJob(config, configLabel, job, jobFile, signal, output, submitted);
      } catch (error) {
        if (!(error instanceof SlurmMissing)) throw error;
        output.line(`error: ${job.name}: ${error.message}`);
        return EXIT_USER_ERROR;
      }
    },
    attach: (id, job, jobFile, output) => attachJob(config, id, job, jobFile, output),
  };
}

/** The job's name in Slurm (and its log's): the stage and the start of its key. */
function jobName(job: StageJob): string {
  return basename(job.logFile, ".log");
}

/** A line about the stage's job (`say`), or its one error line (`fail`), to the stage's output. */
function voice(job: StageJob, output: StageOutput) {
  return {
    say: (line: string) => output.line(`  ${job.name}: ${line}`),
    fail: (line: string) => output.line(`error: ${job.name}: ${line}`),
  };
}

/** Where the job's log goes: `%j` stands for its id. */
function logPattern(job: StageJob): string {
  return join(dirname(job.logFile), `${jobName(job)}-slurm-%j.log`);
}

async function runJob(
  config: SlurmConfig,
  configLabel: string,
  job: StageJob,
  jobFile: string,
  signal: AbortSignal,
  output: StageOutput,
  reportSubmitted?: (id: string) => void,
) {
  const { say, fail } = voice(job, output);
  const pattern = logPattern(job);
  await Deno.mkdir(dirname(pattern), { recursive: true });
  const args = [
    "--parsable",
    `--job-name=${jobName(job)}`,
    `--output=${pattern}`,
    `--chdir=${job.root}`,
    ...sbatchArgs(config, job.name),
  ];
  const submitted = await submit(args, jobScript(config.deno ?? Deno.execPath(), job, jobFile), config, signal, say);
  if ("refused" in submitted) {
    fail(`sbatch refused the job: ${submitted.refused}; check the Slurm config (${configLabel})`);
    return EXIT_USER_ERROR;
  }
  if ("failed" in submitted) {
    fail(`sbatch failed ${submitted.attempts} time(s), the last with: ${submitted.failed}`);
    return EXIT_FAILED;
  }
  if (!("id" in submitted)) return EXIT_FAILED; // cancelled before it was submitted
  reportSubmitted?.(submitted.id);
  say(`Slurm job ${submitted.id} submitted (log: ${pattern.replace("%j", submitted.id)})`);
  return await follow(config, job, jobFile, submitted.id, signal, output);
}

/**
 * A job an earlier run submitted for this key (its runner was killed): while Slurm says it is
 * pending or running, or that it completed (its output not yet promoted), a wait for its end;
 * null when it ended otherwise or Slurm no longer knows it, and the stage must run anew.
 */
async function attachJob(
  config: SlurmConfig,
  id: string,
  job: StageJob,
  jobFile: string,
  output: StageOutput,
): Promise<((signal: AbortSignal) => Promise<number>) | null> {
  const { say } = voice(job, output);
  let result;
  try {
    result = await slurm("scontrol", ["show", "job", id, "-o"]);
  } catch (error) {
    if (error instanceof SlurmMissing) return null; // no Slurm here: no job of this host's to watch
    throw error;
  }
  if (result.code !== 0 && /invalid job id/i.test(result.stderr)) return null;
  if (result.code === 0) {
    const state = parseJob(id, result.stdout);
    // A job id Slurm has since given to another job (a reset cluster counts from 1 again).
    if (state.name !== jobName(job)) return null;
    if (!RUNNING_STATES.has(state.state) && state.state !== "COMPLETED") {
      say(`Slurm job ${id} of an earlier run ended ${state.state}: running the stage again`);
      return null;
    }
    say(
      state.state === "COMPLETED"
        ? `Slurm job ${id} of an earlier run completed: taking its output (not resubmitted)`
        : `Slurm job ${id} of an earlier run is still ${state.state.toLowerCase()}: watching it (not resubmitted)`,
    );
  } // else: its state cannot be read now (the controller busy): the watch waits for it, as for a new job
  return (signal) => follow(config, job, jobFile, id, signal, output);
}

/** Watch a submitted job to its end, copying its log; its exit code as the engine takes it. */
async function follow(
  config: SlurmConfig,
  job: StageJob,
  jobFile: string,
  id: string,
  signal: AbortSignal,
  output: StageOutput,
) {
  const { say, fail } = voice(job, output);
  const log = logPattern(job).replace("%j", id);
  const tail = new LogTail(log, output);
  const end = await watch(id, tail, config.poll_seconds ?? 5, signal, say);
  if (typeof end === "string") {
    fail(`Slurm job ${id}: ${end}; log: ${log}`);
    return EXIT_FAILED;
  }
  if (end.state === "CANCELLED" && signal.aborted) {
    say(`Slurm job ${id} cancelled`);
    return EXIT_FAILED;
  }
  if (end.state === "COMPLETED" && !(await exists(job.environmentFile))) {
    fail(
      `Slurm job ${id} completed on ${end.node} but wrote nothing this host can see in ${dirname(jobFile)}: ` +
        `the project and the cache must be on a filesystem the nodes share, at the same paths; log: ${log}`,
    );
    return EXIT_FAILED;
  }
  const outcome = describeEnd(end, dirname(jobFile), log, tail.errors);
  if (outcome.line) fail(outcome.line);
  return outcome.code;
}

type Submitted = { id: string } | { refused: string } | { failed: string; attempts: number } | { cancelled: true };

/** sbatch, tried again after 1, 2, 4, ... s while it fails for a reason other than the request itself. */
async function submit(
  args: string[],
  script: string,
  config: SlurmConfig,
  signal: AbortSignal,
  say: (line: string) => void,
): Promise<Submitted> {
  const attempts = config.submit_attempts ?? 6;
  for (let attempt = 1;; attempt++) {
    if (signal.aborted) return { cancelled: true };
    const result = await slurm("sbatch", args, script);
    if (result.code === 0) return { id: result.stdout.trim().split(";")[0] };
    const message = lastLine(result.stderr) || `sbatch exited with ${result.code}`;
    if (REQUEST_FAULT.test(message)) return { refused: message };
    if (attempt >= attempts) return { failed: message, attempts };
    const delay = 2 ** (attempt - 1);
    say(`sbatch failed (${message}); trying again in ${delay}s (attempt ${attempt + 1} of ${attempts})`);
    await pause(delay * 1000, signal);
  }
}

/**
 * Follow a job until it ends, copying its log to stderr as it grows; scancel it when `signal`
 * aborts. Returns how it ended, or why that could not be known.
 */
async function watch(
  id: string,
  tail: LogTail,
  pollSeconds: number,
  signal: AbortSignal,
  say: (line: string) => void,
): Promise<JobEnd | string> {
  const submitted = Date.now();
  let wait = 250;
  let shown = "";
  let cancelledAt = 0;
  let failingSince = 0;
  try {
    while (true) {
      if (signal.aborted && !cancelledAt) {
        cancelledAt = Date.now();
        wait = 250;
        const result = await slurm("scancel", [id]);
        if (result.code !== 0) say(`scancel ${id} failed: ${lastLine(result.stderr)}`);
      }
      const result = await slurm("scontrol", ["show", "job", id, "-o"]);
      if (result.code !== 0) {
        if (/invalid job id/i.test(result.stderr)) {
          return "Slurm no longer knows the job (purged before its end was seen)";
        }
        failingSince ||= Date.now();
        if (Date.now() - failingSince > STATE_PATIENCE_MS) {
          return `its state could not be read for ${STATE_PATIENCE_MS / 1000}s (scontrol: ${
            lastLine(result.stderr)
          }); it may still be running: see squeue -j ${id}`;
        }
      } else {
        failingSince = 0;
        const end = parseJob(id, result.stdout);
        if (!RUNNING_STATES.has(end.state)) return end;
        // Say where it runs, and why it waits when it waits long.
        const state = end.state === "RUNNING"
          ? `running on ${end.node}`
          : end.state === "PENDING" && Date.now() - submitted > 10_000
          ? `waiting in the queue (${end.reason})`
          : shown;
        if (state !== shown) say(`Slurm job ${id} ${state}`);
        shown = state;
      }
      await tail.copy(false);
      if (cancelledAt && Date.now() - cancelledAt > CANCEL_PATIENCE_MS) {
        return `still not ended ${CANCEL_PATIENCE_MS / 1000}s after scancel: see squeue -j ${id}`;
      }
      // Once scancel is sent, the abort no longer cuts the wait short.
      await pause(wait, cancelledAt ? undefined : signal);
      wait = Math.min(wait * 1.5, pollSeconds * 1000);
    }
  } finally {
    await tail.copy(true);
  }
}

/** The fields of `scontrol show job ID -o` this module reads. */
export function parseJob(id: string, line: string): JobEnd {
  const field = (name: string) => line.match(new RegExp(`(?:^|\\s)${name}=(\\S*)`))?.[1] ?? "";
  const [code, exitSignal] = field("ExitCode").split(":").map(Number);
  return {
    id,
    name: field("JobName"),
    state: field("JobState"),
    reason: field("Reason"),
    exitCode: code || 0,
    exitSignal: exitSignal || 0,
    node: field("BatchHost") || field("NodeList"),
    timeLimit: field("TimeLimit"),
  };
}

/**
 * How an ended job went, as the exit code the engine gets (2: the stage's own user error) and,
 * unless it completed, the one line that says why, with the job's log. `said`: the error lines
 * the job itself wrote (the stage runner's), folded into that line.
 */
export function describeEnd(
  end: JobEnd,
  partialDir: string,
  log: string,
  said: string[] = [],
): { code: number; line?: string } {
  if (end.state === "COMPLETED") return { code: 0 };
  const job = `Slurm job ${end.id}`;
  let what: string;
  switch (end.state) {
    case "TIMEOUT":
      what = `${job} went over its time limit (${end.timeLimit}) and was stopped; ` +
        `give the stage more time ('time' in the Slurm config)`;
      break;
    case "CANCELLED":
      what = `${job} was cancelled (scancel, or an administrator)`;
      break;
    case "OUT_OF_MEMORY":
      what = `${job} ran out of memory on ${end.node}; ask for more ('mem' in the Slurm config)`;
      break;
    case "NODE_FAIL":
      what = `${job} was lost with its node ${end.node} (NODE_FAIL); run again`;
      break;
    case "FAILED":
      if (end.exitCode === EXIT_NOT_SHARED) {
        what = `${job}: node ${end.node} cannot see ${partialDir}: the project and the cache must be on a ` +
          `filesystem the nodes share, at the same paths`;
      } else if (end.reason === "JobLaunchFailure") {
        what = `${job} could not start on ${end.node} (JobLaunchFailure): the node must be able to write the ` +
          `job's log, so the project must be on a filesystem the nodes share, at the same paths`;
      } else if (end.exitCode === EXIT_OUT_OF_MEMORY) {
        what =
          `${job} ran out of memory on ${end.node}: an allocation failed; ask for more ('mem' in the Slurm config)`;
      } else if (end.exitSignal === SIGTRAP) {
        what = `${job} ran out of memory on ${end.node}: it reached the JavaScript heap limit; raise the limit ` +
          `(${STAGE_V8_FLAGS}=--max-old-space-size=MiB)`;
      } else {
        const signal = end.exitSignal ? `, signal ${end.exitSignal}` : "";
        what = `${job} failed on ${end.node} (exit ${end.exitCode}${signal})`;
      }
      break;
    default:
      what = `${job} ended ${end.state} (${end.reason})`;
  }
  const why = said.length ? `: ${said.join("; ")}` : "";
  const code = end.state === "FAILED" && end.exitCode === EXIT_USER_ERROR ? EXIT_USER_ERROR : EXIT_FAILED;
  return { code, line: `${what}${why}; log: ${log}` };
}

/** The batch script: check that the node sees the job file, then run the stage runner detached. */
function jobScript(deno: string, job: StageJob, jobFile: string): string {
  const command = [deno, ...runnerArgs(job.root, jobFile, true)].map(quote).join(" ");
  return `#!/bin/sh
# stage ${job.name}, submitted by pipeline/executors/slurm.ts
if [ ! -r ${quote(jobFile)} ]; then
  printf '  %s: this node (%s) cannot see %s\\n' ${quote(job.name)} "$(hostname)" ${quote(jobFile)} >&2
  exit ${EXIT_NOT_SHARED}
fi
exec ${command}
`;
}

function quote(word: string): string {
  return `'${word.replaceAll("'", `'\\''`)}'`;
}

/** Run a Slurm client command; `input` goes to its stdin. */
async function slurm(command: string, args: string[], input?: string) {
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(command, {
      args,
      stdin: input === undefined ? "null" : "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new SlurmMissing(`${command} not found: install Slurm's client commands here (Debian: slurm-client)`);
    }
    throw error;
  }
  if (input !== undefined) {
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(input));
    await writer.close();
  }
  const output = await child.output();
  const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
  return { code: output.code, stdout: decode(output.stdout), stderr: decode(output.stderr) };
}

function lastLine(text: string): string {
  return text.trim().split("\n").at(-1)?.trim() ?? "";
}

/** Wait `ms`, or less if `signal` aborts. */
function pause(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}

/**
 * Hands a growing log file to the stage's output, whole lines at a time (progress events as
 * progress). The job's own `error: ` lines are kept back, for the one line that says how the job
 * ended, and Slurm's notice of the end is left out: that line says it.
 */
class LogTail {
  readonly errors: string[] = [];
  private offset = 0;
  constructor(private readonly path: string, private readonly output: StageOutput) {}

  /** Copy what was added since the last call; `final`: the file is complete, copy a last partial line too. */
  async copy(final: boolean): Promise<void> {
    // Not there yet (the job has not started), or not visible from here: nothing to copy.
    const file = await Deno.open(this.path).catch(() => null);
    if (!file) return;
    await file.seek(this.offset, Deno.SeekMode.Start);
    const bytes = new Uint8Array(await new Response(file.readable).arrayBuffer());
    const end = final ? bytes.length : bytes.lastIndexOf(10) + 1;
    this.offset += end;
    const lines = new TextDecoder().decode(bytes.subarray(0, end)).split(/(?<=\n)/).filter(Boolean);
    this.errors.push(...lines.filter((line) => line.startsWith("error: ")).map((line) => line.slice(7).trim()));
    for (const line of lines) {
      if (line.startsWith("error: ") || END_NOTICE.test(line)) continue;
      const update = progressEvent(line.trimEnd());
      if (update) this.output.progress(update);
      else this.output.line(line.replace(/\n$/, ""));
    }
  }
}
