/**
 * Nonces seen within the timestamp window, in bounded memory.
 *
 * Entries leave in the order of their signed timestamps: expired ones first, then, when the cache
 * is full, the oldest. An evicted timestamp raises a floor, and a request at or below it is
 * refused as stale: a replay carries the signed timestamp of the request it copies, so an evicted
 * nonce cannot be accepted again. Only timestamps before the current second are evicted, so the
 * floor never passes it and fresh requests never look stale; a cache full of entries signed for
 * this second or later (more requests in a second than it holds, or a key holder's flood of
 * future-dated ones) takes no more until they can go, rather than forget one that could be replayed.
 */
export class ReplayCache {
  readonly #timestampOf = new Map<string, number>();
  /** The nonces of each signed second, and those seconds in ascending order. */
  readonly #bySecond = new Map<number, string[]>();
  readonly #seconds: number[] = [];
  #floor = -Infinity;

  constructor(readonly capacity = 200_000) {}

  get size(): number {
    return this.#timestampOf.size;
  }

  /** Timestamps below this are refused (see the class comment). */
  get floor(): number {
    return this.#floor;
  }

  belowFloor(timestamp: number): boolean {
    return timestamp < this.#floor;
  }

  has(nonce: string): boolean {
    return this.#timestampOf.has(nonce);
  }

  /** Raises the floor to `timestamp`, never past `now` (a floor restored from disk comes this way). */
  raiseFloor(timestamp: number, now: number): void {
    this.#floor = Math.max(this.#floor, Math.min(timestamp, now));
  }

  /**
   * Records a nonce; entries signed before `oldestValid` go first, then the oldest if the cache is
   * full. False when it is full of entries that cannot go yet (see the class comment).
   */
  add(nonce: string, timestamp: number, oldestValid: number, now: number): boolean {
    while (this.#seconds.length > 0 && this.#seconds[0] < oldestValid) this.#dropSecond();
    while (this.#timestampOf.size >= this.capacity) {
      if (this.#seconds[0] >= now) return false;
      this.#evictOldest(now);
    }
    this.#timestampOf.set(nonce, timestamp);
    const nonces = this.#bySecond.get(timestamp);
    if (nonces) nonces.push(nonce);
    else this.#insertSecond(timestamp, [nonce]);
    return true;
  }

  /** Every nonce with its timestamp, oldest first. */
  *entries(): Generator<[string, number]> {
    for (const second of this.#seconds) {
      for (const nonce of this.#bySecond.get(second) ?? []) yield [nonce, second];
    }
  }

  #insertSecond(second: number, nonces: string[]): void {
    this.#bySecond.set(second, nonces);
    // Timestamps mostly arrive in order: search from the end.
    let index = this.#seconds.length;
    while (index > 0 && this.#seconds[index - 1] > second) index--;
    this.#seconds.splice(index, 0, second);
  }

  #dropSecond(): void {
    const second = this.#seconds.shift() as number;
    for (const nonce of this.#bySecond.get(second) ?? []) this.#timestampOf.delete(nonce);
    this.#bySecond.delete(second);
  }

  #evictOldest(now: number): void {
    const second = this.#seconds[0];
    const nonces = this.#bySecond.get(second) as string[];
    this.#timestampOf.delete(nonces.pop() as string);
    if (nonces.length === 0) {
      this.#bySecond.delete(second);
      this.#seconds.shift();
    }
    this.raiseFloor(second + 1, now);
  }
}
