import { basename, dirname, join } from "node:path";
import { sha256, sha256File } from "../core/hash.ts";
import { writeFileAtomic } from "./fsutil.ts";
import { faultsAsLines } from "../core/faults.ts";

interface StatEntry {
  size: number;
  mtimeMs: number;
  ctimeMs: number;
  ino: number;
  sha256: string;
  /** hashed while the file was still being changed, or just after: hash it again next time */
  racy?: boolean;
}

/**
 * A file hashed too soon after it was last written may be written again with the same timestamp
 * (git's "racily clean" rule), so its entry is not trusted next time. How soon depends on how fine
 * the file system's timestamps are. Deno gives mtime in milliseconds (ctime only in whole seconds,
 * so ctime cannot tell two writes in one second apart, but mtime can): a write after the hash
 * shows in mtime unless it falls within the kernel's clock tick (at most 10 ms), so 100 ms is a
 * safe margin. An mtime on a whole second is taken as a coarse file system (ext3, HFS+: 1 s; FAT:
 * 2 s) and gets the old 2 s rule on mtime and ctime. Measured from when the file was hashed, not
 * from the run's start: a folder written long before is never racy, even on the first run.
 */
const RACY_FINE_MS = 100;
const RACY_COARSE_MS = 2000;

/** True when a file with these times, hashed at `hashedAt`, may have changed unseen since. */
export function isRacy(hashedAt: number, mtimeMs: number, ctimeMs: number): boolean {
  if (mtimeMs % 1000 !== 0) return hashedAt - mtimeMs < RACY_FINE_MS;
  return hashedAt - Math.max(mtimeMs, ctimeMs) < RACY_COARSE_MS;
}

/**
 * Remembers each file's sha256 with its size, mtime, ctime and inode, so that a file that has not
 * changed is never re-hashed (what makes a no-op `status` fast on large artifacts). Any change
 * to the file's content changes its mtime and ctime (ctime cannot be set back by a user), so a
 * stale entry cannot be trusted by accident.
 */
export class StatCache {
  private entries: Record<string, StatEntry> = {};
  private dirty = false;

  constructor(private readonly path: string) {}

  /** Where the stat cache of a large data folder lives (pipeline/storage/folder_stats.ts): beside this one's file, per host too. */
  folderStatsPath(folder: string): string {
    const folders = `${basename(this.path, ".json")}-folders`;
    return join(dirname(this.path), folders, `${sha256(folder).slice(0, 32)}.bin`);
  }

  async load(): Promise<this> {
    try {
      this.entries = JSON.parse(await Deno.readTextFile(this.path));
    } catch {
      this.entries = {}; // missing or damaged: it is only a cache, start afresh
    }
    return this;
  }

  /** The file's sha256 and size; `fresh`: it was read and hashed now (not known unchanged). */
  hash(path: string): { sha256: string; size: number; fresh: boolean } {
    // statSync: an async stat costs ~4x more, and a run stats every file of every entry it
    // checks (16,000 for the 8,000-photo sample: 0.76 s -> 0.3 s for a no-op run).
    const info = Deno.statSync(path);
    const known = this.entries[path];
    if (known && !known.racy && sameFile(known, info)) return { sha256: known.sha256, size: info.size, fresh: false };
    const started = Date.now();
    const sha256 = sha256File(path);
    this.store(path, Deno.statSync(path), sha256, started);
    return { sha256, size: info.size, fresh: true };
  }

  /**
   * Record the sha256 of a file just written from bytes already hashed on the way (a download, a
   * stage's pack files) by a writer that has finished, instead of reading it again. `size`, where
   * given, must be the size written.
   */
  remember(path: string, sha256: string, size?: number): void {
    const info = Deno.statSync(path);
    if (size !== undefined && info.size !== size) {
      throw new Error(`${path}: ${info.size} bytes on disk, ${size} reported as written`);
    }
    this.store(path, info, sha256, Infinity);
  }

  private store(path: string, info: Deno.FileInfo, sha256: string, hashedAt: number): void {
    const entry = { size: info.size, ...times(info), sha256 };
    const racy = isRacy(hashedAt, entry.mtimeMs, entry.ctimeMs);
    this.entries[path] = racy ? { ...entry, racy } : entry;
    this.dirty = true;
  }

  forget(prefix: string): void {
    for (const path of Object.keys(this.entries)) {
      if (path.startsWith(prefix)) {
        delete this.entries[path];
        this.dirty = true;
      }
    }
  }

  /** Files moved from `from` to `to` (a rename keeps mtime and inode): keep their hashes. */
  moved(from: string, to: string): void {
    for (const path of Object.keys(this.entries)) {
      if (path.startsWith(from)) {
        this.entries[to + path.slice(from.length)] = this.entries[path];
        delete this.entries[path];
        this.dirty = true;
      }
    }
  }

  /** Write it atomically: a full disk leaves the previous file whole (and says so in one line). */
  async save(): Promise<void> {
    if (!this.dirty) return;
    await faultsAsLines(
      "writing the stat cache",
      this.path,
      () => writeFileAtomic(this.path, JSON.stringify(this.entries)),
    );
    this.dirty = false;
  }

  /**
   * For commands that only read (status, --dry-run) and after a failed run: a stat cache that
   * cannot be written (read-only or full disk) costs only re-hashing next time, so it is left as it was.
   */
  async saveIfPossible(): Promise<void> {
    await this.save().catch(() => {});
  }
}

export function times(info: Deno.FileInfo): { mtimeMs: number; ctimeMs: number; ino: number } {
  return { mtimeMs: info.mtime?.getTime() ?? 0, ctimeMs: info.ctime?.getTime() ?? 0, ino: info.ino ?? 0 };
}

function sameFile(known: StatEntry, info: Deno.FileInfo): boolean {
  const now = times(info);
  return known.size === info.size && known.mtimeMs === now.mtimeMs && known.ctimeMs === now.ctimeMs &&
    known.ino === now.ino;
}
