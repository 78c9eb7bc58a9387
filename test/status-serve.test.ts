import assert from 'node:assert/strict';
import {dirname} from 'node:path';
import {describe, it} from 'node:test';
import {fileURLToPath} from 'node:url';
import {execa} from 'execa';
import {eventually, freePort, signedPost, startServeProcess, TEST_SECRET} from './helpers.js';

const RUN_JS = fileURLToPath(new URL('../bin/run.js', import.meta.url));

/** Terminal controls a caller could put in a command: a title change, a screen clear, a bell, and an 8-bit CSI. */
const ESCAPES = '\x1b]0;owned\x07\x1b[2J\x9b31m';
const CONTROL = /[\x00-\x08\x0b-\x1f\x7f-\x9f]/;

describe('dffs-ctl status --config and jobs, against a running serve', () => {
  it('show a running command on one line with its terminal controls made harmless, and --json keeps it exact', async () => {
    const port = await freePort();
    const serve = await startServeProcess({}, port);
    // A line break and a lookalike row: status must not show a second running command.
    const command = `sleep 30 # ${ESCAPES}\n  running 11111111-1111-1111-1111-111111111111 since now (pid 1): reboot`;
    const accepted = await signedPost(serve.url, {command, wait: false});
    assert.equal(accepted.status, 200);
    const jobId = accepted.json.data.jobId as string;
    await eventually(() => (serve.events.some((event) => event.event === 'command-started' && event.jobId === jobId) ? true : undefined), 5000, 'the command to start');
    // Where serve keeps its control socket: the test's runtime directory, beside the config.
    const configPath = String(serve.events.find((event) => event.event === 'started')?.config);
    const env = {XDG_RUNTIME_DIR: dirname(configPath), XDG_STATE_HOME: dirname(configPath), NO_COLOR: '1'};

    const text = await execa(process.execPath, [RUN_JS, 'status', '--config', configPath], {reject: false, env, stdin: 'ignore'});
    assert.equal(text.exitCode, 0, text.stdout + text.stderr);
    const line = text.stdout.split('\n').find((candidate) => candidate.includes(`running ${jobId}`));
    assert.ok(line, `no line for the running job in:\n${text.stdout}`);
    assert.doesNotMatch(text.stdout, CONTROL, 'status printed a terminal control');
    assert.ok(line.includes('sleep 30 # \uFFFD]0;owned\uFFFD\uFFFD[2J\uFFFD31m running 1111'), line);
    assert.equal(text.stdout.split('\n').filter((candidate) => candidate.trimStart().startsWith('running ')).length, 1, text.stdout);

    const json = await execa(process.execPath, [RUN_JS, 'status', '--config', configPath, '--json'], {reject: false, env, stdin: 'ignore'});
    assert.equal(json.exitCode, 0, json.stderr);
    assert.doesNotMatch(json.stdout, CONTROL, 'JSON escapes every control character');
    const running = (JSON.parse(json.stdout) as {running: {jobId: string; command: string}[]}).running;
    assert.equal(running.find((job) => job.jobId === jobId)?.command, command);

    // The job commands print the same command on one line, controls made harmless.
    const client = {env: {DFFS_URL: serve.url, DFFS_SECRET_KEY: TEST_SECRET, NO_COLOR: '1'}, reject: false, stdin: 'ignore'} as const;
    for (const args of [['jobs'], ['jobs', 'show', jobId], ['jobs', 'cancel', jobId]]) {
      const shown = await execa(process.execPath, [RUN_JS, ...args], client);
      assert.equal(shown.exitCode, 0, `${args.join(' ')}: ${shown.stderr}`);
      assert.doesNotMatch(shown.stdout, CONTROL, `${args.join(' ')} printed a terminal control`);
      assert.equal(shown.stdout.split('\n').filter((candidate) => candidate.includes('running 1111')).length, 1, `${args.join(' ')}:\n${shown.stdout}`);
      assert.ok(!shown.stdout.split('\n').some((candidate) => candidate.startsWith('  running ')), `${args.join(' ')}:\n${shown.stdout}`);
    }
  });
});
