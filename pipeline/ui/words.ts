/**
 * The engine's events and reasons in words: the one place they become text, for the CLI and for
 * the experiments runner.
 */
import { formatBytes } from "../storage/fsutil.ts";
import type { Reason } from "../core/plan.ts";
import { EXIT_ENVIRONMENT, EXIT_HEAP_LIMIT, EXIT_KILLED, EXIT_OUT_OF_MEMORY, EXIT_USER_ERROR } from "../core/errors.ts";
import type { RunEvent, StoppedStage } from "../core/events.ts";
import { STAGE_V8_FLAGS } from "../core/stage_runner.ts";
import type { LeaseHolder } from "../storage/lease.ts";
import type { Progress } from "../core/types.ts";

/** How a status word reads: done or fine, to be done, gone wrong. */
export type Tone = "good" | "todo" | "bad";
/** Colours a status word (or leaves it as it is). */
export type Paint = (word: string, tone: Tone) => string;

export const plain: Paint = (word) => word;
const SGR: Record<Tone, string> = { good: "32", todo: "33", bad: "31" };
export const coloured: Paint = (word, tone) => `\x1b[${SGR[tone]}m${word}\x1b[39m`;

/**
 * Status words in colour where `stream` is a terminal and NO_COLOR (https://no-color.org) is
 * unset or empty; plain otherwise (a pipe, a file, CI logs).
 */
export function paintFor(stream: { isTerminal(): boolean }): Paint {
  return stream.isTerminal() && !Deno.env.get("NO_COLOR") ? coloured : plain;
}

/** A stage's name as every stage line starts with it: in a column 9 wide. */
export function stageColumn(stage: string): string {
  return stage.padEnd(9);
}

/** A key or output hash as people read it: its first 12 hex digits. */
export function shortHash(hash: string): string {
  return hash.slice(0, 12);
}

/** The run events said in a line of their own (the terminal draws progress, and counts). */
export type LineEvent = Exclude<RunEvent, { kind: "planned" | "output" | "progress" }>;

/** A run event in words (the pipeline's and each experiment's); `full`: every reason in full. */
export function eventLine(event: LineEvent, paint: Paint = plain, full = false): string {
  if (event.kind === "checked") return checkLine(event.param, event.files, event.rehashed, event.seconds);
  if (event.kind === "notice") return event.line;
  const name = stageColumn(event.stage);
  switch (event.kind) {
    case "cached":
      return `✓ ${name} ${paint("cached", "good")}   ${shortHash(event.key)}`;
    case "start":
      return `▶ ${name} ${paint("running", "todo")}  ${shortHash(event.key)}  (${words(event.reasons, full)})${
        event.resumed ? " [resuming]" : ""
      }`;
    case "ran":
      return `✓ ${name} ${paint("ran", "good")} in ${event.wallSeconds}s  -> ${
        shortHash(event.key)
      } (${event.files} files)`;
    case "failed":
      return `✗ ${name} ${paint("failed", "bad")} after ${event.wallSeconds}s (exit ${event.exitCode})`;
    case "low-space":
      return `warning: ${event.stage} wrote ${formatBytes(event.needed)} last time but only ${
        formatBytes(event.free)
      } is free in ${event.dir}: it will likely run out of space (\`deno task gc\` frees some)`;
    case "kept":
      return `  ${event.stage}'s partial output kept${
        event.resumePoint ? ` (${event.resumePoint})` : ""
      }: the next run resumes from it`;
    case "waiting":
      return `… ${name} waiting: ${describeHolder(event.holder)} holds the claim on ${shortHash(event.key)}`;
    case "took-over":
      return `⚠ ${name} taking over the claim on ${shortHash(event.key)}: ${event.why}`;
    case "reused":
      return `✓ ${name} ${paint("cached", "good")}   ${shortHash(event.key)} (made meanwhile by another process)`;
    case "reproduced":
      return `= ${name} reproduced the lock's output in another environment (${
        event.differences.join("; ")
      }): its lock entry is kept`;
    case "pulled":
      return `⇣ ${name} ${paint("pulled", "good")}   ${
        shortHash(event.key)
      } from the remote cache (${event.files} files)`;
    case "remote-refused":
      return `warning: ${event.stage}: not pulled (${event.why}); building it here`;
  }
}

/** What the terminal knows of a running stage's pace, from its progress events. */
export interface Pace {
  /** units per second since its first counted event */
  rate: number | null;
  /** seconds left at that rate */
  eta: number | null;
  /** seconds since it started */
  elapsed: number;
}

const BAR_WIDTH = 20;

/**
 * A running stage's progress: `train  [████░░░░]  41%  1,200/2,880 img  245 img/s  ETA 7s  epoch
 * 2/5`; `bar`: draw the bar (a terminal), else the percentage only (a log line).
 */
export function progressLine(name: string, progress: Progress | undefined, pace: Pace | null, bar = false): string {
  const parts = [name.padEnd(bar ? 14 : 0)];
  const { done, total, unit, note } = progress ?? {};
  if (done !== undefined && total) {
    const fraction = Math.min(1, Math.max(0, done / total));
    const filled = Math.round(fraction * BAR_WIDTH);
    if (bar) parts.push(`[${"█".repeat(filled)}${"░".repeat(BAR_WIDTH - filled)}]`);
    parts.push(
      `${(fraction * 100).toFixed(0).padStart(3)}%`,
      `${count(done)}/${count(total)}${unit ? ` ${unit}` : ""}`,
    );
  } else if (done !== undefined) {
    parts.push(`${count(done)}${unit ? ` ${unit}` : ""}`);
  } else if (bar) {
    parts.push(`[${"·".repeat(BAR_WIDTH)}]`);
  }
  if (pace?.rate) parts.push(`${pace.rate >= 10 ? pace.rate.toFixed(0) : pace.rate.toFixed(1)} ${unit ?? "units"}/s`);
  if (pace?.eta !== null && pace?.eta !== undefined) parts.push(`ETA ${duration(pace.eta)}`);
  else if (pace) parts.push(`${duration(pace.elapsed)}`);
  parts.push(note ?? "running");
  return parts.join("  ");
}

const count = (n: number) => Math.round(n).toLocaleString("en-US");

/** 42s, 3m05s, 1h02m */
export function duration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}

/** `3 of 7 stages done (43%)`, with `label` (an experiment) in front when given. */
export function countLine(done: number, total: number, label = ""): string {
  const percent = total ? Math.round((done / total) * 100) : 100;
  return `${label ? `[${label}] ` : ""}${done} of ${total} stages done (${percent}%)`;
}

/** The terminal's last live line: the counts of each run, what runs, for how long. */
export function footerLine(counts: string[], running: number, seconds: number): string {
  return `  ${[...counts, `${running} running`, duration(seconds)].join(" · ")}`;
}

/** `-v`: the heading of the stages' timings. */
export const TIMINGS_HEADING = "timings (this run's, or for a cached stage what making its entry took):";

/** `-v`: a stage's timings in full (this run's, or the cached entry's). */
export function timingLine(stage: string, action: string, wallSeconds?: number, peakRssMb?: number | null): string {
  const peak = peakRssMb ? `, peak memory ${peakRssMb} MiB` : "";
  return `  ${stageColumn(stage)} ${action.padEnd(6)} ${wallSeconds === undefined ? "-" : `${wallSeconds}s`}${peak}`;
}

/** status's last line: `7 stages: 5 fresh, 2 stale (train, export)` */
export function statusSummary(fresh: string[], stale: string[], remote: string[], paint: Paint = plain): string {
  const parts = [`${fresh.length} ${paint("fresh", "good")}`];
  if (stale.length) parts.push(`${stale.length} ${paint("stale", "todo")} (${stale.join(", ")})`);
  if (remote.length) parts.push(`${remote.length} ${paint("remote", "todo")} (${remote.join(", ")})`);
  return `${fresh.length + stale.length + remote.length} stages: ${parts.join(", ")}`;
}

/** `--dry-run`'s last line: `dry run: 2 of 7 stages would run (train, render)` */
export function dryRunSummary(toRun: string[], total: number): string {
  return `dry run: ${toRun.length} of ${total} stages would run${toRun.length ? ` (${toRun.join(", ")})` : ""}`;
}

/** `run --dry-run`: what a stage would do; `why`: its reasons in words (a stage that would run). */
export function dryRunLine(stage: string, action: string, key: string | null, why: string, paint: Paint): string {
  if (action === "cached") return `✓ ${stageColumn(stage)} ${paint("cached", "good")}   ${shortHash(key!)}`;
  if (action === "pull") {
    return `⇣ ${stageColumn(stage)} ${paint("would pull", "todo")} ${shortHash(key!)} from the remote cache`;
  }
  return `• ${stageColumn(stage)} ${paint("would run", "todo")}: ${why}`;
}

/** An experiment's stage whose key another experiment ran at the same time. */
export function sharedLine(stage: string): string {
  return `= ${stageColumn(stage)} shared: run at the same time by another experiment`;
}

/** `push`: a stage not sent; `key` null: its inputs are not made, so its key is not known. */
export function pushSkippedLine(stage: string, key: string | null): string {
  return `• ${stageColumn(stage)} skipped: ${key ? `${shortHash(key)} is` : "its inputs are"} not in the local cache`;
}

/** `push`: a stage sent, or found on the remote already (`sent` null). */
export function pushedLine(stage: string, key: string, files: number, sent: number | null): string {
  return sent === null
    ? `✓ ${stageColumn(stage)} already on the remote  ${shortHash(key)}`
    : `⇡ ${stageColumn(stage)} pushed ${shortHash(key)}  (${files} files, ${sent} bytes sent)`;
}

/** `pull`: a stage fetched, or made by another process while this one waited for the key's claim. */
export function pulledLine(stage: string, key: string, files: number, reused: boolean): string {
  return `⇣ ${stageColumn(stage)} ${reused ? "made meanwhile by another process" : "pulled"} ${
    shortHash(key)
  }  (${files} files)`;
}

/** `pull`: a stage the remote lacks; `key` null: its inputs are not made yet. */
export function notOnRemoteLine(stage: string, key: string | null): string {
  return key
    ? `• ${stageColumn(stage)} not on the remote: ${shortHash(key)} (run the pipeline to make it)`
    : `• ${stageColumn(stage)} not on the remote: its inputs are not made yet`;
}

/** What `verify` found for a stage. */
export type VerifyOutcome =
  | { kind: "not-checked"; why: string }
  | { kind: "reproducible"; output: string }
  | { kind: "differs"; files: string; environment: string | null };

/** `verify`: a stage's outcome, in a line (two when its environment differed too). */
export function verifyLine(stage: string, outcome: VerifyOutcome): string {
  switch (outcome.kind) {
    case "not-checked":
      return `${stageColumn(stage)} not checked: ${outcome.why}`;
    case "reproducible":
      return `${stageColumn(stage)} reproducible  ${shortHash(outcome.output)}`;
    case "differs":
      return `${stageColumn(stage)} DIFFERS  ${outcome.files}` +
        (outcome.environment ? `\n${" ".repeat(9)} note: ${outcome.environment}` : "");
  }
}

/** A run's last line. */
export function doneLine(seconds: string, ran: number, cached: number): string {
  return `done in ${seconds}s: ${ran} ran, ${cached} cached; lock: pipeline.lock.json, timings: outputs/latest/summary.json`;
}

/** `interrupted: train's progress kept (epoch 4 of 9); run again to resume` */
export function interruptedLine(stopped: StoppedStage[]): string {
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
 * speak, so the engine says it, with the params that drive the stage's memory (`drivers`: "key=value").
 */
export function stageFailedLine(stage: string, exitCode: number, drivers: string[]): string | null {
  if (exitCode === EXIT_USER_ERROR || exitCode === EXIT_ENVIRONMENT) return null;
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

/** `--only S`: an upstream stage S reads is not up to date. */
export function staleUpstreamLine(stage: string, reasons: Reason[]): string {
  return `error: stage ${stage} is not up to date (${
    words(reasons)
  }); run \`deno task pipeline --until ${stage}\` first`;
}

/** `status` while a run is going on, with a live view open. */
export function liveViewLine(path: string): string {
  return `live view: ${path} (a run is going on: open it in a browser; it reloads itself)`;
}

/** "pid N on host H ('command', since S)" */
function describeHolder(holder: LeaseHolder): string {
  return `pid ${holder.pid} on host ${holder.host} ('${holder.command}', since ${holder.started})`;
}

export function checkLine(param: string, files: number, rehashed: number, seconds: number): string {
  return `  ${param}: ${files.toLocaleString("en-US")} files checked in ${seconds.toFixed(2)}s (${
    rehashed.toLocaleString("en-US")
  } re-hashed)`;
}

/** Reasons in words; `full` (-v): every file a data reason names, not the first five. */
export function words(reasons: Reason[], full = false): string {
  return reasons.map((reason) => describeReason(reason, full)).join("; ");
}

/** A reason in words: the one place reasons become text. */
export function describeReason(reason: Reason, full = false): string {
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
    case "data": {
      const files = reason.files ?? [];
      const first = full ? files : files.slice(0, 5);
      const shown = first.join(", ") + (files.length > first.length ? `, ... (${files.length} files)` : "");
      return `data named by ${reason.key} changed${files.length ? `: ${shown}` : ""}`;
    }
    case "runtime":
      return `${reason.name}: ${reason.before ?? "-"} -> ${reason.after ?? "-"}`;
    case "input":
      return reason.change === "remade"
        ? `input ${reason.stage} will be re-made`
        : reason.change === "pulled"
        ? `input ${reason.stage} will be pulled from the remote cache`
        : `input ${reason.stage} changed`;
    case "missing":
      return "artifact not in cache";
    case "damaged":
      return `cache entry damaged (${reason.detail}): recomputing`;
    case "forced":
      return "forced (--from)";
  }
}
