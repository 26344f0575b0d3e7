/**
 * A stage's key: the sha256 of its name and its identity fields (lock.ts), and nothing else, so
 * the lock entry is the one source of truth for what a key is made of. Here too: gathering the
 * facts that go into an identity (code hashes, local data digests).
 */
import { resolve } from "node:path";
import { UserError } from "./errors.ts";
import { fingerprintCode } from "./codehash.ts";
import { canonicalJson, sha256 } from "./hash.ts";
import { type ExternalRead, readExternal } from "../storage/external.ts";
import { type FlatParams, pickParams } from "./params.ts";
import type { StatCache } from "../storage/statcache.ts";
import type { StageIdentity } from "./lock.ts";
import type { StageDecl } from "./types.ts";

/** A stage's identity less its inputs: known before any stage runs. */
export type StageFacts = Omit<StageIdentity, "inputs">;

export function stageKey(name: string, identity: StageIdentity): string {
  const { params, code, libraries, inputs, external, runtime } = identity;
  return sha256(canonicalJson({ stage: name, params, code, libraries, inputs, external, runtime }));
}

/** The identity of a stage once its inputs' output hashes are known (sorted: gathering order never matters). */
export function stageIdentity(facts: StageFacts, unorderedInputs: Record<string, string>): StageIdentity {
  const inputs = Object.fromEntries(Object.entries(unorderedInputs).sort(([a], [b]) => a.localeCompare(b)));
  return { ...facts, inputs };
}

/** What besides params and code can change output bytes; part of every key. */
export function runtimeEnvironment(): Record<string, string> {
  return { deno: Deno.version.deno, platform: `${Deno.build.os}-${Deno.build.arch}` };
}

export interface FactsContext {
  root: string;
  params: FlatParams;
  importMap: Record<string, string>;
  statCache: StatCache;
}

/** The local data a param names, as checked for this run (digest, cost, listing on demand). */
export interface ExternalCheck extends ExternalRead {
  key: string;
}

/**
 * Hash a stage's code and the local data its params name (stat cache: cheap when unchanged).
 * `checks`: the listings of that data, for the stage's job and for saying what changed.
 */
export async function stageFacts(
  context: FactsContext,
  stage: StageDecl,
): Promise<{ facts: StageFacts; checks: ExternalCheck[] }> {
  const code = await fingerprintCode(context.root, [stage.module], context.importMap, context.statCache);
  const checks = await externalChecks(context, stage);
  const external = Object.fromEntries(checks.map((check) => [check.key, check.digest]));
  const facts = {
    params: pickParams(context.params, stage.params),
    code: code.files,
    libraries: code.libraries,
    ...(checks.length ? { external } : {}),
    runtime: runtimeEnvironment(),
  };
  return { facts, checks };
}

async function externalChecks(context: FactsContext, stage: StageDecl): Promise<ExternalCheck[]> {
  const checks: ExternalCheck[] = [];
  for (const key of stage.external ?? []) {
    const value = context.params[key];
    if (typeof value !== "string" || value === "") continue;
    const path = resolve(context.root, value);
    try {
      await Deno.stat(path);
    } catch {
      throw new UserError(
        `${key}: '${value}' not found (resolved to ${path}); set ${key} to an existing file or folder`,
      );
    }
    checks.push({ key, ...await readExternal(path, context.statCache, key) });
  }
  return checks;
}
