import { join, relative } from "node:path";
import { Cache, type EntryState } from "./cache.ts";
import { readImportMap } from "./codehash.ts";
import { type StageFacts, stageFacts } from "./key.ts";
import type { FlatParams } from "./params.ts";
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
  /** defaults to `<root>/outputs/cache`; verify points it at a scratch dir */
  cacheDir?: string;
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
  private importMap: Record<string, string> = {};
  /** what the cache said about each key looked up so far */
  private readonly seen = new Map<string, EntryState>();

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
      for (const key of result.lookups) this.seen.set(key, await this.cache.state(key));
    }
  }

  relative(path: string): string {
    return relative(this.root, path) || ".";
  }
}
