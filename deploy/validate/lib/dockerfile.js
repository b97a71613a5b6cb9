"use strict";
// The Dockerfile: linted with dockerfile-utils (the checks behind VS Code's Dockerfile support:
// syntax, flags, instruction arguments), parsed with dockerfile-ast, then checked for the image's
// invariants (multi-stage, backend build argument, non-root numeric USER, HEALTHCHECK,
// ENTRYPOINT tunegw) and against the build context (COPY sources present and not excluded by
// .dockerignore; every project the executable references copied before `dotnet restore`).
// No image is built here.

const fs = require("fs");
const path = require("path");
const { DockerfileParser } = require("dockerfile-ast");
const { validate: lintDockerfile } = require("dockerfile-utils");

const CLI_PROJECT = "src/TuneGateway.Cli/TuneGateway.Cli.csproj";
const BACKENDS = ["cpu", "cuda"];

// ---------------------------------------------------------------------------------------------
// .dockerignore, with Docker's rules: patterns in order, the last match wins, `!` re-includes,
// `**` spans directories, and a pattern that matches a directory excludes everything below it.

function globToRegExp(pattern) {
  let re = "";
  for (let i = 0; i < pattern.length; i++) {
    const ch = pattern[i];
    if (ch === "*") {
      if (pattern[i + 1] === "*") {
        i++;
        if (pattern[i + 1] === "/") {
          i++;
          re += "(?:.*/)?";
        } else {
          re += ".*";
        }
      } else {
        re += "[^/]*";
      }
    } else if (ch === "?") {
      re += "[^/]";
    } else if (ch === "[") {
      const end = pattern.indexOf("]", i + 1);
      if (end < 0) re += "\\[";
      else {
        re += `[${pattern.slice(i + 1, end).replace(/^!/, "^").replace(/\\/g, "\\\\")}]`;
        i = end;
      }
    } else if (ch === "\\" && i + 1 < pattern.length) {
      re += `\\${pattern[++i]}`;
    } else {
      re += ch.replace(/[.+^${}()|\]\\]/g, "\\$&");
    }
  }
  return new RegExp(`^${re}$`);
}

function loadDockerignore(context) {
  const file = path.join(context, ".dockerignore");
  if (!fs.existsSync(file)) return [];
  return fs.readFileSync(file, "utf8").split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith("#"))
    .map((l) => {
      const negate = l.startsWith("!");
      let p = path.posix.normalize((negate ? l.slice(1) : l).trim()).replace(/^\/+/, "").replace(/\/+$/, "");
      if (p === ".") p = "";
      return { negate, re: globToRegExp(p) };
    });
}

function isExcluded(rules, relPath) {
  const parts = relPath.split("/");
  let excluded = false;
  for (const rule of rules) {
    for (let n = 1; n <= parts.length; n++) {
      if (rule.re.test(parts.slice(0, n).join("/"))) {
        excluded = !rule.negate;
        break;
      }
    }
  }
  return excluded;
}

function filesUnder(dir, rel = "") {
  const out = [];
  for (const name of fs.readdirSync(path.join(dir, rel))) {
    const r = rel ? `${rel}/${name}` : name;
    if (fs.statSync(path.join(dir, r)).isDirectory()) out.push(...filesUnder(dir, r));
    else out.push(r);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------

function projectClosure(context, project, seen = new Set()) {
  const full = path.join(context, project);
  if (seen.has(project) || !fs.existsSync(full)) return seen;
  seen.add(project);
  const text = fs.readFileSync(full, "utf8");
  for (const m of text.matchAll(/<ProjectReference\s+Include="([^"]+)"/g)) {
    const ref = path.posix.normalize(path.posix.join(path.posix.dirname(project), m[1].replace(/\\/g, "/")));
    projectClosure(context, ref, seen);
  }
  return seen;
}

/** Splits the instructions into stages: [{ from, name, instructions, index }]. */
function stagesOf(dockerfile) {
  const stages = [];
  for (const ins of dockerfile.getInstructions()) {
    const keyword = ins.getKeyword();
    if (keyword === "FROM") {
      stages.push({ from: ins, name: ins.getBuildStage(), instructions: [], index: stages.length });
    } else if (stages.length > 0) {
      stages[stages.length - 1].instructions.push(ins);
    }
  }
  return stages;
}

function substitute(text, vars) {
  return text.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?[-+][^}]*)?\}|\$([A-Za-z_][A-Za-z0-9_]*)/g,
    (all, a, b) => (vars[a || b] !== undefined ? vars[a || b] : all));
}

function validateDockerfile(file, context, report) {
  if (!fs.existsSync(file)) {
    report.error(file, undefined, null, "Dockerfile not found");
    return "Dockerfile: missing";
  }
  const text = fs.readFileSync(file, "utf8");
  const err = (line, message) => report.error(file, line, "Dockerfile", message);
  const lineOf = (ins) => ins.getRange().start.line + 1;

  for (const d of lintDockerfile(text)) {
    err(d.range.start.line + 1, `${d.severity === 1 ? "error" : "warning"}: ${d.message}`);
  }

  const dockerfile = DockerfileParser.parse(text);
  const globals = {};
  for (const arg of dockerfile.getInitialARGs()) {
    const p = arg.getProperty();
    if (p) globals[p.getName()] = p.getValue();
  }
  const stages = stagesOf(dockerfile);
  const byName = new Map(stages.filter((s) => s.name).map((s) => [s.name.toLowerCase(), s]));

  if (stages.length < 2) err(1, "must be a multi-stage build (a build stage and a runtime stage)");
  if (globals.TORCH_BACKEND !== "cpu") err(1, "needs a global `ARG TORCH_BACKEND=cpu` (cpu by default, cuda on request)");

  // A global ARG is visible in a stage only if the stage declares it again.
  for (const stage of stages) {
    const declared = new Set();
    for (const ins of stage.instructions) {
      if (ins.getKeyword() === "ARG" && ins.getProperty()) declared.add(ins.getProperty().getName());
      if (ins.getKeyword() === "ARG" || ins.getKeyword() === "ENV") continue;
      for (const v of ins.getVariables()) {
        const name = v.getName();
        if (globals[name] !== undefined && !declared.has(name) && !(ins.getKeyword() === "RUN" && isEnvInStage(stage, name))) {
          err(lineOf(ins), `uses \${${name}}, a global ARG, without \`ARG ${name}\` in stage ${stage.name || stage.index}: it expands to an empty string`);
        }
      }
    }
  }

  // No floating `latest` base images.
  for (const stage of stages) {
    const image = substitute(stage.from.getImage() || "", globals);
    if (byName.has(image.toLowerCase())) continue;
    if (!/[:@]/.test(image.replace(/^[^/]+:\d+\//, "")) || /:latest$/.test(image)) {
      err(lineOf(stage.from), `base image ${image} must have an explicit tag (not latest)`);
    }
  }

  // The final stage for each backend: which stage it resolves to, and its base image.
  const final = stages[stages.length - 1];
  if (!final) return "Dockerfile: no stages";
  const resolveBase = (stage, vars, depth = 0) => {
    const image = substitute(stage.from.getImage() || "", vars);
    const parent = byName.get(image.toLowerCase());
    return parent && depth < 10 ? resolveBase(parent, vars, depth + 1) : image;
  };
  for (const backend of BACKENDS) {
    const vars = { ...globals, TORCH_BACKEND: backend };
    const fromImage = substitute(final.from.getImage() || "", vars);
    const base = resolveBase(final, vars);
    if (backend === "cpu" && !/^mcr\.microsoft\.com\/dotnet\/(aspnet|runtime-deps):/.test(base)) {
      err(lineOf(final.from), `with TORCH_BACKEND=cpu the image must be based on mcr.microsoft.com/dotnet/aspnet (or runtime-deps), not ${base}`);
    }
    if (backend === "cuda" && !/^nvidia\/cuda:[^-]+-(cudnn[0-9]*-)?runtime-ubuntu[0-9.]+$/.test(base)) {
      err(lineOf(final.from), `with TORCH_BACKEND=cuda the image must be based on an nvidia/cuda:*-runtime-ubuntu* image, not ${base} (via ${fromImage})`);
    }
  }

  // Non-root, numeric USER in the final stage (Kubernetes' runAsNonRoot needs a number).
  const users = final.instructions.filter((i) => i.getKeyword() === "USER");
  const user = users.length ? (users[users.length - 1].getArgumentsContent() || "").trim() : null;
  if (!user) err(lineOf(final.from), "the final stage must switch to a non-root USER");
  else if (!/^\d+(:\d+)?$/.test(user)) err(lineOf(users[users.length - 1]), `USER ${user}: use a numeric uid[:gid] so that Kubernetes can verify runAsNonRoot`);
  else if (Number(user.split(":")[0]) === 0) err(lineOf(users[users.length - 1]), "USER must not be root (uid 0)");

  const healthchecks = final.instructions.filter((i) => i.getKeyword() === "HEALTHCHECK");
  const hc = healthchecks[healthchecks.length - 1];
  if (!hc || /^NONE$/i.test((hc.getSubcommand() || { getValue: () => "" }).getValue())) {
    err(lineOf(final.from), "the final stage needs a HEALTHCHECK (CMD ...)");
  }

  const entrypoints = final.instructions.filter((i) => i.getKeyword() === "ENTRYPOINT");
  const ep = entrypoints[entrypoints.length - 1];
  const epArgs = ep && typeof ep.getJSONStrings === "function" ? ep.getJSONStrings().map((s) => s.getValue().replace(/^"|"$/g, "")) : [];
  if (!ep) err(lineOf(final.from), "the final stage needs ENTRYPOINT [\"tunegw\"]");
  else if (epArgs.length === 0 || !/(^|\/)tunegw$/.test(epArgs[0])) {
    err(lineOf(ep), "ENTRYPOINT must be the exec form starting with tunegw, e.g. [\"tunegw\"]");
  }

  if (!final.instructions.some((i) => i.getKeyword() === "EXPOSE" && /\b8080\b/.test(i.getArgumentsContent() || ""))) {
    err(lineOf(final.from), "the final stage must EXPOSE 8080");
  }

  // The app comes from a stage that publishes with the selected backend.
  const copiesFrom = final.instructions.filter((i) => i.getKeyword() === "COPY" && i.getFromFlag())
    .map((i) => byName.get((i.getFromFlag().getValue() || "").toLowerCase())).filter(Boolean);
  const publisher = copiesFrom.find((s) => s.instructions.some((i) => i.getKeyword() === "RUN" && /dotnet\s+publish/.test(i.getArgumentsContent() || "")));
  if (!publisher) {
    err(lineOf(final.from), "the final stage must COPY --from a stage that runs `dotnet publish`");
  } else {
    for (const ins of publisher.instructions.filter((i) => i.getKeyword() === "RUN" && /dotnet\s+(publish|restore)/.test(i.getArgumentsContent() || ""))) {
      if (!/-p:TorchBackend=\$\{?TORCH_BACKEND\}?/.test(ins.getArgumentsContent() || "")) {
        err(lineOf(ins), "dotnet restore/publish must pass -p:TorchBackend=${TORCH_BACKEND}");
      }
    }
  }

  // COPY sources exist in the context and survive .dockerignore.
  const rules = loadDockerignore(context);
  const copied = [];
  for (const stage of stages) {
    for (const ins of stage.instructions) {
      if (!["COPY", "ADD"].includes(ins.getKeyword()) || (ins.getFromFlag && ins.getFromFlag())) continue;
      const args = ins.getArguments().map((a) => a.getValue());
      for (const src of args.slice(0, -1)) {
        const rel = path.posix.normalize(src).replace(/^\/+/, "").replace(/\/+$/, "");
        copied.push({ rel, ins });
        if (/[*?[]/.test(rel)) continue;
        const full = path.join(context, rel);
        if (!fs.existsSync(full)) {
          err(lineOf(ins), `COPY source ${src} does not exist in the build context`);
        } else if (fs.statSync(full).isDirectory()) {
          if (!filesUnder(context, rel).some((f) => !isExcluded(rules, f))) err(lineOf(ins), `COPY source ${src}: everything in it is excluded by .dockerignore`);
        } else if (isExcluded(rules, rel)) {
          err(lineOf(ins), `COPY source ${src} is excluded by .dockerignore`);
        }
      }
    }
  }

  // The restore layer copies every project the executable references.
  const restore = stages.flatMap((s) => s.instructions).find((i) => i.getKeyword() === "RUN" && /dotnet\s+restore/.test(i.getArgumentsContent() || ""));
  if (restore && fs.existsSync(path.join(context, CLI_PROJECT))) {
    const before = copied.filter((c) => lineOf(c.ins) < lineOf(restore)).map((c) => c.rel);
    for (const project of projectClosure(context, CLI_PROJECT)) {
      if (!before.some((rel) => rel === project || project.startsWith(`${rel}/`))) {
        err(lineOf(restore), `${project} is not copied before \`dotnet restore\` (the restore would miss it)`);
      }
    }
  }

  return `Dockerfile: ${stages.length} stages linted (dockerfile-utils) and checked for cpu and cuda; not built`;
}

function isEnvInStage(stage, name) {
  return stage.instructions.some((i) => i.getKeyword() === "ENV" && (i.getProperties ? i.getProperties() : []).some((p) => p.getName() === name));
}

module.exports = { validateDockerfile, isExcluded, loadDockerignore };
