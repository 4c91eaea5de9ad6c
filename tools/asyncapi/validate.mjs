// Validate AsyncAPI documents with the AsyncAPI Initiative's parser (schema and spectral
// rules). Errors and warnings both fail: the document is small enough to keep clean.
// Usage: node validate.mjs FILE...
import { Parser, fromFile, DiagnosticSeverity } from "@asyncapi/parser";

const parser = new Parser();
let failed = false;
for (const file of process.argv.slice(2)) {
  const { document, diagnostics } = await fromFile(parser, file).parse();
  const serious = diagnostics.filter((d) => d.severity <= DiagnosticSeverity.Warning);
  for (const d of diagnostics) {
    const where = d.path.length ? d.path.join(".") : "(document)";
    const level = DiagnosticSeverity[d.severity].toLowerCase();
    console.log(`${file}: ${level}: ${where}: ${d.message} [${d.code}]`);
  }
  if (document === undefined || serious.length > 0) {
    failed = true;
    console.log(`${file}: INVALID (${serious.length} errors or warnings)`);
  } else {
    console.log(`${file}: valid AsyncAPI ${document.version()}`);
  }
}
process.exit(failed ? 1 : 0);
