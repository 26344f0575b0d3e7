/**
 * The cache and its leases, in process (no CLI): promote makes an entry whose manifest hashes its
 * files, check finds what changed, adopt fills an entry from another copy and resumes a cut-short
 * fill, and a lease is exclusive, taken over once its holder is dead, and lost when taken; the stat
 * calls and the folder check behind a no-op over a large data folder.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { Cache, type Manifest } from "../pipeline/storage/cache.ts";
import { StatCache } from "../pipeline/storage/statcache.ts";
import { readExternal } from "../pipeline/storage/external.ts";
import { PARALLEL_FROM, statFolderFiles, statInto } from "../pipeline/storage/file_stat.ts";
import { hostId, type LeaseHolder, LeaseLost, readHolder, tryLease, whyDead } from "../pipeline/storage/lease.ts";
import { sha256 } from "../pipeline/core/hash.ts";
import { envName } from "../pipeline/core/env.ts";
import { scratchDir } from "./support/helpers.ts";

const KEY = "ab".repeat(32);

async function emptyCache(): Promise<{ dir: string; cache: Cache }> {
  const dir = await scratchDir({ prefix: "storage-test-" });
  return { dir, cache: new Cache(join(dir, "cache"), new StatCache(join(dir, "statcache.json"))) };
}

/** A stage's finished output in the key's partial dir, as a run leaves it before promotion. */
async function writePartial(cache: Cache, key: string, files: Record<string, string>): Promise<void> {
  for (const [path, text] of Object.entries(files)) {
    const full = join(cache.partialDir(key), "out", path);
    await Deno.mkdir(join(full, ".."), { recursive: true });
    await Deno.writeTextFile(full, text);
  }
}

Deno.test("promote: the partial dir becomes the entry, its manifest lists each file's sha256, and check finds it whole", async () => {
  const { dir, cache } = await emptyCache();
  try {
    assert.deepEqual(await cache.check(KEY), { manifest: null, problems: ["not in cache"] });
    await writePartial(cache, KEY, { "a.txt": "alpha", "sub/b.txt": "beta" });
    const manifest = await cache.promote(KEY);
    assert.deepEqual(manifest.files.map((file) => [file.path, file.sha256, file.size]), [
      ["a.txt", sha256("alpha"), 5],
      ["sub/b.txt", sha256("beta"), 4],
    ]);
    assert.equal(manifest.bytes, 9);
    assert.equal(await Deno.stat(cache.partialDir(KEY)).catch(() => null), null, "the partial dir is gone");
    assert.deepEqual(await cache.check(KEY, true), { manifest, problems: [] });
    assert.equal((await cache.state(KEY)).state, "ok");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("check: a changed file, a missing one and (re-hashing) an extra one are each named; state says damaged", async () => {
  const { dir, cache } = await emptyCache();
  try {
    await writePartial(cache, KEY, { "a.txt": "alpha", "b.txt": "beta" });
    await cache.promote(KEY);
    await Deno.writeTextFile(join(cache.outDir(KEY), "a.txt"), "ALPHA");
    await Deno.remove(join(cache.outDir(KEY), "b.txt"));
    await Deno.writeTextFile(join(cache.outDir(KEY), "extra.txt"), "x");
    const { manifest, problems } = await cache.check(KEY, true);
    assert.equal(manifest, null);
    assert.deepEqual(problems, ["a.txt changed", "b.txt missing", "extra.txt not in manifest"]);
    const state = await cache.state(KEY);
    assert.equal(state.state, "damaged");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("adopt: fills an entry from another copy's manifest; a fill cut short resumes, fetching only what is missing", async () => {
  const source = await emptyCache();
  const target = await emptyCache();
  try {
    await writePartial(source.cache, KEY, { "a.txt": "alpha", "b.txt": "beta" });
    const manifest: Manifest = await source.cache.promote(KEY);
    const fetched: string[] = [];
    const fetch = async (file: { path: string }, temp: string) => {
      fetched.push(file.path);
      await Deno.copyFile(join(source.cache.outDir(KEY), file.path), temp);
    };
    // The first fill stops after one file (a dropped connection).
    const cut = target.cache.adopt(KEY, manifest, null, async (file, temp) => {
      if (fetched.length === 1) throw new Error("connection reset");
      await fetch(file, temp);
    });
    await assert.rejects(cut, /connection reset/);
    assert.deepEqual(await target.cache.check(KEY), { manifest: null, problems: ["not in cache"] });
    assert.equal(await target.cache.hasProgress(KEY), false, "a pull's partial dir is no stage's progress");
    const adopted = await target.cache.adopt(KEY, manifest, null, fetch);
    assert.equal(adopted.output, manifest.output);
    assert.deepEqual(fetched, ["a.txt", "b.txt"], "a.txt was fetched once: the second fill kept it");
    assert.deepEqual((await target.cache.check(KEY, true)).problems, []);
  } finally {
    await Deno.remove(source.dir, { recursive: true });
    await Deno.remove(target.dir, { recursive: true });
  }
});

Deno.test("lease: exclusive while its holder lives, taken over with the reason once it is dead, lost when taken", async () => {
  const dir = await scratchDir({ prefix: "lease-test-" });
  const path = join(dir, "lease");
  // A short lease: renewed every 100 ms, so a takeover is noticed at once.
  Deno.env.set(envName("LEASE_S"), "0.3");
  try {
    const first = await tryLease(path, "first");
    assert.ok("lease" in first);
    const holder = (await readHolder(path)) as LeaseHolder;
    assert.equal(holder.command, "first");
    assert.equal(holder.host, hostId());
    assert.equal(whyDead(holder), null, "this process's own lease is alive");
    const second = await tryLease(path, "second");
    assert.ok("busy" in second && second.busy.token === holder.token, "a live holder's lease is busy");
    await first.lease.release();
    assert.equal(await readHolder(path), undefined, "release removes the file");

    // A holder whose process is gone (a pid no process has) is dead: the next attempt takes over.
    const dead = { ...holder, pid: 2 ** 22 + 1, token: crypto.randomUUID() };
    await Deno.writeTextFile(path, JSON.stringify(dead));
    const taken = await tryLease(path, "taker");
    assert.ok("lease" in taken);
    assert.match(taken.tookOver ?? "", /is no longer running/);

    // Another process takes it over (its file replaced): the next renewal sees it and aborts `lost`.
    const lost = new Promise<unknown>((resolve) =>
      taken.lease.lost.addEventListener("abort", () => resolve(taken.lease.lost.reason), { once: true })
    );
    await Deno.writeTextFile(path, JSON.stringify({ ...holder, token: crypto.randomUUID() }));
    const reason = await lost;
    assert.ok(reason instanceof LeaseLost);
    assert.match(reason.message, /took it over/);
    await taken.lease.release();
    assert.ok(await readHolder(path), "release leaves a lease that is no longer ours");
  } finally {
    Deno.env.delete(envName("LEASE_S"));
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("statInto (statx through libc) gives the numbers Deno.statSync gives: size, mtime ms, ctime, inode; a missing file throws NotFound", async () => {
  const dir = await scratchDir({ prefix: "storage-test-" });
  const files = ["a.bin", "b.bin", "sub dir é.bin"].map((name) => join(dir, name));
  for (const [i, file] of files.entries()) await Deno.writeFile(file, new Uint8Array(i * 1000 + 7));
  // times with a sub-millisecond part, before 1970 and past 2038 (64-bit seconds)
  const times = [new Date(1_700_000_000_123.9), new Date(-86_400_000 * 400 + 42), new Date(4_102_444_800_999)];
  for (const [i, file] of files.entries()) await Deno.utime(file, times[i], times[i]);
  const got = new Float64Array(files.length * 4);
  files.forEach((file, i) => statInto(file, got, i * 4));
  const expected = files.flatMap((file) => {
    const info = Deno.statSync(file);
    return [info.size, info.mtime!.getTime(), info.ctime!.getTime(), info.ino!];
  });
  assert.deepEqual([...got], expected);
  assert.throws(() => statInto(join(dir, "missing"), got, 0), Deno.errors.NotFound);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("statFolderFiles over a folder large enough for worker threads gives what Deno.statSync gives; a file gone since the walk throws NotFound", async () => {
  const dir = await scratchDir({ prefix: "storage-test-" });
  // 64 files of different sizes and times, and hard links to them for the rest (writing 20,000 files takes seconds)
  for (let i = 0; i < 64; i++) {
    Deno.writeFileSync(join(dir, `${i}.bin`), new Uint8Array(i));
    Deno.utimeSync(join(dir, `${i}.bin`), 1_700_000_000 + i * 1.001, 1_700_000_000 + i * 1.001);
  }
  const names: string[] = [];
  for (const sub of ["a", "b é"]) {
    Deno.mkdirSync(join(dir, sub));
    for (let i = 0; i < PARALLEL_FROM / 2; i++) names.push(`${sub}/${i}.jpg`);
  }
  names.forEach((name, i) => Deno.linkSync(join(dir, `${i % 64}.bin`), join(dir, name)));
  const got = await statFolderFiles(dir, names);
  const expected = names.flatMap((name) => {
    const info = Deno.statSync(join(dir, name));
    return [info.size, info.mtime!.getTime(), info.ctime!.getTime(), info.ino!];
  });
  assert.deepEqual([...got], expected);
  Deno.removeSync(join(dir, names[12_345]));
  await assert.rejects(() => statFolderFiles(dir, names), Deno.errors.NotFound);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("readExternal over a folder: a second check re-hashes nothing, an edited file is re-hashed, a damaged folder stats file is only a cache", async () => {
  const dir = await scratchDir({ prefix: "storage-test-" });
  const folder = join(dir, "photos");
  await Deno.mkdir(join(folder, "sub"), { recursive: true });
  const names = ["a.jpg", "b.jpg", "sub/c.jpg"];
  // written 10 s ago (plus a part of a second): not racy, so a stat match is trusted
  const backdate = (path: string) => Deno.utimeSync(path, Date.now() / 1000 - 10.123, Date.now() / 1000 - 10.123);
  for (const [i, name] of names.entries()) {
    await Deno.writeTextFile(join(folder, name), `photo ${i}`);
    backdate(join(folder, name));
  }
  const cache = new StatCache(join(dir, "statcache.json"));
  const first = await readExternal(folder, cache, "data.path");
  assert.deepEqual([first.files, first.rehashed], [3, 3]);
  const again = await readExternal(folder, cache, "data.path");
  assert.deepEqual([again.digest, again.rehashed], [first.digest, 0]);
  await Deno.writeTextFile(join(folder, "b.jpg"), "another photo");
  backdate(join(folder, "b.jpg"));
  const edited = await readExternal(folder, cache, "data.path");
  assert.equal(edited.rehashed, 1);
  assert.notEqual(edited.digest, first.digest);
  assert.deepEqual(edited.listing().files.map(([name]) => name), names);
  for (const damage of [new Uint8Array([255, 255, 255, 127, 1, 2]), new Uint8Array(0)]) {
    await Deno.writeFile(cache.folderStatsPath(folder), damage);
    const rebuilt = await readExternal(folder, cache, "data.path");
    assert.deepEqual([rebuilt.digest, rebuilt.rehashed], [edited.digest, 3]);
  }
});
