/**
 * The docs hold together: every relative link (and #anchor, by GitHub's heading slugs) in README.md
 * and docs/*.md resolves, every docs/*.md page is linked from README.md, README.md stays short
 * (<= 25,000 bytes), opens with the two set-up commands and lists every task. Pure text checks, no
 * subprocess.
 */
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const README_LIMIT = 25_000;
const SETUP_COMMANDS = ["deno task pipeline", "deno task test"];

/** Markdown outside fenced code blocks, each fenced line replaced by an empty one (line numbers kept). */
function proseLines(text: string): string[] {
  let fence: string | null = null;
  return text.split("\n").map((line) => {
    const opener = line.match(/^\s*(`{3,}|~{3,})/);
    if (fence === null && opener) {
      fence = opener[1];
      return "";
    }
    if (fence !== null) {
      if (line.trim().startsWith(fence) && line.trim().replace(/[`~]/g, "") === "") fence = null;
      return "";
    }
    return line;
  });
}

/** The contents of each fenced code block, in order. */
function fencedBlocks(text: string): { info: string; lines: string[] }[] {
  const blocks: { info: string; lines: string[] }[] = [];
  let current: { fence: string; info: string; lines: string[] } | null = null;
  for (const line of text.split("\n")) {
    const opener = line.match(/^\s*(`{3,}|~{3,})\s*(\S*)/);
    if (current === null && opener) current = { fence: opener[1], info: opener[2], lines: [] };
    else if (current !== null && line.trim() === current.fence) {
      blocks.push({ info: current.info, lines: current.lines });
      current = null;
    } else if (current !== null) current.lines.push(line);
  }
  return blocks;
}

/** Inline code spans blanked out, so a `[a](b)` inside backticks is not taken for a link. */
function withoutCodeSpans(text: string): string {
  return text.replace(/(`+)[\s\S]*?\1/g, (span) => " ".repeat(span.length));
}

/** Every inline link and image target, `[text](target)`, outside code. */
function markdownLinks(text: string): string[] {
  const prose = withoutCodeSpans(proseLines(text).join("\n"));
  return [...prose.matchAll(/!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)].map((match) => match[1]);
}

/** GitHub's anchor for a heading's text: rendered text, lower case, punctuation dropped, spaces to hyphens. */
function githubSlug(heading: string): string {
  const rendered = heading
    .replace(/!?\[([^\]]*)\]\([^)]*\)/g, "$1") // a link shows its text
    .replace(/`/g, "")
    .replace(/<[^>]+>/g, "")
    .replace(/\*/g, "");
  return rendered.trim().toLowerCase().replace(/[^\p{L}\p{M}\p{N}\p{Pc} -]/gu, "").replace(/ /g, "-");
}

/** The anchors a page's headings get, a repeated slug numbered as GitHub does (`x`, `x-1`, `x-2`). */
function headingAnchors(text: string): Set<string> {
  const anchors = new Set<string>();
  const seen = new Map<string, number>();
  for (const line of proseLines(text)) {
    const heading = line.match(/^ {0,3}#{1,6}\s+(.*?)(?:\s+#+)?\s*$/);
    if (!heading) continue;
    const slug = githubSlug(heading[1]);
    const count = seen.get(slug) ?? 0;
    seen.set(slug, count + 1);
    anchors.add(count === 0 ? slug : `${slug}-${count}`);
  }
  return anchors;
}

/**
 * What is wrong with the relative links of `pages` (path from the repository root -> text): a
 * target that is not in the repository, or an #anchor no heading of the target page makes.
 * `read` gives another Markdown file's text (null: not there); `exists` says whether any path is.
 */
function linkProblems(
  pages: Map<string, string>,
  read: (path: string) => string | null,
  exists: (path: string) => boolean,
): string[] {
  const problems: string[] = [];
  for (const [page, text] of pages) {
    for (const link of markdownLinks(text)) {
      if (/^[a-z][a-z0-9+.-]*:/i.test(link)) continue; // https:, mailto:: not a file of the repository
      const hash = link.indexOf("#");
      const pathPart = hash === -1 ? link : link.slice(0, hash);
      const anchor = hash === -1 ? null : decodeURIComponent(link.slice(hash + 1));
      const target = pathPart === "" ? page : relative(ROOT, resolve(ROOT, dirname(page), decodeURI(pathPart)));
      if (target.startsWith("..")) {
        problems.push(`${page}: link '${link}' points outside the repository`);
        continue;
      }
      if (!exists(target)) {
        problems.push(`${page}: link '${link}': ${target} does not exist`);
        continue;
      }
      if (anchor === null || !target.endsWith(".md")) continue;
      const targetText = pages.get(target) ?? read(target);
      if (targetText === null || !headingAnchors(targetText).has(anchor)) {
        problems.push(`${page}: link '${link}': ${target} has no heading with anchor #${anchor}`);
      }
    }
  }
  return problems;
}

function docsPages(): Map<string, string> {
  const pages = new Map<string, string>([["README.md", readFileSync(join(ROOT, "README.md"), "utf8")]]);
  for (const name of readdirSync(join(ROOT, "docs")).filter((name) => name.endsWith(".md")).sort()) {
    pages.set(`docs/${name}`, readFileSync(join(ROOT, "docs", name), "utf8"));
  }
  return pages;
}

const readRepo = (path: string) => existsSync(join(ROOT, path)) ? readFileSync(join(ROOT, path), "utf8") : null;
const existsInRepo = (path: string) => existsSync(join(ROOT, path));

Deno.test("docs: every relative link and #anchor in README.md and docs/*.md resolves", () => {
  const pages = docsPages();
  assert.ok(pages.size > 1, "no docs/*.md found beside README.md");
  assert.deepEqual(linkProblems(pages, readRepo, existsInRepo), []);
});

Deno.test("docs: every docs/*.md page is linked from README.md", () => {
  const pages = docsPages();
  const linked = new Set(
    markdownLinks(pages.get("README.md")!).map((link) => link.split("#")[0]).filter((path) => path.startsWith("docs/")),
  );
  const unlinked = [...pages.keys()].filter((page) => page.startsWith("docs/") && !linked.has(page));
  assert.deepEqual(unlinked, []);
});

Deno.test(`docs: README.md is at most ${README_LIMIT} bytes`, () => {
  const size = Deno.statSync(join(ROOT, "README.md")).size;
  assert.ok(size <= README_LIMIT, `README.md is ${size} bytes; move detail into docs/`);
});

Deno.test("docs: README.md's first code block is the two set-up commands", () => {
  const [first] = fencedBlocks(readFileSync(join(ROOT, "README.md"), "utf8"));
  assert.ok(first, "README.md has no code block");
  const commands = first.lines.map((line) => line.replace(/#.*/, "").trim()).filter((line) => line !== "");
  assert.deepEqual(commands, SETUP_COMMANDS);
});

Deno.test("docs: README.md's tasks table has a row for every task in deno.json", () => {
  const tasks = Object.keys(JSON.parse(readFileSync(join(ROOT, "deno.json"), "utf8")).tasks);
  const readme = readFileSync(join(ROOT, "README.md"), "utf8");
  const rows = new Set([...readme.matchAll(/^\| `([a-z]+)` +\|/gm)].map((match) => match[1]));
  assert.ok(tasks.length > 0, "deno.json has no tasks");
  assert.deepEqual(tasks.filter((task) => !rows.has(task)), []);
});

Deno.test("docs: GitHub heading anchors: code, punctuation, links and repeats", () => {
  const page = [
    "# Why `node:` built-ins and not `@std/*`",
    "## How a run flows: plan -> execute -> promote -> lock",
    "## A plain machine, and what libdnnl2 adds",
    "## See [the cache](cache.md) here",
    "## Notes",
    "## Notes",
    "```sh",
    "# a shell comment, not a heading",
    "```",
  ].join("\n");
  assert.deepEqual([...headingAnchors(page)], [
    "why-node-built-ins-and-not-std",
    "how-a-run-flows-plan---execute---promote---lock",
    "a-plain-machine-and-what-libdnnl2-adds",
    "see-the-cache-here",
    "notes",
    "notes-1",
  ]);
});

Deno.test("docs: the link check reports a missing file, a missing anchor and a link out of the repository", () => {
  const pages = new Map([
    ["README.md", "[ok](docs/a.md#intro) [gone](docs/missing.md) `[code](nowhere.md)`"],
    ["docs/a.md", "# Intro\n[bad anchor](#outro) [self](#intro) [up](../../etc/passwd) [web](https://example.org/x)"],
  ]);
  const exists = (path: string) => pages.has(path);
  assert.deepEqual(linkProblems(pages, () => null, exists), [
    "README.md: link 'docs/missing.md': docs/missing.md does not exist",
    "docs/a.md: link '#outro': docs/a.md has no heading with anchor #outro",
    "docs/a.md: link '../../etc/passwd' points outside the repository",
  ]);
});
