import { createHash } from "node:crypto";

/** a key and a sha256 alike: 64 hex digits */
export const HEX64 = /^[0-9a-f]{64}$/;

/** One read buffer for every hash: a fresh 1 MiB buffer per 4 KB photo made hashing 3x slower. */
const buffer = new Uint8Array(1 << 20);

/**
 * sha256 of a file, streamed so that large shards and zips never sit in memory whole. Synchronous
 * reads: five async file calls per small photo cost ~15x the hashing (20,000 photos: 6.2 s).
 */
export function sha256File(path: string): string {
  const hash = createHash("sha256");
  using file = Deno.openSync(path, { read: true });
  while (true) {
    const n = file.readSync(buffer);
    if (n === null) break;
    hash.update(buffer.subarray(0, n));
  }
  return hash.digest("hex");
}

export function sha256(data: string | Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

/**
 * JSON with object keys sorted at every level and no whitespace: the same value always gives
 * the same string, so it can be hashed into a cache key.
 */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(sortKeys(value));
}

/** Pretty JSON with sorted keys, for committed files whose diffs people read. */
export function stableJson(value: unknown): string {
  return JSON.stringify(sortKeys(value), null, 2) + "\n";
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value !== null && typeof value === "object") {
    const sorted: Record<string, unknown> = {};
    for (const key of Object.keys(value).sort()) {
      sorted[key] = sortKeys((value as Record<string, unknown>)[key]);
    }
    return sorted;
  }
  return value;
}
