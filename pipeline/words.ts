/**
 * The engine's events and reasons in words: the one place they become text, for the CLI and for
 * the experiments runner.
 */
import { formatBytes } from "./fsutil.ts";
import type { Reason } from "./plan.ts";
import type { RunEvent } from "./run.ts";
import type { LeaseHolder } from "./lease.ts";

/** A run event in words (the pipeline's and each experiment's). */
export function eventLine(event: RunEvent): string {
  if (event.kind === "checked") return checkLine(event.param, event.files, event.rehashed, event.seconds);
  if (event.kind === "notice") return event.line;
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
      return `✓ ${name} cached   ${event.key.slice(0, 12)} (made meanwhile by another process)`;
    case "reproduced":
      return `= ${name} reproduced the lock's output in another environment (${
        event.differences.join("; ")
      }): its lock entry is kept`;
    case "pulled":
      return `⇣ ${name} pulled   ${event.key.slice(0, 12)} from the remote cache (${event.files} files)`;
    case "remote-refused":
      return `warning: ${event.stage}: not pulled (${event.why}); building it here`;
  }
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

export function words(reasons: Reason[]): string {
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
    case "data": {
      const files = reason.files ?? [];
      const shown = files.slice(0, 5).join(", ") + (files.length > 5 ? `, ... (${files.length} files)` : "");
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
