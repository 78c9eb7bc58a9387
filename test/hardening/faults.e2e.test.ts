import assert from 'node:assert/strict';
import {describe, it} from 'node:test';
import {eventually} from '../helpers.js';
import {useSandbox} from '../sandbox.js';
import {useTally} from './tally.js';

const tally = useTally(import.meta.url);
const box = useSandbox('dffs-hardening-faults');
const CONFIG = '/etc/dataflux-func-sidecar';
const mainPid = async () => Number(await box.ok('systemctl show -p MainPID --value dataflux-func-sidecar'));
const configSum = () => box.ok(`sha256sum ${CONFIG}`);

describe('faults on a real systemd', () => {
  it('installs', async () => {
    await box.ok('node /src/bin/run.js install --bind 127.0.0.1:8099 --secret-key hardening-secret-key-0123456789 >/dev/null');
    assert.equal(await box.ok('dffs-ctl exec hostname'), await box.ok('hostname'));
  });

  it('refuses a workdir that dffs cannot enter, saying so', async () => {
    tally.faultsInjected++;
    const result = await box.sh('dffs-ctl exec --workdir /root pwd');
    assert.notEqual(result.exitCode, 0);
    // The command runner, as dffs, says so.
    assert.match(result.stderr, /spawn \/bin\/sh in \/root: Permission denied/);
  });

  it('kill -9 while commands run: systemd restarts it, the new daemon logs the lost commands, the config is intact', {timeout: 60_000}, async () => {
    const before = {pid: await mainPid(), config: await configSum()};
    await box.ok('dffs-ctl exec --no-wait "sleep 120; echo first" && dffs-ctl exec --no-wait "sleep 121; echo second"');
    await eventually(async () => {
      const running = JSON.parse(await box.ok('cat /var/lib/dataflux-func-sidecar/running.json')) as {pid?: number}[];
      return running.length === 2 && running.every((entry) => entry.pid) ? true : undefined;
    }, 10_000, 'running.json to list both commands');
    await box.ok(`kill -9 ${before.pid}`);
    tally.faultsInjected++;
    await eventually(async () => ((await mainPid()) !== before.pid && (await box.sh('dffs-ctl exec true')).exitCode === 0 ? true : undefined), 30_000, 'the service to be back');
    const lost = await box.ok('journalctl -u dataflux-func-sidecar -o cat | grep \'"event":"commands-lost"\'');
    assert.match(lost, /sleep 120; echo first/);
    assert.match(lost, /sleep 121; echo second/);
    assert.equal(await configSum(), before.config);
    assert.equal((await box.sh('pgrep -f "sleep 12[01]"')).exitCode, 1, 'the lost commands do not linger');
  });

  /** Runs a dffs-ctl command with /etc broken by `mount`, undone by `unmount`: it fails saying why, and the config stays. */
  const failsWithEtc = async (mount: string, unmount: string, command: string, why: RegExp) => {
    const before = await configSum();
    await box.ok(mount);
    tally.faultsInjected++;
    try {
      const result = await box.sh(command);
      assert.notEqual(result.exitCode, 0);
      assert.match(result.stderr, why);
    } finally {
      await box.ok(unmount);
    }
    assert.equal(await configSum(), before);
    assert.equal(await box.ok('dffs-ctl exec "echo still"'), 'still');
  };

  it('secret rotate on a read-only /etc: says what failed, the old config stays', async () => {
    await failsWithEtc('mount --bind /etc /etc && mount -o remount,bind,ro /etc', 'umount /etc', 'dffs-ctl secret rotate', /read-only file system/i);
  });

  it('bind on a full disk: says what failed, the old config stays', async () => {
    await failsWithEtc(
      'cp -a /etc /run/etc-copy && mount -t tmpfs -o size=24m tmpfs /etc && cp -a /run/etc-copy/. /etc/ && (dd if=/dev/zero of=/etc/filler bs=64k 2>/dev/null || true)',
      'umount /etc && rm -rf /run/etc-copy',
      'dffs-ctl bind 127.0.0.1:8099,127.0.0.1:8100',
      /no space left on device/i,
    );
  });

  it('a config corrupted by hand: serve refuses to start naming the file and the field, and status says the same', {timeout: 60_000}, async () => {
    const good = await box.ok(`cat ${CONFIG}`);
    await box.ok(`echo '{"BIND": "127.0.0.1:8099", "SECRET_KEY": 5}' > ${CONFIG}`);
    tally.faultsInjected++;
    try {
      await box.sh('systemctl restart dataflux-func-sidecar');
      const journal = await eventually(async () => {
        const text = await box.ok('journalctl -u dataflux-func-sidecar -o cat -n 30');
        return /SECRET_KEY/.test(text) ? text : undefined;
      }, 15_000, 'the refusal in the journal');
      assert.match(journal, new RegExp(`${CONFIG}.*SECRET_KEY|SECRET_KEY.*${CONFIG}`));
      const status = await box.sh('dffs-ctl status');
      assert.notEqual(status.exitCode, 0);
      assert.match(`${status.stdout}\n${status.stderr}`, new RegExp(`${CONFIG}[^\\n]*SECRET_KEY`));
    } finally {
      await box.ok(`cat > ${CONFIG} <<'EOF'\n${good}\nEOF\nsystemctl reset-failed dataflux-func-sidecar; systemctl restart dataflux-func-sidecar`);
    }
    await eventually(async () => ((await box.sh('dffs-ctl exec true')).exitCode === 0 ? true : undefined), 20_000, 'the service to be back');
  });

  it('a fork bomb is capped by the unit and stopped by the timeout with its whole process group; the service carries on', {timeout: 60_000}, async () => {
    // TasksMax needs the cgroup pids controller, which this sandbox has read-only (a cgroup v1
    // host): systemd cannot enforce it here. LimitNPROC, a plain rlimit, caps the bomb anyway.
    // The command runner's unit: one instance, for the daemon's connection.
    assert.equal(await box.ok("systemctl show -p TasksMax -p LimitNPROC --value $(systemctl list-units --plain --no-legend 'dataflux-func-sidecar-commands@*' | awk '{print $1}')"), '4096\n4096');
    tally.faultsInjected++;
    // 15 s: on a busy machine the bomb took more than 3 s, once more than 8 s, to reach the cap.
    const bomb = await box.sh('dffs-ctl exec --timeout 15 "bomb() { bomb | bomb & }; bomb; sleep 30"');
    assert.equal(bomb.exitCode, 124, `timed out: ${bomb.stderr.slice(-300)}`);
    assert.match(bomb.stderr, /fork|Resource temporarily unavailable/i, 'the bomb hit the cap');
    // The command runner, dffs-spawn: nothing else of dffs.
    const runner = await box.ok('pgrep -u dffs -x dffs-spawn');
    await eventually(async () => ((await box.ok('pgrep -u dffs | paste -sd " "')) === runner ? true : undefined), 20_000, 'only the command runner left as dffs');
    assert.equal(await box.ok('dffs-ctl exec "echo alive"'), 'alive');
  });
});
