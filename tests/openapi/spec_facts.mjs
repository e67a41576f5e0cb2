// spec_facts.mjs: what docs/openapi.yaml says about routes and error codes,
// as JSON on stdout, for tests/integration/test_openapi.py to compare with
// api/routes.c, api/errors.c and common/err.h.
//
//   node spec_facts.mjs NODE_MODULES SPEC
//
// {"routes": [["GET", "/healthz"], ...],
//  "error_codes": [...],                   the ErrorCode enum
//  "responses": [{"where": "GET /healthz 400", "status": 400,
//                 "codes": [...]}, ...]}   the codes each error answer
//                                          of an operation may carry
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

const [modules, specPath] = process.argv.slice(2);
const require = createRequire(path.join(path.resolve(modules), 'index.js'));
const YAML = require('yaml');
const spec = YAML.parse(readFileSync(specPath, 'utf8'));

function deref(obj) {
  let n = 0;
  while (obj && typeof obj.$ref === 'string' && n++ < 16) {
    obj = obj.$ref.replace(/^#\//, '').split('/')
      .reduce((o, p) => (o ? o[p] : undefined), spec);
  }
  return obj;
}

const allCodes = deref({ $ref: '#/components/schemas/ErrorCode' }).enum;

// The codes an answer of this schema may carry in error.code, or null if
// it is not an error schema. allOf narrows, oneOf/anyOf widen.
function codesOf(schema0) {
  const schema = deref(schema0);
  if (!schema || typeof schema !== 'object') return null;
  for (const k of ['oneOf', 'anyOf']) {
    if (schema[k]) {
      const sets = schema[k].map(codesOf).filter((s) => s !== null);
      return sets.length ? [...new Set(sets.flat())] : null;
    }
  }
  let codes = null;
  let isError = false;
  for (const part of schema.allOf ?? []) {
    const c = codesOf(part);
    if (c !== null) {
      isError = true;
      codes = codes === null ? c : codes.filter((x) => c.includes(x));
    }
  }
  const err = deref(schema.properties?.error);
  if (err) {
    isError = true;
    const code = deref(err.properties?.code);
    let own = null;
    if (code?.const !== undefined) own = [code.const];
    else if (code?.enum) own = code.enum;
    if (own !== null)
      codes = codes === null ? own : codes.filter((x) => own.includes(x));
  }
  if (!isError) return null;
  return codes ?? allCodes;
}

const routes = [];
const responses = [];
const methods = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch',
  'trace'];
for (const [pattern, item] of Object.entries(spec.paths ?? {})) {
  for (const m of methods) {
    const op = item[m];
    if (!op) continue;
    routes.push([m.toUpperCase(), pattern]);
    for (const [status, r0] of Object.entries(op.responses ?? {})) {
      const r = deref(r0);
      const schema = r?.content?.['application/json']?.schema;
      const codes = schema ? codesOf(schema) : null;
      if (codes !== null)
        responses.push({ where: `${m.toUpperCase()} ${pattern} ${status}`,
          status: Number(status), codes });
    }
  }
}
for (const [status, r0] of Object.entries(spec['x-unrouted-answers'] ?? {})) {
  const schema = deref(r0)?.content?.['application/json']?.schema;
  const codes = schema ? codesOf(schema) : null;
  if (codes !== null)
    responses.push({ where: `x-unrouted-answers ${status}`,
      status: status === 'default' ? null : Number(status), codes });
}
console.log(JSON.stringify({ routes, error_codes: allCodes, responses }));
