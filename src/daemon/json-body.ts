import type {Writable} from 'node:stream';
import {drainedOrClosed} from '../common/drained.js';

/**
 * Long strings are escaped this many UTF-16 units at a time: at most 96 KiB escaped, under V8's
 * large-object size, so each piece dies young instead of piling up until a full collection.
 */
const PIECE_LENGTH = 16 * 1024;

/** Whether a string is written whole, as one JSON.stringify, rather than escaped piece by piece. */
export function isShortString(text: string): boolean {
  return text.length <= PIECE_LENGTH;
}

/** A part of a JSON document: JSON text as is, or a string to write as a JSON string. */
export type JsonPart = string | {string: string};

function isHighSurrogate(code: number): boolean {
  return code >= 0xd800 && code <= 0xdbff;
}

/** Control characters JSON.stringify writes as two bytes (\b \t \n \f \r); the others take six (\u00XX). */
const SHORT_ESCAPES = new Set([0x08, 0x09, 0x0a, 0x0c, 0x0d]);

/** The UTF-8 length of JSON.stringify(text), without building it. */
function escapedByteLength(text: string): number {
  let bytes = 2;
  for (let index = 0; index < text.length; index++) {
    const code = text.charCodeAt(index);
    if (code < 0x20) bytes += SHORT_ESCAPES.has(code) ? 2 : 6;
    else if (code === 0x22 || code === 0x5c) bytes += 2;
    else if (code < 0x80) bytes += 1;
    else if (code < 0x800) bytes += 2;
    else if (isHighSurrogate(code) && (text.charCodeAt(index + 1) & 0xfc00) === 0xdc00) {
      bytes += 4;
      index++;
    } else if (code >= 0xd800 && code <= 0xdfff) bytes += 6;
    else bytes += 3;
  }
  return bytes;
}

/**
 * A JSON document whose strings (a command's output) are escaped a piece at a time while it is
 * written. Escaping can take 6 bytes per byte of output (NULs as \u0000), so the whole escaped
 * text of 10 MiB of output would be 60 MiB, twice over as a string and as a buffer; this way no
 * more than a piece exists at once. The text is exactly JSON.stringify's.
 */
export class JsonBody {
  #byteLength: number | undefined;
  /** The whole text of a small document, kept once built: measured and written from the same string. */
  #text: string | undefined;

  constructor(private readonly parts: readonly JsonPart[]) {}

  *pieces(): Generator<string> {
    for (const part of this.parts) {
      if (typeof part === 'string') {
        yield part;
        continue;
      }
      const text = part.string;
      if (isShortString(text)) {
        yield JSON.stringify(text);
        continue;
      }
      yield '"';
      for (let start = 0; start < text.length; ) {
        let end = Math.min(start + PIECE_LENGTH, text.length);
        // Never between the halves of a surrogate pair: each half alone would be escaped as \ud8xx.
        if (end < text.length && isHighSurrogate(text.charCodeAt(end - 1))) end--;
        yield JSON.stringify(text.slice(start, end)).slice(1, -1);
        start = end;
      }
      yield '"';
    }
  }

  /** Whether the document is short enough to write as one string. */
  get small(): boolean {
    return this.parts.every((part) => typeof part === 'string' || isShortString(part.string));
  }

  /** Bytes of the UTF-8 text, for Content-Length: of a large document, counted without escaping. */
  get byteLength(): number {
    this.#byteLength ??= this.small
      ? Buffer.byteLength(this.text())
      : this.parts.reduce((total, part) => total + (typeof part === 'string' ? Buffer.byteLength(part) : escapedByteLength(part.string)), 0);
    return this.#byteLength;
  }

  text(): string {
    this.#text ??= [...this.pieces()].join('');
    return this.#text;
  }

  /** Writes the document, waiting whenever the stream's buffer is full; stops if the stream closes. */
  async writeTo(stream: Writable): Promise<void> {
    for (const piece of this.small ? [this.text()] : this.pieces()) {
      if (stream.destroyed) return;
      if (!stream.write(piece)) await drainedOrClosed(stream);
    }
  }
}
