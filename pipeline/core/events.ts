/**
 * What a run reports as it goes and returns at the end (types only): the engine makes these, words.ts puts them into
 * words, the terminal and the experiments runner show them.
 */
import type { LeaseHolder } from "../storage/lease.ts";
import type { LockStage } from "./lock.ts";
import type { Reason } from "./plan.ts";
import type { Progress } from "./types.ts";

/** What a run reports as it goes; the CLI puts it into words. */
export type RunEvent =
  /** once, before any stage: the stages the run brings up to date (for a "k of n" count) */
  | { kind: "planned"; stages: string[] }
  | { kind: "cached"; stage: string; key: string }
  | { kind: "start"; stage: string; key: string; reasons: Reason[]; resumed: boolean }
  | { kind: "ran"; stage: string; key: string; wallSeconds: number; files: number }
  | { kind: "failed"; stage: string; wallSeconds: number; exitCode: number }
  /** before it runs: it wrote `needed` bytes last time (the lock), more than is free where it writes */
  | { kind: "low-space"; stage: string; needed: number; free: number; dir: string }
  /** a resumable stage that stopped unfinished: its partial output stays for the next run */
  | { kind: "kept"; stage: string; resumePoint: string | null }
  /** another process holds the key's claim (it is building or pulling it) */
  | { kind: "waiting"; stage: string; key: string; holder: LeaseHolder }
  | { kind: "took-over"; stage: string; key: string; why: string }
  /** made by another process while this one waited for the claim */
  | { kind: "reused"; stage: string; key: string }
  | { kind: "pulled"; stage: string; key: string; files: number }
  /** the stage's output equals the lock's, made in another environment: the lock entry is kept */
  | { kind: "reproduced"; stage: string; differences: string[] }
  /** said once before the first stage line: something this machine lacks (Project.preflight) */
  | { kind: "notice"; line: string }
  /** the remote's entry could not be pulled (`why`): the stage is built here instead */
  | { kind: "remote-refused"; stage: string; key: string; why: string }
  /** the local data a param names was checked for changes (one stat per file, re-hashing the changed) */
  | { kind: "checked"; param: string; files: number; rehashed: number; seconds: number }
  /** a line a running stage printed */
  | { kind: "output"; stage: string; text: string }
  /** how far a running stage is */
  | { kind: "progress"; stage: string; progress: Progress };

/** One selected stage at the end of a run. */
export interface StageOutcome {
  stage: string;
  action: "cached" | "ran";
  record: LockStage;
  reasons: Reason[];
  /** this run's wall time, or the cached entry's */
  wallSeconds?: number;
  /** the stage process's peak resident memory in this run or the cached entry's, where known */
  peakRssMb?: number | null;
}

/** A stage that was running when the run stopped: its partial output kept (resumable) or removed. */
export interface StoppedStage {
  stage: string;
  kept: boolean;
  /** what a resumed run continues from, as the stage said ("epoch 4 of 9") */
  resumePoint: string | null;
}
