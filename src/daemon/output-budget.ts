// The output a running command keeps (up to OUTPUT_LIMIT), within what all of them may hold
// together (OUTPUT_BUDGET): the reply's stdout and stderr.

/**
 * The output that running commands hold in memory, all together. Past it, output is counted and
 * not kept, and the largest holders give back the end of what they kept, so that a command that
 * prints little still gets its output whole while one that prints hundreds of megabytes is cut.
 */
export class OutputBudget {
  #held = 0;
  readonly #holders = new Set<CappedOutput>();

  constructor(public total: number) {}

  get held(): number {
    return this.#held;
  }

  /** How many of `wanted` more bytes `output` may keep. */
  grant(output: CappedOutput, wanted: number): number {
    this.#holders.add(output);
    let free = this.total - this.#held;
    while (free < wanted) {
      let largest = output;
      for (const holder of this.#holders) if (holder.kept > largest.kept) largest = holder;
      // Room is taken only while the holder keeps at least as much as this one would have.
      const spare = Math.floor((largest.kept - output.kept - free) / 2);
      if (largest === output || spare <= 0) break;
      const taken = largest.shrink(Math.min(spare, wanted - free));
      this.#held -= taken;
      free += taken;
    }
    const granted = Math.max(0, Math.min(wanted, free));
    this.#held += granted;
    return granted;
  }

  release(output: CappedOutput): void {
    if (this.#holders.delete(output)) this.#held -= output.kept;
  }
}

/** How many bytes of `bytes` end on a whole UTF-8 character: a lead byte whose sequence is cut off goes. */
function completeUtf8Length(bytes: Buffer): number {
  for (let back = 1; back <= Math.min(3, bytes.length); back++) {
    const byte = bytes[bytes.length - back];
    if ((byte & 0xc0) === 0x80) continue;
    const needed = byte >= 0xf0 ? 4 : byte >= 0xe0 ? 3 : byte >= 0xc0 ? 2 : 1;
    return needed > back ? bytes.length - back : bytes.length;
  }
  return bytes.length;
}

/** Keeps the first `limit` bytes of a stream, within the shared budget, and counts the rest. */
export class CappedOutput {
  readonly #chunks: Buffer[] = [];
  #kept = 0;
  #cut = false;
  total = 0;

  constructor(
    readonly limit: number,
    private readonly budget: OutputBudget,
  ) {}

  get kept(): number {
    return this.#kept;
  }

  get truncated(): boolean {
    return this.total > this.#kept;
  }

  push(chunk: Buffer): void {
    this.total += chunk.length;
    // Once cut, nothing more is kept: what is kept stays the start of the output, without a gap.
    const room = this.#cut ? 0 : Math.min(this.limit - this.#kept, chunk.length);
    if (room <= 0) return;
    const granted = this.budget.grant(this, room);
    if (granted < chunk.length) this.#cut = true;
    if (granted <= 0) return;
    const piece = granted === chunk.length ? chunk : chunk.subarray(0, granted);
    // A small piece of a large read buffer would keep all of it: copied, so the budget counts what is held.
    this.#chunks.push(piece.byteLength * 2 < piece.buffer.byteLength ? Buffer.from(piece) : piece);
    this.#kept += granted;
  }

  /** What is kept so far: the pieces (shared, not copied) and their length. */
  held(): {chunks: Buffer[]; bytes: number} {
    return {chunks: [...this.#chunks], bytes: this.#kept};
  }

  /** Gives back up to `bytes` from the end of what is kept; returns how many. */
  shrink(bytes: number): number {
    let left = Math.min(bytes, this.#kept);
    const given = left;
    while (left > 0) {
      const last = this.#chunks[this.#chunks.length - 1];
      if (last.length <= left) {
        this.#chunks.pop();
        left -= last.length;
      } else {
        this.#chunks[this.#chunks.length - 1] = last.subarray(0, last.length - left);
        left = 0;
      }
    }
    this.#kept -= given;
    if (given > 0) this.#cut = true;
    return given;
  }

  /** The kept bytes as text; they leave the budget. A cut inside a UTF-8 character drops its start. */
  take(): string {
    const bytes = Buffer.concat(this.#chunks, this.#kept);
    const text = bytes.toString('utf8', 0, this.truncated ? completeUtf8Length(bytes) : bytes.length);
    this.budget.release(this);
    this.#chunks.length = 0;
    return text;
  }
}
