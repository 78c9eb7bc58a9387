import fc from 'fast-check';
import assert from 'node:assert/strict';
import {describe, it} from 'node:test';
import {countEvent, emptyCounters, EventBus, type SidecarEvent} from '../src/daemon/events.js';
import {EventLog, formatEvent, LOG_BATCH_MS} from '../src/daemon/log.js';
import {terminalSafeJson} from '../src/common/printable.js';

describe('event bus and log lines', () => {
  it('keeps a bounded history, oldest first, where requests do not push out the daemon\'s own events', () => {
    const bus = new EventBus(3, 2);
    const refusal = (remote: string) => ({type: 'request-refused', remote, status: 401, reason: 'bad-signature', message: 'bad signature'}) as const;
    bus.emit({type: 'config-reloaded', changed: ['SECRET_KEY']});
    for (let i = 0; i < 5; i++) bus.emit(refusal(`r${i}`));
    bus.emit({type: 'bind-closed', address: 'a'});
    bus.emit(refusal('r5'));
    const names = () => bus.history().map((event) => (event.type === 'request-refused' ? event.remote : event.type));
    assert.deepEqual(names(), ['config-reloaded', 'r3', 'r4', 'bind-closed', 'r5']);
    bus.emit({type: 'bind-closed', address: 'b'});
    assert.deepEqual(names(), ['r3', 'r4', 'bind-closed', 'r5', 'bind-closed']);
  });

  it('counts outcomes', () => {
    const counters = emptyCounters();
    const base = {jobId: 'j', signal: null, durationMs: 1, stdoutBytes: 0, stderrBytes: 0, truncated: false};
    countEvent(counters, {type: 'request-refused', remote: '', status: 401, reason: 'bad-signature', message: ''});
    countEvent(counters, {type: 'command-finished', ...base, exitCode: 0, timedOut: false});
    countEvent(counters, {type: 'command-finished', ...base, exitCode: 2, timedOut: false});
    countEvent(counters, {type: 'command-finished', ...base, exitCode: null, timedOut: true});
    countEvent(counters, {type: 'callback-failed', jobId: 'j', attempt: 1, error: 'x', retryInMs: 10});
    countEvent(counters, {type: 'callback-failed', jobId: 'j', attempt: 2, error: 'x'});
    assert.deepEqual(
      {...counters},
      {...emptyCounters(), requests: 1, refused: 1, refusedByReason: {'bad-signature': 1}, succeeded: 1, failed: 1, timedOut: 1, callbacksFailed: 1},
    );
  });

  it('writes one line per event with newlines escaped, as JSON or text', () => {
    const bus = new EventBus();
    const event = bus.emit({type: 'request-accepted', jobId: 'j', remote: '127.0.0.1', key: 'default', command: 'echo a\necho b', wait: true, envKeys: ['A'], timeoutSeconds: 5});
    for (const json of [true, false]) {
      const line = formatEvent(event, json);
      assert.ok(!line.includes('\n'));
      assert.ok(line.includes('echo a\\necho b'));
    }
    assert.equal(JSON.parse(formatEvent(event, true)).event, 'request-accepted');
    assert.match(formatEvent(event, false), /^\S+Z INFO  request-accepted jobId=j remote=127.0.0.1 key=default command="echo a\\necho b" wait=true/);
  });

  it('writes no character a terminal acts on, as JSON or text, and the JSON parses back to the command', () => {
    const bus = new EventBus();
    // ESC and BEL (a title change), an 8-bit CSI, DEL, and a right-to-left override.
    const command = 'sleep 1 # \x1b]0;owned\x07 \x9b2J \x7f \u202eexe.sh';
    const event = bus.emit({type: 'request-accepted', jobId: 'j', remote: '127.0.0.1', key: 'default', command, wait: true, envKeys: [], timeoutSeconds: 5});
    for (const json of [true, false]) assert.doesNotMatch(formatEvent(event, json), /[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]/);
    assert.equal(JSON.parse(formatEvent(event, true)).command, command);
    assert.ok(formatEvent(event, false).includes('\\u009b2J \\u007f \\u202eexe.sh'));
    // A line in the journal that only looks like an event may have any field name.
    const named = {type: 'started', time: 0, level: 'info', '\x1b]0;owned\x07': 1} as unknown as SidecarEvent;
    assert.doesNotMatch(formatEvent(named, false), /[\x00-\x1f]/);
  });

  it('writes a JSON line exactly as JSON.stringify of time, level, event and the fields (named as identifiers, as events are) would, what a terminal acts on escaped', () => {
    const value = fc.oneof(fc.string({unit: 'binary'}), fc.integer(), fc.double(), fc.boolean(), fc.constant(null), fc.constant(undefined), fc.array(fc.string()));
    fc.assert(
      fc.property(fc.dictionary(fc.stringMatching(/^[A-Za-z_]\w{0,15}$/).filter((key) => !['time', 'level', 'type'].includes(key)), value), fc.integer({min: 0, max: 4e12}), (fields, time) => {
        // In the bus's key order (time, level, type first) and in another.
        for (const event of [{time, level: 'info', type: 'command-finished', ...fields}, {type: 'command-finished', ...fields, time, level: 'info'}] as unknown as SidecarEvent[]) {
          const {time: _time, level, type, ...rest} = event;
          const expected = {time: new Date(time).toISOString(), level, event: type, ...rest};
          assert.equal(formatEvent(event, true), terminalSafeJson(JSON.stringify(expected)));
          assert.deepEqual(JSON.parse(formatEvent(event, true)), JSON.parse(JSON.stringify(expected)));
        }
      }),
      {numRuns: 2000},
    );
  });
});

describe('the event log', () => {
  const event = (jobId: string): SidecarEvent => ({type: 'command-queued', jobId, queued: 1, time: Date.UTC(2026, 10, 30), level: 'info'});

  it('writes the events of a batch together, at most LOG_BATCH_MS after the first, one line each', async () => {
    const writes: string[] = [];
    const log = new EventLog(true, (text) => writes.push(text));
    log.add(event('a'));
    log.add(event('b'));
    assert.equal(writes.length, 0, 'nothing yet: the batch waits');
    await new Promise((resolve) => setTimeout(resolve, LOG_BATCH_MS * 3));
    assert.equal(writes.length, 1);
    assert.deepEqual(writes[0].trimEnd().split('\n').map((line) => JSON.parse(line).jobId), ['a', 'b']);
    log.add(event('c'));
    log.flush();
    assert.equal(writes.length, 2, 'flush writes what waits at once');
    assert.equal(JSON.parse(writes[1]).jobId, 'c');
  });

  it('writes a batch of a thousand events at once', () => {
    const writes: string[] = [];
    const log = new EventLog(false, (text) => writes.push(text));
    for (let index = 0; index < 1000; index++) log.add(event(String(index)));
    assert.equal(writes.length, 1);
    assert.equal(writes[0].trimEnd().split('\n').length, 1000);
  });
});
