import { join, relative, resolve } from "node:path";
import { readEnv } from "../core/env.ts";
import { Cache, type EntryState } from "./cache.ts";
import { readImportMap } from "../core/codehash.ts";
import { type ExternalCheck, type StageFacts, stageFacts } from "../core/key.ts";
import { externalChanges, type ExternalData } from "./external.ts";
import { hostFileName } from "./lease.ts";
import type { FlatParams } from "../core/params.ts";
import type { RemoteCache } from "./remote.ts";
import { StatCache } from "./statcache.ts";
import { topologicalOrder } from "../core/dag.ts";
import { type LockFile, readLock } from "../core/lock.ts";
import { type Plan, plan, type PlanInput, type Reason } from "../core/plan.ts";
import type { StageDecl } from "../core/types.ts";

export interface WorkspaceOptions {
  root: string;
  dag: StageDecl[];
  params: FlatParams;
  /** the params file these params came from, relative to root (recorded in the lock) */
  paramsFile: string;
  /** defaults to <PREFIX>CACHE (a folder several hosts and users share), else `<root>/outputs/cache`; verify points it at a scratch dir */
  cacheDir?: string;
  /** a remote cache: keys missing here are looked up there */
  remote?: RemoteCache | null;
}

/** The project's outputs/ folder: its run lock, outputs/latest and (unless shared) the cache. */
export function outputsDir(root: string): string {
  return join(root, "outputs");
}

/** What the engine's commands share: the project, its params, where its cache and lock are. */
export class Workspace {
  readonly root: string;
  readonly dag: StageDecl[];
  readonly params: FlatParams;
  readonly paramsFile: string;
  readonly outputsDir: string;
  readonly cache: Cache;
  readonly statCache: StatCache;
  readonly remote: RemoteCache | null;
  private importMap: Record<string, string> = {};
  /** what the cache said about each key looked up so far */
  private readonly seen = new Map<string, EntryState>();
  /** keys whose remote copy did not pull this run */
  private readonly refused = new Set<string>();
  /** per stage, the local data its params name, as last hashed by facts() */
  private readonly checks = new Map<string, ExternalCheck[]>();

  private constructor(options: WorkspaceOptions) {
    this.root = options.root;
    this.dag = topologicalOrder(options.dag);
    this.params = options.params;
    this.paramsFile = options.paramsFile;
    this.outputsDir = outputsDir(options.root);
    const shared = readEnv("CACHE");
    const cacheDir = options.cacheDir ?? (shared ? resolve(options.root, shared) : join(this.outputsDir, "cache"));
    // One stat cache per host: a file another host wrote into a shared cache is hashed here
    // before this host first uses it, not trusted on the word of that host's stat cache.
    this.statCache = new StatCache(join(cacheDir, ".statcache", `${hostFileName()}.json`));
    this.cache = new Cache(cacheDir, this.statCache);
    this.remote = options.remote ?? null;
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

  readLock(): Promise<LockFile | null> {
    return readLock(this.lockPath);
  }

  /** Every stage's identity less its inputs (code and local data hashed). */
  async facts(): Promise<Record<string, StageFacts>> {
    const context = { root: this.root, params: this.params, importMap: this.importMap, statCache: this.statCache };
    const facts: Record<string, StageFacts> = {};
    for (const stage of this.dag) {
      const found = await stageFacts(context, stage);
      facts[stage.name] = found.facts;
      this.checks.set(stage.name, found.checks);
    }
    return facts;
  }

  /** How each param's local data was checked by the last facts(): for a line saying what it cost. */
  externalChecks(): ExternalCheck[] {
    return [...this.checks.values()].flat();
  }

  /** The listings of the local data a stage's params name (handed to its job), if any. */
  externalData(stage: string): Record<string, ExternalData> | undefined {
    const checks = this.checks.get(stage) ?? [];
    return checks.length ? Object.fromEntries(checks.map((check) => [check.key, check.listing()])) : undefined;
  }

  /**
   * `reasons` with the files named for each data reason: which files of the param's data changed
   * since the run the lock records (from the listing kept with that run's cache entry), as
   * "+added", "-removed", "name changed"; left unnamed when that entry is gone.
   */
  async namingChangedFiles(stage: string, reasons: Reason[], lock: LockFile | null): Promise<Reason[]> {
    const named: Reason[] = [];
    for (const reason of reasons) {
      if (reason.kind !== "data") {
        named.push(reason);
        continue;
      }
      const previous = lock?.stages[stage];
      const now = this.checks.get(stage)?.find((check) => check.key === reason.key);
      const before = previous && now ? (await this.cache.externalData(previous.key))?.[reason.key] : undefined;
      named.push(before && now ? { ...reason, files: externalChanges(before, now.listing()) } : reason);
    }
    return named;
  }

  /** plan() with the cache looked up for every key it asks about, until it asks no more. */
  async plan(input: Omit<PlanInput, "dag" | "cache">): Promise<Plan> {
    while (true) {
      const result = plan({ ...input, dag: this.dag, cache: (key) => this.seen.get(key) });
      if (!result.lookups.length) return result;
      for (const key of result.lookups) this.seen.set(key, await this.lookup(key));
    }
  }

  /** The local cache's state of a key, or the remote's when the local one cannot be used. */
  private async lookup(key: string): Promise<EntryState> {
    const local = await this.cache.state(key);
    if (local.state === "ok" || !this.remote || this.refused.has(key)) return local;
    return await this.remote.lookup(key) ?? local;
  }

  /** The remote's copy of `key` did not pull: from now on the key is looked up here only (and built). */
  refuseRemote(key: string): void {
    this.refused.add(key);
    this.seen.delete(key);
  }

  /** Look `key` up again at the next plan (another process or a pull has just made it). */
  forget(key: string): void {
    this.seen.delete(key);
  }

  relative(path: string): string {
    return relative(this.root, path) || ".";
  }
}
