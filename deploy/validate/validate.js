#!/usr/bin/env node
"use strict";
// Validates TuneGateway's deployment files; run by tests/TuneGateway.Tests/Deployment.
//
//   node deploy/validate/validate.js [--root DIR] [--context DIR]
//
//   --root DIR     where k8s/, deploy/docker-compose*.yml and Dockerfile are read (default: the
//                  repository this script is in)
//   --context DIR  the Docker build context for the Dockerfile's COPY checks (default: --root)
//
// Prints one line per problem ("file:line: subject: message") and a summary; exits 0 when
// everything is valid, 1 when something is not, 2 on bad usage.

const fs = require("fs");
const path = require("path");
const { Report } = require("./lib/report");
const { validateKubernetes } = require("./lib/k8s");
const { validateCompose } = require("./lib/compose");
const { validateDockerfile } = require("./lib/dockerfile");

function parseArgs(argv) {
  const opts = { root: path.resolve(__dirname, "..", ".."), context: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if ((a === "--root" || a === "--context") && argv[i + 1]) {
      opts[a.slice(2)] = path.resolve(argv[++i]);
    } else if (a === "--help" || a === "-h") {
      return null;
    } else {
      throw new Error(`unknown argument: ${a}`);
    }
  }
  opts.context = opts.context || opts.root;
  return opts;
}

function main() {
  let opts;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (e) {
    console.error(`validate: ${e.message}`);
    return 2;
  }
  if (!opts) {
    console.log("usage: node validate.js [--root DIR] [--context DIR]");
    return 0;
  }

  const report = new Report(opts.root);
  const summaries = [];
  summaries.push(validateKubernetes(path.join(opts.root, "k8s"), report));

  const deployDir = path.join(opts.root, "deploy");
  const composeFiles = fs.existsSync(deployDir)
    ? fs.readdirSync(deployDir).filter((f) => /^docker-compose.*\.ya?ml$/.test(f))
      .sort((a, b) => (a === "docker-compose.yml" ? -1 : b === "docker-compose.yml" ? 1 : a.localeCompare(b)))
      .map((f) => path.join(deployDir, f))
    : [];
  if (composeFiles.length === 0 || path.basename(composeFiles[0]) !== "docker-compose.yml") {
    report.error(path.join(deployDir, "docker-compose.yml"), undefined, null, "missing");
  }
  summaries.push(validateCompose(composeFiles, report));
  summaries.push(validateDockerfile(path.join(opts.root, "Dockerfile"), opts.context, report));

  for (const e of report.errors) console.log(`ERROR ${e}`);
  for (const s of summaries) console.log(s);
  console.log(report.errors.length === 0
    ? "deployment files valid"
    : `deployment files INVALID: ${report.errors.length} error(s)`);
  return report.errors.length === 0 ? 0 : 1;
}

process.exitCode = main();
