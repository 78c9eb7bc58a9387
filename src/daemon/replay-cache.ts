/**
 * Nonces seen within the timestamp window, in bounded memory.
 *
 * When the cache is full the oldest entry is evicted and its timestamp raises a floor: a request
 * at or below the floor is refused as stale. A replay carries the signed timestamp of the request
 * it copies, so an evicted nonce can never be accepted again.
 */
export class ReplayCache {
  readonly #seen = new Map<string, number>();
  #floor = -Infinity;

  constructor(readonly capacity = 200_000) {}

  get size(): number {
    return this.#seen.size;
  }

  /** Whether a timestamp is too old for the cache to vouch for (see the class comment). */
  belowFloor(timestamp: number): boolean {
    return timestamp <= this.#floor;
  }

  has(nonce: string): boolean {
    return this.#seen.has(nonce);
  }

  /** Records a nonce; entries older than `oldestValid` are pruned first. */
  add(nonce: string, timestamp: number, oldestValid: number): void {
    for (const [oldNonce, oldTimestamp] of this.#seen) {
      if (oldTimestamp >= oldestValid && this.#seen.size < this.capacity) break;
      this.#seen.delete(oldNonce);
      if (oldTimestamp >= oldestValid) this.#floor = Math.max(this.#floor, oldTimestamp);
    }
    this.#seen.set(nonce, timestamp);
  }
}
