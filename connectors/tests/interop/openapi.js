#!/usr/bin/env node
// Checks recorded FSPIOP HTTP requests against an OpenAPI 3 file (normally
// Mojaloop's FSPIOP v1.1 API, fspiop-rest-v1.1-openapi3-snippets.yaml), using
// openapi-backend's request validator (pinned in package.json next to this
// file) so that payhub's messages are judged by a third party's reading of
// the spec rather than by our own.
//
// Input, one JSON object on stdin:
//   {"spec": "<path to the OpenAPI yaml/json>",
//    "apiRoot": "/switch",          (optional prefix stripped from paths; default "/")
//    "messages": [{"method": "POST", "path": "/quotes?x=1",
//                  "headers": {"content-type": "...", "fspiop-source": "...", ...},
//                  "body": "<raw body text>" | null}, ...]}
// Output, one JSON array on stdout, one entry per message, in order:
//   [{"operation": "<operationId>" | null, "errors": ["...", ...]}, ...]
// An empty "errors" list means the message is valid. What is checked: the route
// (method + path), path parameters, the header parameters the operation declares
// (presence of the required ones, and their schemas), and the body against the
// operation's requestBody schema.
// Exit status 0 whenever the check could run (whatever it found); 1 if the
// input or the spec could not be read.
//
// Notes on openapi-backend 5.16 behaviour this script relies on or works around:
// - Header names are compared in lower case (the validator lower-cases both sides).
// - The validator picks the requestBody schema from the "application/json" entry
//   whatever the request's Content-Type says, so vendor types such as
//   "application/vnd.interoperability.quotes+json;version=1.1" are validated
//   against that schema (checked: a bad amount is reported under either type).
//   It JSON-parses a string body itself, but includes the body in the check only
//   if the parsed value is an object or Content-Type is exactly
//   "application/json"; with a vendor type, a non-JSON or non-object body would
//   just show up as "must have required property 'requestBody'". So the body is
//   parsed here, a parse failure is reported as such, and the "requestBody
//   missing" error is reworded.
// - Content-Type, Accept and Date are declared as plain strings in the FSPIOP
//   file (no pattern/enum), so only their presence is checked; the value of
//   Content-Type does not select or restrict anything. Likewise FSPIOP-Signature
//   etc. are only checked to be strings (jws.js is for signatures). Headers the
//   spec does not declare are allowed; undeclared query parameters are not.
// - strict: true makes openapi-backend fail (instead of console.warn and go on
//   with an empty API) when the spec does not load or is not valid OpenAPI.
//   Ajv itself runs with strict: false (also openapi-backend's default): the
//   spec uses OpenAPI-only keywords such as "example" that strict Ajv rejects,
//   and an unknown "format" is then ignored with a warning on stderr rather
//   than aborting. The FSPIOP v1.1 file uses no "format" at all, so no formats
//   are added. allErrors: true reports every problem, not just the first.
'use strict';

const fs = require('fs');
const yaml = require('js-yaml');
const { OpenAPIBackend } = require('openapi-backend');

// stdout carries only our JSON; route any library chatter to stderr.
console.log = console.info = console.error;

function fail(message) {
    process.stderr.write(`openapi.js: ${message}\n`);
    process.exit(1);
}

// Ajv error -> "where: what", e.g. "body.amount.amount: must match pattern ...".
function describe(error) {
    const [root, ...rest] = (error.instancePath || '').split('/').filter(Boolean);
    const place = { requestBody: 'body', header: 'header', path: 'path', query: 'query' }[root] || root;
    const where = place ? [place, ...rest].join('.') : 'request';
    let what = error.message || error.keyword;
    const p = error.params || {};
    if (p.allowedValues) what += ` (${p.allowedValues.join(', ')})`;
    if (p.additionalProperty) what += ` '${p.additionalProperty}'`;
    return `${where}: ${what}`;
}

async function main() {
    let input;
    try {
        input = JSON.parse(fs.readFileSync(0, 'utf8'));
    } catch (e) {
        fail(`stdin is not JSON: ${e.message}`);
    }
    if (!input || typeof input.spec !== 'string' || !Array.isArray(input.messages)) {
        fail('stdin must be {"spec": "<path>", "messages": [...]}');
    }
    for (const m of input.messages) {
        if (!m || typeof m.method !== 'string' || typeof m.path !== 'string') {
            fail('each message needs string "method" and "path"');
        }
    }

    let definition;
    try {
        definition = yaml.load(fs.readFileSync(input.spec, 'utf8'));
    } catch (e) {
        fail(`cannot read spec ${input.spec}: ${e.message}`);
    }
    const api = new OpenAPIBackend({
        definition,
        apiRoot: input.apiRoot || '/',
        strict: true,
        ajvOpts: { strict: false, allErrors: true },
    });
    try {
        await api.init();
    } catch (e) {
        fail(`cannot use spec ${input.spec}: ${e.message}`);
    }

    const results = input.messages.map((m) => {
        const errors = [];
        const req = { method: m.method, path: m.path, headers: m.headers || {} };

        let operation;
        try {
            // strict matching says whether it is the path or the method that is unknown
            operation = api.router.matchOperation(req, true);
        } catch (e) {
            const why = String(e.message).replace(/^\d+-\w+: /, '');
            return { operation: null, errors: [`no operation matches ${m.method} ${m.path}: ${why}`] };
        }

        let badBody = false;
        if (m.body !== null && m.body !== undefined && m.body !== '') {
            try {
                req.body = typeof m.body === 'string' ? JSON.parse(m.body) : m.body;
            } catch (e) {
                badBody = true;
                errors.push(`body: not valid JSON (${e.message})`);
            }
        }

        const result = api.validateRequest(req, operation);
        for (const error of result.errors || []) {
            const missing = error.params && error.params.missingProperty;
            // a body that did not parse has already been reported as such
            if (badBody && missing === 'requestBody') continue;
            errors.push(missing === 'requestBody'
                ? 'body: required but missing (or not a JSON object)'
                : describe(error));
        }
        return { operation: operation.operationId || null, errors };
    });

    process.stdout.write(`${JSON.stringify(results)}\n`);
}

main().catch((e) => fail(e && e.stack ? e.stack : String(e)));
