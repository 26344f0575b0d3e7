/**
 * JPEG decoding with libjpeg-turbo's TurboJPEG API (`libturbojpeg.so.0`) through Deno FFI, scaled in
 * the DCT domain: asking `tjDecompress2` for 1/2, 1/4 or 1/8 of the size runs a smaller inverse DCT
 * instead of decoding every pixel and averaging them away after. About 10x faster than
 * imagescript's wasm decoder on CelebA's 178x218 photos (0.1 vs 1.4 ms).
 *
 * Which library: the build that the npm package `@julusian/jpeg-turbo` ships for this platform
 * (libjpeg-turbo 3.1.3, needing only glibc), so `deno install` brings the same decoder, and the same
 * pixels, to every machine; its install script (a Node addon) is neither run nor needed, only its
 * prebuilt shared library is opened. Then the system's (Debian's `libturbojpeg0`). Decoders differ
 * in their pixels, so the one that ran is recorded (see `version`).
 *
 * Safety: the JPEG bytes and the output buffer are passed as buffers for the length of one call
 * (no pointer is kept); the output buffer is sized from the header and the scaling factor the
 * library itself reports, and checked before the call, so a wrong size is an error, not a write
 * past the end. A library that cannot be loaded gives one line saying what to install.
 */
// Imported (only its package.json) so that the engine, which reads each stage's imports, puts the
// pinned version into the key of every stage that decodes.
import "@julusian/jpeg-turbo/package.json" with { type: "json" };
import { fileURLToPath } from "node:url";

const SYMBOLS = {
  tjInitDecompress: { parameters: [], result: "pointer" },
  tjDecompressHeader3: {
    parameters: ["pointer", "buffer", "usize", "buffer", "buffer", "buffer", "buffer"],
    result: "i32",
  },
  tjGetScalingFactors: { parameters: ["buffer"], result: "pointer" },
  tjDecompress2: {
    parameters: ["pointer", "buffer", "usize", "buffer", "i32", "i32", "i32", "i32", "i32"],
    result: "i32",
  },
  tjGetErrorStr2: { parameters: ["pointer"], result: "pointer" },
  tjDestroy: { parameters: ["pointer"], result: "i32" },
} as const;

const TJPF_RGB = 0;
/** TJCS_CMYK and TJCS_YCCK: TurboJPEG cannot turn these into RGB. */
const CMYK_COLORSPACES = new Set([3, 4]);
/** The factors with SIMD inverse DCTs in libjpeg-turbo; the others (3/8, 5/8, ...) were slower than 1/1 here. */
const FAST_DENOMINATORS = [1, 2, 4, 8];

/** The system's library, by soname (Debian's `libturbojpeg0`). */
export const SYSTEM_TURBOJPEG = "libturbojpeg.so.0";
export const TURBOJPEG_PATH_ENV = "FACEGAN_TURBOJPEG_PATH";
export const TURBOJPEG_FIX = "run `deno install` (it brings npm:@julusian/jpeg-turbo), or on Debian/Ubuntu " +
  `'apt-get install libturbojpeg0', or set ${TURBOJPEG_PATH_ENV} to a libturbojpeg.so.0`;

/** The prebuilds folder of `@julusian/jpeg-turbo` for this platform, or null where it ships no shared library. */
function npmPrebuild(): string | null {
  if (Deno.build.os !== "linux") return null; // its macOS and Windows builds are Node addons only
  const arch = { x86_64: "x64", aarch64: "arm64" }[Deno.build.arch];
  const libc = Deno.build.target.endsWith("musl") ? "-musl" : "";
  return arch ? `jpeg-turbo-linux-${arch}${libc}` : null;
}

/** The npm package's shared library for this platform, or why there is none. */
export function npmTurboJpegPath(): { path: string } | { why: string } {
  const prebuild = npmPrebuild();
  if (!prebuild) return { why: `npm:@julusian/jpeg-turbo ships no shared library for ${Deno.build.target}` };
  try {
    const packageJson = new URL(import.meta.resolve("@julusian/jpeg-turbo/package.json"));
    if (packageJson.protocol !== "file:") return { why: `npm:@julusian/jpeg-turbo is not installed in node_modules` };
    return { path: fileURLToPath(new URL(`prebuilds/${prebuild}/libturbojpeg.so.0`, packageJson)) };
  } catch (error) {
    return { why: `npm:@julusian/jpeg-turbo cannot be resolved (${(error as Error).message.split("\n")[0]})` };
  }
}

/**
 * The libraries to try, in order: FACEGAN_TURBOJPEG_PATH alone when it is set; else the npm
 * package's build (the same everywhere), then the system's.
 */
export function turboJpegCandidates(): { paths: string[]; skipped: string[] } {
  const chosen = Deno.env.get(TURBOJPEG_PATH_ENV);
  if (chosen) return { paths: [chosen], skipped: [] };
  const npm = npmTurboJpegPath();
  return "path" in npm
    ? { paths: [npm.path, SYSTEM_TURBOJPEG], skipped: [] }
    : { paths: [SYSTEM_TURBOJPEG], skipped: [npm.why] };
}

export class TurboJpegUnavailable extends Error {}

/** What a decode must keep: a region (as a fraction of the image) of at least width x height pixels. */
export interface ScaleNeed {
  width: number;
  height: number;
  fractionX: number;
  fractionY: number;
}

export interface ScaledJpeg {
  pixels: Uint8Array;
  /** decoded (scaled) size */
  width: number;
  height: number;
  /** the JPEG's own size */
  jpegWidth: number;
  jpegHeight: number;
  /** decoded size / JPEG size: 1, 1/2, 1/4 or 1/8 */
  scale: number;
}

type Library = Deno.DynamicLibrary<typeof SYMBOLS>;

export class TurboJpeg {
  private versionText: string | undefined;
  private readonly library: Library;
  private readonly handle: Deno.PointerObject;
  private readonly denominators: number[];
  private readonly header = new Int32Array(4);

  /** Load the library at `path` (a file, or a soname the loader finds); throws TurboJpegUnavailable. */
  constructor(readonly path: string) {
    try {
      this.library = Deno.dlopen(path, SYMBOLS);
    } catch (error) {
      const why = (error as Error).message.split("\n")[0];
      throw new TurboJpegUnavailable(`${path} could not be loaded (${why})`);
    }
    const handle = this.library.symbols.tjInitDecompress();
    if (!handle) {
      this.library.close();
      throw new TurboJpegUnavailable(`${path}: tjInitDecompress failed`);
    }
    this.handle = handle;
    this.denominators = this.scalingDenominators();
  }

  /**
   * "libjpeg-turbo 3.1.3 (build 20260127)": decoders differ in their pixels, so this goes into the lock.
   * Read when asked (it reads the library file), so the decode workers, which never ask, skip it.
   */
  get version(): string {
    return this.versionText ??= libraryVersion(this.path);
  }

  /** The supported factors 1/d among the fast ones, read from the library (tjGetScalingFactors). */
  private scalingDenominators(): number[] {
    const count = new Int32Array(1);
    const list = this.library.symbols.tjGetScalingFactors(count);
    if (!list || count[0] <= 0 || count[0] > 64) return [1];
    const view = new Deno.UnsafePointerView(list);
    const found: number[] = [];
    for (let i = 0; i < count[0]; i++) {
      const [num, denom] = [view.getInt32(i * 8), view.getInt32(i * 8 + 4)];
      if (num === 1 && FAST_DENOMINATORS.includes(denom)) found.push(denom);
    }
    return found.length ? found.sort((a, b) => a - b) : [1];
  }

  /**
   * Decode to RGB at the smallest fast scale at which the region that will be kept (`need.fractionX`
   * x `need.fractionY` of the image) is still at least `need.width` x `need.height` pixels, so
   * the area averaging after it only shrinks; without `need`, at full size. Throws with the
   * library's message on a corrupt or truncated JPEG (a warning counts: a half-decoded photo is
   * not data).
   */
  decode(bytes: Uint8Array, need?: ScaleNeed): ScaledJpeg {
    const { symbols } = this.library;
    const [width, height, _subsampling, colorspace] = this.readHeader(bytes);
    if (CMYK_COLORSPACES.has(colorspace)) throw new Error("CMYK JPEG: TurboJPEG does not convert it to RGB");
    let denom = 1;
    if (need) {
      for (const candidate of this.denominators) {
        const fits = width * need.fractionX / candidate >= need.width &&
          height * need.fractionY / candidate >= need.height;
        if (fits) denom = Math.max(denom, candidate);
      }
    }
    // TJSCALED(dimension, 1/denom) = ceil(dimension / denom)
    const [outWidth, outHeight] = [Math.ceil(width / denom), Math.ceil(height / denom)];
    const pixels = new Uint8Array(outWidth * outHeight * 3);
    if (pixels.length !== outWidth * 3 * outHeight) throw new Error("output buffer size mismatch");
    const status = symbols.tjDecompress2(
      this.handle,
      bytes,
      BigInt(bytes.length),
      pixels,
      outWidth,
      outWidth * 3,
      outHeight,
      TJPF_RGB,
      0,
    );
    if (status !== 0) throw new Error(this.lastError());
    return { pixels, width: outWidth, height: outHeight, jpegWidth: width, jpegHeight: height, scale: 1 / denom };
  }

  private readHeader(bytes: Uint8Array): [number, number, number, number] {
    const [width, height, subsampling, colorspace] = [0, 1, 2, 3].map((i) => this.header.subarray(i, i + 1));
    const status = this.library.symbols.tjDecompressHeader3(
      this.handle,
      bytes,
      BigInt(bytes.length),
      width,
      height,
      subsampling,
      colorspace,
    );
    if (status !== 0) throw new Error(this.lastError());
    if (width[0] <= 0 || height[0] <= 0 || width[0] > 65535 || height[0] > 65535) {
      throw new Error(`implausible JPEG size ${width[0]}x${height[0]}`);
    }
    return [width[0], height[0], subsampling[0], colorspace[0]];
  }

  private lastError(): string {
    const message = this.library.symbols.tjGetErrorStr2(this.handle);
    return message ? new Deno.UnsafePointerView(message).getCString() : "unknown TurboJPEG error";
  }

  close(): void {
    this.library.symbols.tjDestroy(this.handle);
    this.library.close();
  }
}

/**
 * The libjpeg-turbo version: TurboJPEG has no function that returns it, but the library
 * carries its banner ("libjpeg-turbo version 2.1.5 (build 20230203)"); read from the file that
 * was loaded (found through /proc/self/maps when only a soname was given).
 */
function libraryVersion(path: string): string {
  let file = path;
  try {
    if (!path.includes("/")) {
      const maps = Deno.readTextFileSync("/proc/self/maps");
      file = maps.split("\n").map((line) => line.split(/\s+/)[5] ?? "").find((name) => name.includes("libturbojpeg")) ??
        path;
    }
    const text = new TextDecoder("latin1").decode(Deno.readFileSync(file));
    const match = text.match(/libjpeg-turbo version ([0-9][0-9.]*(?: \(build [0-9]+\))?)/);
    if (match) return `libjpeg-turbo ${match[1]}`;
  } catch {
    // fall through: the version is unknown, the name still tells the decoders apart
  }
  return "libjpeg-turbo (version unknown)";
}
