/**
 * Nonces seen within the timestamp window, in bounded memory.
 *
 * Entries leave in the order of their signed timestamps: expired ones first, then, when the cache
 * is full, the oldest. An evicted timestamp raises a floor, and a request below the floor is
 * refused as stale: a replay carries the signed timestamp of the request it copies, so an evicted
 * nonce cannot be accepted again. The floor never passes the current second, so that a flood of
 * requests signed with future timestamps cannot make fresh requests look stale.
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

  /** Records a nonce; entries signed before `oldestValid` go first, then the oldest if the cache is full. */
  add(nonce: string, timestamp: number, oldestValid: number, now: number): void {
    while (this.#seconds.length > 0 && this.#seconds[0] < oldestValid) this.#dropSecond();
    while (this.#timestampOf.size >= this.capacity) this.#evictOldest(now);
    this.#timestampOf.set(nonce, timestamp);
    const nonces = this.#bySecond.get(timestamp);
    if (nonces) nonces.push(nonce);
    else this.#insertSecond(timestamp, [nonce]);
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
