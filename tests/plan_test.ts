/** plan(): decisions and structured reasons from the DAG, facts, lock and a cache view; pure, no subprocess. */
import assert from "node:assert/strict";
import { type CacheView, type Decision, plan, type PlanInput } from "../pipeline/core/plan.ts";
import { type StageFacts, stageIdentity, stageKey } from "../pipeline/core/key.ts";
import type { EntryState } from "../pipeline/storage/cache.ts";
import type { LockFile, LockStage } from "../pipeline/core/lock.ts";
import type { StageDecl } from "../pipeline/core/types.ts";

const DAG: StageDecl[] = [
  { name: "a", deps: [], params: ["a.n"], module: "a.ts" },
  { name: "b", deps: ["a"], params: ["b.loss"], module: "b.ts" },
  { name: "c", deps: ["b", "a"], params: [], module: "c.ts" },
];

const RUNTIME = { deno: "2.0.0", platform: "linux-x86_64" };

function facts(overrides: Record<string, Partial<StageFacts>> = {}): Record<string, StageFacts> {
  const base: Record<string, StageFacts> = {
    a: { params: { "a.n": 1 }, code: { "a.ts": "1" }, libraries: {}, runtime: RUNTIME },
    b: { params: { "b.loss": "bce" }, code: { "b.ts": "1", "util.ts": "1" }, libraries: {}, runtime: RUNTIME },
    c: { params: {}, code: { "c.ts": "1" }, libraries: {}, runtime: RUNTIME },
  };
  for (const [name, change] of Object.entries(overrides)) base[name] = { ...base[name], ...change };
  return base;
}

/** A lock and a cache holding every stage of `given`, as a full run of it would leave them. */
function ranWith(given: Record<string, StageFacts>): { lock: LockFile; entries: Map<string, EntryState> } {
  const stages: Record<string, LockStage> = {};
  const entries = new Map<string, EntryState>();
  for (const stage of DAG) {
    const inputs = Object.fromEntries(stage.deps.map((dep) => [dep, stages[dep].output]));
    const identity = stageIdentity(given[stage.name], inputs);
    const key = stageKey(stage.name, identity);
    const output = { output: `out-${stage.name}-${key.slice(0, 8)}`, files: 1, bytes: 10, environment: {} };
    stages[stage.name] = { key, ...identity, ...output };
    entries.set(key, { state: "ok", output, run: { wall_s: 1.5, ran_at: "2026-01-01T00:00:00Z", environment: {} } });
  }
  return { lock: { version: 1, params_file: "params.json", stages }, entries };
}

/** Plan until the view has every key it asks for (absent when not in `entries`), as the workspace does. */
function planAll(input: Omit<PlanInput, "dag" | "cache">, entries: Map<string, EntryState>) {
  const cache: CacheView = (key) => entries.get(key) ?? { state: "absent" };
  const result = plan({ ...input, dag: DAG, cache });
  assert.deepEqual(result.lookups, []);
  return Object.fromEntries(result.decisions.map((decision) => [decision.stage, decision]));
}

const reasons = (decision: Decision) => "reasons" in decision ? decision.reasons : [];

Deno.test("nothing changed: every stage cached with its recorded output and run record", () => {
  const { lock, entries } = ranWith(facts());
  const decisions = planAll({ facts: facts(), lock, selection: {} }, entries);
  for (const name of ["a", "b", "c"]) {
    const decision = decisions[name];
    assert.equal(decision.action, "cached");
    if (decision.action === "cached") {
      assert.deepEqual(decision.record, lock.stages[name]);
      assert.equal(decision.run?.wall_s, 1.5);
    }
  }
});

Deno.test("a param change: run with {kind: param}; downstream waits on its input", () => {
  const { lock, entries } = ranWith(facts());
  const changed = facts({ b: { params: { "b.loss": "hinge" } } });
  const decisions = planAll({ facts: changed, lock, selection: {} }, entries);
  assert.equal(decisions.a.action, "cached");
  assert.equal(decisions.b.action, "run");
  assert.deepEqual(reasons(decisions.b), [{ kind: "param", key: "b.loss", before: "bce", after: "hinge" }]);
  assert.equal(decisions.c.action, "wait");
  assert.deepEqual(reasons(decisions.c), [{ kind: "input", stage: "b", change: "remade" }]);
});

Deno.test("code, runtime, missing, damaged, new and forced reasons", () => {
  const { lock, entries } = ranWith(facts());
  const code = planAll({ facts: facts({ b: { code: { "b.ts": "2" } } }), lock, selection: {} }, entries);
  assert.deepEqual(reasons(code.b), [
    { kind: "code", file: "b.ts", change: "changed" },
    { kind: "code", file: "util.ts", change: "removed" },
  ]);
  const runtime = planAll(
    { facts: facts({ a: { runtime: { ...RUNTIME, deno: "2.1.0" } } }), lock, selection: {} },
    entries,
  );
  assert.deepEqual(reasons(runtime.a), [{ kind: "runtime", name: "deno", before: "2.0.0", after: "2.1.0" }]);

  const missing = new Map(entries);
  missing.delete(lock.stages.b.key);
  assert.deepEqual(reasons(planAll({ facts: facts(), lock, selection: {} }, missing).b), [{ kind: "missing" }]);
  missing.set(lock.stages.b.key, { state: "damaged", detail: "b.txt changed" });
  assert.deepEqual(reasons(planAll({ facts: facts(), lock, selection: {} }, missing).b), [
    { kind: "damaged", detail: "b.txt changed" },
  ]);

  const fresh = planAll({ facts: facts(), lock: null, selection: {} }, new Map());
  assert.deepEqual(reasons(fresh.a), [{ kind: "new" }]);
  assert.deepEqual(reasons(fresh.b), [{ kind: "new" }, { kind: "input", stage: "a", change: "remade" }]);

  const forced = planAll({ facts: facts(), lock, selection: { from: "b" } }, entries);
  assert.equal(forced.a.action, "cached");
  assert.deepEqual(reasons(forced.b), [{ kind: "forced" }]);
  assert.deepEqual(reasons(forced.c), [{ kind: "forced" }, { kind: "input", stage: "b", change: "remade" }]);
});

Deno.test("an input whose output changed is {kind: input, change: changed}; stages run this session are not forced again", () => {
  const { lock, entries } = ranWith(facts());
  const remade: LockStage = { ...lock.stages.b, output: "another output" };
  const decisions = planAll({ facts: facts(), lock, selection: { from: "b" }, ran: new Map([["b", remade]]) }, entries);
  assert.equal(decisions.b.action, "ran");
  assert.equal(decisions.c.action, "run");
  assert.deepEqual(reasons(decisions.c), [{ kind: "forced" }, { kind: "input", stage: "b", change: "changed" }]);
});

Deno.test("--only: an upstream stage outside the selection that must run is marked outside; lookups are asked for", () => {
  const { lock, entries } = ranWith(facts());
  const decisions = planAll({ facts: facts({ a: { params: { "a.n": 2 } } }), lock, selection: { only: "b" } }, entries);
  assert.equal(decisions.a.action, "run");
  assert.equal(decisions.a.action === "run" && decisions.a.outside, true);
  assert.equal(decisions.c, undefined, "not selected, not read");
  const first = plan({ facts: facts(), lock, selection: {}, dag: DAG, cache: () => undefined });
  assert.deepEqual(first.lookups, [lock.stages.a.key], "the view knows nothing yet: a's key is asked for first");
});

Deno.test("a key only the remote cache has: pull (forced: run); a stage that must run waits for its inputs' pulls", () => {
  const { lock, entries } = ranWith(facts());
  const remote = new Map(entries);
  for (const name of ["a", "b"]) {
    const entry = entries.get(lock.stages[name].key)!;
    if (entry.state === "ok") remote.set(lock.stages[name].key, { ...entry, state: "remote" });
  }
  remote.delete(lock.stages.c.key);
  const decisions = planAll({ facts: facts(), lock, selection: {} }, remote);
  assert.equal(decisions.a.action, "pull");
  assert.equal(decisions.b.action, "pull");
  assert.deepEqual(decisions.b.action === "pull" && decisions.b.record, lock.stages.b, "its key and output known");
  assert.equal(decisions.c.action, "wait");
  assert.deepEqual(reasons(decisions.c), [
    { kind: "missing" },
    { kind: "input", stage: "b", change: "pulled" },
    { kind: "input", stage: "a", change: "pulled" },
  ]);
  const forced = planAll({ facts: facts(), lock, selection: { from: "b" } }, remote);
  assert.equal(forced.a.action, "pull");
  assert.equal(forced.b.action, "wait", "forced to run, after a is pulled");
});
