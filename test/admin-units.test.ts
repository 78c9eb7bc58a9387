import assert from 'node:assert/strict';
import {readFileSync} from 'node:fs';
import {describe, it} from 'node:test';
import {formatDuration, parseDuration} from '../src/common/duration.js';
import {execBody} from '../src/client/exec-client.js';
import {exitCodeOfJob} from '../src/client/exec-live.js';
import {funcJson} from '../src/protocol/func-json.js';
import {allowFromAdditions, parseBindList} from '../src/config/bind.js';
import {installSummary, planConfig} from '../src/admin/install.js';
import {journalArgs, parseJournalLine, renderEntry} from '../src/admin/logs.js';
import {parseLegacyConfig} from '../src/admin/legacy-config.js';
import {renderUnits} from '../src/admin/unit.js';

describe('the systemd unit', () => {
  const units = renderUnits({allowSetuid: false, stopTimeoutSeconds: 60});
  const unit = units.daemon;
  const {runner} = units;
  const setuid = renderUnits({allowSetuid: true, stopTimeoutSeconds: 60}).runner;

  it('runs serve as its own user, ready when it says so, watched, restarts on failure, reloads with SIGHUP, after network, docker and the command runner', () => {
    for (const line of [
      'Type=notify',
      'NotifyAccess=all',
      'WatchdogSec=30',
      'User=dffs-daemon',
      'Group=dffs-daemon',
      'ExecStart=/usr/local/bin/dataflux-func-sidecar serve --config /etc/dataflux-func-sidecar',
      'ExecReload=/bin/kill -HUP $MAINPID',
      'Restart=on-failure',
      'TimeoutStopSec=60',
      'After=network-online.target docker.service dataflux-func-sidecar-commands.socket',
      'Requires=dataflux-func-sidecar-commands.socket',
      'RuntimeDirectory=dataflux-func-sidecar',
      'WantedBy=multi-user.target',
      'UMask=0077',
      'StateDirectoryMode=0700',
      'NoNewPrivileges=yes',
      'ProtectSystem=strict',
      'Environment=DFFS_COMMAND_RUNNER=/run/dataflux-func-sidecar-commands.sock',
    ]) {
      assert.ok(unit.split('\n').includes(line), line);
    }
  });

  it('runs commands as dffs through a runner only the daemon can reach, with their own cgroups and the usual mask', () => {
    for (const line of ['ListenStream=/run/dataflux-func-sidecar-commands.sock', 'SocketUser=dffs-daemon', 'SocketMode=0600', 'Accept=yes']) {
      assert.ok(units.runnerSocket.split('\n').includes(line), line);
    }
    for (const line of ['User=dffs', 'ExecStart=/usr/local/lib/dataflux-func-sidecar/current/dist/dffs-spawn --own-cgroup', 'StandardInput=socket', 'StandardOutput=socket', 'Delegate=yes', 'KillMode=control-group', 'UMask=0022', 'TasksMax=4096']) {
      assert.ok(runner.split('\n').includes(line), line);
    }
  });

  it('uses none of the directives that break commands', () => {
    for (const text of [runner, setuid]) {
      assert.doesNotMatch(text, /^NoNewPrivileges=/m);
      assert.doesNotMatch(text, /^MemoryDenyWriteExecute=/m);
      assert.doesNotMatch(text, /^ProtectSystem=strict/m);
      assert.doesNotMatch(text, /^(PrivateTmp|ProtectHome|PrivateUsers|ProtectProc|ProcSubset|PrivateDevices)=/m);
    }
  });

  it('leaves out every seccomp-based directive with --allow-setuid', () => {
    assert.match(runner, /^SystemCallFilter=/m);
    for (const key of ['SystemCallFilter', 'RestrictSUIDSGID', 'RestrictNamespaces', 'ProtectKernelTunables', 'LockPersonality', 'RestrictAddressFamilies']) {
      assert.doesNotMatch(setuid, new RegExp(`^${key}=`, 'm'), key);
    }
    assert.match(setuid, /^ProtectSystem=full$/m);
  });
});

describe('config on install', () => {
  it('imports the original Sidecar\'s KEY: value and KEY=value forms', () => {
    assert.deepEqual(parseLegacyConfig('BIND: 127.0.0.1:8099,172.17.0.1:8099\nSECRET_KEY: abcdefgh12345678\n'), {
      BIND: '127.0.0.1:8099,172.17.0.1:8099',
      SECRET_KEY: 'abcdefgh12345678',
    });
    assert.deepEqual(parseLegacyConfig('# comment\nBIND="0.0.0.0:8099"\r\nSECRET_KEY = \'quoted-key-1\'\nOTHER: x'), {BIND: '0.0.0.0:8099', SECRET_KEY: 'quoted-key-1'});
    assert.equal(parseLegacyConfig('hello world'), undefined);
  });

  it('creates defaults with a random key, keeps what exists, and changes only the keys given', () => {
    const now = new Date('2026-11-24T00:00:00Z');
    const fresh = planConfig(undefined, {}, now);
    assert.equal(fresh.config.BIND, '127.0.0.1:8099,172.17.0.1:8099');
    assert.equal(fresh.config.SECRET_KEY?.length, 32);
    assert.equal(fresh.config.SECRET_CREATED_AT, now.toISOString());
    const existing = JSON.stringify({BIND: '127.0.0.1:9000', SECRET_KEY: 'kept-secret-key', MAX_RUNNING: 8});
    const same = planConfig(existing, {});
    assert.equal(same.changed, false);
    assert.deepEqual(same.config, JSON.parse(existing));
    const rebound = planConfig(existing, {bind: '[::1]:9000'});
    assert.deepEqual(rebound.config, {BIND: '[::1]:9000', SECRET_KEY: 'kept-secret-key', MAX_RUNNING: 8});
    assert.equal(rebound.changed, true);
    const legacy = planConfig('BIND: 127.0.0.1:8099\nSECRET_KEY: legacy-key-123\n', {});
    assert.equal(legacy.legacy, true);
    assert.equal(legacy.config.SECRET_KEY, 'legacy-key-123');
    // The original answered any address: its imported config still does.
    assert.equal(legacy.config.ALLOW_FROM, undefined);
    assert.equal(same.config.ALLOW_FROM, undefined);
  });

  it('writes ALLOW_FROM for a new config: loopback, Docker\'s bridge networks, and the bridges of this host outside them', () => {
    const interfaces = {
      lo: [{address: '127.0.0.1', netmask: '255.0.0.0', family: 'IPv4', mac: '', internal: true, cidr: '127.0.0.1/8'}],
      docker0: [{address: '172.17.0.1', netmask: '255.255.0.0', family: 'IPv4', mac: '', internal: false, cidr: '172.17.0.1/16'}],
      'br-1a2b': [{address: '192.168.50.1', netmask: '255.255.255.0', family: 'IPv4', mac: '', internal: false, cidr: '192.168.50.1/24'}],
      eth0: [{address: '10.1.2.3', netmask: '255.255.252.0', family: 'IPv4', mac: '', internal: false, cidr: '10.1.2.3/22'}],
    } as const;
    const fresh = planConfig(undefined, {}, new Date(), interfaces as never);
    assert.equal(fresh.config.ALLOW_FROM, '127.0.0.0/8,::1,172.16.0.0/12,192.168.50.0/24');
    assert.deepEqual(allowFromAdditions(fresh.config.ALLOW_FROM as string, parseBindList('127.0.0.1:8099,10.1.2.3:8099,https://192.168.50.1:8099'), interfaces as never), ['10.1.0.0/22']);
    assert.equal(planConfig(undefined, {allowFrom: '10.0.0.0/8'}, new Date(), interfaces as never).config.ALLOW_FROM, '10.0.0.0/8');
    assert.throws(() => planConfig(undefined, {allowFrom: '10.0.0.0/40'}), /ALLOW_FROM is invalid/);
  });

  it('never replaces a config it cannot read, and checks flags', () => {
    assert.throws(() => planConfig('{"BIND": 1}', {}), /BIND must be a string/);
    assert.throws(() => planConfig('random text', {}), /neither JSON nor the original Sidecar's/);
    assert.throws(() => planConfig(undefined, {bind: '0.0.0.0.8099'}), /not host:port/);
    assert.throws(() => planConfig(undefined, {secretKey: 'fifteen-chars-x'}), /--secret-key is too short: use at least 16 characters/);
  });

  it('prints the manual\'s block with start and stop the right way round', () => {
    const text = installSummary({bind: '127.0.0.1:8099,172.17.0.1:8099', secretKey: 'the-key'});
    assert.ok(text.startsWith('Bind:\n    127.0.0.1:8099,172.17.0.1:8099\nSecret Key:\n    the-key\nTo start:\n    sudo systemctl start dataflux-func-sidecar\nTo shutdown:\n    sudo systemctl stop dataflux-func-sidecar\n\nNow open 127.0.0.1:8099,172.17.0.1:8099 and have fun!'));
    assert.match(text, /Host 172\.17\.0\.1, Port 8099/);
  });
});

describe('exec requests', () => {
  it('encodes bodies byte for byte as Func\'s client does', () => {
    const {vectors} = JSON.parse(readFileSync(new URL('../../shared/protocol-vectors.json', import.meta.url), 'utf8')) as {vectors: {body: string}[]};
    assert.equal(
      funcJson({command: 'ls -l /tmp', wait: false, workdir: '/home', envs: ['MY_NAME=Tom'], callbackURL: 'http://172.17.0.1:8088/api/v1/al/auln-sidecar-callback'}),
      vectors[1].body,
    );
    assert.equal(funcJson({command: 'echo 你好', wait: true}), vectors[2].body);
    assert.equal(execBody({command: 'hostname', wait: true}), vectors[0].body);
  });

  it('maps results to exit codes as a shell would', () => {
    assert.equal(exitCodeOfJob({state: 'succeeded', exitCode: 0}), 0);
    assert.equal(exitCodeOfJob({state: 'failed', exitCode: 3}), 3);
    assert.equal(exitCodeOfJob({state: 'failed', exitCode: null, signal: 'SIGKILL'}), 137);
    assert.equal(exitCodeOfJob({state: 'timed-out', exitCode: null, signal: 'SIGTERM'}), 124);
    assert.equal(exitCodeOfJob({state: 'cancelled', exitCode: null, signal: 'SIGTERM'}), 130);
    assert.equal(exitCodeOfJob({state: 'failed', exitCode: null, signal: null, error: 'cannot start the command'}), 1);
  });
});

describe('logs', () => {
  it('asks journalctl for the unit as JSON, with filters that count matching lines', () => {
    assert.deepEqual(journalArgs({follow: false, lines: 20, refused: false, failed: false}), ['-u', 'dataflux-func-sidecar', '-o', 'json', '--no-pager', '-n', '20']);
    const args = journalArgs({follow: true, lines: 5, since: '1 hour ago', refused: true, failed: false});
    assert.deepEqual(args.slice(7), ['--since', '1 hour ago', '--grep', '"event":"request-refused"', '--follow']);
  });

  it('turns journal records into readable lines, with or without colour', () => {
    const event = {time: '2026-11-24T10:00:00.000Z', level: 'warn', event: 'request-refused', remote: '172.17.0.2', status: 401, reason: 'bad-signature', message: 'bad signature'};
    const entry = parseJournalLine(JSON.stringify({__REALTIME_TIMESTAMP: '1795543200000000', MESSAGE: JSON.stringify(event), _PID: '42'}));
    assert.equal(entry?.event?.type, 'request-refused');
    assert.equal(renderEntry(entry!, false), '2026-11-24T10:00:00.000Z WARN  request-refused remote=172.17.0.2 status=401 reason=bad-signature message="bad signature"');
    assert.match(renderEntry(entry!, true), /\u001b\[33mWARN/);
    const plain = parseJournalLine(JSON.stringify({__REALTIME_TIMESTAMP: '1795543200000000', MESSAGE: [104, 105]}));
    assert.equal(plain?.message, 'hi');
    assert.equal(parseJournalLine('not json'), undefined);
  });

  it('draws no terminal control from the journal, and shows a line that only looks like an event as text', () => {
    const record = (message: unknown) => JSON.stringify({__REALTIME_TIMESTAMP: '1795543200000000', MESSAGE: message});
    // A crash trace, say, with a request's text in it: bytes with ESC, and a line break.
    const raw = parseJournalLine(record([...Buffer.from('trace \x1b]0;owned\x07\n\x9b2J')]));
    assert.equal(renderEntry(raw!, false), '2026-11-24T18:00:00.000Z trace \ufffd]0;owned\ufffd \ufffd2J');
    for (const lookalike of ['{"time":"x","level":"info","event":"started"}', '{"time":"2026-11-24T10:00:00.000Z","event":"started"}', '{"time":"2026-11-24T10:00:00.000Z","level":"info","event":{"a":1}}']) {
      const entry = parseJournalLine(record(lookalike));
      assert.equal(entry?.event, undefined, lookalike);
      assert.equal(renderEntry(entry!, false), `2026-11-24T18:00:00.000Z ${lookalike}`);
    }
  });
});

describe('durations', () => {
  it('parses and formats', () => {
    assert.equal(parseDuration('90'), 90);
    assert.equal(parseDuration('15m'), 900);
    assert.equal(parseDuration('1h30m'), 5400);
    assert.equal(parseDuration('2d'), 172_800);
    assert.equal(parseDuration('10 minutes'), undefined);
    assert.equal(parseDuration('m'), undefined);
    assert.equal(formatDuration(0), '0s');
    assert.equal(formatDuration(3 * 86_400 + 4 * 3600 + 5), '3d 4h');
    assert.equal(formatDuration(125), '2m 5s');
  });
});
