/** Newline-delimited text as it comes, in pieces of any size: each whole line, once. */
export class LineBuffer {
  #buffered = '';

  /** Characters of a line not finished yet. */
  get pending(): number {
    return this.#buffered.length;
  }

  /** Calls `onLine` for each line the piece finishes; stops at the first that returns false. */
  push(piece: string, onLine: (line: string) => boolean | void): void {
    this.#buffered += piece;
    let newline;
    while ((newline = this.#buffered.indexOf('\n')) >= 0) {
      const line = this.#buffered.slice(0, newline);
      this.#buffered = this.#buffered.slice(newline + 1);
      if (onLine(line) === false) return;
    }
  }
}
