import { UserError } from "./errors.ts";
import type { StageDecl } from "./types.ts";

/** Check the declaration once: unique names, known deps, no cycles. Returns stages in run order. */
export function topologicalOrder(dag: StageDecl[]): StageDecl[] {
  const byName = new Map(dag.map((stage) => [stage.name, stage]));
  if (byName.size !== dag.length) throw new Error("DAG declares a stage name twice");
  const ordered: StageDecl[] = [];
  const state = new Map<string, "visiting" | "done">();
  const visit = (stage: StageDecl, path: string[]) => {
    if (state.get(stage.name) === "done") return;
    if (state.get(stage.name) === "visiting") {
      throw new Error(`DAG has a cycle: ${[...path, stage.name].join(" -> ")}`);
    }
    state.set(stage.name, "visiting");
    for (const dep of stage.deps) {
      const upstream = byName.get(dep);
      if (!upstream) throw new Error(`stage ${stage.name} depends on unknown stage ${dep}`);
      visit(upstream, [...path, stage.name]);
    }
    state.set(stage.name, "done");
    ordered.push(stage);
  };
  for (const stage of dag) visit(stage, []);
  return ordered;
}

export function stageByName(dag: StageDecl[], name: string): StageDecl {
  const stage = dag.find((candidate) => candidate.name === name);
  if (!stage) {
    throw new UserError(`unknown stage '${name}'; stages are: ${dag.map((s) => s.name).join(", ")}`);
  }
  return stage;
}

export function ancestors(dag: StageDecl[], name: string): Set<string> {
  const found = new Set<string>();
  const walk = (current: string) => {
    for (const dep of stageByName(dag, current).deps) {
      if (!found.has(dep)) {
        found.add(dep);
        walk(dep);
      }
    }
  };
  walk(name);
  return found;
}

export function descendants(dag: StageDecl[], name: string): Set<string> {
  stageByName(dag, name);
  const found = new Set<string>();
  let grew = true;
  while (grew) {
    grew = false;
    for (const stage of dag) {
      if (!found.has(stage.name) && stage.deps.some((dep) => dep === name || found.has(dep))) {
        found.add(stage.name);
        grew = true;
      }
    }
  }
  return found;
}

/** The DAG as indented text and as a Mermaid flowchart. */
export function renderDag(dag: StageDecl[]): string {
  const lines = ["stages (run order):"];
  for (const stage of topologicalOrder(dag)) {
    const from = stage.deps.length ? ` <- ${stage.deps.join(", ")}` : "";
    lines.push(`  ${stage.name}${from}`);
    if (stage.description) lines.push(`      ${stage.description}`);
    lines.push(`      params: ${stage.params.join(", ") || "(none)"}`);
  }
  lines.push("", "```mermaid", "flowchart LR");
  for (const stage of dag) {
    if (!stage.deps.length) lines.push(`  ${stage.name}`);
    for (const dep of stage.deps) lines.push(`  ${dep} --> ${stage.name}`);
  }
  lines.push("```");
  return lines.join("\n");
}
