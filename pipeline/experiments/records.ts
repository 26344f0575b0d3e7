/**
 * Experiment records, the one home of their format: `experiments/<name>.json` in the project, one
 * small file per experiment, written whole (temp, fsync, rename) and only by the process running
 * it. A record holds every param the experiment runs with (resolved when it was queued), so it does
 * not depend on params files that change later; after a run, the lock entries it produced.
 */
import { join } from "node:path";
import { UserError } from "../core/errors.ts";
import { writeFileAtomic } from "../storage/fsutil.ts";
import type { FlatParams } from "../core/params.ts";
import type { LockStage } from "../core/lock.ts";
import type { MetricsFile } from "../core/types.ts";

export type Status = "queued" | "running" | "done" | "failed";

/** How a stage went in this experiment: run by it, shared (run at the same time by another), or cached. */
export interface StageRunRecord {
  action: "ran" | "shared" | "cached";
  /** ISO 8601 UTC, when this experiment started it (ran) */
  started_at?: string;
  finished_at?: string;
  wall_s?: number;
}

/** A stage's job submitted to a batch system (Slurm) for this experiment. */
export interface SubmittedJob {
  stage: string;
  key: string;
  /** the batch system's job id */
  id: string;
  submitted_at: string;
}

export interface ExperimentRecord {
  version: 1;
  name: string;
  status: Status;
  /** the params file the overlay lies on (relative to the project root) */
  params_file: string;
  /** what this experiment sets (its --set values) */
  overlay: FlatParams;
  /** every param it runs with */
  params: FlatParams;
  queued_at: string;
  started_at?: string;
  finished_at?: string;
  wall_s?: number;
  /** git commit of the project when it ran, and whether tracked files differed from it */
  commit?: string | null;
  dirty?: boolean;
  /** runs started (more than 1: resumed after its runner died) */
  attempts?: number;
  /** the lock entries it produced, by stage */
  stages?: Record<string, LockStage>;
  runs?: Record<string, StageRunRecord>;
  /**
   * every job submitted for it, in order, across attempts (written as each is submitted): a
   * restarted runner attaches to one still going instead of submitting its stage again
   */
  jobs?: SubmittedJob[];
  /** the metrics of its stages, merged (values, floor, floor_n, better) */
  metrics?: MetricsFile;
  error?: string;
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

function experimentsDir(root: string): string {
  return join(root, "experiments");
}

function recordPath(root: string, name: string): string {
  return join(experimentsDir(root), `${name}.json`);
}

export function checkName(name: string, what: string): void {
  if (!NAME.test(name)) {
    throw new UserError(`${what} '${name}' must be letters, digits, '.', '_' or '-' (not starting with '.' or '-')`);
  }
}

/** Every record, in the order they were queued. */
export async function listRecords(root: string): Promise<ExperimentRecord[]> {
  const records: ExperimentRecord[] = [];
  try {
    for await (const entry of Deno.readDir(experimentsDir(root))) {
      if (!entry.isFile || !entry.name.endsWith(".json")) continue;
      const record = await readRecord(root, entry.name.slice(0, -5));
      if (record) records.push(record);
    }
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  return records.sort((a, b) => a.queued_at.localeCompare(b.queued_at) || byNumber(a.name, b.name));
}

/** exp-2 before exp-10. */
function byNumber(a: string, b: string): number {
  return a.localeCompare(b, "en", { numeric: true });
}

export async function readRecord(root: string, name: string): Promise<ExperimentRecord | null> {
  try {
    const text = await Deno.readTextFile(recordPath(root, name));
    // Empty: its name was just claimed by queueRecords and the record is being written.
    return text ? JSON.parse(text) : null;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return null;
    if (error instanceof SyntaxError) {
      throw new UserError(`${recordPath(root, name)} is not valid JSON: fix or remove it`);
    }
    throw error;
  }
}

/** The record of an existing experiment, or a one-line error listing the names there are. */
export async function requireRecord(root: string, name: string): Promise<ExperimentRecord> {
  checkName(name, "experiment name");
  const record = await readRecord(root, name);
  if (record) return record;
  const names = (await listRecords(root)).map((known) => known.name);
  throw new UserError(
    `no experiment '${name}'; ${names.length ? `experiments: ${names.join(", ")}` : "none recorded yet"}`,
  );
}

export async function writeRecord(root: string, record: ExperimentRecord): Promise<void> {
  await writeFileAtomic(recordPath(root, record.name), JSON.stringify(record, null, 2) + "\n");
}

/**
 * Write new records under fresh names `<prefix>-<n>` (n after the highest taken), claiming each
 * name with an exclusive create, so two `exp run --queue` at once never take the same name.
 */
export async function queueRecords(
  root: string,
  prefix: string,
  drafts: Omit<ExperimentRecord, "name">[],
): Promise<ExperimentRecord[]> {
  await Deno.mkdir(experimentsDir(root), { recursive: true });
  const numbered = new RegExp(`^${escape(prefix)}-(\\d+)$`);
  const taken = (await listRecords(root)).map((record) => Number(record.name.match(numbered)?.[1] ?? 0));
  let n = Math.max(0, ...taken);
  const queued: ExperimentRecord[] = [];
  for (const draft of drafts) {
    while (true) {
      const name = `${prefix}-${++n}`;
      try {
        (await Deno.open(recordPath(root, name), { write: true, createNew: true })).close();
      } catch (error) {
        if (error instanceof Deno.errors.AlreadyExists) continue;
        throw error;
      }
      const record = { name, ...draft };
      await writeRecord(root, record);
      queued.push(record);
      break;
    }
  }
  return queued;
}

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

export async function removeRecord(root: string, name: string): Promise<void> {
  await Deno.remove(recordPath(root, name));
}

/** The last job submitted for each key, over `records`: what a restarted runner may attach to. */
export function lastJobs(records: ExperimentRecord[]): Map<string, string> {
  const jobs = records.flatMap((record) => record.jobs ?? []).sort((a, b) =>
    a.submitted_at.localeCompare(b.submitted_at)
  );
  return new Map(jobs.map((job) => [job.key, job.id]));
}

/** Cache keys the records refer to: gc keeps them. */
export async function experimentKeys(root: string): Promise<Set<string>> {
  const keys = new Set<string>();
  for (const record of await listRecords(root)) {
    for (const stage of Object.values(record.stages ?? {})) keys.add(stage.key);
  }
  return keys;
}
