import { sha256File } from "./hash.ts";
import { writeFileAtomic } from "./fsutil.ts";
import { faultsAsLines } from "./faults.ts";

interface StatEntry {
  size: number;
  mtimeMs: number;
  ino: number;
  sha256: string;
}

/**
 * Remembers each file's sha256 with its size, mtime and inode, so that a file that has not
 * changed is never re-hashed (what makes a no-op `status` fast on large artifacts). Any change
 * to the file changes its mtime, so a stale entry cannot be trusted by accident.
 */
export class StatCache {
  private entries: Record<string, StatEntry> = {};
  private dirty = false;

  constructor(private readonly path: string) {}

  async load(): Promise<this> {
    try {
      this.entries = JSON.parse(await Deno.readTextFile(this.path));
    } catch {
      this.entries = {}; // missing or damaged: it is only a cache, start afresh
    }
    return this;
  }

  async hash(path: string): Promise<{ sha256: string; size: number }> {
    // statSync: an async stat costs ~4x more, and a run stats every file of every entry it
    // checks (16,000 for the 8,000-photo sample: 0.76 s -> 0.3 s for a no-op run).
    const info = Deno.statSync(path);
    const mtimeMs = info.mtime?.getTime() ?? 0;
    const ino = info.ino ?? 0;
    const known = this.entries[path];
    if (known && known.size === info.size && known.mtimeMs === mtimeMs && known.ino === ino) {
      return { sha256: known.sha256, size: info.size };
    }
    const sha256 = await sha256File(path);
    this.entries[path] = { size: info.size, mtimeMs, ino, sha256 };
    this.dirty = true;
    return { sha256, size: info.size };
  }

  /** Record the sha256 of a file just written from bytes already hashed on the way (a download). */
  remember(path: string, sha256: string): void {
    const info = Deno.statSync(path);
    this.entries[path] = { size: info.size, mtimeMs: info.mtime?.getTime() ?? 0, ino: info.ino ?? 0, sha256 };
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
