import { join, relative, resolve } from "node:path";
import { Cache, type EntryState } from "./cache.ts";
import { readImportMap } from "./codehash.ts";
import { type StageFacts, stageFacts } from "./key.ts";
import { hostId } from "./lease.ts";
import type { FlatParams } from "./params.ts";
import type { RemoteCache } from "./remote.ts";
import { StatCache } from "./statcache.ts";
import { topologicalOrder } from "./dag.ts";
import { type LockFile, readLock } from "./lock.ts";
import { type Plan, plan, type PlanInput } from "./plan.ts";
import type { StageDecl } from "./types.ts";

export interface WorkspaceOptions {
  root: string;
  dag: StageDecl[];
  params: FlatParams;
  /** the params file these params came from, relative to root (recorded in the lock) */
  paramsFile: string;
  /** defaults to FACEGAN_CACHE, else `<root>/outputs/cache`; verify points it at a scratch dir */
  cacheDir?: string;
  /** a remote cache: keys missing here are looked up there */
  remote?: RemoteCache | null;
}

/** Where the cache is when not in `outputs/cache`: a folder several hosts and users share. */
export const CACHE_ENV = "FACEGAN_CACHE";

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

  private constructor(options: WorkspaceOptions) {
    this.root = options.root;
    this.dag = topologicalOrder(options.dag);
    this.params = options.params;
    this.paramsFile = options.paramsFile;
    this.outputsDir = join(options.root, "outputs");
    const shared = Deno.env.get(CACHE_ENV);
    const cacheDir = options.cacheDir ?? (shared ? resolve(options.root, shared) : join(this.outputsDir, "cache"));
    // One stat cache per host: a file another host wrote into a shared cache is hashed here
    // before this host first uses it, not trusted on the word of that host's stat cache.
    const host = hostId().replace(/[^A-Za-z0-9._-]/g, "_");
    this.statCache = new StatCache(join(cacheDir, ".statcache", `${host}.json`));
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
    for (const stage of this.dag) facts[stage.name] = await stageFacts(context, stage);
    return facts;
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
    if (local.state === "ok" || !this.remote) return local;
    return await this.remote.lookup(key) ?? local;
  }

  /** Look `key` up again at the next plan (another process or a pull has just made it). */
  forget(key: string): void {
    this.seen.delete(key);
  }

  relative(path: string): string {
    return relative(this.root, path) || ".";
  }
}
