import assert from 'node:assert/strict';
import {describe, it} from 'node:test';
import {eventually} from './helpers.js';
import {useSandbox} from './sandbox.js';

// A container of its own: the watchdog test stops the daemon and shortens WatchdogSec.
const box = useSandbox('dffs-e2e-notify');
const KEY = 'e2e-notify-secret-key-0123456789';
const SERVICE = 'dataflux-func-sidecar';
const DROP_IN = `/etc/systemd/system/${SERVICE}.service.d/watchdog.conf`;

/** Properties of the service as `systemctl show` gives them. */
async function show(...properties: string[]): Promise<Record<string, string>> {
  const text = await box.ok(`systemctl show ${SERVICE} ${properties.map((property) => `-p ${property}`).join(' ')}`);
  return Object.fromEntries(text.split('\n').map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]));
}

/**
 * The notifications systemd takes for the service while `action` runs, as its debug log shows
 * them ("Got notification message from PID N (READY=1, STATUS=...)"), once `until` matches them.
 */
async function notificationsDuring(action: () => Promise<unknown>, until: RegExp): Promise<string> {
  await box.ok('systemd-analyze log-level debug');
  try {
    const cursor = await box.ok(`journalctl -u ${SERVICE} -n 0 --show-cursor | sed -n 's/^-- cursor: //p'`);
    await action();
    return await eventually(async () => {
      const journal = await box.ok(`journalctl -u ${SERVICE} --after-cursor '${cursor}' -o cat | grep 'notification message' || true`);
      return until.test(journal) ? journal : undefined;
    }, 10_000, `${until} in systemd's debug log`);
  } finally {
    await box.ok('systemd-analyze log-level info');
  }
}

/** A signed POST /shell written as a curl config, to be sent with `curl -s -K FILE` (once: its nonce is then spent). */
const captureRequest = (command: string, file: string) => `node /src/test/clients/capture-request.mjs ${KEY} ${JSON.stringify(command)} > ${file}`;

describe('the installed daemon under systemd: readiness, status and watchdog', () => {
  it('installs as a Type=notify service with NotifyAccess=all and a 30 s watchdog, active once install returns', async () => {
    await box.ok(`node /src/bin/run.js install --bind 127.0.0.1:8099 --secret-key ${KEY} >/dev/null`);
    assert.deepEqual(await show('Type', 'NotifyAccess', 'WatchdogUSec', 'ActiveState', 'SubState'), {
      Type: 'notify',
      NotifyAccess: 'all',
      WatchdogUSec: '30s',
      ActiveState: 'active',
      SubState: 'running',
    });
    // The daemon's only child relays its messages; commands run in the runner's unit, not here.
    const pid = (await show('MainPID')).MainPID;
    assert.match(await box.ok(`ps -o comm=,user= --ppid ${pid}`), /^dffs-notify\s+dffs-daemon$/);
    const notifier = await box.ok(`pgrep -P ${pid} -x dffs-notify`);
    // The unit's processes, by their cgroups (its cgroup.procs would show other containers' too on this sandbox's host).
    assert.equal(await box.ok(`ps -e -o pid=,unit= | awk '$2 == "${SERVICE}.service" {print $1}' | sort -n`), `${pid}\n${notifier}`);
  });

  it('returns from systemctl start only once the daemon serves: a signed request sent right after is answered', {timeout: 90_000}, async () => {
    for (const round of [1, 2, 3]) {
      await box.ok(`systemctl stop ${SERVICE}`);
      const answer = await box.ok(`${captureRequest(`echo ready-${round}`, '/tmp/ready.curl')} && systemctl start ${SERVICE} && curl -s -K /tmp/ready.curl`);
      assert.deepEqual([JSON.parse(answer).ok, JSON.parse(answer).data.stdout], [true, `ready-${round}\n`], answer);
    }
  });

  it('shows what it serves and runs in systemctl status and dffs-ctl status, updated as commands run', {timeout: 60_000}, async () => {
    assert.match(await box.ok(`systemctl status ${SERVICE} --no-pager --lines=0`), /^\s*Status: "serving 127\.0\.0\.1:8099; 0 running, 0 queued"$/m);
    // Long enough for a few dffs-ctl runs on a busy machine.
    await box.ok(`${captureRequest('sleep 12', '/tmp/sleep.curl')} && (curl -s -K /tmp/sleep.curl >/dev/null 2>&1 &)`);
    await eventually(async () => ((await show('StatusText')).StatusText === 'serving 127.0.0.1:8099; 1 running, 0 queued' ? true : undefined), 5_000, 'STATUS with the command running');
    const status = JSON.parse(await box.ok('dffs-ctl status --json'));
    assert.equal(status.unit.statusText, 'serving 127.0.0.1:8099; 1 running, 0 queued');
    assert.equal(status.unit.watchdogSeconds, 30);
    assert.ok(Date.now() - Date.parse(status.unit.watchdogPingedAt) < 20_000, `pinged within 15 s and a second: ${status.unit.watchdogPingedAt}`);
    assert.equal(status.running.length, 1, 'the daemon\'s own view agrees');
    const text = await box.ok('dffs-ctl status');
    assert.match(text, /^systemd: {2}serving 127\.0\.0\.1:8099; 1 running, 0 queued$/m);
    assert.match(text, /^Watchdog: 30s, last ping \d{4}-\d\d-\d\dT/m);
    await eventually(async () => ((await show('StatusText')).StatusText === 'serving 127.0.0.1:8099; 0 running, 0 queued' ? true : undefined), 20_000, 'STATUS with the command done');
  });

  it('reloads: RELOADING=1 and READY=1 reach systemd from the daemon\'s notifier, the same process serves on, active throughout', {timeout: 60_000}, async () => {
    const pid = (await show('MainPID')).MainPID;
    const notifier = await box.ok(`pgrep -P ${pid} -x dffs-notify`);
    const taken = await notificationsDuring(() => box.ok(`systemctl reload ${SERVICE}`), /READY=1/);
    assert.match(taken, new RegExp(`Got notification message from PID ${notifier} \\(RELOADING=1\\)[\\s\\S]*Got notification message from PID ${notifier} \\(READY=1, STATUS=serving 127\\.0\\.0\\.1:8099; 0 running, 0 queued\\)`));
    assert.deepEqual(await show('ActiveState', 'SubState', 'MainPID'), {ActiveState: 'active', SubState: 'running', MainPID: pid});
    // A reload that opens a listener: STATUS= follows it.
    assert.match(await box.ok('dffs-ctl bind 127.0.0.1:8099,127.0.0.1:8100'), /Applied to the running service/);
    await eventually(async () => ((await show('StatusText')).StatusText === 'serving 127.0.0.1:8099, 127.0.0.1:8100; 0 running, 0 queued' ? true : undefined), 5_000, 'STATUS with both addresses');
    assert.equal(JSON.parse(await box.ok(`${captureRequest('echo after-reload', '/tmp/reload.curl')} && curl -s -K /tmp/reload.curl`)).data.stdout, 'after-reload\n');
    assert.equal((await show('MainPID')).MainPID, pid);
  });

  it('restarts a daemon whose event loop is stopped (kill -STOP), by the watchdog, and serves again', {timeout: 90_000}, async () => {
    await box.ok(`mkdir -p ${DROP_IN.slice(0, DROP_IN.lastIndexOf('/'))} && printf '[Service]\\nWatchdogSec=3\\n' > ${DROP_IN} && systemctl daemon-reload && systemctl restart ${SERVICE}`);
    try {
      const before = await show('MainPID', 'NRestarts', 'WatchdogUSec');
      assert.equal(before.WatchdogUSec, '3s');
      // Running well, it is not restarted: its pings arrive.
      await new Promise((resolve) => setTimeout(resolve, 5000));
      assert.deepEqual(await show('MainPID', 'NRestarts'), {MainPID: before.MainPID, NRestarts: before.NRestarts});
      await box.ok(`kill -STOP ${before.MainPID}`);
      const after = await eventually(async () => {
        const state = await show('MainPID', 'NRestarts', 'ActiveState', 'SubState');
        return state.MainPID !== '0' && state.MainPID !== before.MainPID && state.ActiveState === 'active' && state.SubState === 'running' ? state : undefined;
      }, 30_000, 'a new daemon, started after the watchdog ended the stopped one');
      assert.equal(Number(after.NRestarts), Number(before.NRestarts) + 1);
      assert.match(await box.ok(`journalctl -u ${SERVICE} -o cat | grep -i watchdog`), /Watchdog timeout \(limit 3s\)![\s\S]*Failed with result 'watchdog'/);
      assert.equal((await box.sh(`kill -0 ${before.MainPID}`)).exitCode, 1, 'the stopped daemon is gone');
      assert.equal(JSON.parse(await box.ok(`${captureRequest('echo restarted', '/tmp/restarted.curl')} && curl -s -K /tmp/restarted.curl`)).data.stdout, 'restarted\n');
    } finally {
      await box.ok(`rm -f ${DROP_IN} && systemctl daemon-reload && systemctl restart ${SERVICE}`);
    }
    assert.equal((await show('WatchdogUSec')).WatchdogUSec, '30s');
  });

  it('says STOPPING=1 on stop and stops cleanly, the notifier with it', {timeout: 60_000}, async () => {
    const pid = (await show('MainPID')).MainPID;
    const notifier = await box.ok(`pgrep -P ${pid} -x dffs-notify`);
    const taken = await notificationsDuring(() => box.ok(`systemctl stop ${SERVICE}`), /STOPPING=1/);
    assert.match(taken, new RegExp(`Got notification message from PID ${notifier} \\(STOPPING=1, STATUS=stopping; 0 running, 0 queued\\)`));
    assert.deepEqual(await show('ActiveState', 'Result'), {ActiveState: 'inactive', Result: 'success'});
    assert.equal((await box.sh(`kill -0 ${notifier}`)).exitCode, 1);
    assert.match(await box.ok(`journalctl -u ${SERVICE} -o cat -n 20`), /"event":"stopping"[\s\S]*"event":"stopped"/);
  });
});
