/**
 * The download stage's output, as named entries: a folder `images/` (synthetic faces), a
 * `source.zip` (an http(s) download or a local zip), or `source.json`, a reference to a local
 * folder: its path and every file's size and sha256, read in place, never copied. A referenced
 * file's bytes are checked against that sha256 when it is read (data/decode_worker.ts).
 */
import { extname, join } from "node:path";
import { ZipReader } from "./zip.ts";
import type { ExternalData } from "../pipeline/storage/external.ts";
import { sha256 } from "../pipeline/core/hash.ts";

export const IMAGE_EXTENSIONS = new Set([".jpg", ".jpeg", ".png"]);

const REFERENCE_FILE = "source.json";
const REFERENCE_FORMAT = "facegan-folder-reference-1";

/** A file an entry can be read from directly, with what its bytes must be (for references). */
export interface SourceFile {
  path: string;
  size?: number;
  sha256?: string;
}

export interface RawSource {
  /** image entries, sorted by name */
  names: string[];
  /** entries that are not images by extension (listed in the crop report) */
  ignored: string[];
  read(name: string): Promise<Uint8Array>;
  /** where an entry lies as a plain file (folders and references; not zip entries) */
  file?(name: string): SourceFile;
  close(): void;
}

function isImage(name: string): boolean {
  return IMAGE_EXTENSIONS.has(extname(name).toLowerCase());
}

/**
 * Write the reference to a local folder, as the engine listed and hashed it. Returns the number
 * of images and the file's name, sha256 and size (hashed as written: 18 MB at CelebA's scale).
 */
export async function writeFolderReference(
  outDir: string,
  data: ExternalData,
): Promise<{ images: number; file: string; sha256: string; size: number }> {
  const reference = { format: REFERENCE_FORMAT, folder: data.path, files: data.files };
  const bytes = new TextEncoder().encode(JSON.stringify(reference));
  await Deno.writeFile(join(outDir, REFERENCE_FILE), bytes);
  const images = data.files.filter(([name]) => isImage(name)).length;
  return { images, file: REFERENCE_FILE, sha256: sha256(bytes), size: bytes.length };
}

export async function openRawSource(dir: string): Promise<RawSource> {
  const zipPath = join(dir, "source.zip");
  try {
    await Deno.stat(zipPath);
    const zip = await ZipReader.open(zipPath);
    const byName = new Map(zip.entries.map((entry) => [entry.name, entry]));
    const all = [...byName.keys()].sort();
    return {
      names: all.filter(isImage),
      ignored: all.filter((name) => !isImage(name)),
      read: (name) => zip.read(byName.get(name)!),
      close: () => zip.close(),
    };
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  try {
    const reference = JSON.parse(await Deno.readTextFile(join(dir, REFERENCE_FILE)));
    if (reference.format !== REFERENCE_FORMAT) throw new Error(`${REFERENCE_FILE}: unknown format ${reference.format}`);
    const byName = new Map<string, SourceFile>(
      (reference.files as ExternalData["files"]).map(([name, size, hash]) => [
        name,
        { path: join(reference.folder, name), size, sha256: hash },
      ]),
    );
    const all = [...byName.keys()].sort();
    const file = (name: string) => byName.get(name)!;
    return {
      names: all.filter(isImage),
      ignored: all.filter((name) => !isImage(name)),
      read: async (name) => {
        const bytes = await Deno.readFile(file(name).path);
        if (sha256(bytes) !== file(name).sha256) {
          throw new Error(`${file(name).path} changed after the pipeline hashed it`);
        }
        return bytes;
      },
      file,
      close: () => {},
    };
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  const images = join(dir, "images");
  const all: string[] = [];
  for await (const entry of Deno.readDir(images)) if (entry.isFile) all.push(entry.name);
  all.sort();
  return {
    names: all.filter(isImage),
    ignored: all.filter((name) => !isImage(name)),
    read: (name) => Deno.readFile(join(images, name)),
    file: (name) => ({ path: join(images, name) }),
    close: () => {},
  };
}
