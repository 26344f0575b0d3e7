/** Reading the download stage's output: a folder `images/` or a `source.zip`, as named entries. */
import { extname, join } from "node:path";
import { ZipReader } from "./zip.ts";

export const IMAGE_EXTENSIONS = new Set([".jpg", ".jpeg", ".png"]);

export interface RawSource {
  /** image entries, sorted by name */
  names: string[];
  /** entries that are not images by extension (listed in the crop report) */
  ignored: string[];
  read(name: string): Promise<Uint8Array>;
  close(): void;
}

export async function openRawSource(dir: string): Promise<RawSource> {
  const zipPath = join(dir, "source.zip");
  try {
    await Deno.stat(zipPath);
    const zip = await ZipReader.open(zipPath);
    const byName = new Map(zip.entries.map((entry) => [entry.name, entry]));
    const all = [...byName.keys()].sort();
    return {
      names: all.filter((name) => IMAGE_EXTENSIONS.has(extname(name).toLowerCase())),
      ignored: all.filter((name) => !IMAGE_EXTENSIONS.has(extname(name).toLowerCase())),
      read: (name) => zip.read(byName.get(name)!),
      close: () => zip.close(),
    };
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  const images = join(dir, "images");
  const all: string[] = [];
  for await (const entry of Deno.readDir(images)) if (entry.isFile) all.push(entry.name);
  all.sort();
  return {
    names: all.filter((name) => IMAGE_EXTENSIONS.has(extname(name).toLowerCase())),
    ignored: all.filter((name) => !IMAGE_EXTENSIONS.has(extname(name).toLowerCase())),
    read: (name) => Deno.readFile(join(images, name)),
    close: () => {},
  };
}
