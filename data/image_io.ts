/** PNG grids of uint8 RGB images (imagescript encodes; deterministic for the same pixels). */
import { decode, Image } from "imagescript";

/**
 * Tile `count` square RGB images of `size` px into a grid `columns` wide, each pixel repeated
 * `upscale` times (nearest neighbour, so 32 px faces stay sharp), with a 1-pixel gutter.
 */
export function gridImage(pixels: Uint8Array, count: number, size: number, columns: number, upscale = 1): Image {
  const rows = Math.ceil(count / columns);
  const cell = size * upscale + 1;
  const image = new Image(columns * cell + 1, rows * cell + 1);
  image.fill(0x202020ff);
  const bitmap = image.bitmap;
  for (let n = 0; n < count; n++) {
    const left = (n % columns) * cell + 1;
    const top = Math.floor(n / columns) * cell + 1;
    for (let y = 0; y < size * upscale; y++) {
      for (let x = 0; x < size * upscale; x++) {
        const source = ((n * size + Math.floor(y / upscale)) * size + Math.floor(x / upscale)) * 3;
        const target = ((top + y) * image.width + left + x) * 4;
        bitmap[target] = pixels[source];
        bitmap[target + 1] = pixels[source + 1];
        bitmap[target + 2] = pixels[source + 2];
        bitmap[target + 3] = 255;
      }
    }
  }
  return image;
}

/**
 * PNG bytes that depend only on the pixels: imagescript stamps a "Creation Time" text chunk into
 * every PNG, which would make two identical runs differ, so text chunks are dropped.
 */
export async function encodePng(image: Image): Promise<Uint8Array> {
  const png = await image.encode(6);
  const view = new DataView(png.buffer, png.byteOffset, png.byteLength);
  const kept: Uint8Array[] = [png.subarray(0, 8)];
  for (let p = 8; p < png.length;) {
    const length = view.getUint32(p);
    const type = String.fromCharCode(...png.subarray(p + 4, p + 8));
    if (type !== "tEXt") kept.push(png.subarray(p, p + 12 + length));
    p += 12 + length;
  }
  return concatBytes(kept);
}

/** The parts one after another in a new array. */
export function concatBytes(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/** The tiles of a grid written by `gridImage` (upscale 1), read back as uint8 RGB images. */
export async function readGridTiles(path: string, size: number): Promise<Uint8Array[]> {
  const grid = await decode(await Deno.readFile(path)) as Image;
  const columns = Math.floor((grid.width - 1) / (size + 1));
  const rows = Math.floor((grid.height - 1) / (size + 1));
  const tiles: Uint8Array[] = [];
  for (let n = 0; n < columns * rows; n++) {
    const [left, top] = [1 + (n % columns) * (size + 1), 1 + Math.floor(n / columns) * (size + 1)];
    const pixels = new Uint8Array(size * size * 3);
    const { bitmap } = grid;
    // Byte by byte: a subarray per pixel made this a fifth of evaluate's per-epoch SWD time.
    for (let y = 0, out = 0; y < size; y++) {
      for (let x = 0, source = ((top + y) * grid.width + left) * 4; x < size; x++, source += 4) {
        pixels[out++] = bitmap[source];
        pixels[out++] = bitmap[source + 1];
        pixels[out++] = bitmap[source + 2];
      }
    }
    tiles.push(pixels);
  }
  return tiles;
}
