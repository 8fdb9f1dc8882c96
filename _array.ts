// Array helpers for the hot paths; private to the module (the leading
// underscore keeps it out of the public API).

// V8 frees an array's backing store when it is emptied by `length = 0`,
// `shift()` or reassigning `[]`, so the next `push` allocates 17 slots again
// (152 bytes): once per message for a queue that is usually empty or holds
// one item. `pop()` keeps the store. Long arrays are let go, so that one
// burst does not pin a large store for a connection's lifetime.
const KEEP_SLOTS = 32;

/**
 * `array` emptied, keeping its storage when it is short.
 *
 * @param array The array.
 * @returns `array` itself, emptied, or a new empty array in its place.
 */
export function emptied<T>(array: T[]): T[] {
  if (array.length > KEEP_SLOTS) return [];
  while (array.length > 0) array.pop();
  return array;
}

/**
 * The first item, removed, or `undefined`: `shift()`, except that taking
 * the only item keeps the array's storage.
 *
 * @param array The array.
 * @returns The first item.
 */
export function takeFirst<T>(array: T[]): T | undefined {
  return array.length === 1 ? array.pop() : array.shift();
}
