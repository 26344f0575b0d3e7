/**
 * No import circles anywhere in the project: every .ts file's relative imports (values and
 * `import type`, `export ... from`, dynamic `import("...")`) form a graph without a cycle, and
 * the generic engine (pipeline/) imports nothing of the project that uses it, nor its engine
 * folders (core/, storage/, ui/, executors/) anything of the commands built on them.
 */
import assert from "node:assert/strict";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const SKIPPED = new Set(["node_modules", "outputs", "experiments", ".git"]);

/** Every .ts file under `dir`, relative to ROOT. */
function tsFiles(dir = ROOT): string[] {
  const files: string[] = [];
  for (const entry of Deno.readDirSync(dir)) {
    if (entry.name.startsWith(".") || SKIPPED.has(entry.name)) continue;
    const path = join(dir, entry.name);
    if (entry.isDirectory) files.push(...tsFiles(path));
    else if (entry.isFile && entry.name.endsWith(".ts")) files.push(relative(ROOT, path));
  }
  return files.sort();
}

/**
 * The relative specifiers a module names: `import ... from "x"`, `import type ... from "x"`,
 * `export ... from "x"`, `import "x"` and `import("x")`, each possibly spread over lines.
 */
export function importsOf(source: string): string[] {
  const patterns = [
    /^\s*(?:import|export)\b[^;'"`]*?\bfrom\s*["']([^"']+)["']/gm,
    /^\s*import\s*["']([^"']+)["']/gm,
    /\bimport\(\s*["']([^"']+)["']\s*\)/g,
  ];
  return patterns.flatMap((pattern) => [...source.matchAll(pattern)].map((match) => match[1]))
    .filter((specifier) => specifier.startsWith("."));
}

/** file -> the project files it imports (relative to ROOT). */
function importGraph(files: string[]): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const file of files) {
    const source = Deno.readTextFileSync(join(ROOT, file));
    graph.set(file, importsOf(source).map((specifier) => relative(ROOT, resolve(ROOT, dirname(file), specifier))));
  }
  return graph;
}

/** The first cycle found, as the files around it (the first repeated at the end), or null. */
export function findCycle(graph: Map<string, string[]>): string[] | null {
  const state = new Map<string, "open" | "done">();
  const path: string[] = [];
  const visit = (file: string): string[] | null => {
    if (state.get(file) === "done") return null;
    if (state.get(file) === "open") return [...path.slice(path.indexOf(file)), file];
    state.set(file, "open");
    path.push(file);
    for (const next of graph.get(file) ?? []) {
      const cycle = visit(next);
      if (cycle) return cycle;
    }
    path.pop();
    state.set(file, "done");
    return null;
  };
  for (const file of graph.keys()) {
    const cycle = visit(file);
    if (cycle) return cycle;
  }
  return null;
}

Deno.test("importsOf finds value, type, re-export, side-effect and dynamic imports over several lines", () => {
  const source = [
    `import { a } from "./a.ts";`,
    `import type { B } from "../b.ts";`,
    `import {\n  c,\n  type D,\n} from "./c.ts";`,
    `export { e } from "./e.ts";`,
    `export type { F } from "./f.ts";`,
    `import "./g.ts";`,
    `const h = await import("./h.ts");`,
    `import { join } from "node:path";
import { fileURLToPath } from "node:url";`,
  ].join("\n");
  assert.deepEqual(importsOf(source).sort(), ["../b.ts", "./a.ts", "./c.ts", "./e.ts", "./f.ts", "./g.ts", "./h.ts"]);
});

Deno.test("findCycle names the files of a circle, and finds none in a tree", () => {
  const circle = new Map([["a.ts", ["b.ts"]], ["b.ts", ["c.ts"]], ["c.ts", ["a.ts"]], ["d.ts", ["a.ts"]]]);
  assert.deepEqual(findCycle(circle), ["a.ts", "b.ts", "c.ts", "a.ts"]);
  assert.deepEqual(findCycle(new Map([["a.ts", ["b.ts", "c.ts"]], ["b.ts", ["c.ts"]], ["c.ts", []]])), null);
});

Deno.test("no import circle among the project's .ts files (value and type imports)", () => {
  const graph = importGraph(tsFiles());
  // The scan saw the project: the entry point and the engine's dispatcher are in the graph.
  assert.ok(graph.size > 50, `only ${graph.size} .ts files found under ${ROOT}`);
  assert.ok(graph.get("main.ts")?.includes("pipeline/cli.ts"), "main.ts's import of pipeline/cli.ts not seen");
  const cycle = findCycle(graph);
  assert.deepEqual(cycle, null, `import circle: ${cycle?.join(" -> ")}`);
});

Deno.test("pipeline/ imports nothing of the project that uses it (stages/, data/, models/)", () => {
  const graph = importGraph(tsFiles());
  const crossing = [...graph].filter(([file]) => file.startsWith("pipeline/"))
    .flatMap(([file, imports]) =>
      imports.filter((target) => !target.startsWith("pipeline/")).map((t) => `${file} -> ${t}`)
    );
  assert.deepEqual(crossing, []);
});

Deno.test("pipeline/'s lower folders (core, storage, ui, executors) import nothing of the commands above them", () => {
  const graph = importGraph(tsFiles());
  const lower = ["pipeline/core/", "pipeline/storage/", "pipeline/ui/", "pipeline/executors/"];
  const upper = ["pipeline/commands/", "pipeline/experiments/", "pipeline/cli.ts"];
  const files = [...graph.keys()].filter((file) => lower.some((folder) => file.startsWith(folder)));
  assert.ok(files.length > 20, `only ${files.length} files in ${lower.join(", ")}`);
  const upward = files.flatMap((file) =>
    graph.get(file)!.filter((target) => upper.some((folder) => target.startsWith(folder))).map((t) => `${file} -> ${t}`)
  );
  assert.deepEqual(upward, []);
});
