/**
 * The stat cache of a large local data folder (a param's `external` folder): every file's size,
 * mtime, ctime, inode and sha256 in one compact binary file, in the order the folder was walked.
 * A per-path JSON entry for each of 202,599 photos made a no-op check cost ~2 s; with this, an
 * unchanged folder costs one readdir walk and one stat per file (pipeline/storage/external.ts).
 *
 * Layout: uint32 LE length of a JSON header ({format, folder, count, digest, names_bytes, dirs}), the
 * header, the names (UTF-8, "\n"-joined, walk order), then float64 LE size/mtimeMs/ctimeMs/ino
 * per file, 32 raw sha256 bytes per file, and one byte per file: 1 = racy (hash again next time).
 */
import { writeFileAtomic } from "./fsutil.ts";

const FORMAT = "facegan-folder-stats-1";

/** A directory of the folder as stat'ed just before it was read: path ("" the folder itself), times, inode, racy. */
export type DirStat = [path: string, mtimeMs: number, ctimeMs: number, ino: number, racy: boolean];

export interface FolderStats {
  folder: string;
  /** every directory walked, so an unchanged tree need not be read again */
  dirs: DirStat[];
  /** relative paths, in walk order */
  names: string[];
  /** per file: size, mtimeMs, ctimeMs, ino */
  stats: Float64Array;
  /** per file: 32 bytes of sha256 */
  sha256: Uint8Array;
  racy: Uint8Array;
  /** the listing's digest (pipeline/storage/external.ts) */
  digest: string;
}

export function readFolderStats(path: string, folder: string): FolderStats | null {
  try {
    const bytes = Deno.readFileSync(path);
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const headerLength = view.getUint32(0, true);
    let offset = 4;
    const header = JSON.parse(new TextDecoder().decode(bytes.subarray(offset, offset += headerLength)));
    if (header.format !== FORMAT || header.folder !== folder) return null;
    const count: number = header.count;
    const names = count
      ? new TextDecoder().decode(bytes.subarray(offset, offset += header.names_bytes)).split("\n")
      : [];
    // slice(): a copy, so the float64s are aligned whatever the offset
    const stats = new Float64Array(bytes.slice(offset, offset += count * 32).buffer);
    const sha256 = bytes.slice(offset, offset += count * 32);
    const racy = bytes.slice(offset, offset += count);
    if (names.length !== count || offset !== bytes.length) return null;
    return { folder, dirs: header.dirs, names, stats, sha256, racy, digest: header.digest };
  } catch {
    return null; // missing or damaged: it is only a cache
  }
}

export async function writeFolderStats(path: string, stats: FolderStats): Promise<void> {
  const names = new TextEncoder().encode(stats.names.join("\n"));
  const header = new TextEncoder().encode(JSON.stringify({
    format: FORMAT,
    folder: stats.folder,
    count: stats.names.length,
    digest: stats.digest,
    names_bytes: names.length,
    dirs: stats.dirs,
  }));
  const statBytes = new Uint8Array(stats.stats.buffer, stats.stats.byteOffset, stats.stats.byteLength);
  const parts = [new Uint8Array(4), header, names, statBytes, stats.sha256, stats.racy];
  new DataView(parts[0].buffer).setUint32(0, header.length, true);
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  await writeFileAtomic(path, out);
}
