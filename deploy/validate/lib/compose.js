"use strict";
// Compose files: interpolated with their defaults as `docker compose` would, validated against
// the Compose Specification schema that compose-go (Docker Compose's loader) ships, and checked
// for what `docker compose up` would only reject later (references, files, build context).

const crypto = require("crypto");
const fs = require("fs");
const path = require("path");
const Ajv2020 = require("ajv/dist/2020");
const { loadYamlDocuments } = require("./yamlfiles");

const SCHEMA_FILE = path.join(__dirname, "..", "schema", "compose-spec.json");
/** compose-go v2.13.0, schema/compose-spec.json (git blob id), see schema/README.md. */
const VENDORED_SCHEMA = { version: "compose-go v2.13.0", blob: "fe0e45d68542fee8ba7b1e483760c2f8802f8a4c" };

let compiled = null;
function schemaValidator(report) {
  if (compiled) return compiled;
  const bytes = fs.readFileSync(SCHEMA_FILE);
  const blob = crypto.createHash("sha1").update(`blob ${bytes.length}\0`).update(bytes).digest("hex");
  if (blob !== VENDORED_SCHEMA.blob) {
    report.error(SCHEMA_FILE, undefined, null, `the vendored compose schema was modified (blob ${blob}, expected ${VENDORED_SCHEMA.blob} from ${VENDORED_SCHEMA.version})`);
  }
  const ajv = new Ajv2020({ allErrors: true, strict: false });
  compiled = ajv.compile(JSON.parse(bytes.toString("utf8")));
  return compiled;
}

/**
 * Compose interpolation with an empty environment: ${VAR:-default} and ${VAR-default} take the
 * default, $$ is a literal $. A variable without a default, or a required one (${VAR:?err}), is
 * reported: the shipped files must work with no .env at all.
 */
function interpolate(value, onMissing, segments = []) {
  if (typeof value === "string") {
    const replace = (s) => s.replace(/\$\$|\$\{([^}]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)/g, (all, braced, bare) => {
      if (all === "$$") return "$";
      if (bare !== undefined) {
        onMissing(segments, bare);
        return "";
      }
      const m = /^([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])(.*))?$/s.exec(braced);
      if (!m) {
        onMissing(segments, braced, "invalid interpolation");
        return "";
      }
      const [, name, op, arg] = m;
      if (op === ":-" || op === "-") return replace(arg);
      if (op === ":+" || op === "+") return "";
      onMissing(segments, name, op ? "required variable" : undefined);
      return "";
    });
    return replace(value);
  }
  if (Array.isArray(value)) return value.map((v, i) => interpolate(v, onMissing, [...segments, i]));
  if (value && typeof value === "object") {
    const out = {};
    for (const [k, v] of Object.entries(value)) out[k] = interpolate(v, onMissing, [...segments, k]);
    return out;
  }
  return value;
}

function pointerToSegments(pointer) {
  return pointer ? pointer.split("/").slice(1).map((s) => s.replace(/~1/g, "/").replace(/~0/g, "~")) : [];
}

function shortVolume(spec) {
  // "source:target[:mode]" or "target"
  if (typeof spec !== "string") return spec;
  const parts = spec.split(":");
  if (parts.length === 1) return { type: "volume", target: parts[0] };
  const source = parts[0];
  const type = source.startsWith(".") || source.startsWith("/") || source.startsWith("~") ? "bind" : "volume";
  return { type, source, target: parts[1], read_only: parts[2] === "ro" };
}

function listNames(value) {
  if (!value) return [];
  if (Array.isArray(value)) return value.map((v) => (typeof v === "string" ? v : v.source));
  return Object.keys(value);
}

/**
 * Semantic checks on one (interpolated) compose file. `base` is the first file's model when
 * this one is an override layered on it.
 */
function checkComposeModel(file, model, lineOf, report, base) {
  const dir = path.dirname(file);
  const err = (segments, message) => report.error(file, lineOf(segments), segments.length ? segments.join(".") : null, message);
  const services = model.services || {};
  const baseServices = base ? base.services || {} : {};
  const declared = (kind) => new Set([...Object.keys(model[kind] || {}), ...Object.keys((base || {})[kind] || {})]);
  const volumes = declared("volumes");
  const configs = declared("configs");
  const secrets = declared("secrets");
  const allServices = new Set([...Object.keys(services), ...Object.keys(baseServices)]);

  for (const [name, svc] of Object.entries(services)) {
    const at = (...rest) => ["services", name, ...rest];
    if (base && !baseServices[name]) err(at(), `overrides service ${name}, which the base file does not define`);
    if (!base && !svc.image && !svc.build) err(at(), "needs an image or a build section");
    for (const dep of listNames(svc.depends_on)) {
      if (!allServices.has(dep)) err(at("depends_on"), `depends on undefined service ${dep}`);
      if (dep === name) err(at("depends_on"), "depends on itself");
    }
    (svc.volumes || []).forEach((raw, i) => {
      const v = shortVolume(raw);
      if (v.type === "volume" && v.source && !volumes.has(v.source)) err(at("volumes", i), `volume ${v.source} is not declared under top-level volumes`);
      if (v.type === "bind" && v.source && !path.isAbsolute(v.source) && !fs.existsSync(path.resolve(dir, v.source))) {
        err(at("volumes", i), `bind source ${v.source} does not exist (relative to ${report.rel(dir)})`);
      }
    });
    for (const [kind, set] of [["configs", configs], ["secrets", secrets]]) {
      listNames(svc[kind]).forEach((ref, i) => {
        if (!set.has(ref)) err(at(kind, i), `${kind.slice(0, -1)} ${ref} is not declared under top-level ${kind}`);
      });
    }
    if (svc.build) {
      const build = typeof svc.build === "string" ? { context: svc.build } : svc.build;
      const context = path.resolve(dir, build.context || ".");
      if (!fs.existsSync(context)) err(at("build", "context"), `build context ${build.context} does not exist`);
      else if (!fs.existsSync(path.resolve(context, build.dockerfile || "Dockerfile"))) {
        err(at("build", "dockerfile"), `${build.dockerfile || "Dockerfile"} not found in the build context`);
      }
    }
  }
  for (const kind of ["configs", "secrets"]) {
    for (const [name, def] of Object.entries(model[kind] || {})) {
      if (def && def.file && !fs.existsSync(path.resolve(dir, def.file))) err([kind, name, "file"], `file ${def.file} does not exist`);
    }
  }
}

/** TuneGateway's own requirements for the main compose file (issue #7). */
function checkTuneGatewayCompose(file, model, lineOf, report) {
  const services = model.services || {};
  const err = (segments, message) => report.error(file, lineOf(segments), "TuneGateway", message);
  const role = (svc) => (Array.isArray(svc.command) ? svc.command[0] : typeof svc.command === "string" ? svc.command.split(/\s+/)[0] : undefined);
  const withRole = (r) => Object.entries(services).filter(([, svc]) => role(svc) === r);
  if (withRole("gateway").length !== 1) err(["services"], "exactly one service must run `tunegw gateway`");
  if (withRole("worker").length < 2) err(["services"], "at least two services must run `tunegw worker`");
  if (withRole("controller").length !== 1) err(["services"], "exactly one service must run `tunegw controller`");
  const redis = Object.entries(services).filter(([, svc]) => /(^|\/)(redis|valkey)(:|$)/.test(String(svc.image || "")));
  if (redis.length === 0) err(["services"], "a Redis service is required");
  for (const [name, svc] of redis) {
    const args = Array.isArray(svc.command) ? svc.command.join(" ") : String(svc.command || "");
    let aof = /--appendonly\s+yes/.test(args);
    for (const ref of listNames(svc.configs)) {
      const def = (model.configs || {})[ref];
      if (def && def.file && fs.existsSync(path.resolve(path.dirname(file), def.file))) {
        aof = aof || /^\s*appendonly\s+yes\s*$/m.test(fs.readFileSync(path.resolve(path.dirname(file), def.file), "utf8"));
      }
    }
    if (!aof) err(["services", name], "Redis must run with AOF persistence (appendonly yes)");
  }
  if (!Object.values(services).some((svc) => /opentelemetry-collector|otelcol/.test(String(svc.image || "")))) {
    err(["services"], "an OpenTelemetry collector service is required");
  }
  for (const [name, svc] of Object.entries(services)) {
    const r = role(svc);
    if (!["gateway", "worker", "controller", "serve"].includes(r)) continue;
    const env = svc.environment || {};
    const hasOtlp = Array.isArray(env) ? env.some((e) => String(e).startsWith("OTEL_EXPORTER_OTLP_ENDPOINT=")) : "OTEL_EXPORTER_OTLP_ENDPOINT" in env;
    if (!hasOtlp) err(["services", name, "environment"], "tunegw services must set OTEL_EXPORTER_OTLP_ENDPOINT");
    if (r === "controller") continue;
    const hc = svc.healthcheck || {};
    if (hc.disable) err(["services", name, "healthcheck"], `the ${r} serves HTTP: keep its health check`);
  }
}

/** Validates the compose files (the first is the base, the others override it); returns a summary. */
function validateCompose(files, report) {
  if (files.length === 0) return "Compose: no files";
  const validate = schemaValidator(report);
  let base = null;
  for (const file of files) {
    const { documents } = loadYamlDocuments(file, report, { merge: true });
    if (documents.length !== 1) {
      if (documents.length > 1) report.error(file, undefined, null, "a compose file holds exactly one YAML document");
      continue;
    }
    const { value, lineOf } = documents[0];
    const model = interpolate(value, (segments, name, why) => {
      report.error(file, lineOf(segments), segments.join("."),
        why === "invalid interpolation" ? `invalid interpolation \${${name}}`
          : `\${${name}} has no default${why ? ` (${why})` : ""}: give it one (\${${name}:-value}) so the file works without a .env`);
    });
    if (!validate(model)) {
      for (const e of validate.errors) {
        const segments = pointerToSegments(e.instancePath);
        let message = e.message;
        if (e.params && e.params.additionalProperty) message += `: '${e.params.additionalProperty}'`;
        if (e.params && e.params.allowedValues) message += `: ${e.params.allowedValues.join(", ")}`;
        report.error(file, lineOf(segments), segments.length ? segments.join(".") : "(top level)", `compose schema: ${message}`);
      }
      continue;
    }
    checkComposeModel(file, model, lineOf, report, base);
    if (!base) {
      checkTuneGatewayCompose(file, model, lineOf, report);
      base = model;
    }
  }
  return `Compose: ${files.length} file(s) checked against the Compose Specification schema (${VENDORED_SCHEMA.version})`;
}

module.exports = { validateCompose, interpolate };
