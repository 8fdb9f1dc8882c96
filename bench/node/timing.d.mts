/**
 * Time `fn` in `batches` batches of about `batchMs` each.
 *
 * @param fn The call to time.
 * @param bytes Bytes per call (larger payloads get fewer batches).
 * @returns Nanoseconds per call, one entry per batch.
 */
export function timeBatches(
  fn: () => void,
  bytes: number,
  batches?: number,
  batchMs?: number,
): number[];
