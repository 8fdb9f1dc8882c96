import assert from "node:assert/strict";
import { decodeUtf8, Utf8StreamDecoder } from "../utf8.ts";
import { prng } from "./_util.ts";

/**
 * The length of the longest prefix of `bytes` that can begin valid UTF-8,
 * straight from the well-formed byte sequences of Unicode Table 3-7.
 */
function validPrefixLength(bytes: Uint8Array): number {
  let i = 0;
  while (i < bytes.length) {
    const b0 = bytes[i]!;
    let need: number;
    let lo = 0x80;
    let hi = 0xbf;
    if (b0 <= 0x7f) need = 0;
    else if (b0 >= 0xc2 && b0 <= 0xdf) need = 1;
    else if (b0 === 0xe0) [need, lo] = [2, 0xa0];
    else if (b0 >= 0xe1 && b0 <= 0xec) need = 2;
    else if (b0 === 0xed) [need, hi] = [2, 0x9f];
    else if (b0 >= 0xee && b0 <= 0xef) need = 2;
    else if (b0 === 0xf0) [need, lo] = [3, 0x90];
    else if (b0 >= 0xf1 && b0 <= 0xf3) need = 3;
    else if (b0 === 0xf4) [need, hi] = [3, 0x8f];
    else return i;
    for (let k = 1; k <= need; k++) {
      if (i + k >= bytes.length) return bytes.length; // incomplete, but not yet invalid
      const b = bytes[i + k]!;
      // Only the second byte has the narrowed range of Table 3-7.
      if (k === 1 ? b < lo || b > hi : b < 0x80 || b > 0xbf) return i + k;
    }
    i += need + 1;
  }
  return i;
}

function hex(text: string): Uint8Array {
  return new Uint8Array(text.split(" ").filter((s) => s !== "").map((s) => parseInt(s, 16)));
}

/** Feed one byte at a time; the index of the byte that returned null, or -1. */
function failureIndex(bytes: Uint8Array, final = true): number {
  const decoder = new Utf8StreamDecoder();
  for (let i = 0; i < bytes.length; i++) {
    if (decoder.decode(bytes.subarray(i, i + 1), final && i === bytes.length - 1) === null) {
      return i;
    }
  }
  if (bytes.length === 0 && decoder.decode(bytes, final) === null) return 0;
  return -1;
}

const TEXTS = [
  "",
  "Hello-µ@ßöäüàá-UTF-8!!",
  "κόσμε",
  "\u{10000}\u{10ffff}\u{fffd}\u{fffe}\u{ffff}",
  "\u{7f}\u{80}\u{7ff}\u{800}\u{d7ff}\u{e000}",
  "a".repeat(70) + "€" + "b".repeat(70),
  "𝄞 music, 漢字, emoji 😀 and ASCII mixed together",
];

Deno.test("Utf8StreamDecoder decodes valid text split at every position into two and three chunks", async (t) => {
  for (const text of TEXTS) {
    const bytes = new TextEncoder().encode(text);
    await t.step(`${JSON.stringify(text.slice(0, 20))} in two chunks`, () => {
      for (let cut = 0; cut <= bytes.length; cut++) {
        const decoder = new Utf8StreamDecoder();
        const first = decoder.decode(bytes.subarray(0, cut), false);
        const second = decoder.decode(bytes.subarray(cut), true);
        assert.ok(first !== null && second !== null, `cut at ${cut}`);
        assert.equal(first + second, text, `cut at ${cut}`);
      }
    });
    await t.step(`${JSON.stringify(text.slice(0, 20))} in three chunks`, () => {
      for (let a = 0; a <= bytes.length; a++) {
        for (let b = a; b <= bytes.length; b++) {
          const decoder = new Utf8StreamDecoder();
          const parts = [
            decoder.decode(bytes.subarray(0, a), false),
            decoder.decode(bytes.subarray(a, b), false),
            decoder.decode(bytes.subarray(b), true),
          ];
          assert.ok(parts.every((part) => part !== null), `cuts at ${a}, ${b}`);
          assert.equal(parts.join(""), text, `cuts at ${a}, ${b}`);
        }
      }
    });
  }
});

Deno.test("Utf8StreamDecoder fails at exactly the first invalid byte", () => {
  const cases: [string, string, number][] = [
    // Autobahn 6.4.1-6.4.4: the fail-fast cases of "κόσμε" followed by garbage.
    ["a surrogate after valid text", "ce ba e1 bd b9 ce bc ce b5 ed a0 80 65 64 69 74 65 64", 10],
    [
      "a code point above U+10FFFF after valid text",
      "ce ba e1 bd b9 ce bc ce b5 f4 90 80 80 65",
      10,
    ],
    ["f4 90 on its own", "f4 90", 1],
    ["a two-byte overlong", "c0 af", 0],
    ["c1, never valid", "c1 bf", 0],
    ["a three-byte overlong", "e0 80 af", 1],
    ["a four-byte overlong", "f0 8f bf bf", 1],
    ["a surrogate", "ed a0 80", 1],
    ["the last surrogate", "ed bf bf", 1],
    ["above U+10FFFF", "f4 90 80 80", 1],
    ["a stray continuation byte", "41 80 41", 1],
    ["a stray continuation byte after a sequence", "c3 a9 bf", 2],
    ["f5", "f5 80 80 80", 0],
    ["ff", "41 42 ff", 2],
    ["fe", "fe", 0],
    ["a sequence cut short by ASCII", "e2 82 41", 2],
    ["a sequence cut short by a new lead byte", "e2 82 e2 82 ac", 2],
    ["a four-byte sequence cut short at its last byte", "f0 9f 98 41", 3],
    ["a five-byte form", "f8 88 80 80 80", 0],
  ];
  for (const [name, bytes, index] of cases) {
    const input = hex(bytes);
    assert.equal(failureIndex(input), index, name);
    assert.equal(validPrefixLength(input), index, `the reference agrees on ${name}`);
    assert.equal(new Utf8StreamDecoder().decode(input, false), null, `${name}, in one chunk`);
    assert.equal(decodeUtf8(input), null, `${name}, whole`);
  }
});

Deno.test("Utf8StreamDecoder fails when the message ends inside a code point", () => {
  for (const bytes of ["c3", "e2 82", "f0 9f 98", "41 42 e2"]) {
    const input = hex(bytes);
    assert.equal(failureIndex(input), input.length - 1, bytes);
    assert.equal(failureIndex(input, false), -1, `${bytes} is still a valid prefix`);
    const decoder = new Utf8StreamDecoder();
    assert.notEqual(decoder.decode(input, false), null);
    assert.equal(
      decoder.decode(new Uint8Array(0), true),
      null,
      `${bytes} then an empty final chunk`,
    );
    assert.equal(decodeUtf8(input), null);
  }
});

Deno.test("Utf8StreamDecoder keeps a byte-order mark", () => {
  const bytes = hex("ef bb bf 68 69");
  assert.equal(new Utf8StreamDecoder().decode(bytes, true), "\ufeffhi");
  const decoder = new Utf8StreamDecoder();
  assert.equal(decoder.decode(bytes.subarray(0, 2), false), "");
  assert.equal(decoder.decode(bytes.subarray(2), true), "\ufeffhi");
  assert.equal(decodeUtf8(bytes), "\ufeffhi");
  assert.equal(decodeUtf8(hex("ef bb bf")), "\ufeff");
});

Deno.test("Utf8StreamDecoder accepts empty input", () => {
  const decoder = new Utf8StreamDecoder();
  assert.equal(decoder.decode(new Uint8Array(0), false), "");
  assert.equal(decoder.decode(new Uint8Array(0), true), "");
  assert.equal(decodeUtf8(new Uint8Array(0)), "");
});

Deno.test("Utf8StreamDecoder stays failed until reset and then decodes afresh", () => {
  const decoder = new Utf8StreamDecoder();
  assert.equal(decoder.decode(hex("e2 82"), false), "");
  assert.equal(decoder.decode(hex("41"), false), null);
  assert.equal(decoder.decode(hex("41"), false), null);
  decoder.reset();
  assert.equal(decoder.decode(hex("41"), true), "A");
  // A reset in the middle of a code point drops its first bytes.
  assert.equal(decoder.decode(hex("e2 82"), false), "");
  decoder.reset();
  assert.equal(decoder.decode(hex("e2 82 ac"), true), "€");
});

Deno.test("Utf8StreamDecoder decodes one message after another without a reset", () => {
  const decoder = new Utf8StreamDecoder();
  assert.equal(decoder.decode(hex("e2 82"), false), "");
  assert.equal(decoder.decode(hex("ac"), true), "€");
  assert.equal(decoder.decode(hex("68 69"), true), "hi");
});

Deno.test("Utf8StreamDecoder agrees with a reference validator on random bytes", async (t) => {
  const random = prng(6455);
  // Bytes drawn mostly from the interesting ranges, so that valid sequences
  // and near misses are both common.
  const pool = [
    0x00,
    0x41,
    0x7f,
    0x80,
    0x8f,
    0x90,
    0x9f,
    0xa0,
    0xbf,
    0xc0,
    0xc1,
    0xc2,
    0xdf,
    0xe0,
    0xe1,
    0xec,
    0xed,
    0xee,
    0xef,
    0xf0,
    0xf1,
    0xf3,
    0xf4,
    0xf5,
    0xff,
  ];
  const strict = new TextDecoder("utf-8", { fatal: true });
  const samples: Uint8Array[] = [];
  for (let n = 0; n < 3000; n++) {
    const length = Math.floor(random() * 12);
    const bytes = new Uint8Array(length);
    for (let i = 0; i < length; i++) {
      bytes[i] = random() < 0.5
        ? pool[Math.floor(random() * pool.length)]!
        : 0x80 + Math.floor(random() * 64);
    }
    samples.push(bytes);
  }
  // Valid text with one byte changed: long valid prefixes, then a fault.
  for (let n = 0; n < 500; n++) {
    const bytes = new TextEncoder().encode(TEXTS[n % TEXTS.length]! + "ü€😀");
    bytes[Math.floor(random() * bytes.length)] = Math.floor(random() * 256);
    samples.push(bytes);
  }
  await t.step("whole input is valid exactly when TextDecoder accepts it", () => {
    for (const bytes of samples) {
      let valid = true;
      try {
        strict.decode(bytes);
      } catch {
        valid = false;
      }
      const text = new Utf8StreamDecoder().decode(bytes, true);
      assert.equal(text !== null, valid, [...bytes].map((b) => b.toString(16)).join(" "));
      assert.equal(decodeUtf8(bytes) !== null, valid);
      if (text !== null) assert.equal(text, strict.decode(bytes));
    }
  });
  await t.step("byte by byte, it fails just after the longest valid prefix", () => {
    for (const bytes of samples) {
      const prefix = validPrefixLength(bytes);
      const expected = prefix < bytes.length ? prefix : -1;
      assert.equal(
        failureIndex(bytes, false),
        expected,
        [...bytes].map((b) => b.toString(16)).join(" "),
      );
    }
  });
});

Deno.test("decodeUtf8 decodes whole close reasons strictly", () => {
  assert.equal(decodeUtf8(new TextEncoder().encode("bye")), "bye");
  const long = "ünïcödé ".repeat(15);
  assert.equal(decodeUtf8(new TextEncoder().encode(long)), long);
  assert.equal(decodeUtf8(hex("62 79 e2 82")), null, "incomplete at the end");
  assert.equal(decodeUtf8(hex("80")), null);
  assert.equal(decodeUtf8(hex("62 79 65")), "bye", "a failure leaves no state behind");
});
