/** `params`: every key, its default, what it accepts, which stages read it, what it means. */
import { UserError } from "../core/errors.ts";
import type { FlatParams } from "../core/params.ts";
import { describeSpec } from "../core/schema.ts";
import type { ParamSchema, StageDecl } from "../core/types.ts";

export function paramsCommand(schema: ParamSchema | undefined, defaults: FlatParams, dag: StageDecl[]): number {
  if (!schema) throw new UserError("this project declares no params schema");
  console.log(describeParams(schema, defaults, dag));
  return 0;
}

/** Every key, its default, what it accepts, which stages read it, what it means. */
function describeParams(schema: ParamSchema, defaults: FlatParams, dag: StageDecl[]): string {
  const lines: string[] = [];
  for (const key of Object.keys(defaults)) {
    const spec = schema[key];
    const readers = dag.filter((stage) => stage.params.includes(key)).map((stage) => stage.name);
    lines.push(`${key} = ${JSON.stringify(defaults[key])}  (${describeSpec(spec)}; read by ${readers.join(", ")})`);
    lines.push(`    ${spec.description}`);
  }
  return lines.join("\n");
}
