/**
 * Local data a param names (StageDecl.external): every file's path, size and sha256, checked
 * with one stat per file (an unchanged file is never re-read: a folder through its own compact
 * stat cache, pipeline/storage/folder_stats.ts; a single file through the stat cache), and the digest of
 * that listing, which goes into the stage's key. The engine hands the listing to the stage, so a
 * stage can refer to the files instead of copying them, and keeps it with the cache entry, so a
 * later run can say which files changed.
 */
import { Buffer } from "node:buffer";
import { sha256, sha256File } from "../core/hash.ts";
import { type DirStat, type FolderStats, readFolderStats, writeFolderStats } from "./folder_stats.ts";
import { isRacy, type StatCache, times } from "./statcache.ts";
import { statFolderFiles, statInto } from "./file_stat.ts";
import { errorPath, isPermissionFault, unreadable } from "../core/faults.ts";
import { UserError } from "../core/errors.ts";

/** One file: path relative to the named folder ("" when the param names a file), size, sha256. */
export type ExternalFile = [path: string, size: number, sha256: string];

/** What a param named, as hashed into the key: its absolute path and its files, sorted by path. */
export interface ExternalData {
  path: string;
  files: ExternalFile[];
}

/** A param's data as checked now: its digest, and its listing built only when asked for. */
export interface ExternalRead {
  digest: string;
  files: number;
  /** files read and hashed now (new, changed, or changed too recently to trust their stat) */
  rehashed: number;
  seconds: number;
  listing(): ExternalData;
}

/** `param` names the data in the one line said about a file that cannot be read. */
export async function readExternal(path: string, statCache: StatCache, param: string): Promise<ExternalRead> {
  const started = performance.now();
  const failed = (file: string, error: unknown): never => {
    throw isPermissionFault(error) ? unreadable(`a file ${param} names:`, file) : error;
  };
  const info = await Deno.stat(path);
  // A FIFO or a device would be read forever: even status and --dry-run would hang.
  if (!info.isDirectory && !info.isFile) {
    throw new UserError(
      `${param} names ${path}, which is ${specialKind(info)}, not a folder or a regular file; point ${param} at ` +
        "a folder or a file",
    );
  }
  if (info.isFile) {
    let hashed: ReturnType<StatCache["hash"]>;
    try {
      hashed = statCache.hash(path);
    } catch (error) {
      return failed(path, error);
    }
    const { sha256: hash, size, fresh } = hashed;
    const data: ExternalData = { path, files: [["", size, hash]] };
    const seconds = (performance.now() - started) / 1000;
    return { digest: externalDigest(data), files: 1, rehashed: fresh ? 1 : 0, seconds, listing: () => data };
  }
  const walkFailed = (error: unknown): never => {
    throw isPermissionFault(error) ? unreadable(`a folder ${param} names:`, errorPath(error) ?? path) : error;
  };
  const { stats, rehashed } = await checkFolder(path, statCache.folderStatsPath(path), failed, walkFailed);
  const seconds = (performance.now() - started) / 1000;
  let built: ExternalData | null = null;
  const files = stats.names.length;
  return { digest: stats.digest, files, rehashed, seconds, listing: () => built ??= listing(stats) };
}

function specialKind(info: Deno.FileInfo): string {
  if (info.isFifo) return "a FIFO";
  if (info.isCharDevice) return "a character device";
  if (info.isBlockDevice) return "a block device";
  if (info.isSocket) return "a socket";
  return "not a regular file";
}

/**
 * Stat every file once, re-hash only files whose size, mtime, ctime or inode differ from the
 * folder's stat cache (or that were racy), and save the cache if anything moved. The folder is
 * walked again only when one of its directories changed: adding, removing or renaming an entry
 * changes its directory's mtime and ctime (POSIX), and each directory was stat'ed before it was
 * read, so an entry added during the walk shows next time. Files are matched by position when
 * the names are the same.
 */
async function checkFolder(
  folder: string,
  cachePath: string,
  failed: (file: string, error: unknown) => never,
  walkFailed: (error: unknown) => never,
): Promise<{ stats: FolderStats; rehashed: number }> {
  const before = readFolderStats(cachePath, folder);
  const sameTree = before !== null && before.dirs.every(([path, mtimeMs, ctimeMs, ino, racy]) => {
    const now = dirTimes(path ? `${folder}/${path}` : folder);
    return !racy && now !== null && now.mtimeMs === mtimeMs && now.ctimeMs === ctimeMs && now.ino === ino;
  });
  const dirs: DirStat[] = sameTree ? before!.dirs : [];
  let names: string[];
  try {
    names = sameTree ? before!.names : walkFiles(folder, dirs);
  } catch (error) {
    return walkFailed(error);
  }
  const count = names.length;
  const samePlaces = before !== null && before.names.length === count &&
    names.every((name, i) => name === before.names[i]);
  const byName = before && !samePlaces ? new Map(before.names.map((name, i) => [name, i])) : null;
  let stats: Float64Array;
  try {
    stats = await statFolderFiles(folder, names);
  } catch (error) {
    return failed(errorPath(error) ?? folder, error);
  }
  // Unchanged places: the cached hashes are updated in place (no 6 MB copy for a no-op).
  const hashes = samePlaces && before ? before.sha256 : new Uint8Array(count * 32);
  const racy = new Uint8Array(count);
  let rehashed = 0;
  for (let i = 0; i < count; i++) {
    const j = samePlaces ? i : byName?.get(names[i]);
    const known = before && j !== undefined && !before.racy[j] && before.stats[j * 4] === stats[i * 4] &&
      before.stats[j * 4 + 1] === stats[i * 4 + 1] && before.stats[j * 4 + 2] === stats[i * 4 + 2] &&
      before.stats[j * 4 + 3] === stats[i * 4 + 3];
    if (known) {
      if (!samePlaces) hashes.set(before.sha256.subarray(j * 32, j * 32 + 32), i * 32);
      continue;
    }
    const path = `${folder}/${names[i]}`; // not join(): it normalises each path
    const hashedAt = Date.now();
    let hash: string;
    try {
      hash = sha256File(path);
    } catch (error) {
      return failed(path, error);
    }
    hashes.set(Buffer.from(hash, "hex"), i * 32);
    statInto(path, stats, i * 4);
    racy[i] = isRacy(hashedAt, stats[i * 4 + 1], stats[i * 4 + 2]) ? 1 : 0;
    rehashed++;
  }
  const current: FolderStats = { folder, dirs, names, stats, sha256: hashes, racy, digest: before?.digest ?? "" };
  if (!samePlaces || rehashed > 0) current.digest = externalDigest(listing(current));
  if (!sameTree || rehashed > 0) await writeFolderStats(cachePath, current);
  return { stats: current, rehashed };
}

/**
 * Every regular file below `root` (symlinks skipped), as '/'-separated relative paths, in walk
 * order; each directory's times go into `dirs`, taken before it is read.
 */
function walkFiles(root: string, dirs: DirStat[], relative = "", found: string[] = []): string[] {
  const path = relative ? `${root}/${relative}` : root;
  const started = Date.now();
  const { mtimeMs, ctimeMs, ino } = dirTimes(path)!;
  dirs.push([relative, mtimeMs, ctimeMs, ino, isRacy(started, mtimeMs, ctimeMs)]);
  for (const entry of Deno.readDirSync(path)) {
    const child = relative ? `${relative}/${entry.name}` : entry.name;
    if (entry.isDirectory) walkFiles(root, dirs, child, found);
    else if (entry.isFile) found.push(child);
  }
  return found;
}

function dirTimes(path: string): { mtimeMs: number; ctimeMs: number; ino: number } | null {
  try {
    return times(Deno.statSync(path));
  } catch {
    return null;
  }
}

function listing(stats: FolderStats): ExternalData {
  const order = stats.names.map((_, i) => i).sort((a, b) =>
    stats.names[a] < stats.names[b] ? -1 : stats.names[a] > stats.names[b] ? 1 : 0
  );
  const hex = Buffer.from(stats.sha256).toString("hex");
  const files = order.map((i): ExternalFile => [stats.names[i], stats.stats[i * 4], hex.slice(i * 64, i * 64 + 64)]);
  return { path: stats.folder, files };
}

/** The digest in the key: sha256 of "path sha256" lines, in path order. */
export function externalDigest(data: ExternalData): string {
  return sha256(data.files.map(([name, _size, hash]) => `${name} ${hash}`).join("\n"));
}

/** Files added, removed or changed from `before` to `after`, as "+name", "-name", "name changed". */
export function externalChanges(before: ExternalData, after: ExternalData): string[] {
  const old = new Map(before.files.map(([name, _size, hash]) => [name, hash]));
  const changes: string[] = [];
  for (const [name, _size, hash] of after.files) {
    const previous = old.get(name);
    if (previous === undefined) changes.push(`+${name || after.path}`);
    else if (previous !== hash) changes.push(`${name || after.path} changed`);
    old.delete(name);
  }
  for (const name of old.keys()) changes.push(`-${name || before.path}`);
  return changes;
}
