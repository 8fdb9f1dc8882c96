/**
 * Reads the inspector's recorded inputs: hex text, base64 text, or the raw
 * bytes of a capture.
 *
 * @module
 */

/** How an input is written. `auto` tells them apart by their characters. */
export type InputFormat = "auto" | "hex" | "base64" | "raw";

// Hex as people paste it: pairs with or without spaces, `0x` prefixes,
// commas or colons between bytes, and `#` comments to the end of a line.
const HEX_TEXT = /^(?:0x)?[0-9a-f]{2}(?:[\s,:]*(?:0x)?[0-9a-f]{2})*$/i;
// Groups of hex digits with separators between them: hex, even when a
// digit is missing (base64 is not written in spaced groups).
const SPACED_HEX = /^(?:0x)?[0-9a-f]+(?:[\s,:]+(?:0x)?[0-9a-f]+)+$/i;
const BASE64_TEXT = /^[A-Za-z0-9+/_-]+={0,2}$/;

/**
 * Turn an input into the bytes it stands for.
 *
 * @param input The input as read.
 * @param format How it is written; `auto` picks hex when every character
 * fits hex (spaced groups of digits with one missing are an error, not
 * base64), then base64, and otherwise takes the bytes as they are.
 * @returns The stream's bytes.
 * @throws {TypeError} When a forced format does not fit the input.
 *
 * @example Three ways to write a ping
 * ```ts
 * import { decodeInput } from "./input.ts";
 * const text = (s: string) => new TextEncoder().encode(s);
 * console.assert(decodeInput(text("89 00\n")).join() === "137,0");
 * console.assert(decodeInput(text("iQA=")).join() === "137,0");
 * console.assert(decodeInput(new Uint8Array([0x89, 0x00])).join() === "137,0");
 * ```
 */
export function decodeInput(input: Uint8Array, format: InputFormat = "auto"): Uint8Array {
  if (format === "raw") return input;
  const text = new TextDecoder("utf-8", { fatal: false }).decode(input);
  const hexText = stripComments(text).trim();
  if (
    format === "hex" ||
    (format === "auto" && (HEX_TEXT.test(hexText) || SPACED_HEX.test(hexText)))
  ) {
    if (!HEX_TEXT.test(hexText)) {
      throw new TypeError(
        SPACED_HEX.test(hexText)
          ? "The input is not whole bytes of hex: a byte is two digits, and one is missing"
          : "The input is not hex",
      );
    }
    return decodeHex(hexText);
  }
  const base64Text = text.replace(/\s+/g, "");
  if (
    format === "base64" || (format === "auto" && base64Text !== "" && BASE64_TEXT.test(base64Text))
  ) {
    return decodeBase64(base64Text);
  }
  return input;
}

function stripComments(text: string): string {
  return text.replace(/#[^\n]*/g, "");
}

function decodeHex(text: string): Uint8Array {
  const digits = text.replace(/0x/gi, "").replace(/[\s,:]/g, "");
  const bytes = new Uint8Array(digits.length / 2);
  for (let i = 0; i < bytes.length; i++) bytes[i] = parseInt(digits.slice(2 * i, 2 * i + 2), 16);
  return bytes;
}

function decodeBase64(text: string): Uint8Array {
  const standard = text.replace(/-/g, "+").replace(/_/g, "/");
  const padded = standard + "=".repeat((4 - (standard.length % 4)) % 4);
  let binary: string;
  try {
    binary = atob(padded);
  } catch {
    throw new TypeError("The input is not base64");
  }
  return Uint8Array.from(binary, (c) => c.charCodeAt(0));
}
