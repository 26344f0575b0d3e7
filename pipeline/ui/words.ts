/**
 * The engine's events and reasons in words: the one place they become text, for the CLI and for
 * the experiments runner.
 */
import { formatBytes } from "../storage/fsutil.ts";
import type { Reason } from "../core/plan.ts";
import type { RunEvent } from "../core/events.ts";
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

/** The run events said in a line of their own (the terminal draws progress, and counts). */
export type LineEvent = Exclude<RunEvent, { kind: "planned" | "output" | "progress" }>;

/** A run event in words (the pipeline's and each experiment's); `full`: every reason in full. */
export function eventLine(event: LineEvent, paint: Paint = plain, full = false): string {
  if (event.kind === "checked") return checkLine(event.param, event.files, event.rehashed, event.seconds);
  if (event.kind === "notice") return event.line;
  const name = event.stage.padEnd(9);
  switch (event.kind) {
    case "cached":
      return `✓ ${name} ${paint("cached", "good")}   ${event.key.slice(0, 12)}`;
    case "start":
      return `▶ ${name} ${paint("running", "todo")}  ${event.key.slice(0, 12)}  (${words(event.reasons, full)})${
        event.resumed ? " [resuming]" : ""
      }`;
    case "ran":
      return `✓ ${name} ${paint("ran", "good")} in ${event.wallSeconds}s  -> ${
        event.key.slice(0, 12)
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
      return `… ${name} waiting: ${describeHolder(event.holder)} holds the claim on ${event.key.slice(0, 12)}`;
    case "took-over":
      return `⚠ ${name} taking over the claim on ${event.key.slice(0, 12)}: ${event.why}`;
    case "reused":
      return `✓ ${name} ${paint("cached", "good")}   ${event.key.slice(0, 12)} (made meanwhile by another process)`;
    case "reproduced":
      return `= ${name} reproduced the lock's output in another environment (${
        event.differences.join("; ")
      }): its lock entry is kept`;
    case "pulled":
      return `⇣ ${name} ${paint("pulled", "good")}   ${
        event.key.slice(0, 12)
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
  return `  ${stage.padEnd(9)} ${action.padEnd(6)} ${wallSeconds === undefined ? "-" : `${wallSeconds}s`}${peak}`;
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
