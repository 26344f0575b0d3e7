/**
 * pipeline.lock.json, the one committed record of a run: per stage what went into its key (the
 * identity fields) and what it produced. Nothing volatile goes in (no wall time, no dates), so a
 * run that reproduces every stage leaves the file byte-identical.
 */
import { basename } from "node:path";
import { HEX64, stableJson } from "./hash.ts";
import { UserError } from "./errors.ts";
import { writeFileAtomic } from "../storage/fsutil.ts";
import { faultsAsLines } from "./faults.ts";
import type { FlatParams } from "./params.ts";
import type { Environment, StageDecl } from "./types.ts";

/** What a stage's key is the hash of (with the stage's name): see key.ts. */
export interface StageIdentity {
  params: FlatParams;
  /** project file -> sha256, for the stage's module and everything it imports */
  code: Record<string, string>;
  /** bare import -> pinned specifier */
  libraries: Record<string, string>;
  /** upstream stage -> its output hash */
  inputs: Record<string, string>;
  /** param key -> digest of the local data it names (see StageDecl.external) */
  external?: Record<string, string>;
  /** Deno version and platform: a new runtime can change floating-point bytes */
  runtime: Record<string, string>;
}

/** What an artifact is: its identity in the cache, size, and what the run recorded that can change bytes. */
export interface StageOutput {
  output: string;
  files: number;
  bytes: number;
  /**
   * what the run recorded that can change the bytes, as it was when these bytes were first
   * recorded: another environment that reproduces them leaves it (see writeLock)
   */
  environment: Environment;
  metrics?: unknown;
}

/** One entry of pipeline.lock.json. */
export type LockStage = { key: string } & StageIdentity & StageOutput;

export interface LockFile {
  version: 1;
  params_file: string;
  stages: Record<string, LockStage>;
}

/**
 * The lock, or null when there is none (or it is not JSON: then every stage is simply stale). A
 * lock that parses but has the wrong shape (an edit, a bad merge) is one line naming what is wrong.
 */
export async function readLock(path: string): Promise<LockFile | null> {
  let lock: unknown;
  try {
    lock = JSON.parse(await Deno.readTextFile(path));
  } catch {
    return null;
  }
  const problem = lockProblem(lock);
  if (problem) {
    throw new UserError(
      `${basename(path)}: ${problem}; restore it (\`git checkout ${basename(path)}\`) or delete it, then run again`,
    );
  }
  return lock as LockFile;
}

const isObject = (value: unknown): value is Record<string, unknown> =>
  value !== null && typeof value === "object" && !Array.isArray(value);

/** What is wrong with a parsed lock's shape (the fields planning reads), or null. */
export function lockProblem(lock: unknown): string | null {
  if (!isObject(lock) || !isObject(lock.stages)) return "it is not a JSON object with a 'stages' object";
  for (const [name, stage] of Object.entries(lock.stages)) {
    if (!isObject(stage)) return `stages.${name} is not an object`;
    if (typeof stage.key !== "string" || !HEX64.test(stage.key)) return `stages.${name}.key is not a 64-digit hex key`;
    for (const field of ["params", "code", "libraries", "inputs"]) {
      if (!isObject(stage[field])) return `stages.${name}.${field} is not an object`;
    }
    for (const field of ["external", "runtime", "environment"]) {
      if (stage[field] !== undefined && !isObject(stage[field])) return `stages.${name}.${field} is not an object`;
    }
    if (typeof stage.output !== "string") return `stages.${name}.output is not a string`;
  }
  return null;
}

/** A stage whose output equals the lock's, made in an environment that differs from the one recorded. */
export interface Reproduction {
  stage: string;
  /** "backend_detail: A -> B", per environment entry that differs */
  differences: string[];
}

/**
 * Write the lock: the given records, and the previous lock's entries for stages this run did not
 * touch, in DAG order. A record whose output equals the previous entry's keeps that entry's
 * environment: the environment goes with the bytes, so another CPU or library build that
 * reproduces them is a confirmation (returned, for the run's summary), not a change. Unchanged
 * content is not rewritten (no mtime churn).
 */
export async function writeLock(
  path: string,
  dag: StageDecl[],
  paramsFile: string,
  records: Map<string, LockStage>,
): Promise<Reproduction[]> {
  const previous = await readLock(path);
  const stages: Record<string, LockStage> = {};
  const reproductions: Reproduction[] = [];
  for (const stage of dag) {
    const before = previous?.stages[stage.name];
    let record = records.get(stage.name) ?? before;
    if (record && before && record !== before && record.output === before.output) {
      const differences = environmentChanges(before.environment ?? {}, record.environment);
      if (differences.length) reproductions.push({ stage: stage.name, differences });
      record = { ...record, environment: before.environment };
    }
    if (record) stages[stage.name] = record;
  }
  const lock: LockFile = { version: 1, params_file: paramsFile, stages };
  const text = stableJson(lock);
  if (text !== await Deno.readTextFile(path).catch(() => "")) {
    await faultsAsLines("writing the lock", path, () => writeFileAtomic(path, text));
  }
  return reproductions;
}

function environmentChanges(before: Environment, after: Environment): string[] {
  const keys = [...new Set([...Object.keys(before), ...Object.keys(after)])].sort();
  return keys.filter((key) => before[key] !== after[key]).map((key) =>
    `${key}: ${before[key] ?? "-"} -> ${after[key] ?? "-"}`
  );
}
