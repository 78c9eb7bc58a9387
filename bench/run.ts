/**
 * `npm run bench`: our daemon against adnanh/webhook (Debian's `webhook`, Go) on this machine, in
 * one run, with the same load generator (wrk, one thread) and equivalent requests. Ours are signed
 * per request with unique nonces, as Func signs them, and pre-built so wrk spends no CPU on them.
 * Prints a Markdown report and writes it to bench/results/<date>.md.
 *
 * Environment: BENCH_SECONDS (default 5) per load run, BENCH_ROUNDS (default 5) runs of each; BENCH_VARIANTS (default all), a comma list
 * of node20, node24, bundle.
 */
import {execa} from 'execa';
import {spawn, type ChildProcess} from 'node:child_process';
import {createHmac, randomBytes} from 'node:crypto';
import {existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync} from 'node:fs';
import {request} from 'node:http';
import {cpus, tmpdir, totalmem} from 'node:os';
import {join} from 'node:path';
import {fileURLToPath} from 'node:url';
import {execBody} from '../src/client/exec-client.js';
import {signRequest} from '../src/protocol/signature.js';
import {NODE_FLAGS} from '../src/admin/release.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const SECRET = randomBytes(24).toString('base64url');
const WORK = mkdtempSync(join(tmpdir(), 'dffs-bench-'));
const CONCURRENCY = [1, 8, 32];
const BIG_OUTPUT = 200 * 2 ** 20;
const started: ChildProcess[] = [];

interface LoadResult {
  rps: number;
  p50: number;
  p99: number;
  errors: number;
}

interface Server {
  name: string;
  url: string;
  pid: number;
  /** The wrk Lua script for `hostname`, fresh for each run (ours: new nonces and timestamps). */
  loadScript(expectedRequests: number): string;
  /** The request for a command, as [path, headers, body]. */
  call(command: string, wait: boolean): {path: string; headers: Record<string, string>; body: string};
}

function log(line: string): void {
  process.stderr.write(`bench: ${line}\n`);
}

const median = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];

async function ensureTools(): Promise<void> {
  const missing = [];
  for (const [command, pkg] of [['webhook', 'webhook'], ['wrk', 'wrk'], ['gcc', 'gcc']]) {
    if ((await execa('sh', ['-c', `command -v ${command}`], {reject: false})).exitCode !== 0) missing.push(pkg);
  }
  if (missing.length === 0) return;
  if (process.getuid?.() !== 0) throw new Error(`missing ${missing.join(', ')}: install them (apt-get install ${missing.join(' ')}) or run the benchmark as root`);
  log(`installing ${missing.join(', ')} with apt-get`);
  await execa('apt-get', ['install', '-y', '-qq', ...missing], {env: {DEBIAN_FRONTEND: 'noninteractive'}, stdin: 'ignore'});
}

function luaString(text: string): string {
  return `"${text.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\r/g, '\\r').replace(/\n/g, '\\n')}"`;
}

const LUA_DONE = `
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('{"requests":%d,"duration":%d,"p50":%d,"p99":%d,"errors":%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.status + e.timeout))
end
`;

async function waitAnswering(url: string, timeoutMs = 10_000): Promise<number> {
  const start = performance.now();
  for (;;) {
    try {
      await fetch(url, {signal: AbortSignal.timeout(500)});
      return performance.now() - start;
    } catch {
      if (performance.now() - start > timeoutMs) throw new Error(`${url} did not answer within ${timeoutMs} ms`);
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
  }
}

function startProcess(command: string, args: string[], env: Record<string, string> = {}): ChildProcess {
  const devNull = openSync('/dev/null', 'w');
  const child = spawn(command, args, {stdio: ['ignore', devNull, devNull], env: {...process.env, ...env}});
  started.push(child);
  return child;
}

async function stopProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}

function rssKiB(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  return Number(new RegExp(`${field}:\\s+(\\d+)`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]);
}

interface Variant {
  name: string;
  node: string;
  entry: string;
}

/** Our server: it takes Func's signed requests on a port. */
function signedServer(name: string, port: number, child: ChildProcess): Server & {child: ChildProcess} {
  const url = `http://127.0.0.1:${port}`;
  const call = (command: string, wait: boolean) => {
    const body = execBody({command, wait});
    return {path: '/shell', headers: {'Content-Type': 'application/json', ...signRequest(SECRET, 'POST', '/shell', body)}, body};
  };
  return {
    name,
    url,
    pid: child.pid ?? 0,
    child,
    call,
    loadScript(expectedRequests) {
      const requests: string[] = [];
      for (let i = 0; i < expectedRequests; i++) {
        const {headers, body} = call('hostname', true);
        const lines = [`POST /shell HTTP/1.1`, `Host: 127.0.0.1:${port}`, ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`), `Content-Length: ${Buffer.byteLength(body)}`, '', body];
        requests.push(luaString(lines.join('\r\n')));
      }
      return `local requests = {${requests.join(',\n')}}\nlocal i = 0\nrequest = function()\n  i = i + 1\n  return requests[i] or requests[#requests]\nend\n${LUA_DONE}`;
    },
  };
}

async function startOurs(variant: Variant, port: number): Promise<Server & {child: ChildProcess; readyMs: number}> {
  const directory = mkdtempSync(join(WORK, 'ours-'));
  const config = join(directory, 'config.json');
  writeFileSync(config, JSON.stringify({BIND: `127.0.0.1:${port}`, SECRET_KEY: SECRET}), {mode: 0o600});
  // With the Node flags of the installed wrappers; the log goes to /dev/null.
  const child = startProcess(variant.node, [...NODE_FLAGS, variant.entry, 'serve', '--config', config, '--no-dashboard'], {RUNTIME_DIRECTORY: directory});
  const server = signedServer(variant.name, port, child);
  return {...server, readyMs: await waitAnswering(`${server.url}/`)};
}

async function startWebhook(port: number): Promise<Server & {child: ChildProcess}> {
  const hooks = join(WORK, 'hooks.json');
  const hook = (id: string, includeOutput: boolean) => ({
    id,
    'execute-command': '/bin/sh',
    'pass-arguments-to-command': [{source: 'string', name: '-c'}, {source: 'payload', name: 'command'}],
    'include-command-output-in-response': includeOutput,
    'trigger-rule': {match: {type: 'payload-hmac-sha1', secret: SECRET, parameter: {source: 'header', name: 'X-Hub-Signature'}}},
  });
  writeFileSync(hooks, JSON.stringify([hook('shell', true), hook('shell-async', false)]));
  const child = startProcess('webhook', ['-hooks', hooks, '-ip', '127.0.0.1', '-port', String(port)]);
  const url = `http://127.0.0.1:${port}`;
  await waitAnswering(`${url}/`);
  const call = (command: string, wait: boolean) => {
    const body = JSON.stringify({command});
    const signature = `sha1=${createHmac('sha1', SECRET).update(body).digest('hex')}`;
    return {path: wait ? '/hooks/shell' : '/hooks/shell-async', headers: {'Content-Type': 'application/json', 'X-Hub-Signature': signature}, body};
  };
  return {
    name: 'webhook',
    url,
    pid: child.pid ?? 0,
    child,
    call,
    loadScript() {
      const {headers, body} = call('hostname', true);
      return `wrk.method = "POST"\nwrk.path = "/hooks/shell"\nwrk.body = ${luaString(body)}\n${Object.entries(headers).map(([k, v]) => `wrk.headers[${luaString(k)}] = ${luaString(v)}`).join('\n')}\n${LUA_DONE}`;
    },
  };
}

async function load(server: Server, connections: number, seconds: number): Promise<LoadResult> {
  const script = join(WORK, `load-${server.pid}-${connections}.lua`);
  // Enough signed requests for well above the machine's spawn rate.
  writeFileSync(script, server.loadScript(Math.ceil(4000 * seconds)));
  const {stdout} = await execa('wrk', ['-t1', `-c${connections}`, `-d${seconds}s`, '--timeout', '10s', '-s', script, server.url], {stdin: 'ignore'});
  rmSync(script);
  const result = JSON.parse(stdout.trim().split('\n').at(-1) ?? '{}') as {requests: number; duration: number; p50: number; p99: number; errors: number};
  return {rps: result.requests / (result.duration / 1e6), p50: result.p50 / 1000, p99: result.p99 / 1000, errors: result.errors};
}

/** One request, timed from send to the last byte of the reply. */
function timedCall(server: Server, command: string, wait: boolean): Promise<{ms: number; status: number; bytes: number}> {
  const {path, headers, body} = server.call(command, wait);
  const start = performance.now();
  return new Promise((resolve, reject) => {
    const req = request(`${server.url}${path}`, {method: 'POST', headers: {...headers, 'Content-Length': Buffer.byteLength(body)}}, (res) => {
      let bytes = 0;
      res.on('data', (chunk: Buffer) => (bytes += chunk.length));
      res.on('end', () => resolve({ms: performance.now() - start, status: res.statusCode ?? 0, bytes}));
    });
    req.on('error', reject);
    req.end(body);
  });
}

async function ackLatency(server: Server): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < 200; i++) times.push((await timedCall(server, 'true', false)).ms);
  return median(times);
}

async function peakRssUnderBigOutput(server: Server): Promise<{peakMiB: number; status: number}> {
  // NULs: the worst case for a JSON reply, each escaped as \u0000.
  const reply = await timedCall(server, `head -c ${BIG_OUTPUT} /dev/zero`, true);
  return {peakMiB: rssKiB(server.pid, 'VmHWM') / 1024, status: reply.status};
}

async function coldStarts(variant: Variant, url: string): Promise<{version: number; exec: number}> {
  const time = async (args: string[], runs: number) => {
    const times = [];
    for (let i = 0; i < runs; i++) {
      const start = performance.now();
      await execa(variant.node, [variant.entry, ...args], {env: {DFFS_SECRET_KEY: SECRET}, stdin: 'ignore'});
      times.push(performance.now() - start);
    }
    return median(times);
  };
  return {version: await time(['--version'], 21), exec: await time(['exec', '--url', url, 'hostname'], 11)};
}

async function serveReady(variant: Variant, port: number): Promise<number> {
  const times = [];
  for (let i = 0; i < 5; i++) {
    const server = await startOurs(variant, port);
    times.push(server.readyMs);
    await stopProcess(server.child);
  }
  return median(times);
}

async function machineLimit(): Promise<{sequential: number; perCore: number}> {
  const binary = join(WORK, 'spawn-baseline');
  await execa('gcc', ['-O2', '-o', binary, join(ROOT, 'bench/spawn-baseline.c')]);
  const rate = async (workers: number) => Number((await execa(binary, ['3', String(workers), 'hostname'])).stdout);
  return {sequential: await rate(1), perCore: await rate(cpus().length)};
}

const WANTED = (process.env.BENCH_VARIANTS ?? 'node20,node24,bundle').split(',');

async function node24Path(): Promise<string> {
  const {stdout} = await execa(join(ROOT, 'scripts/with-node24.sh'), ['node', '-p', 'process.execPath'], {stdin: 'ignore'});
  return stdout.trim();
}

async function variants(): Promise<Variant[]> {
  const wanted = WANTED;
  const list: Variant[] = [];
  const entry = join(ROOT, 'bin/run.js');
  if (!existsSync(join(ROOT, 'dist/commands/serve.js'))) throw new Error('dist/ is missing: run npm run build first');
  if (wanted.includes('node20')) list.push({name: `ours, Node ${process.versions.node}`, node: process.execPath, entry});
  if (wanted.includes('node24')) {
    const node24 = await node24Path();
    const version = (await execa(node24, ['--version'])).stdout.trim().slice(1);
    list.push({name: `ours, Node ${version}`, node: node24, entry});
  }
  if (wanted.includes('bundle')) {
    const {version} = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {version: string};
    const archive = join(ROOT, `release/dataflux-func-sidecar-${version}-linux-x64.tar.gz`);
    if (!existsSync(archive)) throw new Error(`${archive} is missing: run npm run bundle first, or leave bundle out of BENCH_VARIANTS`);
    await execa('tar', ['-xzf', archive, '-C', WORK]);
    const bundle = join(WORK, 'dataflux-func-sidecar/app');
    const nodeVersion = (await execa(join(bundle, 'runtime/bin/node'), ['--version'])).stdout.trim().slice(1);
    list.push({name: `ours, offline bundle (Node ${nodeVersion})`, node: join(bundle, 'runtime/bin/node'), entry: join(bundle, 'bin/run.js')});
  }
  return list;
}

const fmt = (value: number, digits = 0) => value.toLocaleString('en-US', {minimumFractionDigits: digits, maximumFractionDigits: digits});
/** Both units: ps and systemd show MiB, the targets are in MB. */
const memory = (mebibytes: number) => `${fmt(mebibytes, 1)} MiB (${fmt((mebibytes * 2 ** 20) / 1e6, 1)} MB)`;

interface Row {
  name: string;
  load: Record<number, LoadResult>;
  /** Per concurrency, each round's figure over webhook's in the same round (empty for webhook). */
  ratios: Record<number, {rps: number[]; p50: number[]}>;
  idleMiB: number;
  peakMiB?: number;
  /** The high-water mark after all the load runs. */
  loadPeakMiB: number;
  ackMs?: number;
  cold?: {version: number; exec: number};
  readyMs?: number;
}

/** The round with the median rate: rate, p50 and p99 come from one real run. */
function medianRun(runs: LoadResult[]): LoadResult {
  return [...runs].sort((a, b) => a.rps - b.rps)[Math.floor(runs.length / 2)];
}

async function main(): Promise<void> {
  await ensureTools();
  const machine = {
    cpu: cpus()[0]?.model.trim() ?? 'unknown',
    cores: cpus().length,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    kernel: (await execa('uname', ['-r'])).stdout.trim(),
    webhook: (await execa('webhook', ['-version'], {reject: false})).stdout.trim().replace(/^webhook version /, ''),
    wrk: (await execa('wrk', ['-v'], {reject: false})).stdout.split('\n')[0].replace(/ \[.*$/, ''),
  };
  log(`machine: ${machine.cores} cores, ${machine.cpu}`);
  const limit = await machineLimit();
  log(`machine limit: ${limit.sequential}/s sequential, ${limit.perCore}/s with ${machine.cores} workers`);

  // Every server runs for the whole benchmark; the load runs alternate between them, so that
  // whatever else the machine does weighs on all of them alike.
  const variantList = await variants();
  const servers: (Server & {child: ChildProcess; variant?: Variant})[] = [await startWebhook(18_200)];
  for (const [index, variant] of variantList.entries()) servers.push({...(await startOurs(variant, 18_201 + index)), variant});
  await new Promise((resolve) => setTimeout(resolve, 1000));
  const rows: Row[] = servers.map((server) => ({name: server.name, load: {}, ratios: {}, idleMiB: rssKiB(server.pid, 'VmRSS') / 1024, loadPeakMiB: 0}));

  for (const connections of CONCURRENCY) {
    const runs = servers.map((): LoadResult[] => []);
    for (let round = 0; round < ROUNDS; round++) {
      const order = servers.map((_, index) => index);
      if (round % 2 === 1) order.reverse();
      for (const index of order) {
        if (round === 0) await load(servers[index], connections, 1);
        runs[index].push(await load(servers[index], connections, SECONDS));
      }
    }
    for (const [index, server] of servers.entries()) {
      const result = (rows[index].load[connections] = medianRun(runs[index]));
      // Ratios from the rounds, each against webhook's run next to it: the machine's speed drifts
      // by more than the difference between the servers over a benchmark.
      rows[index].ratios[connections] = {
        rps: index === 0 ? [] : runs[index].map((run, round) => run.rps / runs[0][round].rps),
        p50: index === 0 ? [] : runs[index].map((run, round) => run.p50 / runs[0][round].p50),
      };
      const rounds = rows[index].ratios[connections].p50.map((ratio) => fmt(ratio, 3)).join(' ');
      log(`${server.name} c=${connections}: ${fmt(result.rps)} req/s, p50 ${fmt(result.p50, 2)} ms, errors ${result.errors}${rounds ? `; p50/webhook by round: ${rounds}` : ''}`);
    }
  }
  for (const [index, server] of servers.entries()) {
    rows[index].ackMs = await ackLatency(server);
    if (server.variant) rows[index].cold = await coldStarts(server.variant, server.url);
  }
  // On a fresh server each, so that the high-water mark is this command's.
  for (const [index, server] of servers.entries()) {
    rows[index].loadPeakMiB = rssKiB(server.pid, 'VmHWM') / 1024;
    await stopProcess(server.child);
    const fresh = server.variant ? await startOurs(server.variant, 18_201 + index - 1) : await startWebhook(18_200);
    const peak = await peakRssUnderBigOutput(fresh);
    if (peak.status !== 200) throw new Error(`${server.name} answered ${peak.status} to the 200 MiB command`);
    rows[index].peakMiB = peak.peakMiB;
    await stopProcess(fresh.child);
  }
  for (const [index, server] of servers.entries()) {
    if (server.variant) rows[index].readyMs = await serveReady(server.variant, 18_201 + index - 1);
  }

  const webhook = rows[0];
  const date = new Date().toISOString().slice(0, 10);
  const lines = [
    `# Benchmark, ${date}`,
    '',
    `Machine: ${machine.cores} cores (${machine.cpu}), ${machine.memoryGiB} GiB, Linux ${machine.kernel}. webhook ${machine.webhook} (Debian), ${machine.wrk} with one thread. Each server ran ${ROUNDS} times for ${SECONDS} s at each concurrency, the servers taking turns; req/s, p50 and p99 are those of its run with the median rate, and each ratio is the median of its ${ROUNDS} runs' ratios to webhook's run in the same round. Command: \`hostname\`, waiting for its output.`,
    '',
    `Machine limit (bench/spawn-baseline.c: vfork and exec of \`/bin/sh -c hostname\`, output read, reaped): **${fmt(limit.sequential)}/s** one at a time, **${fmt(limit.perCore)}/s** with ${machine.cores} processes.`,
    '',
    '| server | c | req/s | p50 ms | p99 ms | errors | req/s ours/webhook | p50 ours/webhook | p50 ours/webhook, lowest and highest round |',
    '|---|---|---|---|---|---|---|---|---|',
  ];
  for (const row of rows) {
    for (const c of CONCURRENCY) {
      const r = row.load[c];
      const {rps, p50} = row.ratios[c];
      const ratios = row === webhook ? ' |  | ' : `${fmt(median(rps), 2)} | ${fmt(median(p50), 2)} | ${fmt(Math.min(...p50), 2)} to ${fmt(Math.max(...p50), 2)}`;
      lines.push(`| ${row.name} | ${c} | ${fmt(r.rps)} | ${fmt(r.p50, 2)} | ${fmt(r.p99, 2)} | ${r.errors} | ${ratios} |`);
    }
  }
  lines.push(
    '',
    '| server | idle RSS | peak RSS, 200 MiB of NULs to stdout | peak RSS over the load runs | wait=false ack p50 | `dffs-ctl --version` cold (median) | `dffs-ctl exec hostname` cold (median) | `serve` ready (median) |',
    '|---|---|---|---|---|---|---|---|',
  );
  for (const row of rows) {
    const cold = row.cold ? `${fmt(row.cold.version)} ms | ${fmt(row.cold.exec)} ms | ${fmt(row.readyMs ?? 0)} ms` : '- | - | -';
    const ack = row.ackMs === undefined ? '-' : `${fmt(row.ackMs, 2)} ms`;
    lines.push(`| ${row.name} | ${memory(row.idleMiB)} | ${row.peakMiB === undefined ? '-' : memory(row.peakMiB)} | ${memory(row.loadPeakMiB)} | ${ack} | ${cold} |`);
  }
  lines.push('', 'Targets: req/s ours/webhook >= 1.00 at c=32; p50 ours/webhook <= 1.00 at c=1; idle RSS <= 60 MB; peak RSS <= 150 MB; `--version` <= 150 ms; `serve` ready <= 400 ms.', '');
  const report = lines.join('\n');
  mkdirSync(join(ROOT, 'bench/results'), {recursive: true});
  const file = join(ROOT, 'bench/results', `${date}.md`);
  writeFileSync(file, report);
  process.stdout.write(`${report}\n`);
  log(`written to ${file}`);
}

try {
  await main();
} finally {
  await Promise.all(started.map(stopProcess));
  rmSync(WORK, {recursive: true, force: true});
}
