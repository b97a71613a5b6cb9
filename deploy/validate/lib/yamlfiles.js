"use strict";
// YAML loading shared by the Kubernetes and compose checks: every document of a file, with a way
// to find the line of any field; syntax errors and duplicate keys are reported, not thrown.

const fs = require("fs");
const YAML = require("yaml");

/**
 * Parses every document in `file`. Returns { documents: [{ value, line, lineOf }], failed } for
 * the non-empty documents, where lineOf(["spec", "replicas"]) gives the 1-based line of that
 * field (or of its nearest existing parent). Parse errors and warnings (duplicate keys among
 * them) go to `report`.
 */
function loadYamlDocuments(file, report, { merge = false } = {}) {
  const text = fs.readFileSync(file, "utf8");
  const lineCounter = new YAML.LineCounter();
  const docs = YAML.parseAllDocuments(text, { lineCounter, uniqueKeys: true, merge, prettyErrors: false });
  const documents = [];
  let failed = false;
  const lineAt = (offset) => lineCounter.linePos(offset).line;
  for (const doc of Array.isArray(docs) ? docs : [docs]) {
    const problems = [...doc.errors, ...doc.warnings];
    for (const problem of problems) {
      report.error(file, problem.pos ? lineAt(problem.pos[0]) : undefined, null,
        `YAML: ${problem.message.split("\n")[0]}`);
    }
    if (problems.length > 0) {
      failed = true;
      continue;
    }
    if (doc.contents === null) continue;
    const start = doc.contents.range ? lineAt(doc.contents.range[0]) : undefined;
    const lineOf = (segments) => {
      for (let n = segments.length; n > 0; n--) {
        const node = doc.getIn(segments.slice(0, n), true);
        if (node && node.range) return lineAt(node.range[0]);
      }
      return start;
    };
    documents.push({ value: doc.toJS({ maxAliasCount: 1000 }), line: start, lineOf });
  }
  return { documents, failed };
}

module.exports = { loadYamlDocuments };
