/**
 * Planning, apart from execution: from the DAG, the params' facts per stage, the lock and a view
 * of the cache to one decision per stage with structured reasons. Pure: no I/O, so status,
 * --dry-run and a real run share it, and it is tested without a subprocess. Reasons are data; only
 * the CLI puts them into words (cli.ts).
 */
import { ancestors, descendants, stageByName } from "./dag.ts";
import { type StageFacts, stageIdentity, stageKey } from "./key.ts";
import type { EntryState, RunInfo } from "../storage/cache.ts";
import type { LockFile, LockStage, StageIdentity } from "./lock.ts";
import type { ParamValue } from "./params.ts";
import type { StageDecl } from "./types.ts";

export interface Selection {
  /** force these stages and everything downstream of them */
  from?: string;
  /** run only this stage (its inputs must be cached) */
  only?: string;
  /** stop after this stage */
  until?: string;
}

/** Why a stage must run. */
export type Reason =
  | { kind: "new" }
  | { kind: "param"; key: string; before?: ParamValue; after?: ParamValue }
  | { kind: "code"; file: string; change: "changed" | "added" | "removed" }
  | { kind: "library"; name: string; before?: string; after?: string }
  /** `files`: which files changed, where the previous listing is known (named by the workspace) */
  | { kind: "data"; key: string; files?: string[] }
  | { kind: "runtime"; name: string; before?: string; after?: string }
  | { kind: "input"; stage: string; change: "changed" | "remade" | "pulled" }
  | { kind: "missing" }
  | { kind: "damaged"; detail: string }
  | { kind: "forced" };

export type Decision =
  /** its key is in the cache and checks out: restore it */
  | { stage: string; action: "cached"; record: LockStage; run: RunInfo | null }
  /** its key is not usable from the local cache but a remote cache has it: download it */
  | { stage: string; action: "pull"; record: LockStage; run: RunInfo | null }
  /** ran in this session */
  | { stage: string; action: "ran"; record: LockStage }
  /** its key is known and not usable from the cache; `outside`: not in the selection (only read by it) */
  | { stage: string; action: "run"; key: string; identity: StageIdentity; reasons: Reason[]; outside: boolean }
  /** an input will be re-made first, so its key is not known yet */
  | { stage: string; action: "wait"; reasons: Reason[] };

/** What the cache says about a key; undefined: not looked at yet (see Plan.lookups). */
export type CacheView = (key: string) => EntryState | undefined;

export interface PlanInput {
  /** in topological order */
  dag: StageDecl[];
  facts: Record<string, StageFacts>;
  lock: LockFile | null;
  cache: CacheView;
  selection: Selection;
  /** stages run in this session, with what they made */
  ran?: Map<string, LockStage>;
}

export interface Plan {
  /** included stages and the upstream stages they read, in DAG order */
  decisions: Decision[];
  /** selected stages, in DAG order */
  included: string[];
  /** keys the cache view did not know: look them up and plan again before acting */
  lookups: string[];
}

/** Which stages a selection touches, and which of them must run even when cached. */
export function selectStages(dag: StageDecl[], selection: Selection): { included: Set<string>; forced: Set<string> } {
  let included = new Set(dag.map((stage) => stage.name));
  const forced = new Set<string>();
  if (selection.until) included = new Set([selection.until, ...ancestors(dag, selection.until)]);
  if (selection.only) {
    stageByName(dag, selection.only);
    included = new Set([selection.only]);
  }
  if (selection.from) {
    for (const name of [selection.from, ...descendants(dag, selection.from)]) {
      if (included.has(name)) forced.add(name);
    }
  }
  return { included, forced };
}

export function plan(input: PlanInput): Plan {
  const { included, forced } = selectStages(input.dag, input.selection);
  const relevant = new Set(included);
  for (const name of included) for (const upstream of ancestors(input.dag, name)) relevant.add(upstream);
  const decided = new Map<string, Decision>();
  const lookups: string[] = [];

  for (const stage of input.dag) {
    if (!relevant.has(stage.name)) continue;
    const previous = input.lock?.stages[stage.name];
    const facts = input.facts[stage.name];
    const ran = input.ran?.get(stage.name);
    if (ran) {
      decided.set(stage.name, { stage: stage.name, action: "ran", record: ran });
      continue;
    }
    const upstream = stage.deps.map((dep) => decided.get(dep)!);
    const known = upstream.flatMap((decision) => "record" in decision ? [decision] : []);
    if (known.length < upstream.length) {
      const pending = upstream.filter((decision) => !("record" in decision)).map((decision) => decision.stage);
      const reasons: Reason[] = [
        ...(forced.has(stage.name) ? [{ kind: "forced" } as const] : []),
        ...(previous ? changes(previous, facts) : [{ kind: "new" } as const]),
        ...pending.map((name) => ({ kind: "input", stage: name, change: "remade" }) as const),
      ];
      decided.set(stage.name, { stage: stage.name, action: "wait", reasons });
      continue;
    }
    const identity = stageIdentity(facts, Object.fromEntries(known.map((d) => [d.stage, d.record.output])));
    const key = stageKey(stage.name, identity);
    const entry = input.cache(key);
    if (!entry) lookups.push(key);
    if ((entry?.state === "ok" || entry?.state === "remote") && !forced.has(stage.name)) {
      const record: LockStage = { key, ...identity, ...entry.output };
      const action = entry.state === "ok" ? "cached" : "pull";
      decided.set(stage.name, { stage: stage.name, action, record, run: entry.run });
      continue;
    }
    const reasons: Reason[] = forced.has(stage.name) ? [{ kind: "forced" }] : [];
    reasons.push(...(previous ? changes(previous, identity) : [{ kind: "new" } as const]));
    if (!reasons.length) {
      reasons.push(entry?.state === "damaged" ? { kind: "damaged", detail: entry.detail } : { kind: "missing" });
    }
    // An input still to be pulled is known (its key and output) but not on disk yet.
    const pulling = upstream.filter((decision) => decision.action === "pull").map((decision) => decision.stage);
    if (pulling.length) {
      reasons.push(...pulling.map((name) => ({ kind: "input", stage: name, change: "pulled" }) as const));
      decided.set(stage.name, { stage: stage.name, action: "wait", reasons });
      continue;
    }
    decided.set(stage.name, {
      stage: stage.name,
      action: "run",
      key,
      identity,
      reasons,
      outside: !included.has(stage.name),
    });
  }
  return {
    decisions: input.dag.filter((stage) => decided.has(stage.name)).map((stage) => decided.get(stage.name)!),
    included: input.dag.filter((stage) => included.has(stage.name)).map((stage) => stage.name),
    lookups,
  };
}

/** How an identity differs from the lock's entry (inputs only when the identity has them). */
export function changes(previous: StageIdentity, current: StageFacts & { inputs?: Record<string, string> }): Reason[] {
  const reasons: Reason[] = [];
  for (const key of union(previous.params, current.params)) {
    const [before, after] = [previous.params[key], current.params[key]];
    if (JSON.stringify(before) !== JSON.stringify(after)) reasons.push({ kind: "param", key, before, after });
  }
  for (const file of union(previous.code, current.code)) {
    if (!(file in previous.code)) reasons.push({ kind: "code", file, change: "added" });
    else if (!(file in current.code)) reasons.push({ kind: "code", file, change: "removed" });
    else if (previous.code[file] !== current.code[file]) reasons.push({ kind: "code", file, change: "changed" });
  }
  for (const name of union(previous.libraries, current.libraries)) {
    const [before, after] = [previous.libraries[name], current.libraries[name]];
    if (before !== after) reasons.push({ kind: "library", name, before, after });
  }
  for (const key of union(previous.external ?? {}, current.external ?? {})) {
    if (previous.external?.[key] !== current.external?.[key]) reasons.push({ kind: "data", key });
  }
  // A lock written before runtime was an identity field has none to compare.
  for (const name of previous.runtime ? union(previous.runtime, current.runtime) : []) {
    const [before, after] = [previous.runtime[name], current.runtime[name]];
    if (before !== after) reasons.push({ kind: "runtime", name, before, after });
  }
  if (current.inputs) {
    for (const stage of union(previous.inputs, current.inputs)) {
      if (previous.inputs[stage] !== current.inputs[stage]) reasons.push({ kind: "input", stage, change: "changed" });
    }
  }
  return reasons;
}

function union(a: Record<string, unknown>, b: Record<string, unknown>): string[] {
  return [...new Set([...Object.keys(a), ...Object.keys(b)])].sort();
}
