// Validate an AsyncAPI document with the AsyncAPI project's own parser (@asyncapi/parser), the one
// its tools (CLI, Studio, generator) use, so "valid" means what they mean by it.
//
//   node deploy/asyncapi/validate.mjs [FILE|-] [--json]
//
// Reads FILE (or stdin), prints each diagnostic as "<severity> <code> at <path>: <message>", and
// exits 1 when any has error severity, 0 otherwise (warnings are printed, not failed on: the caller
// decides). With --json it prints one JSON object instead: the diagnostics, and each message of the
// parsed document as the parser resolved it (its payload and headers with every $ref followed), so
// a test can check what a consumer of the document would see, not just our own JSON.
import { readFileSync } from "node:fs";
import { DiagnosticSeverity, Parser } from "@asyncapi/parser";

const SEVERITY = {
  [DiagnosticSeverity.Error]: "error",
  [DiagnosticSeverity.Warning]: "warning",
  [DiagnosticSeverity.Information]: "info",
  [DiagnosticSeverity.Hint]: "hint",
};

const args = process.argv.slice(2);
const asJson = args.includes("--json");
const files = args.filter((arg) => arg !== "--json");
if (files.length > 1) {
  process.stderr.write("usage: validate.mjs [FILE|-] [--json]\n");
  process.exit(2);
}
const source = files[0] && files[0] !== "-" ? files[0] : 0; // 0: stdin's file descriptor
const text = readFileSync(source, "utf8");

const parser = new Parser();
const { document, diagnostics } = await parser.parse(text, {
  source: typeof source === "string" ? source : undefined,
});

const found = diagnostics.map((d) => ({
  severity: SEVERITY[d.severity] ?? String(d.severity),
  code: String(d.code),
  path: d.path.join("."),
  message: d.message,
}));
const failed = found.some((d) => d.severity === "error");

if (asJson) {
  const messages = document
    ? document.allMessages().all().map((message) => ({
        id: message.id(),
        name: message.name() ?? null,
        payload: message.hasPayload() ? plain(message.payload().json()) : null,
        headers: message.hasHeaders() ? plain(message.headers().json()) : null,
      }))
    : null;
  process.stdout.write(JSON.stringify({ valid: !failed, diagnostics: found, messages }, null, 2) + "\n");
} else {
  for (const d of found) {
    process.stdout.write(`${d.severity} ${d.code} at ${d.path || "(document)"}: ${d.message}\n`);
  }
}
process.exit(failed ? 1 : 0);

// A schema as plain JSON: the parser's resolved schemas may be circular (a recursive model), and it
// adds its own "x-parser-*" keys, which are not part of the document.
function plain(value, seen = new Set()) {
  if (Array.isArray(value)) return value.map((item) => plain(item, seen));
  if (value === null || typeof value !== "object") return value;
  if (seen.has(value)) return { $circular: true };
  seen.add(value);
  const out = {};
  for (const [key, item] of Object.entries(value)) {
    if (!key.startsWith("x-parser-")) out[key] = plain(item, seen);
  }
  seen.delete(value);
  return out;
}
