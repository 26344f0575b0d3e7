/**
 * A project's params schema: each key's type, range or choices and meaning, declared once and
 * checked for every stage before any stage runs (also for status and --dry-run), so a bad value
 * fails in a second with one line instead of minutes later inside a stage.
 */
import { UserError } from "./errors.ts";
import type { FlatParams, ParamValue } from "./params.ts";
import type { ParamSchema, ParamSpec, StageDecl } from "./types.ts";

/** The schema and the DAG must name the same keys: a stage reading an undeclared key is a project bug. */
export function checkSchemaCoversDag(schema: ParamSchema, dag: StageDecl[], params: FlatParams): void {
  const read = new Set(dag.flatMap((stage) => stage.params));
  for (const key of new Set([...read, ...Object.keys(params)])) {
    if (!(key in schema)) throw new Error(`param '${key}' has no entry in the project's params schema`);
  }
  for (const key of Object.keys(schema)) {
    if (!read.has(key)) throw new Error(`params schema declares '${key}', which no stage reads`);
  }
  for (const stage of dag) {
    for (const key of stage.memory ?? []) {
      if (!(key in schema)) throw new Error(`stage ${stage.name} names memory param '${key}', which is not a param`);
    }
  }
}

/** Check every param against its spec; the first bad one is a UserError naming where it was set. */
export function checkParams(schema: ParamSchema, params: FlatParams, origin: Record<string, string>): void {
  for (const [key, value] of Object.entries(params)) {
    const problem = specProblem(schema[key], value);
    if (problem) {
      // JSON.stringify would show Infinity (from `--set train.lr=1e400`) as null.
      const shown = typeof value === "number" ? String(value) : JSON.stringify(value);
      throw new UserError(`${origin[key] ?? "params.json"}: param '${key}' ${problem}, got ${shown}`);
    }
  }
}

function specProblem(spec: ParamSpec, value: ParamValue): string | null {
  if (value === null) return spec.nullable ? null : `must be ${describeSpec(spec)}`;
  const typeOk = spec.type === "integer" ? Number.isInteger(value) : jsType(value) === spec.type;
  if (!typeOk) return `must be ${describeSpec(spec)}`;
  // A number too large for a float (1e400) parses as Infinity and would enter the key as null.
  if (typeof value === "number" && !Number.isFinite(value)) return `must be finite (${describeSpec(spec)})`;
  if (spec.choices && !spec.choices.includes(value as string | number)) return `must be ${describeSpec(spec)}`;
  if (typeof value === "number" && (value < (spec.min ?? -Infinity) || value > (spec.max ?? Infinity))) {
    return `must be ${describeSpec(spec)}`;
  }
  return null;
}

function jsType(value: ParamValue): string {
  return Array.isArray(value) ? "list" : typeof value;
}

/** "an integer >= 1", "one of bce, lsgan", "a number in [0, 1] or null". */
export function describeSpec(spec: ParamSpec): string {
  let text = spec.choices
    ? `one of ${spec.choices.join(", ")}`
    : `${spec.type === "integer" ? "an integer" : `a ${spec.type}`}${range(spec)}`;
  if (spec.nullable) text += " or null";
  return text;
}

function range(spec: ParamSpec): string {
  if (spec.min !== undefined && spec.max !== undefined) return ` in [${spec.min}, ${spec.max}]`;
  if (spec.min !== undefined) return ` >= ${spec.min}`;
  if (spec.max !== undefined) return ` <= ${spec.max}`;
  return "";
}
