/**
 * What `exp run --set` asks for, as experiments: each `--set key=...` is a value list
 * (`v1,v2,...`) or a range (`lo..hi`, `log:lo..hi`); `--grid` takes the product of the lists,
 * `--random N --seed S` draws N overlays (a range only with --random). Pure: no I/O.
 */
import { UserError } from "../core/errors.ts";
import { type FlatParams, type ParamValue, parseSetArgument } from "../core/params.ts";

export type Axis =
  | { key: string; argument: string; kind: "values"; values: ParamValue[] }
  | { key: string; argument: string; kind: "range"; low: number; high: number; log: boolean };

/**
 * Parse one `--set key=v1,v2,...` or, for a numeric param (`numeric(key)`), `--set key=[log:]lo..hi`.
 * Unknown keys and mistyped values are left to the params check that follows.
 */
export function parseAxis(argument: string, numeric: (key: string) => boolean): Axis {
  const equals = argument.indexOf("=");
  if (equals <= 0) {
    throw new UserError(`--set ${argument}: expected key=v1,v2,... or key=lo..hi, e.g. --set train.lr=0.0001,0.0002`);
  }
  const key = argument.slice(0, equals);
  const raw = argument.slice(equals + 1);
  if (numeric(key) && (raw.startsWith("log:") || raw.includes(".."))) {
    const log = raw.startsWith("log:");
    const ends = raw.slice(log ? 4 : 0).split("..");
    const [low, high] = ends.map((end) => end.trim() === "" ? NaN : Number(end));
    const problem = ends.length !== 2 || !Number.isFinite(low) || !Number.isFinite(high)
      ? "expected two numbers around '..'"
      : low > high
      ? "its low end is above its high end"
      : log && low <= 0
      ? "a log range needs ends above 0"
      : null;
    if (problem) {
      throw new UserError(
        `--set ${argument}: malformed range (${problem}); write e.g. ${key}=0.1..0.5 or ${key}=log:1e-4..1e-3`,
      );
    }
    return { key, argument, kind: "range", low, high, log };
  }
  const parts = splitTopLevel(raw).filter((part) => part !== "");
  if (!parts.length) {
    throw new UserError(
      `--set ${argument}: empty value list; give one or more values, e.g. ${key}=1,2 (a quoted "" is an empty string)`,
    );
  }
  return { key, argument, kind: "values", values: parts.map((part) => parseSetArgument(`${key}=${part}`)[1]) };
}

/** Split at commas outside brackets and quotes, so a JSON list or a quoted string stays one value. */
function splitTopLevel(raw: string): string[] {
  const parts: string[] = [];
  let depth = 0, quoted = false, start = 0;
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i];
    if (c === '"' && raw[i - 1] !== "\\") quoted = !quoted;
    else if (!quoted && (c === "[" || c === "{")) depth++;
    else if (!quoted && (c === "]" || c === "}")) depth--;
    else if (!quoted && depth === 0 && c === ",") {
      parts.push(raw.slice(start, i));
      start = i + 1;
    }
  }
  parts.push(raw.slice(start));
  return parts;
}

/** Every combination of the axes' values, the first axis varying slowest. */
export function gridOverlays(axes: Axis[]): FlatParams[] {
  let overlays: FlatParams[] = [{}];
  for (const axis of axes) {
    if (axis.kind === "range") {
      throw new UserError(
        `--set ${axis.argument} is a range: draw from it with --random N --seed S, or list values for --grid`,
      );
    }
    overlays = overlays.flatMap((overlay) => axis.values.map((value) => ({ ...overlay, [axis.key]: value })));
  }
  return overlays;
}

/**
 * `count` overlays drawn with a seeded generator: a value list picks one value uniformly, a
 * range draws uniformly (or log-uniformly), rounded to 3 significant digits so tables stay
 * readable; `integer(key)` says which keys take whole numbers.
 */
export function randomOverlays(
  axes: Axis[],
  count: number,
  seed: number,
  integer: (key: string) => boolean,
): FlatParams[] {
  const next = mulberry32(seed);
  const overlays: FlatParams[] = [];
  for (let i = 0; i < count; i++) {
    const overlay: FlatParams = {};
    for (const axis of axes) {
      if (axis.kind === "values") {
        overlay[axis.key] = axis.values[Math.floor(next() * axis.values.length)];
        continue;
      }
      const u = next();
      const value = axis.log
        ? Math.exp(Math.log(axis.low) + u * (Math.log(axis.high) - Math.log(axis.low)))
        : axis.low + u * (axis.high - axis.low);
      overlay[axis.key] = integer(axis.key) ? Math.round(value) : Number(value.toPrecision(3));
    }
    overlays.push(overlay);
  }
  return overlays;
}

/** A small seeded generator (mulberry32): the same seed draws the same experiments everywhere. */
function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
