import assert from 'node:assert/strict';
import {createServer, type Server} from 'node:http';
import type {AddressInfo} from 'node:net';
import {after, describe, it} from 'node:test';
import {startJob} from '../src/client/exec-live.js';
import {readOutput} from '../src/client/jobs-client.js';
import {jobTable} from '../src/client/job-format.js';
import type {JobRecordView} from '../src/protocol/job-record.js';
import {TEST_SECRET} from './helpers.js';

/** A server at the --url the operator gave that is not the sidecar (or a man in the middle of plain http): it answers every request with `body`. */
async function serverAnswering(status: number, body: string): Promise<string> {
  const server: Server = createServer((req, res) => {
    req.resume();
    res.writeHead(status, {'Content-Type': 'application/json'});
    res.end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  after(() => server.close());
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

const CONTROL = /[\x00-\x08\x0b-\x1f\x7f-\x9f\u202e]/;

describe('dffs-ctl against a server that is not the sidecar', () => {
  it('refuses output lines naming a stream it does not have or a count that is no count, before they reach a terminal', async () => {
    for (const line of ['{"stream":"ask","data":"cancel?"}', '{"skipped":{"stream":"stdout","bytes":"\\u001b]0;x\\u0007"}}', '{"stream":"stdout","data":7}', 'null']) {
      const url = await serverAnswering(200, `${line}\n{"result":{}}\n`);
      const seen: string[] = [];
      await assert.rejects(
        readOutput({baseUrl: url, secretKey: TEST_SECRET}, 'a', false, {data: (stream, text) => void seen.push(`${stream}:${text}`), skipped: (stream, bytes) => void seen.push(`${stream}:${bytes}`)}),
        (error: Error & {exitCode?: number}) => /is not the sidecar's/.test(error.message) && !CONTROL.test(error.message),
        line,
      );
      assert.deepEqual(seen, [], line);
    }
  });

  it('takes no job id that is not one of the daemon\'s, and shows its refusal message without controls', async () => {
    for (const jobId of ['../../jobs', '\x1b]0;owned\x07', '5f0c2a4e-8d1b-4c3f-a6e2-9b7d1e0f3c58\n']) {
      const url = await serverAnswering(200, JSON.stringify({ok: true, message: '', data: {jobId}}));
      await assert.rejects(startJob({baseUrl: url, secretKey: TEST_SECRET}, {command: 'true'}), /gave no job id/);
    }
    const url = await serverAnswering(403, JSON.stringify({ok: false, message: 'no \x1b]52;c;cm0gLXJm\x07 \x9b2J\n fake line'}));
    await assert.rejects(startJob({baseUrl: url, secretKey: TEST_SECRET}, {command: 'true'}), (error: Error) => !CONTROL.test(error.message) && !error.message.includes('\n'));
  });

  it('draws every cell of the jobs table on one line, without controls', () => {
    const job = {id: 'x\n  fake row', state: '\x1b]52;c;eA==\x07running', key: 'k\u202e', queuedAt: 'now', command: 'true', signal: 'SIG\x9bTERM'} as unknown as JobRecordView;
    const lines = jobTable([job]);
    assert.equal(lines.length, 2, lines.join('\n'));
    for (const line of lines) assert.doesNotMatch(line, CONTROL);
  });
});
