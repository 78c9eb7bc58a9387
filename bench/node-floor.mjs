// The least a Node.js server can do for the benchmark's request, starting commands through the
// same dffs-spawn.node as the daemon: check the signature, run `/bin/sh -c`, answer with the
// output. No limits, queue, timeouts, log or events. `npm run bench` runs it beside the daemon to
// show what Node.js and the spawner cost per request on the machine.
// Usage: BENCH_SECRET=... node bench/node-floor.mjs PORT ADDON
import {createRequire} from 'node:module';

const require = createRequire(import.meta.url);
const {createHmac, timingSafeEqual} = require('node:crypto');
const http = require('node:http');

const [port, addonPath] = process.argv.slice(2);
const secret = process.env.BENCH_SECRET;
const addon = {exports: {}};
process.dlopen(addon, addonPath);
const jobs = new Map();
let nextId = 1;
addon.exports.init(
  () => {},
  (id, status, stdout, stderr) => {
    const done = jobs.get(id);
    jobs.delete(id);
    done({stdout, stderr, status});
  },
);

function run(command, done) {
  const id = nextId++;
  jobs.set(id, done);
  addon.exports.spawn(id, Buffer.from(`65536\0${command}\0\0PATH=/usr/bin:/bin\0`));
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
        const text = JSON.stringify({ok: true, message: '', data: {stdout: job.stdout.toString(), stderr: job.stderr.toString(), exitCode: job.status >> 8}});
        res.writeHead(200, {'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text)}).end(text);
      });
    });
  })
  .listen(Number(port), '127.0.0.1');
