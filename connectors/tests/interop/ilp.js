#!/usr/bin/env node
// Cross-implementation check for payhub's ILP module (connectors/src/fspiop/ilp.rs):
// computes the same values with Mojaloop's reference implementation,
// @mojaloop/sdk-standard-components (pinned in package.json next to this file).
//
// Protocol: one JSON object on stdin, one JSON object on stdout.
//   {"op":"quote-response","version","secret","quoteRequest","quoteResponse"}
//       -> {"fulfilment","condition","ilpPacket"}        (getQuoteResponseIlp)
//   {"op":"transaction-object","version","secret","ilpPacket"}
//       -> {"transactionObject"}                          (getTransactionObject)
//   {"op":"validate-transfer","version","secret","transfer"}
//       -> {"valid": bool}                                (validateIlpAgainstTransferRequest)
//   {"op":"validate-fulfil","version","secret","fulfilment","condition"}
//       -> {"valid": bool}                                (validateFulfil)
//   {"op":"fulfil-of-packet","version","secret","ilpPacket"}
//       -> {"fulfilment"}                                 (calculateFulfil)
// If the reference throws, the output is {"error": "<message>"} and the exit
// status is 2; bad input to this script itself exits with status 1.
//
// Run: NODE_PATH=/root/.cache/payhub-sdk/node_modules node ilp.js < request.json
'use strict';

const { Ilp } = require('@mojaloop/sdk-standard-components');

// The factory insists on a logger; this one says nothing.
const silentLogger = {
    isDebugEnabled: false,
    child() { return silentLogger; },
    debug() {},
    info() {},
    warn() {},
    error() {},
};

const OPS = {
    'quote-response': (ilp, req) => ilp.getQuoteResponseIlp(req.quoteRequest, req.quoteResponse),
    'transaction-object': (ilp, req) => ({ transactionObject: ilp.getTransactionObject(req.ilpPacket) }),
    'validate-transfer': (ilp, req) => ({ valid: ilp.validateIlpAgainstTransferRequest(req.transfer) }),
    'validate-fulfil': (ilp, req) => ({ valid: ilp.validateFulfil(req.fulfilment, req.condition) }),
    'fulfil-of-packet': (ilp, req) => ({ fulfilment: ilp.calculateFulfil(req.ilpPacket) }),
};

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
    if (req.version !== 'v1' && req.version !== 'v4') {
        return fail(1, `unknown version ${JSON.stringify(req.version)}`);
    }
    if (typeof req.secret !== 'string') return fail(1, 'secret must be a string');

    let out;
    try {
        const ilp = Ilp.ilpFactory(req.version, { secret: req.secret, logger: silentLogger });
        out = op(ilp, req);
    } catch (err) {
        return fail(2, err.message);
    }
    process.stdout.write(JSON.stringify(out) + '\n');
}

main();
