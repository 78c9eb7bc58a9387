import {Box, Text, useApp, useInput, useStdin, useStdout} from 'ink';
import {useEffect, useMemo, useState} from 'react';
import {formatDuration} from '../common/duration.js';
import {oneLine, printable} from '../common/printable.js';
import {applyMessage, callbackText, disconnected, initialState, matchesFilter, rateSeries, rowStateText, sparkline, type DashboardState, type RequestRow} from './model.js';
import {JobOutput} from './JobOutput.js';
import type {DashboardFeed} from './feed.js';
import {DEFAULT_KEY_NAME} from '../config/keys.js';

export interface DashboardProps {
  feed: DashboardFeed;
  colour: boolean;
  /** Called on each quit request (serve stops its daemon, and exits on `stopped`); without it, quitting exits at once. */
  onQuit?: () => void;
  /** Exit once the daemon reports it has stopped (serve); tui instead waits to reconnect. */
  exitWhenStopped?: boolean;
  now?: () => number;
}

type Mode = 'table' | 'detail' | 'help' | 'filter';

const HELP = [
  ['↑ ↓ / k j', 'select a request'],
  ['Enter', 'details of the selected request, with its output followed live'],
  ['c (details)', 'cancel the job shown, after a confirmation'],
  ['Esc', 'back'],
  ['/', 'filter by command, source or state (Enter keeps it, Esc clears it)'],
  ['p', 'pause or resume the table'],
  ['c', 'clear the table'],
  ['?', 'this help'],
  ['q', 'quit'],
];

function fit(text: string, width: number): string {
  if (width <= 0) return '';
  const flat = printable(text.replace(/[\r\n\t]+/g, ' '));
  return flat.length > width ? `${flat.slice(0, Math.max(0, width - 1))}…` : flat.padEnd(width);
}

function clock(time: number): string {
  return new Date(time).toISOString().slice(11, 19);
}

function durationText(row: RequestRow, now: number): string {
  if (row.durationMs !== undefined) {
    if (row.durationMs < 1000) return `${row.durationMs}ms`;
    return row.durationMs < 60_000 ? `${(row.durationMs / 1000).toFixed(1)}s` : formatDuration(row.durationMs / 1000);
  }
  if (row.state === 'running' && row.startedAt) return formatDuration((now - row.startedAt) / 1000);
  return '';
}

function stateColour(row: RequestRow): string | undefined {
  if (row.state === 'refused' || row.error || (row.state === 'finished' && row.exitCode !== 0)) return 'red';
  if (row.state === 'running' || row.state === 'queued' || row.timedOut) return 'yellow';
  return 'green';
}

function useTerminalSize(): {columns: number; rows: number} {
  const {stdout} = useStdout();
  const read = () => ({columns: stdout.columns || 80, rows: stdout.rows || 24});
  const [size, setSize] = useState(read);
  useEffect(() => {
    const onResize = () => setSize(read());
    stdout.on('resize', onResize);
    return () => {
      stdout.off('resize', onResize);
    };
  }, [stdout]);
  return size;
}

export function Dashboard({feed, colour, onQuit, exitWhenStopped = false, now = Date.now}: DashboardProps) {
  const {exit} = useApp();
  const {isRawModeSupported} = useStdin();
  const {columns, rows: height} = useTerminalSize();
  const [state, setState] = useState<DashboardState>(initialState);
  const [frozen, setFrozen] = useState<DashboardState | undefined>();
  const [clearedAt, setClearedAt] = useState(0);
  const [mode, setMode] = useState<Mode>('table');
  const [filter, setFilter] = useState('');
  const [selected, setSelected] = useState(0);
  const [stopping, setStopping] = useState(false);
  /** The job whose cancel waits for a yes, and what the last cancel came to. */
  const [confirmCancel, setConfirmCancel] = useState<string | undefined>();
  const [notice, setNotice] = useState('');
  const [, setTick] = useState(0);

  // The one place the dashboard ends; reached from the quit key, or when the daemon has stopped.
  const finish = () => exit();
  const quit = () => {
    if (!onQuit) return finish();
    setStopping(true);
    onQuit();
  };

  useEffect(
    () =>
      feed.subscribe((message) => {
        if (message.type === 'disconnected') setState((current) => disconnected(current, message.reason));
        else setState((current) => applyMessage(current, message));
        if (exitWhenStopped && message.type === 'event' && message.event.type === 'stopped') finish();
      }),
    [feed],
  );
  useEffect(() => {
    const timer = setInterval(() => setTick((tick) => tick + 1), 1000);
    return () => clearInterval(timer);
  }, []);

  const shown = frozen ?? state;
  const visible = useMemo(() => shown.rows.filter((row) => row.time > clearedAt && matchesFilter(row, filter)), [shown, clearedAt, filter]);
  const selectedRow = visible[Math.min(selected, visible.length - 1)];

  useInput(
    (input, key) => {
      if (input === 'c' && key.ctrl) return quit();
      if (mode === 'filter') {
        if (key.return) setMode('table');
        else if (key.escape) {
          setFilter('');
          setMode('table');
        } else if (key.backspace || key.delete) setFilter((text) => text.slice(0, -1));
        else if (input && !key.ctrl && !key.meta) setFilter((text) => text + input);
        setSelected(0);
        return;
      }
      if (confirmCancel) {
        const jobId = confirmCancel;
        setConfirmCancel(undefined);
        if (input !== 'y') return setNotice('not cancelled');
        setNotice(`cancelling job ${jobId}…`);
        feed.cancel(jobId).then(
          (outcome) => setNotice(outcome === 'cancelling' ? `job ${jobId} is being cancelled` : outcome === 'finished' ? 'the job had already ended' : 'the daemon no longer knows this job'),
          (error: Error) => setNotice(`cannot cancel: ${error.message}`),
        );
        return;
      }
      if (key.escape) {
        setNotice('');
        return setMode('table');
      }
      if (input === 'q') return quit();
      if (mode === 'detail' && input === 'c' && selectedRow && (selectedRow.state === 'running' || selectedRow.state === 'queued')) {
        return setConfirmCancel(selectedRow.id);
      }
      if (input === '?') return setMode(mode === 'help' ? 'table' : 'help');
      if (mode !== 'table') return;
      if (key.upArrow || input === 'k') setSelected((index) => Math.max(0, index - 1));
      else if (key.downArrow || input === 'j') setSelected((index) => Math.min(Math.max(0, visible.length - 1), index + 1));
      else if (key.return && selectedRow) setMode('detail');
      else if (input === '/') setMode('filter');
      else if (input === 'p') setFrozen((current) => (current ? undefined : state));
      else if (input === 'c') {
        setClearedAt(now());
        setSelected(0);
      }
    },
    {isActive: isRawModeSupported === true},
  );

  const paint = (text: string, colourName?: string, extra: {bold?: boolean; inverse?: boolean; dim?: boolean} = {}) => (
    <Text color={colour ? colourName : undefined} bold={extra.bold} inverse={colour ? extra.inverse : false} dimColor={colour ? extra.dim : false}>
      {text}
    </Text>
  );

  const current = now();
  const {status, connection, counters} = shown;
  const uptime = status ? formatDuration((current - Date.parse(status.startedAt)) / 1000) : '-';
  const secret = status?.secret;
  const secretText = !secret
    ? ''
    : !secret.configured
      ? 'secret: NOT SET'
      : `secret: set${secret.createdAt ? ` ${formatDuration((current - Date.parse(secret.createdAt)) / 1000)} ago` : ''}${secret.oldKeyAcceptedUntil ? `, old key until ${clock(Date.parse(secret.oldKeyAcceptedUntil))}` : ''}`;
  const refusals = Object.entries(counters.refusedByReason).map(([reason, count]) => `${reason} ${count}`).join(', ');
  const title = ` ${status?.version ?? ''}  up ${uptime}  pid ${status?.pid ?? '-'}  `;
  const connectionText = connection.connected
    ? stopping
      ? 'stopping…'
      : frozen
        ? 'PAUSED'
        : 'live'
    : status
      ? `disconnected: ${connection.reason ?? ''} (retrying)`
      : 'connecting…';

  const header = (
    <Box flexDirection="column">
      <Text>
        {paint('DataFlux Func Sidecar', 'cyan', {bold: true})}
        {title}
        {paint(fit(`[${connectionText}]`, columns - 21 - title.length).trimEnd(), connection.connected && !frozen ? 'green' : 'yellow')}
      </Text>
      <Text>{fit(`config ${status?.configPath ?? '-'}  ${secretText}`, columns)}</Text>
      <Text>
        {fit(`bind ${shown.binds.map((bind) => `${bind.address} ${bind.state}${bind.port && bind.address.endsWith(':0') ? ` (port ${bind.port})` : ''}`).join('  ') || '-'}`, columns)}
      </Text>
      <Text>
        {fit(
          `requests ${counters.requests}  ok ${counters.succeeded}  failed ${counters.failed}  timed out ${counters.timedOut}  refused ${counters.refused}  running ${shown.running}  queued ${shown.queued}`,
          columns,
        )}
      </Text>
      <Text>
        {'rate '}
        {paint(sparkline(rateSeries(shown.rate, current)), 'cyan')}
        {fit(` per 10 s, 5 min${refusals ? `  refused: ${refusals}` : ''}`, Math.max(0, columns - 35))}
      </Text>
    </Box>
  );

  const footer = (
    <Text>
      {paint(
        fit(mode === 'filter' ? `filter: ${filter}█  (Enter keep, Esc clear)` : `↑↓ select  Enter details  / filter${filter ? ` [${filter}]` : ''}  p pause  c clear  ? help  q quit`, columns),
        undefined,
        {dim: mode !== 'filter'},
      )}
    </Text>
  );

  if (mode === 'help') {
    return (
      <Box flexDirection="column">
        {header}
        <Text bold>Keys</Text>
        {HELP.map(([keys, what]) => (
          <Text key={keys}>{fit(`  ${keys.padEnd(12)} ${what}`, columns)}</Text>
        ))}
        <Text dimColor={colour}>Esc or ? to go back</Text>
      </Box>
    );
  }

  if (mode === 'detail' && selectedRow) {
    const row = selectedRow;
    const lines: [string, string][] = [
      ['request', row.id],
      ['time', new Date(row.time).toISOString()],
      ['source', row.remote],
      ['key', row.key ?? '(not known)'],
      ...(row.refusal
        ? ([['refused', `HTTP ${row.refusal.status} ${row.refusal.reason}: ${row.refusal.message}`]] as [string, string][])
        : ([
            ['command', row.command],
            ['mode', row.wait ? 'wait for output' : 'async (wait=false)'],
            ['workdir', row.workdir ?? '(default)'],
            ['env keys', row.envKeys.length > 0 ? `${row.envKeys.join(', ')} (values hidden)` : '(none)'],
            ['timeout', row.timeoutSeconds === undefined ? '' : `${row.timeoutSeconds} s`],
            ['state', rowStateText(row)],
            ['exit code', row.exitCode === undefined ? '' : String(row.exitCode)],
            ['signal', row.signal ?? ''],
            ['pid', row.pid === undefined ? '' : String(row.pid)],
            ['started', row.startedAt ? new Date(row.startedAt).toISOString() : ''],
            ['finished', row.finishedAt ? new Date(row.finishedAt).toISOString() : ''],
            ['duration', durationText(row, current)],
            ['output', row.stdoutBytes === undefined ? '' : `stdout ${row.stdoutBytes} B, stderr ${row.stderrBytes} B${row.truncated ? ' (truncated)' : ''}`],
            ['error', row.error ?? ''],
            ['callback', row.callback ? `${row.callback}: ${callbackText(row)}` : '(none)'],
            ...row.callbacks.map((attempt) => [`  attempt ${attempt.attempt}`, `${clock(attempt.time)} ${attempt.ok ? `delivered, HTTP ${attempt.status}` : `failed: ${attempt.error}`}`] as [string, string]),
          ] as [string, string][])),
    ];
    // Fields at their defaults give their room to the output.
    const shownLines = lines.filter(([, value]) => value !== '' && value !== '(default)' && value !== '(none)');
    const cancellable = row.state === 'running' || row.state === 'queued';
    return (
      <Box flexDirection="column">
        {header}
        <Text bold>Request details</Text>
        {shownLines.map(([label, value]) => (
          <Text key={label} wrap="truncate">
            {paint(`${label.padEnd(11)} `, undefined, {dim: true})}
            {oneLine(value)}
          </Text>
        ))}
        {row.refusal ? null : (
          <>
            <Text bold>{row.state === 'running' ? 'Output (live)' : 'Output'}</Text>
            <JobOutput feed={feed} jobId={row.id} lines={Math.max(8, height - 9 - shownLines.length)} columns={columns} colour={colour} />
          </>
        )}
        {confirmCancel ? (
          paint(`Cancel job ${confirmCancel}? Its whole process tree ends. y to cancel, any other key to keep it`, 'yellow', {bold: true})
        ) : (
          <Text dimColor={colour}>{fit(`${notice ? `${notice}  ` : ''}Esc to go back${cancellable ? '  c cancel the job' : ''}`, columns)}</Text>
        )}
      </Box>
    );
  }

  const narrow = columns < 70;
  const widths = {time: 8, source: narrow ? 0 : 13, mode: 5, state: narrow ? 11 : 16, duration: 6, callback: narrow ? 0 : 8};
  const fixed = 2 + Object.values(widths).reduce((sum, width) => sum + width + (width > 0 ? 1 : 0), 0);
  const commandWidth = Math.max(8, columns - fixed);
  const tableRows = Math.max(3, height - 8);
  const start = Math.max(0, Math.min(selected - tableRows + 1, visible.length - tableRows));
  const page = visible.slice(Math.max(0, start), Math.max(0, start) + tableRows);
  const cells = (values: [string, number][]) =>
    values
      .filter(([, width]) => width > 0)
      .map(([text, width]) => fit(text, width))
      .join(' ');

  return (
    <Box flexDirection="column">
      {header}
      <Text bold>
        {`  ${cells([['TIME', widths.time], ['SOURCE', widths.source], ['COMMAND', commandWidth], ['MODE', widths.mode], ['STATE', widths.state], ['DUR', widths.duration], ['CALLBACK', widths.callback]])}`}
      </Text>
      {page.length === 0 ? (
        <Text dimColor={colour}>{filter ? `  no request matches "${filter}"` : '  no requests yet'}</Text>
      ) : (
        page.map((row) => {
          const isSelected = row === selectedRow;
          return (
            <Text key={row.id} inverse={colour && isSelected}>
              {isSelected ? '> ' : '  '}
              {cells([
                [clock(row.time), widths.time],
                [row.key && row.key !== DEFAULT_KEY_NAME ? `${row.remote} ${row.key}` : row.remote, widths.source],
                [row.refusal ? `[${row.refusal.reason}] ${row.refusal.message}` : row.command, commandWidth],
                [row.wait === undefined ? '' : row.wait ? 'wait' : 'async', widths.mode],
              ])}{' '}
              {paint(fit(row.refusal ? `refused ${row.refusal.status}` : rowStateText(row), widths.state), stateColour(row))}{' '}
              {cells([
                [durationText(row, current), widths.duration],
                [callbackText(row), widths.callback],
              ])}
            </Text>
          );
        })
      )}
      {footer}
    </Box>
  );
}
