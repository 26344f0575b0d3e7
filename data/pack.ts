/**
 * "Packs": the binary format the data stages hand to each other. A pack is an index
 * `<prefix>.json` and files `<prefix>-00000.bin`, each holding `count` images as raw uint8 RGB,
 * row-major HWC, back to back; every image in a pack has the same width and height. Raw pixels
 * make crop -> shard -> train cost no encoding, and a reader can seek to any image.
 */
import { join } from "node:path";
import { createHash } from "node:crypto";

export interface PackFile {
  file: string;
  count: number;
  sha256: string;
}

export interface PackIndex {
  format: "facegan-pack-1";
  width: number;
  height: number;
  channels: 3;
  count: number;
  files: PackFile[];
  /** source file name of each image, in pack order */
  names: string[];
}

/** Bytes a writer gathers before one write call: per-image writes cost more than the copying. */
const WRITE_BUFFER_BYTES = 1 << 20;

export class PackWriter {
  private file: Deno.FsFile | null = null;
  private hash = createHash("sha256");
  private inFile = 0;
  private readonly files: PackFile[] = [];
  private readonly names: string[] = [];
  private readonly buffer = new Uint8Array(WRITE_BUFFER_BYTES);
  private buffered = 0;

  /** `onFile`: told each finished file's name, sha256 and size (hashed as written, never re-read) */
  constructor(
    private readonly dir: string,
    readonly width: number,
    readonly height: number,
    private readonly prefix = "pack",
    private readonly imagesPerFile = 4096,
    private readonly onFile: (file: string, sha256: string, size: number) => void = () => {},
  ) {}

  get count(): number {
    return this.names.length;
  }

  async add(pixels: Uint8Array, name: string): Promise<void> {
    if (pixels.length !== this.width * this.height * 3) {
      throw new Error(`pack image ${name} has ${pixels.length} bytes, expected ${this.width}x${this.height}x3`);
    }
    if (!this.file) {
      const file = `${this.prefix}-${String(this.files.length).padStart(5, "0")}.bin`;
      this.files.push({ file, count: 0, sha256: "" });
      this.file = await Deno.open(join(this.dir, file), { write: true, create: true, truncate: true });
    }
    if (this.buffered + pixels.length > this.buffer.length) await this.flush();
    if (pixels.length > this.buffer.length) await this.writeAll(pixels);
    else {
      this.buffer.set(pixels, this.buffered);
      this.buffered += pixels.length;
    }
    this.hash.update(pixels);
    this.names.push(name);
    this.inFile++;
    if (this.inFile === this.imagesPerFile) await this.closeFile();
  }

  private async flush(): Promise<void> {
    await this.writeAll(this.buffer.subarray(0, this.buffered));
    this.buffered = 0;
  }

  private async writeAll(bytes: Uint8Array): Promise<void> {
    let written = 0;
    while (written < bytes.length) written += await this.file!.write(bytes.subarray(written));
  }

  private async closeFile(): Promise<void> {
    if (!this.file) return;
    await this.flush();
    this.file.close();
    const current = this.files[this.files.length - 1];
    current.count = this.inFile;
    current.sha256 = this.hash.digest("hex");
    this.onFile(current.file, current.sha256, this.inFile * this.width * this.height * 3); // add() checks each image's size
    this.file = null;
    this.hash = createHash("sha256");
    this.inFile = 0;
  }

  /** Close the last file and write index.json (plus any extra fields the stage wants recorded). */
  async finish(extra: Record<string, unknown> = {}): Promise<PackIndex> {
    await this.closeFile();
    const index: PackIndex = {
      format: "facegan-pack-1",
      width: this.width,
      height: this.height,
      channels: 3,
      count: this.names.length,
      files: this.files,
      names: this.names,
      ...extra,
    };
    await Deno.writeTextFile(join(this.dir, `${this.prefix}.json`), JSON.stringify(index, null, 1));
    return index;
  }
}

/** The index `<prefix>.json` of the pack whose files are `<prefix>-NNNNN.bin`. */
export async function readPackIndex(dir: string, prefix = "pack"): Promise<PackIndex> {
  return JSON.parse(await Deno.readTextFile(join(dir, `${prefix}.json`)));
}

/** Every image of a pack in order, one file in memory at a time. */
export async function* readPackImages(
  dir: string,
  index: PackIndex,
): AsyncGenerator<{ pixels: Uint8Array; name: string }> {
  const size = index.width * index.height * 3;
  let position = 0;
  for (const file of index.files) {
    const bytes = await Deno.readFile(join(dir, file.file));
    for (let i = 0; i < file.count; i++) {
      yield { pixels: bytes.subarray(i * size, (i + 1) * size), name: index.names[position++] };
    }
  }
}

/** Random access to images of a pack by position, reading only the bytes asked for. */
export class PackReader {
  private handles = new Map<string, Deno.FsFile>();
  private readonly imageBytes: number;

  constructor(private readonly dir: string, readonly index: PackIndex) {
    this.imageBytes = index.width * index.height * 3;
  }

  /** Synchronous: shard reads every image this way, and each async call costs more than its copying. */
  read(position: number, into: Uint8Array = new Uint8Array(this.imageBytes)): Uint8Array {
    let offset = position;
    for (const file of this.index.files) {
      if (offset < file.count) {
        let handle = this.handles.get(file.file);
        if (!handle) {
          handle = Deno.openSync(join(this.dir, file.file), { read: true });
          this.handles.set(file.file, handle);
        }
        handle.seekSync(offset * this.imageBytes, Deno.SeekMode.Start);
        let filled = 0;
        while (filled < this.imageBytes) {
          const n = handle.readSync(into.subarray(filled));
          if (n === null) throw new Error(`pack file ${file.file} is truncated`);
          filled += n;
        }
        return into;
      }
      offset -= file.count;
    }
    throw new Error(`pack position ${position} is past its ${this.index.count} images`);
  }

  close(): void {
    for (const handle of this.handles.values()) handle.close();
    this.handles.clear();
  }
}

/** All images of a pack as one contiguous buffer (for training on small shards). */
export async function readPackPixels(dir: string, index: PackIndex): Promise<Uint8Array> {
  const size = index.width * index.height * 3;
  const all = new Uint8Array(index.count * size);
  let position = 0;
  for await (const { pixels } of readPackImages(dir, index)) all.set(pixels, size * position++);
  return all;
}
