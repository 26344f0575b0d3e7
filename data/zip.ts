/**
 * A streaming zip reader (no extraction to disk): the central directory is read once, then each
 * entry is read and inflated on demand. Supports stored and deflated entries and ZIP64 (the real
 * img_align_celeba.zip has 202,599 entries, past the 65,535 of plain zip). Entry names that are
 * absolute or climb out with `..` are refused (zip-slip), even though nothing is written by name.
 */
import { UserError } from "../pipeline/core/errors.ts";

export interface ZipEntry {
  name: string;
  method: number;
  compressedSize: number;
  size: number;
  localHeaderOffset: number;
}

async function readAt(file: Deno.FsFile, offset: number, length: number): Promise<Uint8Array> {
  const buffer = new Uint8Array(length);
  await file.seek(offset, Deno.SeekMode.Start);
  let filled = 0;
  while (filled < length) {
    const n = await file.read(buffer.subarray(filled));
    if (n === null) break;
    filled += n;
  }
  return buffer.subarray(0, filled);
}

function view(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

export function checkEntryName(name: string, zipPath: string): void {
  if (name.startsWith("/") || name.startsWith("\\") || /^[A-Za-z]:/.test(name) || name.split(/[\\/]/).includes("..")) {
    throw new UserError(
      `${zipPath}: refusing entry '${name}' (absolute path or '..': a zip-slip attempt); use a trusted archive`,
    );
  }
}

export class ZipReader {
  private constructor(private readonly file: Deno.FsFile, readonly path: string, readonly entries: ZipEntry[]) {}

  static async open(path: string): Promise<ZipReader> {
    const file = await Deno.open(path, { read: true });
    try {
      return new ZipReader(file, path, await readCentralDirectory(file, path));
    } catch (error) {
      file.close();
      throw error;
    }
  }

  async read(entry: ZipEntry): Promise<Uint8Array> {
    const header = view(await readAt(this.file, entry.localHeaderOffset, 30));
    if (header.byteLength < 30 || header.getUint32(0, true) !== 0x04034b50) {
      throw new Error(`bad local header for ${entry.name}`);
    }
    const dataOffset = entry.localHeaderOffset + 30 + header.getUint16(26, true) + header.getUint16(28, true);
    const compressed = await readAt(this.file, dataOffset, entry.compressedSize);
    if (compressed.length < entry.compressedSize) throw new Error(`${entry.name} is truncated`);
    if (entry.method === 0) return compressed;
    if (entry.method !== 8) throw new Error(`${entry.name} uses unsupported compression method ${entry.method}`);
    const stream = new Blob([compressed as BlobPart]).stream().pipeThrough(new DecompressionStream("deflate-raw"));
    return new Uint8Array(await new Response(stream).arrayBuffer());
  }

  close(): void {
    this.file.close();
  }
}

async function readCentralDirectory(file: Deno.FsFile, path: string): Promise<ZipEntry[]> {
  const size = (await file.stat()).size;
  const tailLength = Math.min(size, 65557);
  const tail = await readAt(file, size - tailLength, tailLength);
  let eocd = -1;
  for (let i = tail.length - 22; i >= 0; i--) {
    if (view(tail).getUint32(i, true) === 0x06054b50) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw new UserError(`${path} is not a zip file (no end of central directory); check the download`);
  const end = view(tail.subarray(eocd));
  let count = end.getUint16(10, true);
  let directorySize = end.getUint32(12, true);
  let directoryOffset = end.getUint32(16, true);
  // ZIP64: a locator just before the EOCD points at the 64-bit record.
  const locatorAt = eocd - 20;
  if (locatorAt >= 0 && view(tail).getUint32(locatorAt, true) === 0x07064b50) {
    const recordOffset = Number(view(tail).getBigUint64(locatorAt + 8, true));
    const record = view(await readAt(file, recordOffset, 56));
    if (record.getUint32(0, true) !== 0x06064b50) throw new UserError(`${path}: damaged ZIP64 record`);
    count = Number(record.getBigUint64(32, true));
    directorySize = Number(record.getBigUint64(40, true));
    directoryOffset = Number(record.getBigUint64(48, true));
  }
  const directory = await readAt(file, directoryOffset, directorySize);
  if (directory.length < directorySize) throw new UserError(`${path} is truncated; download it again`);
  const data = view(directory);
  const entries: ZipEntry[] = [];
  const decoder = new TextDecoder();
  let p = 0;
  for (let i = 0; i < count; i++) {
    if (data.getUint32(p, true) !== 0x02014b50) throw new UserError(`${path}: damaged central directory`);
    const method = data.getUint16(p + 10, true);
    let compressedSize = data.getUint32(p + 20, true);
    let uncompressedSize = data.getUint32(p + 24, true);
    const nameLength = data.getUint16(p + 28, true);
    const extraLength = data.getUint16(p + 30, true);
    const commentLength = data.getUint16(p + 32, true);
    let localHeaderOffset = data.getUint32(p + 42, true);
    const name = decoder.decode(directory.subarray(p + 46, p + 46 + nameLength));
    // ZIP64 extra field (id 1) holds, in order, whichever 32-bit fields are 0xffffffff.
    let e = p + 46 + nameLength;
    const extraEnd = e + extraLength;
    while (e + 4 <= extraEnd) {
      const id = data.getUint16(e, true);
      const length = data.getUint16(e + 2, true);
      if (id === 1) {
        let q = e + 4;
        if (uncompressedSize === 0xffffffff) {
          uncompressedSize = Number(data.getBigUint64(q, true));
          q += 8;
        }
        if (compressedSize === 0xffffffff) {
          compressedSize = Number(data.getBigUint64(q, true));
          q += 8;
        }
        if (localHeaderOffset === 0xffffffff) localHeaderOffset = Number(data.getBigUint64(q, true));
      }
      e += 4 + length;
    }
    checkEntryName(name, path);
    if (!name.endsWith("/")) {
      entries.push({ name, method, compressedSize, size: uncompressedSize, localHeaderOffset });
    }
    p = extraEnd + commentLength;
  }
  return entries;
}
