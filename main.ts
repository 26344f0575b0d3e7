/** facegan's command line: the generic engine (pipeline/) run over facegan's DAG (stages/dag.ts). */
import { fileURLToPath } from "node:url";
import { dirname } from "node:path";
import { main } from "./pipeline/cli.ts";
import { dag } from "./stages/dag.ts";
import { schema } from "./stages/params_schema.ts";
import { experiments } from "./stages/experiments.ts";
import { preflight } from "./stages/preflight.ts";

const root = dirname(fileURLToPath(import.meta.url));
Deno.exit(await main({ name: "facegan", envPrefix: "FACEGAN_", root, dag, schema, experiments, preflight }, Deno.args));
