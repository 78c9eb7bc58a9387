import {Box, Text} from 'ink';
import {useEffect, useState} from 'react';
import {printable} from '../common/printable.js';
import type {DashboardFeed, JobOutputMessage} from './feed.js';

/** Lines kept of the start of the output; the rest of the room goes to its end. */
const HEAD_LINES = 3;

interface OutputLine {
  stream: 'stdout' | 'stderr';
  text: string;
  /** False while the command has not ended the line yet. */
  complete: boolean;
}

export interface OutputView {
  head: OutputLine[];
  /** Lines between head and tail not held, and bytes the daemon did not keep. */
  hiddenLines: number;
  skippedBytes: number;
  tail: OutputLine[];
  state?: string;
  missing?: boolean;
}

export function emptyOutput(): OutputView {
  return {head: [], hiddenLines: 0, skippedBytes: 0, tail: []};
}

/** Folds one piece of output into the view: the first HEAD_LINES lines and the last `room` are held, no more. */
export function addOutput(view: OutputView, message: JobOutputMessage, room: number): OutputView {
  if ('reset' in message) return emptyOutput();
  if ('missing' in message) return {...view, missing: true};
  if ('result' in message) return {...view, state: message.result.state};
  if ('skipped' in message) return {...view, skippedBytes: view.skippedBytes + message.skipped.bytes};
  const {stream, data} = message;
  const head = [...view.head];
  let tail = [...view.tail];
  const lines = data.split('\n');
  lines.forEach((text, index) => {
    const complete = index < lines.length - 1;
    if (index === lines.length - 1 && text === '') return;
    const open = [...head, ...tail].reverse().find((line) => line.stream === stream);
    if (index === 0 && open && !open.complete) {
      const list = tail.includes(open) ? tail : head;
      list[list.indexOf(open)] = {stream, text: open.text + text, complete};
      return;
    }
    if (head.length < HEAD_LINES && tail.length === 0) head.push({stream, text, complete});
    else tail.push({stream, text, complete});
  });
  let hiddenLines = view.hiddenLines;
  if (tail.length > room) {
    hiddenLines += tail.length - room;
    tail = tail.slice(tail.length - room);
  }
  return {...view, head, tail, hiddenLines};
}

function fitLine(text: string, width: number): string {
  const flat = printable(text.replace(/[\r\t]+/g, ' '));
  return flat.length > width ? `${flat.slice(0, Math.max(0, width - 1))}…` : flat;
}

/** A job's output in the details view: the head and the tail, followed live while the job runs. */
export function JobOutput({feed, jobId, lines, columns, colour}: {feed: DashboardFeed; jobId: string; lines: number; columns: number; colour: boolean}) {
  const [view, setView] = useState<OutputView>(emptyOutput);
  const room = Math.max(1, lines - HEAD_LINES - 1);
  useEffect(() => {
    setView(emptyOutput());
    return feed.output(jobId, (message) => setView((current) => addOutput(current, message, room)));
  }, [feed, jobId, room]);
  if (view.missing) return <Text dimColor={colour}>{'  (the daemon no longer keeps this job)'}</Text>;
  const gap = view.hiddenLines > 0 || view.skippedBytes > 0;
  const show = (line: OutputLine, index: number) => (
    <Text key={index} color={colour && line.stream === 'stderr' ? 'red' : undefined}>
      {fitLine(`  ${line.text}`, columns)}
    </Text>
  );
  return (
    <Box flexDirection="column">
      {view.head.length + view.tail.length === 0 ? <Text dimColor={colour}>{view.state ? '  (no output)' : '  (no output yet)'}</Text> : null}
      {view.head.map(show)}
      {gap ? (
        <Text dimColor={colour}>{`  … ${[view.hiddenLines > 0 ? `${view.hiddenLines} lines` : '', view.skippedBytes > 0 ? `${view.skippedBytes} bytes not kept` : ''].filter(Boolean).join(', ')} …`}</Text>
      ) : null}
      {view.tail.map((line, index) => show(line, HEAD_LINES + index))}
    </Box>
  );
}
