#!/usr/bin/env node
// Cross-implementation check for payhub's FSPIOP JWS module
// (connectors/src/fspiop/jws.rs): signs and validates with Mojaloop's
// reference implementation, @mojaloop/sdk-standard-components (pinned in
// package.json next to this file), Jws.signer and Jws.validator.
//
// Protocol: one JSON object on stdin, one JSON object on stdout.
//   {"op":"sign","key":PEM,"method","url","headers":{...},"body":object|null}
//       -> {"headers":{...},"body":string|null}
//          The headers after signing (fspiop-signature, fspiop-uri and
//          fspiop-http-method added) and the body as it would be sent (the
//          signer replaces an object body by its stable stringification).
//          A null body is not signed and the headers come back unchanged:
//          the reference's request helpers never call the signer for GET
//          and DELETE (the signer itself throws "Cannot sign with no body").
//   {"op":"validate","publicKey":PEM,"source":fspId,"headers":{...},
//    "body":object | "rawBody":string}
//       -> {"valid":true} | {"valid":false,"error":message}
//          The body is what the reference's HTTP servers hand the validator:
//          the parsed JSON ("rawBody" is parsed here with JSON.parse, so
//          that the exact received bytes can be given).
//   {"op":"stringify","rawBody":string}
//       -> {"payload":string}
//          safe-stable-stringify(JSON.parse(rawBody)): the JWS payload the
//          validator computes from a received body.
// Header names are lower-cased first, as Node's HTTP server delivers them
// and as the reference's request helpers write them (the signer and the
// validator read lower-case names only).
// If the reference throws outside "validate", the output is
// {"error":"<message>"} and the exit status is 2; bad input to this script
// itself exits with status 1.
//
// Run: NODE_PATH=/root/.cache/payhub-sdk/node_modules node jws.js < request.json
'use strict';

// `require('@mojaloop/sdk-standard-components').Jws` is this module (the
// package's index re-exports it); loading only it takes 0.15 s, not 1.7 s.
const Jws = require('@mojaloop/sdk-standard-components/src/lib/jws');
const safeStringify = require('safe-stable-stringify');

// The signer and validator insist on a logger; this one says nothing.
const silentLogger = {
    isDebugEnabled: () => false,
    child() { return silentLogger; },
    debug() {},
    info() {},
    warn() {},
    error() {},
};

function lowerCaseKeys(headers) {
    const out = {};
    for (const [name, value] of Object.entries(headers || {})) {
        out[name.toLowerCase()] = value;
    }
    return out;
}

function sign(req) {
    const headers = lowerCaseKeys(req.headers);
    if (req.body === null || req.body === undefined) {
        return { headers, body: null };
    }
    const signer = new Jws.signer({ signingKey: req.key, logger: silentLogger });
    const requestOptions = { method: req.method, uri: req.url, headers, body: req.body };
    signer.sign(requestOptions);
    return { headers: requestOptions.headers, body: requestOptions.body };
}

function validate(req) {
    const validator = new Jws.validator({
        validationKeys: { [req.source]: req.publicKey },
        logger: silentLogger,
    });
    const body = typeof req.rawBody === 'string' ? JSON.parse(req.rawBody) : req.body;
    try {
        validator.validate({ headers: lowerCaseKeys(req.headers), body });
        return { valid: true };
    } catch (err) {
        return { valid: false, error: err.message };
    }
}

function stringify(req) {
    return { payload: safeStringify(JSON.parse(req.rawBody)) };
}

const OPS = { sign, validate, stringify };

function readStdin() {
    return new Promise((resolve, reject) => {
        const chunks = [];
        process.stdin.on('data', (chunk) => chunks.push(chunk));
        process.stdin.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
        process.stdin.on('error', reject);
    });
}

function fail(status, message) {
    process.stdout.write(JSON.stringify({ error: message }) + '\n');
    process.exit(status);
}

async function main() {
    let req;
    try {
        req = JSON.parse(await readStdin());
    } catch (err) {
        return fail(1, `input is not JSON: ${err.message}`);
    }
    const op = OPS[req && req.op];
    if (!op) return fail(1, `unknown op ${JSON.stringify(req && req.op)}`);
    if (req.op === 'sign' && (typeof req.key !== 'string' || typeof req.method !== 'string'
        || typeof req.url !== 'string')) {
        return fail(1, 'sign needs key, method and url strings');
    }
    if (req.op === 'validate' && (typeof req.publicKey !== 'string' || typeof req.source !== 'string')) {
        return fail(1, 'validate needs publicKey and source strings');
    }
    if (req.op === 'stringify' && typeof req.rawBody !== 'string') {
        return fail(1, 'stringify needs a rawBody string');
    }

    let out;
    try {
        out = op(req);
    } catch (err) {
        return fail(2, err.message);
    }
    process.stdout.write(JSON.stringify(out) + '\n');
}

main();
