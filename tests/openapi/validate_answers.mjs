// validate_answers.mjs: check answers of the real p8vaultd against
// docs/openapi.yaml with ajv (OpenAPI 3.1 schemas are JSON Schema 2020-12).
//
//   node validate_answers.mjs NODE_MODULES SPEC ANSWERS.jsonl...
//
// NODE_MODULES holds ajv, ajv-formats and yaml (installed by the tests'
// set-up into the build tree: tests/integration/harness.py, npm_modules).
// Each line of an answers file is one answer, as harness.py records it:
//   {"method": "POST", "target": "/v1/apps/a/keys?x=1", "status": 201,
//    "headers": {"content-type": "...", ...}, "body": "..."}
// (body as text; "body_b64" instead for bytes that are not UTF-8).
//
// The answer is matched to the operation of its path and method as the
// daemon's router does (segments split on '/', then percent-decoded; a
// {param} matches one non-empty segment; HEAD is GET without a body). Its
// status must be one the operation lists, its media type one of that
// response's, its body valid against that schema and the response's
// required headers present and valid. An answer for a path or method the
// spec does not describe must be a JSON error (components/responses
// Default; a 405 with Allow: MethodNotAllowed), so that nothing escapes.
//
// Prints one line per failing answer (at most MAX_REPORTED, then a count)
// and "openapi: N answers valid" or exits 1.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

const MAX_REPORTED = 20;

const [modules, specPath, ...files] = process.argv.slice(2);
if (!modules || !specPath) {
  console.error('usage: validate_answers.mjs NODE_MODULES SPEC ANSWERS...');
  process.exit(2);
}
const require = createRequire(path.join(path.resolve(modules), 'index.js'));
const Ajv2020 = require('ajv/dist/2020').default;
const addFormats = require('ajv-formats').default;
const YAML = require('yaml');

const spec = YAML.parse(readFileSync(specPath, 'utf8'));
const SCHEMAS_ID = 'p8v:openapi-schemas';

// '#/components/schemas/X' -> where X lives among the compiled schemas.
function rewriteRefs(node, prefix) {
  if (Array.isArray(node)) return node.map((n) => rewriteRefs(n, prefix));
  if (node === null || typeof node !== 'object') return node;
  const out = {};
  for (const [k, v] of Object.entries(node)) {
    if (k === '$ref' && typeof v === 'string' &&
        v.startsWith('#/components/schemas/'))
      out[k] = prefix + '#/$defs/' + v.slice('#/components/schemas/'.length);
    else
      out[k] = rewriteRefs(v, prefix);
  }
  return out;
}

// The spec's own references (responses, headers, parameters).
function deref(obj) {
  let seen = 0;
  while (obj && typeof obj.$ref === 'string' && seen++ < 16) {
    const parts = obj.$ref.replace(/^#\//, '').split('/');
    obj = parts.reduce((o, p) => (o ? o[p.replace(/~1/g, '/')
      .replace(/~0/g, '~')] : undefined), spec);
  }
  return obj;
}

const ajv = new Ajv2020({ strict: true, strictTypes: false,
  allowUnionTypes: true, allErrors: true });
addFormats(ajv);
// OpenAPI's own keywords inside schemas: annotations for this check.
ajv.addVocabulary(['discriminator', 'xml', 'externalDocs', 'example']);
ajv.addSchema({ $id: SCHEMAS_ID,
  $defs: rewriteRefs(spec.components?.schemas ?? {}, '') });

const compiled = new Map();
function validatorOf(schema) {
  if (!compiled.has(schema))
    compiled.set(schema, ajv.compile(rewriteRefs(schema, SCHEMAS_ID)));
  return compiled.get(schema);
}

// The router's decoding (api/router.c): '%XX' only, never to NUL.
function decodeSegment(s) {
  if (/%(?![0-9A-Fa-f]{2})/.test(s) || /%00/.test(s)) return null;
  try {
    return decodeURIComponent(s);
  } catch {
    // Bytes that are not UTF-8: compare them as latin-1 code units.
    return s.replace(/%([0-9A-Fa-f]{2})/g,
      (_, h) => String.fromCharCode(parseInt(h, 16)));
  }
}

const routes = Object.entries(spec.paths ?? {}).map(([pattern, item]) => ({
  pattern, item, segs: pattern.split('/').slice(1),
}));

function matchPath(target) {
  const q = target.indexOf('?');
  const raw = q >= 0 ? target.slice(0, q) : target;
  if (!raw.startsWith('/')) return null;
  const segs = raw.split('/').slice(1).map(decodeSegment);
  if (segs.some((s) => s === null)) return null;
  for (const r of routes) {
    if (r.segs.length !== segs.length) continue;
    if (r.segs.every((p, i) => (/^\{.+\}$/.test(p) ? segs[i] !== ''
      : p === segs[i])))
      return r;
  }
  return null;
}

const METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch',
  'trace'];

// What an answer is checked against: [response object, where].
function responseFor(a) {
  const route = a.target ? matchPath(a.target) : null;
  // Methods are case-sensitive (RFC 9110): "get" is not GET.
  const method = a.method === String(a.method).toUpperCase() ?
    String(a.method).toLowerCase() : '';
  const opMethod = method === 'head' ? 'get' : method;
  const op = route && METHODS.includes(opMethod) ? route.item[opMethod]
    : undefined;
  if (!op) {
    const where = route ? `${route.pattern} has no ${a.method}`
      : 'no path of the spec';
    const unrouted = spec['x-unrouted-answers'] ?? {};
    const key = String(a.status) in unrouted ? String(a.status) : 'default';
    if (!unrouted[key]) return [null, `${where}, and no x-unrouted-answers`];
    return [deref(unrouted[key]), `${where}: x-unrouted-answers ${key}`];
  }
  const where = `${opMethod.toUpperCase()} ${route.pattern}`;
  const resp = op.responses?.[String(a.status)] ?? op.responses?.default;
  if (!resp) return [null, `${where} lists no status ${a.status}`];
  return [deref(resp), `${where} ${a.status}`];
}

function bodyText(a) {
  if (typeof a.body === 'string') return a.body;
  if (typeof a.body_b64 === 'string')
    return Buffer.from(a.body_b64, 'base64').toString('latin1');
  return '';
}

function fmtErrors(errors) {
  return (errors ?? []).slice(0, 4).map((e) =>
    `${e.instancePath || '/'} ${e.message}` +
    (e.params && Object.keys(e.params).length ?
      ' ' + JSON.stringify(e.params) : '')).join('; ');
}

// libmicrohttpd's own answers (docs/openapi.yaml, x-http-layer-answers):
// no Content-Type, an HTML body, one of the listed statuses.
const httpLayer = spec['x-http-layer-answers']?.statuses ?? [];
function isHttpLayerAnswer(a) {
  return !(a.headers ?? {})['content-type'] && httpLayer.includes(a.status) &&
    /<html>/.test(bodyText(a));
}

// Why answer a does not fit the spec, or null.
function check(a) {
  if (isHttpLayerAnswer(a)) return null;
  const [resp, where] = responseFor(a);
  if (!resp) return where;
  const headers = a.headers ?? {};
  for (const [name, h0] of Object.entries(resp.headers ?? {})) {
    const h = deref(h0);
    const v = headers[name.toLowerCase()];
    if (v === undefined) {
      if (h.required) return `${where}: header ${name} missing`;
      continue;
    }
    if (h.schema) {
      const vh = validatorOf(h.schema);
      if (!vh(v)) return `${where}: header ${name}: ${fmtErrors(vh.errors)}`;
    }
  }
  const noBody = a.method === 'HEAD' || a.status === 204 || a.status === 304;
  const ctype = (headers['content-type'] ?? '').split(';')[0].trim()
    .toLowerCase();
  const content = resp.content ?? {};
  if (Object.keys(content).length === 0) {
    if (!noBody && bodyText(a) !== '')
      return `${where}: a body where the spec has none`;
    return null;
  }
  const media = Object.keys(content).find((m) => m.toLowerCase() === ctype);
  if (media === undefined)
    return `${where}: Content-Type ${JSON.stringify(headers['content-type'])}` +
      ` is not one of ${Object.keys(content).join(', ')}`;
  if (noBody) return null;
  const schema = content[media].schema;
  if (!schema) return null;
  let value = bodyText(a);
  if (media === 'application/json') {
    try {
      value = JSON.parse(value);
    } catch (e) {
      return `${where}: the body is not JSON (${e.message})`;
    }
  }
  const v = validatorOf(schema);
  if (!v(value)) return `${where}: ${fmtErrors(v.errors)}`;
  return null;
}

let total = 0;
let failed = 0;
for (const f of files) {
  const lines = readFileSync(f, 'utf8').split('\n');
  for (const line of lines) {
    if (line.trim() === '') continue;
    let a;
    try {
      a = JSON.parse(line);
    } catch (e) {
      failed++;
      console.log(`${f}: a line that is not JSON: ${e.message}`);
      continue;
    }
    total++;
    const why = check(a);
    if (why === null) continue;
    failed++;
    if (failed <= MAX_REPORTED) {
      const body = bodyText(a);
      const t = String(a.target);
      console.log(`${a.method} ${t.length > 120 ? t.slice(0, 120) + '...' : t}` +
        ` -> ${a.status}: ${why}\n` +
        `    body: ${body.length > 300 ? body.slice(0, 300) + '...' : body}`);
    }
  }
}
if (failed > MAX_REPORTED)
  console.log(`... and ${failed - MAX_REPORTED} more`);
if (failed) {
  console.log(`openapi: ${failed} of ${total} answers do not fit ${specPath}`);
  process.exit(1);
}
console.log(`openapi: ${total} answers valid`);
