"use strict";
// Kubernetes manifests: every object is validated against the OpenAPI schema of its
// apiVersion/kind as carried by the npm package kubernetes-models (Kubernetes 1.33), with unknown
// fields rejected as `kubectl apply --validate=strict` does, and then checked for what the API
// server or the cluster would only reject later (selectors, references, probes, resources, Pod
// Security "restricted"). kustomization.yaml is checked to list every manifest.

const fs = require("fs");
const path = require("path");
const { loadYamlDocuments } = require("./yamlfiles");
const { parseQuantity } = require("./quantity");

/** The Kubernetes release whose OpenAPI schemas kubernetes-models 4.5.x carries (its changelog). */
const KUBERNETES_SCHEMA_VERSION = "1.33.0";

const CLUSTER_SCOPED = new Set([
  "Namespace", "Node", "PersistentVolume", "ClusterRole", "ClusterRoleBinding", "StorageClass",
  "CustomResourceDefinition", "PriorityClass", "IngressClass", "RuntimeClass", "CSIDriver",
  "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration", "APIService", "VolumeAttachment",
]);
const WORKLOAD_KINDS = new Set(["Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Pod"]);
const DNS1123_SUBDOMAIN = /^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const DNS1123_LABEL = /^(?=.{1,63}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1035_LABEL = /^(?=.{1,63}$)[a-z]([-a-z0-9]*[a-z0-9])?$/;
const LABEL_NAME = /^(?=.{1,63}$)[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;
const LABEL_VALUE = /^((?=.{1,63}$)[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$/;
const ENV_REF = /(?<!\$)\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)/g;
const RESTRICTED_VOLUME_TYPES = new Set([
  "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret",
]);

// ---------------------------------------------------------------------------------------------
// Schema validation

/** The kubernetes-models class for apiVersion/kind, or null when the package has none. */
function modelFor(apiVersion, kind) {
  if (typeof apiVersion !== "string" || typeof kind !== "string") return null;
  if (!/^[A-Z][A-Za-z0-9]*$/.test(kind)) return null;
  const parts = apiVersion.split("/");
  if (parts.length > 2 || !parts.every((p) => /^[a-z0-9][a-z0-9.-]*$/.test(p))) return null;
  const spec = parts.length === 2
    ? `kubernetes-models/${parts[0]}/${parts[1]}/${kind}`
    : `kubernetes-models/${parts[0]}/${kind}`;
  let mod;
  try {
    mod = require(spec);
  } catch {
    return null;
  }
  const cls = mod[kind];
  return cls && cls.apiVersion === apiVersion && cls.kind === kind ? cls : null;
}

/**
 * Validates `obj` with the model's compiled schema. The object is wrapped in proxies that record
 * which properties the validator reads: the generated validators read every property their
 * schema defines and enumerate only maps (labels, data, resources...), so a property of a
 * non-map object that was never read is not in the schema, i.e. an unknown field.
 */
function validateWithSchema(cls, obj) {
  const records = new Map();
  const proxies = new WeakMap();
  const wrap = (value, pointer) => {
    if (value === null || typeof value !== "object") return value;
    const existing = proxies.get(value);
    if (existing) return existing;
    const record = { pointer, read: new Set(), enumerated: false };
    records.set(value, record);
    const proxy = new Proxy(value, {
      get(target, key, receiver) {
        const v = Reflect.get(target, key, receiver);
        if (typeof key === "string" && Object.prototype.hasOwnProperty.call(target, key)) {
          record.read.add(key);
          return wrap(v, [...pointer, key]);
        }
        return v;
      },
      has(target, key) {
        if (typeof key === "string") record.read.add(key);
        return Reflect.has(target, key);
      },
      ownKeys(target) {
        record.enumerated = true;
        return Reflect.ownKeys(target);
      },
    });
    proxies.set(value, proxy);
    return proxy;
  };

  try {
    cls.prototype.validate.call(wrap(obj, []));
  } catch (e) {
    if (e && Array.isArray(e.errors)) {
      return { schemaErrors: e.errors.map(schemaErrorOf), unknown: [] };
    }
    throw e;
  }
  const unknown = [];
  for (const [value, record] of records) {
    if (Array.isArray(value) || record.enumerated) continue;
    for (const key of Object.keys(value)) {
      if (!record.read.has(key)) unknown.push([...record.pointer, key]);
    }
  }
  return { schemaErrors: [], unknown };
}

function schemaErrorOf(err) {
  const segments = err.instancePath
    ? err.instancePath.split("/").slice(1).map((s) => s.replace(/~1/g, "/").replace(/~0/g, "~"))
    : [];
  let message = err.message || err.keyword;
  if (err.params && err.params.allowedValues) message += `: ${err.params.allowedValues.join(", ")}`;
  return { segments: segments.map((s) => (/^\d+$/.test(s) ? Number(s) : s)), message };
}

function fieldPath(segments) {
  let out = "";
  for (const s of segments) {
    if (typeof s === "number") out += `[${s}]`;
    else if (/^[A-Za-z_$][A-Za-z0-9_$]*$/.test(s)) out += out ? `.${s}` : s;
    else out += `[${JSON.stringify(s)}]`;
  }
  return out || "(object)";
}

// ---------------------------------------------------------------------------------------------
// Helpers over objects

function labelsMatch(selector, labels) {
  if (!selector) return false;
  labels = labels || {};
  for (const [k, v] of Object.entries(selector.matchLabels || {})) {
    if (labels[k] !== v) return false;
  }
  for (const expr of selector.matchExpressions || []) {
    const has = Object.prototype.hasOwnProperty.call(labels, expr.key);
    const values = expr.values || [];
    switch (expr.operator) {
      case "In": if (!has || !values.includes(labels[expr.key])) return false; break;
      case "NotIn": if (has && values.includes(labels[expr.key])) return false; break;
      case "Exists": if (!has) return false; break;
      case "DoesNotExist": if (has) return false; break;
      default: return false;
    }
  }
  return true;
}

/** [podSpec, pathToPodSpec, podLabels] of a workload, or null. */
function podOf(obj) {
  const spec = obj.spec || {};
  switch (obj.kind) {
    case "Pod": return [spec, ["spec"], (obj.metadata || {}).labels || {}];
    case "CronJob": {
      const t = ((spec.jobTemplate || {}).spec || {}).template || {};
      return [t.spec || {}, ["spec", "jobTemplate", "spec", "template", "spec"], (t.metadata || {}).labels || {}];
    }
    default: {
      if (!WORKLOAD_KINDS.has(obj.kind)) return null;
      const t = spec.template || {};
      return [t.spec || {}, ["spec", "template", "spec"], (t.metadata || {}).labels || {}];
    }
  }
}

function containersOf(podSpec, podPath) {
  const out = [];
  for (const field of ["initContainers", "containers"]) {
    (podSpec[field] || []).forEach((c, i) => out.push({ container: c, path: [...podPath, field, i] }));
  }
  return out;
}

function configKeys(obj) {
  if (obj.kind === "ConfigMap") return new Set([...Object.keys(obj.data || {}), ...Object.keys(obj.binaryData || {})]);
  if (obj.kind === "Secret") return new Set([...Object.keys(obj.data || {}), ...Object.keys(obj.stringData || {})]);
  return new Set();
}

function configValue(obj, key) {
  if (obj.kind === "ConfigMap") return (obj.data || {})[key];
  if (obj.kind === "Secret") {
    if (obj.stringData && key in obj.stringData) return obj.stringData[key];
    if (obj.data && key in obj.data) return Buffer.from(obj.data[key], "base64").toString("utf8");
  }
  return undefined;
}

/** The flag's value in an argument list ("--x v" or "--x=v"), or undefined. */
function flagValue(args, flag) {
  for (let i = 0; i < args.length; i++) {
    if (args[i] === flag) return args[i + 1];
    if (typeof args[i] === "string" && args[i].startsWith(`${flag}=`)) return args[i].slice(flag.length + 1);
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// The check

class Manifests {
  constructor(report) {
    this.report = report;
    this.objects = []; // { obj, file, lineOf }
  }

  err(entry, segments, message) {
    const { obj } = entry;
    const subject = `${obj.kind || "?"}/${(obj.metadata || {}).name || "?"}`;
    const where = segments && segments.length ? `${fieldPath(segments)}: ` : "";
    this.report.error(entry.file, entry.lineOf(segments || []), subject, where + message);
  }

  find(kind, namespace, name) {
    return this.objects.find((e) => e.obj.kind === kind && (e.obj.metadata || {}).name === name
      && (CLUSTER_SCOPED.has(kind) || (e.obj.metadata || {}).namespace === namespace));
  }
}

/** Reads the manifests of `dir`; returns the Manifests, having reported YAML and kustomization problems. */
function loadManifests(dir, report) {
  const m = new Manifests(report);
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) {
    report.error(dir, undefined, null, "Kubernetes manifest folder not found");
    return m;
  }
  const files = [];
  const walk = (d) => {
    for (const name of fs.readdirSync(d).sort()) {
      const full = path.join(d, name);
      if (fs.statSync(full).isDirectory()) walk(full);
      else if (/\.ya?ml$/.test(name)) files.push(full);
    }
  };
  walk(dir);

  const kustomizations = [];
  for (const file of files) {
    const { documents } = loadYamlDocuments(file, report);
    for (const doc of documents) {
      const obj = doc.value;
      if (obj === null || typeof obj !== "object" || Array.isArray(obj)) {
        report.error(file, doc.line, null, "a manifest document must be a mapping");
        continue;
      }
      if (typeof obj.apiVersion === "string" && obj.apiVersion.startsWith("kustomize.config.k8s.io/")) {
        kustomizations.push({ file, obj, lineOf: doc.lineOf });
      } else {
        m.objects.push({ file, obj, lineOf: doc.lineOf });
      }
    }
  }
  checkKustomizations(dir, files, kustomizations, report);
  return m;
}

/**
 * This validator does not run kustomize, so it accepts only a kustomization that renders to the
 * plain union of its resources, and requires that union to be every manifest file beside it
 * except *.example.yaml (examples are validated, never applied).
 */
function checkKustomizations(dir, files, kustomizations, report) {
  const top = path.join(dir, "kustomization.yaml");
  if (!kustomizations.some((k) => k.file === top)) {
    report.error(top, undefined, null, "missing: k8s/ must have a kustomization.yaml listing its manifests");
  }
  for (const k of kustomizations) {
    const allowed = new Set(["apiVersion", "kind", "resources"]);
    for (const key of Object.keys(k.obj)) {
      if (!allowed.has(key)) {
        report.error(k.file, k.lineOf([key]), "Kustomization",
          `'${key}' is a kustomize transformation that this validator does not render; keep this kustomization to plain resources (put customisations in an overlay outside the repository) or teach deploy/validate to render it`);
      }
    }
    if (k.obj.kind !== "Kustomization") report.error(k.file, k.lineOf(["kind"]), "Kustomization", "kind must be Kustomization");
    const base = path.dirname(k.file);
    const listed = new Set();
    (k.obj.resources || []).forEach((r, i) => {
      const full = path.resolve(base, String(r));
      if (listed.has(full)) report.error(k.file, k.lineOf(["resources", i]), "Kustomization", `resource '${r}' is listed twice`);
      listed.add(full);
      if (!fs.existsSync(full)) report.error(k.file, k.lineOf(["resources", i]), "Kustomization", `resource '${r}' does not exist`);
    });
    const expected = files.filter((f) => path.dirname(f) === base && f !== k.file && !/\.example\.ya?ml$/.test(f));
    for (const f of expected) {
      if (!listed.has(f)) {
        report.error(k.file, k.lineOf(["resources"]), "Kustomization",
          `${path.basename(f)} is not listed in resources (kubectl apply -k would skip it); list it, or name it *.example.yaml if it must not be applied`);
      }
    }
  }
}

function checkManifests(m) {
  const seen = new Map();
  for (const entry of m.objects) {
    const { obj } = entry;
    if (typeof obj.apiVersion !== "string" || typeof obj.kind !== "string") {
      m.err(entry, [], "apiVersion and kind are required");
      continue;
    }
    if (/(alpha|beta)\d*$/.test(obj.apiVersion)) {
      m.err(entry, ["apiVersion"], `${obj.apiVersion} is not a GA API (beta APIs are removed or off by default); use the stable version`);
      continue;
    }
    const cls = modelFor(obj.apiVersion, obj.kind);
    if (!cls) {
      m.err(entry, ["kind"], `unknown kind ${obj.kind} in ${obj.apiVersion} for Kubernetes ${KUBERNETES_SCHEMA_VERSION}`);
      continue;
    }
    const { schemaErrors, unknown } = validateWithSchema(cls, obj);
    for (const e of schemaErrors) m.err(entry, e.segments, e.message);
    for (const segments of unknown) m.err(entry, segments, "unknown field (not in the Kubernetes schema)");
    if (schemaErrors.length > 0) continue;
    entry.valid = true;

    checkMetadata(m, entry);
    const meta = obj.metadata || {};
    const key = `${obj.kind}/${meta.namespace || ""}/${meta.name}`;
    if (seen.has(key)) m.err(entry, ["metadata", "name"], `duplicate of the object in ${m.report.rel(seen.get(key).file)}`);
    else seen.set(key, entry);
  }

  // The remaining checks read fields freely: only schema-valid objects take part.
  m.objects = m.objects.filter((e) => e.valid);

  const namespaces = m.objects.filter((e) => e.obj.kind === "Namespace").map((e) => e.obj.metadata.name);
  for (const entry of m.objects) {
    const { obj } = entry;
    if (!obj.metadata || CLUSTER_SCOPED.has(obj.kind)) continue;
    if (!obj.metadata.namespace) {
      m.err(entry, ["metadata"], "metadata.namespace is required (objects without one land in the current kubectl context's namespace)");
    } else if (namespaces.length > 0 && !namespaces.includes(obj.metadata.namespace)) {
      m.err(entry, ["metadata", "namespace"], `namespace ${obj.metadata.namespace} is not defined here (defined: ${namespaces.join(", ")})`);
    }
  }

  for (const entry of m.objects) {
    if (!entry.obj.metadata || !entry.obj.spec) continue;
    if (podOf(entry.obj)) checkWorkload(m, entry);
    switch (entry.obj.kind) {
      case "Service": checkService(m, entry); break;
      case "HorizontalPodAutoscaler": checkHpa(m, entry); break;
      case "PodDisruptionBudget": checkPdb(m, entry); break;
      case "NetworkPolicy": checkNetworkPolicy(m, entry); break;
      case "PersistentVolumeClaim": checkPvc(m, entry); break;
      default: break;
    }
  }
}

function checkMetadata(m, entry) {
  const { obj } = entry;
  const meta = obj.metadata || {};
  if (!meta.name) {
    m.err(entry, ["metadata"], "metadata.name is required");
    return;
  }
  const nameRule = obj.kind === "Service" ? DNS1035_LABEL
    : ["Namespace", "StatefulSet"].includes(obj.kind) ? DNS1123_LABEL : DNS1123_SUBDOMAIN;
  if (!nameRule.test(meta.name)) m.err(entry, ["metadata", "name"], `'${meta.name}' is not a valid ${obj.kind} name`);
  const checkLabels = (labels, segments) => {
    for (const [k, v] of Object.entries(labels || {})) {
      const slash = k.lastIndexOf("/");
      const prefix = slash >= 0 ? k.slice(0, slash) : null;
      const name = slash >= 0 ? k.slice(slash + 1) : k;
      if ((prefix !== null && !DNS1123_SUBDOMAIN.test(prefix)) || !LABEL_NAME.test(name)) {
        m.err(entry, [...segments, k], `invalid label key '${k}'`);
      }
      if (typeof v !== "string" || !LABEL_VALUE.test(v)) m.err(entry, [...segments, k], `invalid label value '${v}'`);
    }
  };
  checkLabels(meta.labels, ["metadata", "labels"]);
  const pod = podOf(obj);
  if (pod && obj.kind !== "Pod") {
    const tpath = pod[1].slice(0, -1);
    checkLabels(pod[2], [...tpath, "metadata", "labels"]);
  }
}

function restrictedNamespace(m, namespace) {
  const ns = m.find("Namespace", null, namespace);
  return !!ns && ((ns.obj.metadata || {}).labels || {})["pod-security.kubernetes.io/enforce"] === "restricted";
}

function checkWorkload(m, entry) {
  const { obj } = entry;
  const [podSpec, podPath, podLabels] = podOf(obj);
  const namespace = obj.metadata.namespace;

  // Selector: the API server rejects a selector that does not select the template's labels.
  if (obj.kind !== "Pod" && obj.kind !== "Job" && obj.kind !== "CronJob") {
    if (!labelsMatch(obj.spec.selector, podLabels)) {
      m.err(entry, ["spec", "selector"], "does not match spec.template.metadata.labels");
    }
  }

  if (podSpec.serviceAccountName && podSpec.serviceAccountName !== "default"
    && !m.find("ServiceAccount", namespace, podSpec.serviceAccountName)) {
    m.err(entry, [...podPath, "serviceAccountName"], `ServiceAccount ${podSpec.serviceAccountName} is not defined`);
  }

  if (obj.kind === "StatefulSet") {
    const svc = m.find("Service", namespace, obj.spec.serviceName);
    if (!svc) m.err(entry, ["spec", "serviceName"], `Service ${obj.spec.serviceName} is not defined`);
    else if (svc.obj.spec.clusterIP !== "None") m.err(entry, ["spec", "serviceName"], `Service ${obj.spec.serviceName} must be headless (clusterIP: None)`);
  }

  // Volumes: defined, referenced objects exist, all of them mounted.
  const volumes = new Map();
  (podSpec.volumes || []).forEach((v, i) => {
    if (volumes.has(v.name)) m.err(entry, [...podPath, "volumes", i, "name"], `duplicate volume ${v.name}`);
    volumes.set(v.name, { volume: v, index: i, used: false });
    checkVolumeSource(m, entry, v, [...podPath, "volumes", i], namespace);
  });
  const claimTemplates = new Set(((obj.spec || {}).volumeClaimTemplates || []).map((t) => (t.metadata || {}).name));

  const containers = containersOf(podSpec, podPath);
  const containerNames = new Set();
  for (const { container: c, path: cpath } of containers) {
    if (containerNames.has(c.name)) m.err(entry, [...cpath, "name"], `duplicate container name ${c.name}`);
    containerNames.add(c.name);
  }

  for (const { container: c, path: cpath } of containers) {
    const mountPaths = new Set();
    (c.volumeMounts || []).forEach((vm, i) => {
      const v = volumes.get(vm.name);
      if (v) v.used = true;
      else if (!claimTemplates.has(vm.name)) m.err(entry, [...cpath, "volumeMounts", i, "name"], `volume ${vm.name} is not defined in the pod`);
      if (mountPaths.has(vm.mountPath)) m.err(entry, [...cpath, "volumeMounts", i, "mountPath"], `${vm.mountPath} is mounted twice`);
      mountPaths.add(vm.mountPath);
    });
    checkContainerResources(m, entry, c, cpath);
    checkContainerProbes(m, entry, c, cpath, cpath[cpath.length - 2] === "initContainers");
    checkContainerEnv(m, entry, c, cpath, namespace, containerNames);
  }
  for (const [name, v] of volumes) {
    if (!v.used) m.err(entry, [...podPath, "volumes", v.index], `volume ${name} is never mounted`);
  }

  if (restrictedNamespace(m, namespace)) checkRestricted(m, entry, podSpec, podPath, containers);
}

function checkVolumeSource(m, entry, v, vpath, namespace) {
  const needConfig = (kind, name, optional, items, segments) => {
    const target = m.find(kind, namespace, name);
    if (!target) {
      if (!optional) m.err(entry, segments, `${kind} ${name} is not defined`);
      return;
    }
    const keys = configKeys(target.obj);
    (items || []).forEach((item, i) => {
      if (!keys.has(item.key)) m.err(entry, [...segments.slice(0, -1), "items", i, "key"], `${kind} ${name} has no key ${item.key}`);
    });
  };
  if (v.configMap) needConfig("ConfigMap", v.configMap.name, v.configMap.optional, v.configMap.items, [...vpath, "configMap", "name"]);
  if (v.secret) needConfig("Secret", v.secret.secretName, v.secret.optional, v.secret.items, [...vpath, "secret", "secretName"]);
  if (v.projected) {
    (v.projected.sources || []).forEach((s, i) => {
      const spath = [...vpath, "projected", "sources", i];
      if (s.configMap) needConfig("ConfigMap", s.configMap.name, s.configMap.optional, s.configMap.items, [...spath, "configMap", "name"]);
      if (s.secret) needConfig("Secret", s.secret.name, s.secret.optional, s.secret.items, [...spath, "secret", "name"]);
    });
  }
  if (v.persistentVolumeClaim && !m.find("PersistentVolumeClaim", namespace, v.persistentVolumeClaim.claimName)) {
    m.err(entry, [...vpath, "persistentVolumeClaim", "claimName"], `PersistentVolumeClaim ${v.persistentVolumeClaim.claimName} is not defined`);
  }
}

function checkContainerResources(m, entry, c, cpath) {
  const res = c.resources || {};
  const requests = res.requests || {};
  const limits = res.limits || {};
  for (const r of ["cpu", "memory"]) {
    if (requests[r] === undefined) m.err(entry, [...cpath, "resources"], `container ${c.name} sets no ${r} request`);
    if (limits[r] === undefined) m.err(entry, [...cpath, "resources"], `container ${c.name} sets no ${r} limit`);
  }
  for (const [r, q] of Object.entries(requests)) {
    if (limits[r] === undefined) continue;
    if (parseQuantity(q) > parseQuantity(limits[r])) {
      m.err(entry, [...cpath, "resources", "requests", r], `request ${q} exceeds the limit ${limits[r]}`);
    }
  }
  // Extended resources (nvidia.com/gpu...): whole numbers, in limits, and requests == limits.
  const extended = new Set([...Object.keys(requests), ...Object.keys(limits)]
    .filter((r) => r.includes("/") && !r.startsWith("kubernetes.io/") && !r.startsWith("hugepages-")));
  for (const r of extended) {
    if (limits[r] === undefined) {
      m.err(entry, [...cpath, "resources", "requests", r], `extended resource ${r} must be set in limits`);
      continue;
    }
    if (!Number.isInteger(parseQuantity(limits[r]))) m.err(entry, [...cpath, "resources", "limits", r], `extended resource ${r} must be a whole number`);
    if (requests[r] !== undefined && parseQuantity(requests[r]) !== parseQuantity(limits[r])) {
      m.err(entry, [...cpath, "resources", "requests", r], `extended resource ${r}: request must equal the limit`);
    }
  }
}

function checkContainerProbes(m, entry, c, cpath, isInit) {
  const portNames = new Set((c.ports || []).map((p) => p.name).filter(Boolean));
  for (const probe of ["startupProbe", "readinessProbe", "livenessProbe"]) {
    const p = c[probe];
    if (!p) continue;
    for (const handler of ["httpGet", "tcpSocket", "grpc"]) {
      const h = p[handler];
      if (!h) continue;
      if (typeof h.port === "string" && !portNames.has(h.port)) {
        m.err(entry, [...cpath, probe, handler, "port"], `no container port is named ${h.port}`);
      }
      if (handler === "httpGet" && h.path !== undefined && !String(h.path).startsWith("/")) {
        m.err(entry, [...cpath, probe, handler, "path"], "must start with /");
      }
    }
  }
  if (!isInit && (c.ports || []).length > 0) {
    for (const probe of ["readinessProbe", "livenessProbe"]) {
      if (!c[probe]) m.err(entry, cpath, `container ${c.name} serves ports but has no ${probe}`);
    }
  }
}

function checkContainerEnv(m, entry, c, cpath, namespace, containerNames) {
  const defined = new Set();
  for (const ef of c.envFrom || []) {
    const ref = ef.configMapRef ? ["ConfigMap", ef.configMapRef] : ef.secretRef ? ["Secret", ef.secretRef] : null;
    if (!ref) continue;
    const target = m.find(ref[0], namespace, ref[1].name);
    if (target) for (const k of configKeys(target.obj)) defined.add(`${ef.prefix || ""}${k}`);
    else if (!ref[1].optional) m.err(entry, [...cpath, "envFrom"], `${ref[0]} ${ref[1].name} is not defined`);
  }
  (c.env || []).forEach((e, i) => {
    const epath = [...cpath, "env", i];
    if (typeof e.value === "string") {
      for (const [, name] of e.value.matchAll(ENV_REF)) {
        if (!defined.has(name)) m.err(entry, [...epath, "value"], `$(${name}) refers to a variable not defined before ${e.name} (Kubernetes leaves it unexpanded)`);
      }
    }
    const vf = e.valueFrom || {};
    for (const [kind, ref] of [["ConfigMap", vf.configMapKeyRef], ["Secret", vf.secretKeyRef]]) {
      if (!ref) continue;
      const target = m.find(kind, namespace, ref.name);
      if (!target) {
        if (!ref.optional) m.err(entry, [...epath, "valueFrom"], `${kind} ${ref.name} is not defined`);
      } else if (!configKeys(target.obj).has(ref.key) && !ref.optional) {
        m.err(entry, [...epath, "valueFrom"], `${kind} ${ref.name} has no key ${ref.key}`);
      }
    }
    if (vf.resourceFieldRef && vf.resourceFieldRef.containerName && !containerNames.has(vf.resourceFieldRef.containerName)) {
      m.err(entry, [...epath, "valueFrom", "resourceFieldRef", "containerName"], `no container named ${vf.resourceFieldRef.containerName}`);
    }
    defined.add(e.name);
  });
  for (const field of ["command", "args"]) {
    (c[field] || []).forEach((arg, i) => {
      if (typeof arg !== "string") return;
      for (const [, name] of arg.matchAll(ENV_REF)) {
        if (!defined.has(name)) m.err(entry, [...cpath, field, i], `$(${name}) refers to an environment variable the container does not define (Kubernetes leaves it unexpanded)`);
      }
    });
  }
}

/** Pod Security Standards, "restricted" profile: what admission would reject in such a namespace. */
function checkRestricted(m, entry, podSpec, podPath, containers) {
  const psc = podSpec.securityContext || {};
  for (const field of ["hostNetwork", "hostPID", "hostIPC"]) {
    if (podSpec[field]) m.err(entry, [...podPath, field], "not allowed by Pod Security 'restricted'");
  }
  (podSpec.volumes || []).forEach((v, i) => {
    const type = Object.keys(v).find((k) => k !== "name");
    if (type && !RESTRICTED_VOLUME_TYPES.has(type)) m.err(entry, [...podPath, "volumes", i], `${type} volumes are not allowed by Pod Security 'restricted'`);
  });
  for (const { container: c, path: cpath } of containers) {
    const sc = c.securityContext || {};
    const why = (segments, msg) => m.err(entry, [...cpath, ...segments], `container ${c.name}: ${msg} (Pod Security 'restricted')`);
    if (sc.privileged) why(["securityContext", "privileged"], "must not be privileged");
    if (sc.allowPrivilegeEscalation !== false) why(["securityContext"], "securityContext.allowPrivilegeEscalation must be false");
    const caps = sc.capabilities || {};
    if (!(caps.drop || []).includes("ALL")) why(["securityContext"], "securityContext.capabilities.drop must include ALL");
    for (const cap of caps.add || []) if (cap !== "NET_BIND_SERVICE") why(["securityContext", "capabilities", "add"], `capability ${cap} may not be added`);
    const nonRoot = sc.runAsNonRoot !== undefined ? sc.runAsNonRoot : psc.runAsNonRoot;
    if (nonRoot !== true) why(["securityContext"], "runAsNonRoot must be true (pod or container)");
    const uid = sc.runAsUser !== undefined ? sc.runAsUser : psc.runAsUser;
    if (uid === 0) why(["securityContext"], "runAsUser must not be 0");
    const seccomp = (sc.seccompProfile || psc.seccompProfile || {}).type;
    if (seccomp !== "RuntimeDefault" && seccomp !== "Localhost") why(["securityContext"], "seccompProfile.type must be RuntimeDefault or Localhost (pod or container)");
  }
}

function matchingWorkloads(m, namespace, selectorLabels) {
  return m.objects.filter((e) => {
    const pod = podOf(e.obj);
    return pod && e.obj.kind !== "Pod" && (e.obj.metadata || {}).namespace === namespace
      && labelsMatch({ matchLabels: selectorLabels.matchLabels, matchExpressions: selectorLabels.matchExpressions }, pod[2]);
  });
}

function checkService(m, entry) {
  const { obj } = entry;
  const selector = obj.spec.selector;
  if (!selector || Object.keys(selector).length === 0) return;
  const targets = matchingWorkloads(m, obj.metadata.namespace, { matchLabels: selector });
  if (targets.length === 0) {
    m.err(entry, ["spec", "selector"], "selects no workload defined here");
    return;
  }
  const ports = targets.flatMap((t) => containersOf(...podOf(t.obj).slice(0, 2)).flatMap(({ container }) => container.ports || []));
  (obj.spec.ports || []).forEach((p, i) => {
    const target = p.targetPort === undefined ? p.port : p.targetPort;
    const ok = typeof target === "string"
      ? ports.some((cp) => cp.name === target)
      : ports.some((cp) => cp.containerPort === target);
    if (!ok) m.err(entry, ["spec", "ports", i, p.targetPort === undefined ? "port" : "targetPort"], `no selected container exposes port ${target}`);
  });
}

function hpaFor(m, target) {
  return m.objects.find((e) => e.obj.kind === "HorizontalPodAutoscaler"
    && e.obj.metadata.namespace === target.obj.metadata.namespace
    && ((e.obj.spec || {}).scaleTargetRef || {}).kind === target.obj.kind
    && ((e.obj.spec || {}).scaleTargetRef || {}).name === target.obj.metadata.name);
}

function checkHpa(m, entry) {
  const { obj } = entry;
  const ref = obj.spec.scaleTargetRef;
  const target = m.find(ref.kind, obj.metadata.namespace, ref.name);
  if (!target || (ref.apiVersion && target.obj.apiVersion !== ref.apiVersion)) {
    m.err(entry, ["spec", "scaleTargetRef"], `${ref.apiVersion || ""} ${ref.kind} ${ref.name} is not defined`);
    return;
  }
  if (target.obj.spec && target.obj.spec.replicas !== undefined) {
    m.err(entry, ["spec", "scaleTargetRef"], `${ref.kind} ${ref.name} sets spec.replicas: every apply would reset what the autoscaler chose; leave replicas out`);
  }
  if ((obj.spec.minReplicas || 1) > obj.spec.maxReplicas) m.err(entry, ["spec", "minReplicas"], "exceeds maxReplicas");
  const pod = podOf(target.obj);
  (obj.spec.metrics || []).forEach((metric, i) => {
    if (metric.type !== "Resource" || !metric.resource || metric.resource.target.type !== "Utilization") return;
    for (const { container } of containersOf(pod[0], pod[1])) {
      if (!((container.resources || {}).requests || {})[metric.resource.name]) {
        m.err(entry, ["spec", "metrics", i], `utilization of ${metric.resource.name} needs a ${metric.resource.name} request on container ${container.name}`);
      }
    }
  });
}

function checkPdb(m, entry) {
  const { obj } = entry;
  const targets = matchingWorkloads(m, obj.metadata.namespace, obj.spec.selector || {});
  if (targets.length === 0) {
    m.err(entry, ["spec", "selector"], "selects no workload defined here");
    return;
  }
  if (Number.isInteger(obj.spec.minAvailable)) {
    for (const t of targets) {
      const hpa = hpaFor(m, t);
      const replicas = hpa ? (hpa.obj.spec.minReplicas || 1) : (t.obj.spec.replicas === undefined ? 1 : t.obj.spec.replicas);
      if (obj.spec.minAvailable >= replicas) {
        m.err(entry, ["spec", "minAvailable"], `${obj.spec.minAvailable} with ${replicas} replica(s) of ${t.obj.kind} ${t.obj.metadata.name} blocks every voluntary eviction (node drains hang)`);
      }
    }
  }
}

function checkNetworkPolicy(m, entry) {
  const { obj } = entry;
  const selector = obj.spec.podSelector || {};
  if (Object.keys(selector).length > 0 && matchingWorkloads(m, obj.metadata.namespace, selector).length === 0) {
    m.err(entry, ["spec", "podSelector"], "selects no workload defined here");
  }
  (obj.spec.ingress || []).forEach((rule, i) => {
    (rule.from || []).forEach((peer, j) => {
      if (peer.podSelector && !peer.namespaceSelector && Object.keys(peer.podSelector).length > 0
        && matchingWorkloads(m, obj.metadata.namespace, peer.podSelector).length === 0) {
        m.err(entry, ["spec", "ingress", i, "from", j, "podSelector"], "selects no workload defined here");
      }
    });
  });
}

function checkPvc(m, entry) {
  const { obj } = entry;
  if (!((obj.spec.resources || {}).requests || {}).storage) m.err(entry, ["spec", "resources"], "resources.requests.storage is required");
  if (!(obj.spec.accessModes || []).length) m.err(entry, ["spec"], "accessModes is required");
}

// ---------------------------------------------------------------------------------------------
// TuneGateway's own requirements (issue #7): what the manifests must contain.

const ROLES = new Set(["serve", "gateway", "worker", "controller"]);
const ARTIFACTS_DIR = "/var/lib/tunegw/artifacts";

function checkTuneGatewayPolicy(m, dir) {
  const byComponent = (component) => m.objects.filter((e) => podOf(e.obj) && e.obj.kind !== "Pod"
    && ((e.obj.metadata || {}).labels || {})["app.kubernetes.io/component"] === component);
  const missing = (what) => m.report.error(dir, undefined, "TuneGateway", `missing: ${what}`);
  const roleContainer = (entry, role) => {
    const [podSpec, podPath] = podOf(entry.obj);
    const found = containersOf(podSpec, podPath).find(({ container }) => (container.args || [])[0] === role);
    if (!found) m.err(entry, podPath, `no container runs \`tunegw ${role}\` (args[0] must be the role)`);
    return found;
  };
  const probePath = (c, probe) => ((c[probe] || {}).httpGet || {}).path;
  const rwxClaimMountedAt = (entry, c, mountPath) => {
    const [podSpec] = podOf(entry.obj);
    const vm = (c.volumeMounts || []).find((x) => x.mountPath === mountPath);
    const vol = vm && (podSpec.volumes || []).find((v) => v.name === vm.name);
    const claim = vol && vol.persistentVolumeClaim && m.find("PersistentVolumeClaim", entry.obj.metadata.namespace, vol.persistentVolumeClaim.claimName);
    return claim && (claim.obj.spec.accessModes || []).includes("ReadWriteMany") ? claim : null;
  };

  // Every tunegw container names a known role.
  for (const entry of m.objects.filter((e) => podOf(e.obj))) {
    const [podSpec, podPath] = podOf(entry.obj);
    for (const { container, path: cpath } of containersOf(podSpec, podPath)) {
      const image = String(container.image || "");
      if (/(^|\/)tunegw(:|@|$)/.test(image) && !ROLES.has((container.args || [])[0])) {
        m.err(entry, [...cpath, "args"], `a tunegw container's args must start with its role (${[...ROLES].join(", ")})`);
      }
    }
  }

  // Gateway: Deployment + Service + HPA + PDB, probes on /healthz and /readyz.
  const gateways = byComponent("gateway");
  if (gateways.length === 0) missing("the gateway Deployment (app.kubernetes.io/component: gateway)");
  for (const g of gateways) {
    if (g.obj.kind !== "Deployment") m.err(g, ["kind"], "the gateway must be a Deployment");
    const ns = g.obj.metadata.namespace;
    const labels = podOf(g.obj)[2];
    const services = m.objects.filter((e) => e.obj.kind === "Service" && e.obj.metadata.namespace === ns && e.obj.spec.selector && labelsMatch({ matchLabels: e.obj.spec.selector }, labels));
    if (services.length === 0) m.err(g, ["metadata", "name"], "no Service selects the gateway");
    if (!hpaFor(m, g)) m.err(g, ["metadata", "name"], "no HorizontalPodAutoscaler targets the gateway");
    if (!m.objects.some((e) => e.obj.kind === "PodDisruptionBudget" && e.obj.metadata.namespace === ns && labelsMatch(e.obj.spec.selector, labels))) {
      m.err(g, ["metadata", "name"], "no PodDisruptionBudget covers the gateway");
    }
    const found = roleContainer(g, "gateway");
    if (found) {
      if (probePath(found.container, "readinessProbe") !== "/readyz") m.err(g, [...found.path, "readinessProbe"], "the gateway's readiness probe must GET /readyz");
      if (probePath(found.container, "livenessProbe") !== "/healthz") m.err(g, [...found.path, "livenessProbe"], "the gateway's liveness probe must GET /healthz");
      const keys = flagValue(found.container.args, "--api-keys");
      const [podSpec] = podOf(g.obj);
      const mount = keys && (found.container.volumeMounts || []).find((vm) => keys.startsWith(`${vm.mountPath.replace(/\/$/, "")}/`));
      const vol = mount && (podSpec.volumes || []).find((v) => v.name === mount.name);
      const fromSecret = vol && (vol.secret || (vol.projected && (vol.projected.sources || []).some((s) => s.secret)));
      if (!fromSecret) m.err(g, [...found.path, "args"], "--api-keys must point into a mounted Secret");
    }
  }

  // Workers: a GPU each, readiness on /readyz, adapters from a ReadWriteMany volume.
  const workers = byComponent("worker");
  if (workers.length === 0) missing("the worker Deployment or StatefulSet (app.kubernetes.io/component: worker)");
  for (const w of workers) {
    if (!["Deployment", "StatefulSet"].includes(w.obj.kind)) m.err(w, ["kind"], "workers must be a Deployment or a StatefulSet");
    const found = roleContainer(w, "worker");
    if (!found) continue;
    const c = found.container;
    const gpus = parseQuantity(((c.resources || {}).limits || {})["nvidia.com/gpu"]);
    if (!(gpus >= 1)) m.err(w, [...found.path, "resources"], "the worker must request nvidia.com/gpu (in limits)");
    if (probePath(c, "readinessProbe") !== "/readyz") m.err(w, [...found.path, "readinessProbe"], "the worker's readiness probe must GET /readyz");
    if (probePath(c, "livenessProbe") !== "/healthz") m.err(w, [...found.path, "livenessProbe"], "the worker's liveness probe must GET /healthz");
    const loraDir = flagValue(c.args, "--lora-dir");
    if (loraDir !== ARTIFACTS_DIR) m.err(w, [...found.path, "args"], `the worker must run with --lora-dir ${ARTIFACTS_DIR}`);
    else if (!rwxClaimMountedAt(w, c, ARTIFACTS_DIR)) m.err(w, [...found.path, "volumeMounts"], `${ARTIFACTS_DIR} must be a ReadWriteMany PersistentVolumeClaim`);
  }

  // Controller: a single replica, never two at once.
  const controllers = byComponent("controller");
  if (controllers.length === 0) missing("the controller (app.kubernetes.io/component: controller)");
  for (const c of controllers) {
    const replicas = c.obj.spec.replicas === undefined ? 1 : c.obj.spec.replicas;
    if (replicas !== 1) m.err(c, ["spec", "replicas"], "the controller must run as a single replica");
    if (hpaFor(m, c)) m.err(c, ["metadata", "name"], "the controller must not be autoscaled");
    if (c.obj.kind === "Deployment" && ((c.obj.spec.strategy || {}).type !== "Recreate")) {
      m.err(c, ["spec", "strategy"], "a rolling update would run two controllers at once: use strategy Recreate");
    } else if (!["Deployment", "StatefulSet"].includes(c.obj.kind)) {
      m.err(c, ["kind"], "the controller must be a Deployment (Recreate) or a StatefulSet");
    }
    const found = roleContainer(c, "controller");
    if (found) {
      if (flagValue(found.container.args, "--artifacts") !== ARTIFACTS_DIR) m.err(c, [...found.path, "args"], `the controller must run with --artifacts ${ARTIFACTS_DIR}`);
      else if (!rwxClaimMountedAt(c, found.container, ARTIFACTS_DIR)) m.err(c, [...found.path, "volumeMounts"], `${ARTIFACTS_DIR} must be a ReadWriteMany PersistentVolumeClaim`);
    }
  }

  // Redis: a StatefulSet with AOF persistence on a volume claim.
  const redis = byComponent("redis");
  if (redis.length === 0) missing("Redis (a StatefulSet with app.kubernetes.io/component: redis)");
  for (const r of redis) {
    if (r.obj.kind !== "StatefulSet") m.err(r, ["kind"], "Redis must be a StatefulSet");
    if (!(r.obj.spec.volumeClaimTemplates || []).length) m.err(r, ["spec"], "Redis needs a volumeClaimTemplate for its data");
    const [podSpec, podPath] = podOf(r.obj);
    const confText = (podSpec.volumes || []).filter((v) => v.configMap)
      .map((v) => m.find("ConfigMap", r.obj.metadata.namespace, v.configMap.name))
      .filter(Boolean).flatMap((cm) => Object.values(cm.obj.data || {})).join("\n");
    const argsText = containersOf(podSpec, podPath).flatMap(({ container }) => [...(container.command || []), ...(container.args || [])]).join(" ");
    if (!/^\s*appendonly\s+yes\s*$/m.test(confText) && !/--appendonly\s+yes/.test(argsText)) {
      m.err(r, podPath, "Redis must run with AOF persistence (appendonly yes)");
    }
  }

  // Configuration: tunegw.json in a ConfigMap, API keys in a Secret, both valid JSON.
  const configMaps = m.objects.filter((e) => e.obj.kind === "ConfigMap" && configKeys(e.obj).has("tunegw.json"));
  if (configMaps.length === 0) missing("a ConfigMap with tunegw.json");
  const secrets = m.objects.filter((e) => e.obj.kind === "Secret" && configKeys(e.obj).has("api-keys.json"));
  if (secrets.length === 0) missing("a Secret (or its example) with api-keys.json");
  for (const [entries, key] of [[configMaps, "tunegw.json"], [secrets, "api-keys.json"]]) {
    for (const e of entries) {
      try {
        JSON.parse(configValue(e.obj, key));
      } catch (ex) {
        m.err(e, [e.obj.kind === "Secret" && e.obj.stringData ? "stringData" : "data", key], `not valid JSON: ${ex.message}`);
      }
    }
  }
}

/** Validates the manifests under `dir`; returns a one-line summary. */
function validateKubernetes(dir, report) {
  const m = loadManifests(dir, report);
  checkManifests(m);
  checkTuneGatewayPolicy(m, dir);
  const files = new Set(m.objects.map((e) => e.file)).size;
  return `Kubernetes: ${m.objects.length} objects in ${files} files checked against the Kubernetes ${KUBERNETES_SCHEMA_VERSION} OpenAPI schemas (kubernetes-models, unknown fields rejected)`;
}

module.exports = { validateKubernetes, KUBERNETES_SCHEMA_VERSION, parseQuantity };
