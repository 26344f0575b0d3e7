import { join, resolve } from "node:path";
import { UserError } from "./errors.ts";

export type ParamValue = string | number | boolean | null | ParamValue[];
/** Params flattened to dotted keys: {"train.lr": 0.0002, "data.size": 32, ...}. */
export type FlatParams = Record<string, ParamValue>;

/** Read a params JSON file; a syntax error names the file and the line. */
export async function readParamsFile(path: string, shownAs = path): Promise<FlatParams> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new UserError(`params file ${shownAs} not found: pass an existing file to --params`);
    }
    throw error;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    const message = (error as Error).message;
    // V8 quotes the start of the text (`, "root:*:1..."... is not valid JSON`): never echo a file's content.
    const problem = message.replace(/\s*\(line \d+ column \d+\)/, "").replace(/,\s*".*$/s, "");
    throw new UserError(`${shownAs}:${errorLine(text, message)}: invalid JSON (${problem}): fix the file`);
  }
  if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
    throw new UserError(`${shownAs}: params must be a JSON object of sections, e.g. {"train": {"lr": 0.0002}}`);
  }
  return flatten(parsed as Record<string, unknown>);
}

function errorLine(text: string, message: string): number {
  const line = message.match(/line (\d+)/);
  if (line) return Number(line[1]);
  const position = message.match(/position (\d+)/);
  if (position) return text.slice(0, Number(position[1])).split("\n").length;
  return text.split("\n").length;
}

function flatten(object: Record<string, unknown>, prefix = ""): FlatParams {
  const flat: FlatParams = {};
  for (const [name, value] of Object.entries(object)) {
    const key = prefix ? `${prefix}.${name}` : name;
    if (value !== null && typeof value === "object" && !Array.isArray(value)) {
      Object.assign(flat, flatten(value as Record<string, unknown>, key));
    } else {
      flat[key] = value as ParamValue;
    }
  }
  return flat;
}

/**
 * Lay `overlay` (an experiment file or --set values) over the defaults. Every key must exist in
 * the defaults with a value of the same type, so a typo never silently becomes a new param.
 */
export function overlayParams(defaults: FlatParams, overlay: FlatParams, source: string): FlatParams {
  const merged = { ...defaults };
  for (const [key, value] of Object.entries(overlay)) {
    // hasOwn, not `in`: `constructor` or `toString` are keys of every object, not params.
    if (!Object.hasOwn(defaults, key)) {
      throw new UserError(`${source}: unknown param '${key}'; ${suggest(key, defaults)}`);
    }
    const expected = typeOf(defaults[key]);
    if (defaults[key] !== null && value !== null && typeOf(value) !== expected) {
      throw new UserError(
        `${source}: param '${key}' must be a ${expected} (default ${JSON.stringify(defaults[key])}), got ${
          JSON.stringify(value)
        }`,
      );
    }
    merged[key] = value;
  }
  return merged;
}

/** Parse one `--set key=value`; the value is JSON when it parses as JSON, else a string. */
export function parseSetArgument(argument: string): [string, ParamValue] {
  const equals = argument.indexOf("=");
  if (equals <= 0) throw new UserError(`--set ${argument}: expected key=value, e.g. --set train.lr=0.0001`);
  const key = argument.slice(0, equals);
  const raw = argument.slice(equals + 1);
  try {
    return [key, JSON.parse(raw) as ParamValue];
  } catch {
    return [key, raw];
  }
}

function typeOf(value: ParamValue): string {
  return Array.isArray(value) ? "list" : typeof value;
}

/** "did you mean" for an unknown key: close spellings first, else the keys of its section. */
export function suggest(key: string, known: Record<string, unknown>): string {
  const keys = Object.keys(known);
  const close = keys.filter((candidate) => editDistance(candidate, key) <= 2);
  if (close.length) return `did you mean ${close.map((k) => `'${k}'`).join(" or ")}?`;
  const section = key.split(".")[0];
  const sameSection = keys.filter((k) => k.startsWith(section + "."));
  const listed = sameSection.length ? sameSection : keys;
  return `known keys: ${listed.join(", ")}`;
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let diagonal = row[0];
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const above = row[j];
      row[j] = Math.min(row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] === b[j - 1] ? 0 : 1));
      diagonal = above;
    }
  }
  return row[b.length];
}

/** The subset of params a stage declared, in key order. */
export function pickParams(params: FlatParams, keys: string[]): FlatParams {
  const picked: FlatParams = {};
  for (const key of [...keys].sort()) picked[key] = params[key];
  return picked;
}

/**
 * Load params: the defaults in params.json, then --params FILE over them, then each --set.
 * `origin` says where each key's value was last set, for error messages.
 */
export async function loadParams(root: string, paramsFile: string | undefined, sets: string[]) {
  const defaults = await readParamsFile(join(root, "params.json"), "params.json");
  let params: FlatParams = defaults;
  let source = "params.json";
  const origin: Record<string, string> = {};
  if (paramsFile && paramsFile !== "params.json") {
    // resolve, not join: an absolute path names that file, not one under the project.
    const overlay = await readParamsFile(resolve(root, paramsFile), paramsFile);
    params = overlayParams(params, overlay, paramsFile);
    for (const key of Object.keys(overlay)) origin[key] = paramsFile;
    source = paramsFile;
  }
  for (const argument of sets) {
    const [key, value] = parseSetArgument(argument);
    params = overlayParams(params, { [key]: value }, `--set ${argument}`);
    origin[key] = `--set ${argument}`;
  }
  return { params, source, defaults, origin };
}
