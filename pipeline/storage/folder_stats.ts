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
  let file: Deno.FsFile | undefined;
  try {
    file = Deno.openSync(path);
    // Each part is read straight into its own array: a fresh megabyte costs ~3 ms of page faults
    // on a VM, so a no-op over 202,599 files should not read the 15 MB twice.
    const size = file.statSync().size;
    const lengthBytes = readExactly(file, new Uint8Array(4));
    const headerLength = new DataView(lengthBytes.buffer).getUint32(0, true);
    if (4 + headerLength > size) return null; // damaged: do not allocate what the file cannot hold
    const header = JSON.parse(new TextDecoder().decode(readExactly(file, new Uint8Array(headerLength))));
    if (header.format !== FORMAT || header.folder !== folder) return null;
    const count: number = header.count;
    if (size !== 4 + headerLength + header.names_bytes + count * 65) return null;
    const namesText = new TextDecoder().decode(readExactly(file, new Uint8Array(header.names_bytes)));
    const names = count ? namesText.split("\n") : [];
    const stats = new Float64Array(count * 4);
    readExactly(file, new Uint8Array(stats.buffer));
    const sha256 = readExactly(file, new Uint8Array(count * 32));
    const racy = readExactly(file, new Uint8Array(count));
    if (names.length !== count) return null;
    return { folder, dirs: header.dirs, names, stats, sha256, racy, digest: header.digest };
  } catch {
    return null; // missing or damaged: it is only a cache
  } finally {
    file?.close();
  }
}

function readExactly(file: Deno.FsFile, into: Uint8Array): Uint8Array {
  for (let at = 0; at < into.length;) {
    const read = file.readSync(into.subarray(at));
    if (!read) throw new Error("folder stats cut short");
    at += read;
  }
  return into;
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
