import type {RefusalReason} from './events.js';

/** A request answered with a 4xx or 503 and its reason, thrown by any stage of the request path. */
export class Refusal extends Error {
  constructor(
    readonly status: number,
    readonly reason: RefusalReason,
    message: string,
    /** The name of the key that signed the request, once known. */
    readonly key?: string,
  ) {
    super(message);
  }
}
