// The least a Node.js server can do for the benchmark's request, starting commands through the
// same dffs-spawn helper as the daemon: check the signature, run `/bin/sh -c`, answer with the
// output. No limits, queue, timeouts, log or events. `npm run bench` runs it beside the daemon to
// show what Node.js and the helper cost per request on the machine.
// Usage: BENCH_SECRET=... node bench/node-floor.mjs PORT HELPER
import {createRequire} from 'node:module';

const require = createRequire(import.meta.url);
const {createHmac, timingSafeEqual} = require('node:crypto');
const http = require('node:http');
const {spawn} = require('node:child_process');

const [port, helperPath] = process.argv.slice(2);
const secret = process.env.BENCH_SECRET;
const helper = spawn(helperPath, [], {env: {}, stdio: ['pipe', 'pipe', 'inherit']});
const jobs = new Map();
let nextId = 1;
let pending = Buffer.alloc(0);

helper.stdout.on('data', (chunk) => {
  let data = pending.length > 0 ? Buffer.concat([pending, chunk]) : chunk;
  while (data.length >= 4 && data.length >= 4 + data.readUInt32LE(0)) {
    const length = data.readUInt32LE(0);
    const type = String.fromCharCode(data[4]);
    const job = jobs.get(data.readUInt32LE(5));
    const payload = data.subarray(9, 4 + length);
    if (job && type === 'O') job.stdout.push(payload);
    if (job && type === 'E') job.stderr.push(payload);
    if (job && type === 'X') job.status = payload.readInt32LE(0);
    if (job && (type === 'C' || type === 'F')) {
      jobs.delete(data.readUInt32LE(5));
      job.done();
    }
    data = data.subarray(4 + length);
  }
  pending = data;
});

function run(command, done) {
  const id = nextId++;
  const job = {stdout: [], stderr: [], status: 0, done: () => done(job)};
  jobs.set(id, job);
  const payload = Buffer.from(`65536\0${command}\0\0PATH=/usr/bin:/bin\0`);
  const header = Buffer.alloc(9);
  header.writeUInt32LE(5 + payload.length, 0);
  header.write('S', 4, 'latin1');
  header.writeUInt32LE(id, 5);
  helper.stdin.write(Buffer.concat([header, payload]));
}

http
  .createServer((req, res) => {
    const chunks = [];
    req.on('data', (chunk) => chunks.push(chunk));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const {'x-auth-nonce': nonce, 'x-auth-timestamp': timestamp, 'x-auth-signature': signature = ''} = req.headers;
      const expected = createHmac('sha1', secret).update(`POST\n/shell\n${nonce}\n${timestamp}\n`).update(body).digest();
      const given = Buffer.from(signature, 'hex');
      if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
        res.writeHead(401).end();
        return;
      }
      run(JSON.parse(body.toString()).command, (job) => {
        const text = JSON.stringify({ok: true, message: '', data: {stdout: Buffer.concat(job.stdout).toString(), stderr: Buffer.concat(job.stderr).toString(), exitCode: job.status >> 8}});
        res.writeHead(200, {'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text)}).end(text);
      });
    });
  })
  .listen(Number(port), '127.0.0.1');
