import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { StatCache } from "../storage/statcache.ts";
import { UserError } from "./errors.ts";

export interface CodeFingerprint {
  /** project file (relative to the project root) -> sha256 */
  files: Record<string, string>;
  /** bare import -> pinned specifier from deno.json, e.g. "npm:@tensorflow/tfjs-core@4.22.0" */
  libraries: Record<string, string>;
}

// Static imports, dynamic imports with a literal, and worker/asset URLs built from import.meta.url.
const IMPORT_PATTERNS = [
  /(?:import|export)\s[^'"]*?from\s*["']([^"']+)["']/g,
  /import\s*["']([^"']+)["']/g,
  /import\(\s*["']([^"']+)["']\s*\)/g,
  /new URL\(\s*["']([^"']+)["']\s*,\s*import\.meta\.url\s*\)/g,
];

/**
 * Fingerprint a stage's code: its module, every project module it imports (transitively), and
 * the pinned versions of the libraries they import. Editing any of them changes the stage key.
 */
export async function fingerprintCode(
  root: string,
  entries: string[],
  importMap: Record<string, string>,
  statCache: StatCache,
): Promise<CodeFingerprint> {
  const files: Record<string, string> = {};
  const libraries: Record<string, string> = {};
  const queue = entries.map((entry) => resolve(root, entry));
  const seen = new Set<string>();
  while (queue.length) {
    const path = queue.pop()!;
    if (seen.has(path)) continue;
    seen.add(path);
    let text: string;
    try {
      text = await Deno.readTextFile(path);
    } catch {
      throw new UserError(`code file ${relative(root, path)} not found (named by the DAG or imported)`);
    }
    files[relative(root, path)] = (await statCache.hash(path)).sha256;
    if (!/\.(ts|js|mjs|tsx)$/.test(path)) continue; // assets (shaders, weights) are hashed, not parsed
    for (const specifier of findImports(text)) {
      if (specifier.startsWith(".") || specifier.startsWith("/")) {
        queue.push(resolve(dirname(path), specifier));
      } else if (specifier.startsWith("file:")) {
        queue.push(fileURLToPath(specifier));
      } else {
        const name = libraryName(specifier);
        libraries[name] = importMap[name] ?? specifier;
      }
    }
  }
  return { files: sortRecord(files), libraries: sortRecord(libraries) };
}

function findImports(text: string): string[] {
  const found: string[] = [];
  for (const pattern of IMPORT_PATTERNS) {
    for (const match of text.matchAll(pattern)) {
      // Type-only imports vanish at run time: they cannot change what a stage computes.
      if (!/^(?:import|export)\s+type\s/.test(match[0])) found.push(match[1]);
    }
  }
  return found;
}

/** "@tensorflow/tfjs-core/dist/x.js" -> "@tensorflow/tfjs-core"; "node:path" stays. */
function libraryName(specifier: string): string {
  const parts = specifier.split("/");
  return specifier.startsWith("@") ? parts.slice(0, 2).join("/") : parts[0];
}

function sortRecord(record: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(record).sort(([a], [b]) => a.localeCompare(b)));
}

/** The "imports" map of the project's deno.json (pinned library versions). */
export async function readImportMap(root: string): Promise<Record<string, string>> {
  try {
    const config = JSON.parse(await Deno.readTextFile(join(root, "deno.json")));
    return config.imports ?? {};
  } catch {
    return {};
  }
}
