import { join, relative, resolve } from "node:path";
import { UserError } from "./errors.ts";
import { Cache, type Manifest } from "./cache.ts";
import { fingerprintCode, readImportMap } from "./codehash.ts";
import { canonicalJson, sha256, stableJson } from "./hash.ts";
import { type FlatParams, pickParams } from "./params.ts";
import { StatCache } from "./statcache.ts";
import { topologicalOrder } from "./dag.ts";
import { listFiles, writeFileAtomic } from "./fsutil.ts";
import type { LockFile, LockStage, StageDecl } from "./types.ts";

export interface WorkspaceOptions {
  root: string;
  dag: StageDecl[];
  params: FlatParams;
  /** the params file these params came from, relative to root (recorded in the lock) */
  paramsFile: string;
  /** defaults to `<root>/outputs/cache`; verify points it at a scratch dir */
  cacheDir?: string;
}

/** A stage whose key is known: what went into the key, and the cached artifact if valid. */
export interface ResolvedStage {
  stage: StageDecl;
  record: LockStage;
  manifest: Manifest | null;
  /** why the cached entry cannot be used (empty when it can) */
  problems: string[];
}

/** Everything the engine's commands share: the project, its params, cache and lock. */
export class Workspace {
  readonly root: string;
  readonly dag: StageDecl[];
  readonly params: FlatParams;
  readonly paramsFile: string;
  readonly outputsDir: string;
  readonly cache: Cache;
  readonly statCache: StatCache;
  private importMap: Record<string, string> = {};

  private constructor(options: WorkspaceOptions) {
    this.root = options.root;
    this.dag = topologicalOrder(options.dag);
    this.params = options.params;
    this.paramsFile = options.paramsFile;
    this.outputsDir = join(options.root, "outputs");
    const cacheDir = options.cacheDir ?? join(this.outputsDir, "cache");
    this.statCache = new StatCache(join(cacheDir, ".statcache.json"));
    this.cache = new Cache(cacheDir, this.statCache);
  }

  static async open(options: WorkspaceOptions): Promise<Workspace> {
    const workspace = new Workspace(options);
    await workspace.statCache.load();
    workspace.importMap = await readImportMap(options.root);
    return workspace;
  }

  get lockPath(): string {
    return join(this.root, "pipeline.lock.json");
  }

  /** The key of a stage given its upstream output hashes, and everything that went into it. */
  async fingerprint(stage: StageDecl, unorderedInputs: Record<string, string>): Promise<LockStage> {
    // Sorted, so a stage sees its inputs in the same order however they were gathered.
    const inputs = Object.fromEntries(Object.entries(unorderedInputs).sort(([a], [b]) => a.localeCompare(b)));
    const code = await fingerprintCode(this.root, [stage.module], this.importMap, this.statCache);
    const params = pickParams(this.params, stage.params);
    const environment = platformEnvironment();
    const external = await this.fingerprintExternal(stage);
    const keyMaterial = {
      stage: stage.name,
      params,
      code: code.files,
      libraries: code.libraries,
      inputs,
      external,
      // The runtime is part of the key: a new Deno or OS can change floating-point bytes.
      runtime: environment,
    };
    return {
      key: sha256(canonicalJson(keyMaterial)),
      params,
      code: code.files,
      libraries: code.libraries,
      inputs,
      ...(Object.keys(external).length ? { external } : {}),
    };
  }

  /** Digest of the local files named by the stage's external params (stat cache: cheap when unchanged). */
  private async fingerprintExternal(stage: StageDecl): Promise<Record<string, string>> {
    const digests: Record<string, string> = {};
    for (const key of stage.external ?? []) {
      const value = this.params[key];
      if (typeof value !== "string" || value === "") continue;
      const path = resolve(this.root, value);
      let info: Deno.FileInfo;
      try {
        info = await Deno.stat(path);
      } catch {
        throw new UserError(
          `${key}: '${value}' not found (resolved to ${path}); set ${key} to an existing file or folder`,
        );
      }
      const files = info.isDirectory ? await listFiles(path) : [""];
      const entries: string[] = [];
      for (const file of files) {
        entries.push(`${file} ${(await this.statCache.hash(file ? join(path, file) : path)).sha256}`);
      }
      digests[key] = sha256(entries.join("\n"));
    }
    return digests;
  }

  async resolve(stage: StageDecl, inputs: Record<string, string>): Promise<ResolvedStage> {
    const record = await this.fingerprint(stage, inputs);
    const { manifest, problems } = await this.cache.check(record.key);
    if (manifest) await this.completeRecord(record, manifest);
    return { stage, record, manifest, problems };
  }

  /** Fill in what the artifact is (output hash, size, run facts, metrics) from its cache entry. */
  async completeRecord(record: LockStage, manifest: Manifest): Promise<void> {
    record.output = manifest.output;
    record.files = manifest.files.length;
    record.bytes = manifest.bytes;
    const run = await readJson(join(this.cache.entryDir(record.key), "run.json")) as
      | { wall_s: number; environment: Record<string, string | number | boolean>; metrics?: unknown }
      | null;
    if (run) {
      record.wall_s = run.wall_s;
      record.environment = run.environment;
      if (run.metrics !== undefined) record.metrics = run.metrics;
    }
  }

  async readLock(): Promise<LockFile | null> {
    return await readJson(this.lockPath) as LockFile | null;
  }

  async writeLock(records: Map<string, LockStage>): Promise<void> {
    const previous = await this.readLock();
    const stages: Record<string, LockStage> = {};
    for (const stage of this.dag) {
      const record = records.get(stage.name) ?? previous?.stages[stage.name];
      if (record) stages[stage.name] = record;
    }
    const lock: LockFile = { version: 1, params_file: this.paramsFile, stages };
    const text = stableJson(lock);
    if (text !== await Deno.readTextFile(this.lockPath).catch(() => "")) {
      await writeFileAtomic(this.lockPath, text);
    }
  }

  relative(path: string): string {
    return relative(this.root, path) || ".";
  }
}

/** What besides params and code can change output bytes; recorded with every stage. */
export function platformEnvironment(): Record<string, string> {
  return {
    deno: Deno.version.deno,
    platform: `${Deno.build.os}-${Deno.build.arch}`,
  };
}

async function readJson(path: string): Promise<unknown> {
  try {
    return JSON.parse(await Deno.readTextFile(path));
  } catch {
    return null;
  }
}

/** Why a stage's key differs from the one the lock recorded, in words. */
export function explainChange(previous: LockStage | undefined, current: LockStage): string[] {
  if (!previous) return ["never run (no entry in pipeline.lock.json)"];
  const reasons: string[] = [];
  for (const key of union(previous.params, current.params)) {
    const before = JSON.stringify(previous.params[key]);
    const after = JSON.stringify(current.params[key]);
    if (before !== after) reasons.push(`param ${key}: ${before ?? "(unset)"} -> ${after ?? "(unset)"}`);
  }
  for (const file of union(previous.code, current.code)) {
    if (!(file in previous.code)) reasons.push(`code ${file} added`);
    else if (!(file in current.code)) reasons.push(`code ${file} no longer imported`);
    else if (previous.code[file] !== current.code[file]) reasons.push(`code ${file} changed`);
  }
  for (const name of union(previous.libraries, current.libraries)) {
    if (previous.libraries[name] !== current.libraries[name]) {
      reasons.push(`library ${name}: ${previous.libraries[name] ?? "-"} -> ${current.libraries[name] ?? "-"}`);
    }
  }
  for (const key of union(previous.external ?? {}, current.external ?? {})) {
    if (previous.external?.[key] !== current.external?.[key]) reasons.push(`data named by ${key} changed`);
  }
  for (const input of union(previous.inputs, current.inputs)) {
    if (previous.inputs[input] !== current.inputs[input]) reasons.push(`input ${input} changed`);
  }
  if (!reasons.length && previous.key !== current.key) {
    const recorded = previous.environment ?? {};
    const now = platformEnvironment();
    for (const name of Object.keys(now)) {
      const before = recorded[name] as string | undefined;
      if (before !== undefined && before !== now[name as keyof typeof now]) {
        reasons.push(`${name}: ${before} -> ${now[name as keyof typeof now]}`);
      }
    }
  }
  return reasons;
}

function union(a: Record<string, unknown>, b: Record<string, unknown>): string[] {
  return [...new Set([...Object.keys(a), ...Object.keys(b)])].sort();
}
