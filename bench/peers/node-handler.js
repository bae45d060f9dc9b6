// A Node.js handler like the sender's own example: http + crypto built-ins, one process.
// Usage: API_SECRET_KEY=... node node-handler.js PORT
const http = require('http');
const crypto = require('crypto');
const secret = process.env.API_SECRET_KEY;

http.createServer((request, response) => {
    const send = (status, object, headers = {}) => {
        const body = JSON.stringify(object);
        response.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body), ...headers });
        response.end(body);
    };
    if (request.method !== 'POST') {
        return send(405, { reason: `Method ${request.method} is not allowed on this route` }, { Allow: 'POST' });
    }
    const chunks = [];
    request.on('data', (chunk) => chunks.push(chunk));
    request.on('end', () => {
        const signature = request.headers['x-signature'] || '';
        if (!/^[0-9a-fA-F]{64}$/.test(signature)) return send(400, { reason: 'missing or malformed x-signature' });
        const expected = crypto.createHmac('sha256', secret).update(Buffer.concat(chunks)).digest();
        if (!crypto.timingSafeEqual(expected, Buffer.from(signature, 'hex'))) {
            return send(400, { reason: 'x-signature does not match the body' });
        }
        send(200, { verified: true });
    });
}).listen(Number(process.argv[2]), '127.0.0.1');
