import { basename, dirname, join } from "node:path";
import { canonicalJson, HEX64, sha256 } from "../core/hash.ts";
import {
  exists,
  fsyncDir,
  fsyncTree,
  listFiles,
  removeIfExists,
  removeTempFiles,
  TEMP_MARK,
  writeFileAtomic,
} from "./fsutil.ts";
import { isPermissionFault } from "../core/faults.ts";
import { hostId, type Lease, type LeaseHolder, readHolder, waitForLease, whyDead } from "./lease.ts";
import type { StageOutput } from "../core/lock.ts";
import type { StatCache } from "./statcache.ts";
import type { ExternalData } from "./external.ts";

export interface ManifestFile {
  path: string;
  sha256: string;
  size: number;
}

export interface Manifest {
  /** sha256 of the canonical JSON of `files`: the artifact's identity, fed to downstream keys */
  output: string;
  files: ManifestFile[];
  bytes: number;
}

/** How one run of a stage went: kept with its cache entry (volatile: never in the lock). */
export interface RunInfo {
  wall_s: number;
  /** ISO 8601 UTC */
  ran_at: string;
  environment: Record<string, string | number | boolean>;
  /** the stage process's peak resident memory, where known */
  peak_rss_mb?: number;
  metrics?: unknown;
}

/** A key as the cache holds it: a usable artifact, a damaged entry, or nothing; or as a remote cache has it. */
export type EntryState =
  | { state: "ok"; output: StageOutput; run: RunInfo | null }
  | { state: "damaged"; detail: string }
  | { state: "absent" }
  | { state: "remote"; output: StageOutput; run: RunInfo | null };

/** A directory of the cache: a finished entry, or the partial one of a run in progress or killed. */
export interface CacheEntry {
  key: string;
  path: string;
  partial: boolean;
}

const PARTIAL_PREFIX = ".partial-";
const TRASH_PREFIX = ".trash-";
const RUN_FILE = "run.json";
const CLAIMS_DIR = ".claims";
/** In a partial dir being filled from another copy of the entry: that copy's manifest. */
const ADOPTING_FILE = "adopting.json";

/** A stage's output as the lock records it, from its manifest and run record. */
export function entryOutput(manifest: Manifest, run: RunInfo | null): StageOutput {
  return {
    output: manifest.output,
    files: manifest.files.length,
    bytes: manifest.bytes,
    environment: run?.environment ?? {},
    ...(run?.metrics !== undefined ? { metrics: run.metrics } : {}),
  };
}

/**
 * Why a manifest is not one promote() could have written, or null: relative paths in listFiles'
 * order, each with a sha256 and a size, and the output hash of exactly that list.
 */
export function manifestProblem(manifest: Manifest): string | null {
  if (!Array.isArray(manifest?.files)) return "no file list";
  let previous = "";
  for (const file of manifest.files) {
    const path = file?.path;
    if (typeof path !== "string" || path.split("/").some((part) => ["", ".", ".."].includes(part))) {
      return `file path ${JSON.stringify(path)} is not a plain relative path`;
    }
    if (path <= previous) return `file ${path} out of order`;
    if (!HEX64.test(file.sha256) || !Number.isSafeInteger(file.size) || file.size < 0) {
      return `file ${path} has no valid sha256 and size`;
    }
    previous = path;
  }
  if (manifest.output !== sha256(canonicalJson(manifest.files))) return "its output hash is not that of its files";
  if (manifest.bytes !== manifest.files.reduce((sum, file) => sum + file.size, 0)) return "its size is not its files'";
  return null;
}
/** the local data the stage's params named when it ran (pipeline/storage/external.ts), beside its artifact */
const EXTERNAL_FILE = "external.json";
/** what the stage's process reports besides its environment (stage_runner.ts's RunnerReport) */
const REPORT_FILE = "report.json";

/**
 * The content-addressed cache, the only module that knows its layout: `<cacheDir>/<key>/out/`
 * holds a stage's artifact, `<key>/manifest.json` every file's sha256 and size, `<key>/run.json`
 * the run's record (RunInfo). An entry only ever appears under its final name complete: it is
 * built in `.partial-<key>/`, fsynced, then renamed (atomic on one filesystem, also when several
 * hosts share the cache). `.claims/<key>` is the lease of the process building a key: only its
 * holder touches `.partial-<key>/`, so two hosts never build the same key at once.
 */
export class Cache {
  constructor(readonly dir: string, private readonly statCache: StatCache) {}

  entryDir(key: string): string {
    return join(this.dir, key);
  }

  outDir(key: string): string {
    return join(this.dir, key, "out");
  }

  /** Where a run of `key` writes; kept after a crash so a resumable stage can pick up its work. */
  partialDir(key: string): string {
    return join(this.dir, `${PARTIAL_PREFIX}${key}`);
  }

  /**
   * Whether `key`'s partial dir holds a killed run's progress for a resumable stage to continue:
   * an output folder that is not a pull from a remote cache (that one is no stage's work).
   */
  async hasProgress(key: string): Promise<boolean> {
    const partial = this.partialDir(key);
    return await exists(join(partial, "out")) && !(await exists(join(partial, ADOPTING_FILE)));
  }

  async readManifest(key: string): Promise<Manifest | null> {
    try {
      return JSON.parse(await Deno.readTextFile(join(this.entryDir(key), "manifest.json")));
    } catch {
      return null;
    }
  }

  /**
   * The entry's manifest if every file is present with its recorded hash, else why not. Files are
   * checked through this host's stat cache: a file this host has not hashed yet (one another host
   * wrote into a shared cache) is read and hashed, an unchanged one it already verified costs a
   * stat; `rehash` forces reading every byte.
   */
  async check(key: string, rehash = false): Promise<{ manifest: Manifest | null; problems: string[] }> {
    const manifest = await this.readManifest(key);
    if (!manifest) {
      const present = await exists(this.entryDir(key));
      return { manifest: null, problems: present ? ["manifest.json missing or unreadable"] : ["not in cache"] };
    }
    const damaged = manifestProblem(manifest);
    if (damaged) return { manifest: null, problems: [`manifest.json: ${damaged}`] };
    if (rehash) this.statCache.forget(this.outDir(key));
    const problems: string[] = [];
    const listed = new Set(manifest.files.map((file) => file.path));
    for (const file of manifest.files) {
      const path = join(this.outDir(key), file.path);
      try {
        const actual = await this.statCache.hash(path);
        if (actual.sha256 !== file.sha256 || actual.size !== file.size) problems.push(`${file.path} changed`);
      } catch (error) {
        problems.push(`${file.path} ${isPermissionFault(error) ? "unreadable (permission denied)" : "missing"}`);
      }
    }
    if (rehash) {
      const others: string[] = [];
      for (const path of await listFiles(this.outDir(key), others).catch(() => [])) {
        if (!listed.has(path)) problems.push(`${path} not in manifest`);
      }
      // An artifact holds only regular files: a link (to a folder, to /etc/passwd) was put there later.
      for (const path of others) {
        const link = (await Deno.lstat(join(this.outDir(key), path))).isSymlink;
        problems.push(`${path} not in manifest (${link ? "a symlink" : "not a regular file"})`);
      }
    }
    return { manifest: problems.length ? null : manifest, problems };
  }

  /** The key's state, for planning: its manifest checked, its output and run record. */
  async state(key: string): Promise<EntryState> {
    const { manifest, problems } = await this.check(key);
    if (!manifest) {
      return problems.join() === "not in cache"
        ? { state: "absent" }
        : { state: "damaged", detail: problems.join(", ") };
    }
    const run = await this.runInfo(key);
    return { state: "ok", output: entryOutput(manifest, run), run };
  }

  async runInfo(key: string): Promise<RunInfo | null> {
    try {
      return JSON.parse(await Deno.readTextFile(join(this.entryDir(key), RUN_FILE)));
    } catch {
      return null;
    }
  }

  /** Where a run's job finds the listings of its local data (kept with the entry). */
  externalFile(key: string): string {
    return join(this.partialDir(key), EXTERNAL_FILE);
  }

  /** Where a run's job reports what it measured and the hashes of the files it wrote. */
  reportFile(key: string): string {
    return join(this.partialDir(key), REPORT_FILE);
  }

  /** The listings of the local data an entry was made from, if it had any. */
  async externalData(key: string): Promise<Record<string, ExternalData> | null> {
    try {
      return JSON.parse(await Deno.readTextFile(join(this.entryDir(key), EXTERNAL_FILE)));
    } catch {
      return null;
    }
  }

  /** Record how the run went, in the partial dir (promoted with the artifact). */
  async writeRunInfo(key: string, info: RunInfo): Promise<void> {
    await writeFileAtomic(join(this.partialDir(key), RUN_FILE), JSON.stringify(info));
  }

  /**
   * Hash every file of a finished partial dir, fsync it and rename it to its final name. Files
   * the stage hashed as it wrote them (`written`, by path in out/) are not read again.
   */
  async promote(key: string, written: Record<string, { sha256: string; size: number }> = {}): Promise<Manifest> {
    const partial = this.partialDir(key);
    const out = join(partial, "out");
    await fsyncTree(out);
    const files: ManifestFile[] = [];
    for (const path of await listFiles(out)) {
      const full = join(out, path);
      if (written[path]) this.statCache.remember(full, written[path].sha256, written[path].size);
      const { sha256: hash, size } = await this.statCache.hash(full);
      files.push({ path, sha256: hash, size });
    }
    const manifest: Manifest = {
      output: sha256(canonicalJson(files)),
      files,
      bytes: files.reduce((sum, file) => sum + file.size, 0),
    };
    await writeFileAtomic(join(partial, "manifest.json"), JSON.stringify(manifest, null, 1));
    const final = this.entryDir(key);
    if (await exists(final)) {
      // A forced re-run of an existing key: move the old entry aside first, never half-replace it.
      const trash = this.trashPath(key);
      await Deno.rename(final, trash);
      try {
        await Deno.rename(partial, final);
      } catch (error) {
        await Deno.rename(trash, final).catch(() => {});
        throw error;
      }
      // Another user's old entry may not be removable by us: the new one is in place all the same.
      await removeIfExists(trash).catch((error) => {
        if (!isPermissionFault(error)) throw error;
      });
    } else {
      await Deno.rename(partial, final);
    }
    await fsyncDir(this.dir);
    this.statCache.moved(out, this.outDir(key));
    return manifest;
  }

  /**
   * Claim `key` before building it: waits while another process (on any host sharing the cache)
   * holds the claim, and takes over a dead holder's (`tookOver` says why it was judged dead).
   */
  async claim(
    key: string,
    command: string,
    waiting: (holder: LeaseHolder) => void,
    signal?: AbortSignal,
  ): Promise<{ lease: Lease; tookOver?: string }> {
    await Deno.mkdir(join(this.dir, CLAIMS_DIR), { recursive: true });
    return await waitForLease(join(this.dir, CLAIMS_DIR, key), command, waiting, signal);
  }

  /** The live holder of `key`'s claim, or null (none, or a dead one). */
  async claimHolder(key: string): Promise<LeaseHolder | null> {
    const holder = await readHolder(join(this.dir, CLAIMS_DIR, key));
    return holder && !whyDead(holder) ? holder : null;
  }

  /**
   * Fill the partial dir of `key` from another copy of its entry (a remote cache), under the
   * caller's claim: `fetch` writes one file's verified bytes to `temp`. A pull cut short resumes:
   * files already fetched for the same manifest and still matching are kept; a partial dir left
   * by anything else is started afresh. Promoted only once every file is there.
   */
  async adopt(
    key: string,
    manifest: Manifest,
    run: RunInfo | null,
    fetch: (file: ManifestFile, temp: string) => Promise<void>,
  ): Promise<Manifest> {
    const damaged = manifestProblem(manifest);
    if (damaged) throw new Error(`manifest of ${key}: ${damaged}`);
    const partial = this.partialDir(key);
    const out = join(partial, "out");
    const marker = join(partial, ADOPTING_FILE);
    const expected = JSON.stringify(manifest);
    if (await Deno.readTextFile(marker).catch(() => "") !== expected) {
      await removeIfExists(partial);
      await writeFileAtomic(marker, expected);
    }
    await Deno.mkdir(out, { recursive: true });
    for (const file of manifest.files) {
      const path = join(out, file.path);
      let have = null;
      try {
        have = this.statCache.hash(path);
      } catch { /* not fetched yet */ }
      if (have?.sha256 === file.sha256 && have.size === file.size) continue;
      const temp = join(partial, "incoming");
      await fetch(file, temp);
      await Deno.mkdir(dirname(path), { recursive: true });
      await Deno.rename(temp, path);
      this.statCache.remember(path, file.sha256);
    }
    const present = await listFiles(out);
    if (present.join("\n") !== manifest.files.map((file) => file.path).join("\n")) {
      throw new Error(`${partial}: holds files its manifest does not list`);
    }
    await Deno.remove(marker);
    if (run) await this.writeRunInfo(key, run);
    return await this.promote(key);
  }

  /**
   * Remove an entry or a partial dir (`path`, from entries()) whole: renamed aside first, so an
   * interrupted removal never leaves part of an entry under its final name; sweepTrash() removes
   * what a killed one left aside.
   */
  async discard(path: string): Promise<void> {
    const trash = this.trashPath(basename(path));
    await Deno.rename(path, trash);
    await removeIfExists(trash);
  }

  private trashPath(name: string): string {
    return join(this.dir, `${TRASH_PREFIX}${name}-${hostId()}-${Deno.pid}`);
  }

  /** Every entry on disk, finished and partial, by name. */
  async entries(): Promise<CacheEntry[]> {
    const entries: CacheEntry[] = [];
    try {
      for await (const entry of Deno.readDir(this.dir)) {
        if (!entry.isDirectory) continue;
        const partial = entry.name.startsWith(PARTIAL_PREFIX);
        const key = partial ? entry.name.slice(PARTIAL_PREFIX.length) : entry.name;
        if (HEX64.test(key)) entries.push({ key, path: join(this.dir, entry.name), partial });
      }
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
    return entries.sort((a, b) => a.path.localeCompare(b.path));
  }

  /**
   * After a stage stopped unfinished: a resumable stage's partial dir is kept for the next run to
   * continue (less the temp files of writes cut short); any other's is removed.
   */
  async settlePartial(key: string, resumable: boolean): Promise<void> {
    if (resumable) await removeTempFiles(this.partialDir(key));
    else await removeIfExists(this.partialDir(key));
  }

  /** Remove leftovers of killed runs (trash dirs, temp files); partial dirs are kept for resumable stages. */
  async sweepTrash(): Promise<void> {
    try {
      for await (const entry of Deno.readDir(this.dir)) {
        if (entry.name.startsWith(TRASH_PREFIX) || entry.name.includes(TEMP_MARK)) {
          // Another user's leftovers cannot be removed by us: they only take space, never a key.
          await removeIfExists(join(this.dir, entry.name)).catch((error) => {
            if (!isPermissionFault(error)) throw error;
          });
        }
      }
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
  }
}
