import assert from 'node:assert/strict';
import {describe, it} from 'node:test';
import {fileURLToPath} from 'node:url';
import {execa, type ResultPromise} from 'execa';
import {showJob} from '../src/client/jobs-client.js';
import {eventually, processExists, startTestDaemon, TEST_SECRET} from './helpers.js';

const RUN_JS = fileURLToPath(new URL('../bin/run.js', import.meta.url));
/** Lines a second apart, each with the time it was printed (ms). */
const linesCommand = (count: number) => `for i in $(seq ${count}); do echo "line $i $(date +%s%3N)"; sleep 1; done`;

/** oclif folds an error over several lines: one line again, to match. */
const unfolded = (text: string) => text.replace(/\s*\n ›\s+/g, ' ');

function cli(url: string, args: string[]): ResultPromise<{reject: false; env: Record<string, string>; stdin: 'ignore'}> {
  // The URL through the environment: after `--`, a flag would be part of exec's command.
  return execa(process.execPath, [RUN_JS, ...args], {reject: false, env: {DFFS_URL: url, DFFS_SECRET_KEY: TEST_SECRET, NO_COLOR: '1'}, stdin: 'ignore'});
}

/** The lines a process writes to stdout, each with the time it arrived. */
function timedLines(child: ResultPromise): {text: string; at: number}[] {
  const lines: {text: string; at: number}[] = [];
  let partial = '';
  child.stdout!.on('data', (chunk: Buffer) => {
    const at = Date.now();
    partial += chunk.toString('utf8');
    const parts = partial.split('\n');
    partial = parts.pop()!;
    for (const text of parts) lines.push({text, at});
  });
  return lines;
}

function assertLive(lines: {text: string; at: number}[], count: number, joined: number, what: string): void {
  assert.deepEqual(lines.map((line) => line.text.split(' ').slice(0, 2).join(' ')), Array.from({length: count}, (_, index) => `line ${index + 1}`), what);
  for (const {text, at} of lines) {
    const printed = Number(text.split(' ')[2]);
    const late = at - Math.max(printed, joined);
    assert.ok(late < 300, `${what}: "${text}" shown ${late} ms after it was printed (or after joining)`);
  }
}

describe('dffs-ctl exec and jobs, as processes', () => {
  it('exec shows each line as the command prints it, and exits with its code', async () => {
    const {url} = await startTestDaemon();
    const child = cli(url, ['exec', '--', `${linesCommand(3)}; exit 5`]);
    const lines = timedLines(child);
    const result = await child;
    assert.equal(result.exitCode, 5, result.stderr);
    assertLive(lines, 3, 0, 'exec');
  });

  it('exec prints a burst of megabytes whole, on stdout and stderr', async () => {
    const {url} = await startTestDaemon();
    const result = await cli(url, ['exec', '--', 'seq 1 1000000; seq 1 200000 >&2; echo out']);
    assert.equal(result.exitCode, 0, result.stderr.slice(-500));
    assert.equal(result.stdout, `${Array.from({length: 1_000_000}, (_, index) => index + 1).join('\n')}\nout`);
    assert.equal(result.stderr, Array.from({length: 200_000}, (_, index) => index + 1).join('\n'));
  });

  it('jobs logs -f joined after 1.5 s gives what was kept at once, then each line as it is printed', async () => {
    const {url} = await startTestDaemon();
    const started = await cli(url, ['exec', '--no-wait', '--', linesCommand(4)]);
    const id = started.stdout.trim();
    assert.match(id, /^[0-9a-f-]{36}$/);
    await new Promise((resolve) => setTimeout(resolve, 1500));
    const child = cli(url, ['jobs', 'logs', '-f', id]);
    const lines = timedLines(child);
    assert.equal((await child).exitCode, 0);
    // It joined when the kept lines came (after its own start-up); the lines printed after came as printed.
    const joined = lines[0].at;
    assertLive(lines, 4, joined, 'jobs logs -f');
    assert.ok(Number(lines[3].text.split(' ')[2]) > joined, 'the last line was printed after jobs logs joined');
    const listed = JSON.parse((await cli(url, ['jobs', '--json'])).stdout) as {jobs: {id: string; state: string}[]};
    assert.deepEqual(listed.jobs.map((job) => [job.id, job.state]), [[id, 'succeeded']]);
    const shown = await cli(url, ['jobs', 'show', id]);
    assert.match(shown.stdout, /State: +succeeded/);
  });

  it('Ctrl-C without a terminal cancels the job: its tree ends, exec exits 130', async () => {
    const {url} = await startTestDaemon({KILL_GRACE: 1});
    const child = cli(url, ['exec', '--', 'echo started; sleep 60']);
    const lines = timedLines(child);
    await eventually(() => (lines.length > 0 ? true : undefined), 10_000, 'the first line');
    child.kill('SIGINT');
    const result = await child;
    assert.equal(result.exitCode, 130, result.stderr);
    assert.match(result.stderr, /cancelling job ([0-9a-f-]{36})/);
    const id = /cancelling job ([0-9a-f-]{36})/.exec(result.stderr)![1];
    const record = await showJob({baseUrl: url, secretKey: TEST_SECRET}, id);
    assert.equal(record.state, 'cancelled');
    assert.equal(processExists(record.pid!), false, 'the command is gone');
  });

  it('says clearly what is wrong: an unknown job, a finished one, a wrong key', async () => {
    const {url} = await startTestDaemon();
    const unknown = await cli(url, ['jobs', 'show', '00000000-0000-4000-8000-000000000000']);
    assert.equal(unknown.exitCode, 66);
    assert.match(unfolded(unknown.stderr), /no job 00000000-0000-4000-8000-000000000000: it is unknown/);
    const id = (await cli(url, ['exec', '--no-wait', 'true'])).stdout.trim();
    await eventually(async () => ((await showJob({baseUrl: url, secretKey: TEST_SECRET}, id)).state === 'succeeded' ? true : undefined));
    const finished = await cli(url, ['jobs', 'cancel', id]);
    assert.equal(finished.exitCode, 1);
    assert.match(unfolded(finished.stderr), /has already ended or is ending \(succeeded\)/);
    const wrongKey = await execa(process.execPath, [RUN_JS, 'jobs', '--url', url], {reject: false, env: {DFFS_SECRET_KEY: 'not-the-key-0123456789'}, stdin: 'ignore'});
    assert.equal(wrongKey.exitCode, 77);
    assert.doesNotMatch(wrongKey.stderr + wrongKey.stdout, /not-the-key|test-secret/);
  });
});
